"""Labeled queries (docs/evaluation.md): CSV or JSONL with ``query`` (or ``subject`` and
``description``) and ``article_id`` (empty = no article answers it; ``a|b`` = either)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from deflect.core.errors import InvalidInputError


@dataclass(frozen=True)
class LabeledQuery:
    """A query and the set of articles that answer it (empty: none does)."""

    subject: str
    description: str
    relevant: frozenset[str]
    origin: str = ""

    @property
    def text(self) -> str:
        return "\n".join(p for p in (self.subject.strip(), self.description.strip()) if p)

    @property
    def answerable(self) -> bool:
        return bool(self.relevant)


def _row(d: dict, origin: str) -> LabeledQuery:
    if not isinstance(d, dict):
        raise InvalidInputError(f"{origin}: expected an object", field="query")
    q = d.get("query")
    subject = str(d.get("subject") or "")
    description = str(d.get("description") or q or "")
    if not (subject.strip() or description.strip()):
        raise InvalidInputError(
            f"{origin}: no query text (need `query`, or `subject` and `description`)", field="query"
        )
    if "article_id" not in d:
        raise InvalidInputError(
            f"{origin}: missing `article_id` (leave it empty when no article answers)", field="article_id"
        )
    raw = d.get("article_id")
    ids = frozenset(p.strip() for p in str(raw if raw is not None else "").split("|") if p.strip())
    return LabeledQuery(subject, description, ids, origin)


def load_queries(path: str | Path) -> list[LabeledQuery]:
    """Read labeled queries; a malformed record raises :class:`InvalidInputError` naming its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 (byte {exc.start})") from exc
    except OSError as exc:
        raise InvalidInputError(f"{path}: {exc.strerror}") from exc
    out: list[LabeledQuery] = []
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    raise InvalidInputError(f"{path}:{n}: invalid JSON ({exc})") from exc
                out.append(_row(obj, f"{path}:{n}"))
    else:
        reader = csv.DictReader(text.splitlines(keepends=True))
        for row in reader:
            out.append(_row(row, f"{path}:{reader.line_num}"))
    if not out:
        raise InvalidInputError(f"{path}: no queries")
    return out
