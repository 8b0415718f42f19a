"""`make bench` section ``redaction``: recall on personal data and the share of other numbers
kept, on the redaction test set (``tests/data/redaction_cases.jsonl``: English, Chinese and
Indonesian), beside the regex-only redaction deflect used before (``bench/baselines/
redact_regex.py``, kept verbatim) in the same run; and the time to redact a hostile 30 KB text
(36-digit runs separated by spaces, the body that stalled the server) against a normal query.
"""

from __future__ import annotations

import time

TARGET_RECALL = 0.95
TARGET_KEPT = 0.95


def _timed(fn, text: str, repeat: int) -> float:
    t = time.perf_counter()
    for _ in range(repeat):
        fn(text)
    return (time.perf_counter() - t) / repeat


def run(row) -> list[str]:
    """The ``redaction`` section; returns notes."""
    from bench.baselines import redact_regex
    from deflect import redact as current
    from deflect.eval import redaction as R

    cases = R.load_cases()
    new = R.score(cases)
    real = R.redact
    try:
        R.redact = redact_regex.redact
        old = R.score(cases)
    finally:
        R.redact = real
    langs = sorted({c["lang"] for c in cases})
    base = f"regex-only redaction (before): recall {old.recall:.3f}, kept {old.kept_rate:.3f}"
    row("redaction", "deflect.redact", "recall", new.recall, base, f">= {TARGET_RECALL}")
    row("redaction", "deflect.redact", "numbers kept", new.kept_rate, base, f">= {TARGET_KEPT}")
    hostile = " ".join(["1" * 36] * 800)[:30_000]
    normal = "I was charged twice for my subscription, card ending 4242, please refund"
    t_normal = _timed(current.redact, normal, 200)
    t_hostile = _timed(current.redact, hostile, 3)
    t_old = _timed(redact_regex.redact, hostile[:3_000], 1)  # a tenth of it: the whole takes seconds
    row(
        "redaction",
        "deflect.redact",
        "ms, hostile 30 KB",
        t_hostile * 1000,
        f"normal query {t_normal * 1000:.3f} ms; regex-only on 3 KB of it {t_old * 1000:.0f} ms",
    )
    notes = [
        f"redaction: {new.pii} personal-data cases and {new.keep} numbers to keep, in {', '.join(langs)}; "
        "the test set was written with the new redaction (not an independent sample)"
    ]
    notes += [f"redaction missed: {t!r} -> {o!r}" for t, o in new.missed[:5]]
    notes += [f"redaction lost: {t!r} -> {o!r}" for t, o in new.lost[:5]]
    return notes
