"""How well redaction works: recall on personal data, and how much else it keeps.

The test set (``tests/data/redaction_cases.jsonl``, written for deflect) holds sentences in
English, Chinese and Indonesian, each with either one piece of personal data (``pii``:
phone numbers of many countries and formats, e-mails including internationalised ones,
cards, IBANs, national identity numbers, IP addresses, account numbers) or one number that
must be kept (``keep``: dates, times, amounts, versions, order numbers, error codes).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from deflect.redact import redact

CASES = Path(__file__).resolve().parents[1] / "tests" / "data" / "redaction_cases.jsonl"


def load_cases(path: Path = CASES) -> list[dict]:
    """The cases, one JSON object per line: ``lang``, ``kind``, ``text`` and ``pii`` or ``keep``."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def caught(pii: str, out: str) -> bool:
    """True when nothing of ``pii`` that identifies someone is left in ``out``: not the
    whole, not its longest run of 4 or more digits, not an e-mail's local part."""
    if pii in out:
        return False
    runs = sorted(re.findall(r"\d{4,}", pii), key=len)
    if runs and runs[-1] in out:
        return False
    return not ("@" in pii and pii.split("@")[0] in out)


@dataclass
class RedactionScore:
    """Recall on the personal data and the share of numbers kept, with the failures."""

    pii: int = 0
    caught: int = 0
    keep: int = 0
    kept: int = 0
    missed: list[tuple[str, str]] = field(default_factory=list)  # (text, output)
    lost: list[tuple[str, str]] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.caught / self.pii if self.pii else 1.0

    @property
    def kept_rate(self) -> float:
        return self.kept / self.keep if self.keep else 1.0


def score(cases: list[dict]) -> RedactionScore:
    """Run :func:`~deflect.redact.redact` on every case."""
    s = RedactionScore()
    for c in cases:
        out = redact(c["text"])
        if "pii" in c:
            s.pii += 1
            if caught(c["pii"], out):
                s.caught += 1
            else:
                s.missed.append((c["text"], out))
        else:
            s.keep += 1
            if c["keep"] in out:
                s.kept += 1
            else:
                s.lost.append((c["text"], out))
    return s
