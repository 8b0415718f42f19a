"""The e-mail channel in the report: what happened to inbound messages, and how fast they
were first answered.

Deflection itself is measured for e-mail as for the form (:mod:`deflect.eval.deflection`,
the channel ``email``: a thread is a session, a further message from the sender on the
thread within the window is the ticket it still needed). This adds what only e-mail has,
from the store's ``mail_messages``:

- **messages** by outcome (triaged, automatic, loop, no_text, malformed, too_large), and the
  **acknowledgements** by state (sent, none and why, failed, unconfirmed);
- **first-response time**: from a thread's first message arriving to its acknowledgement
  being handed to the mail server (median, 90th percentile), for the messages answered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from deflect.store.base import parse_iso, period_condition, to_utc


@dataclass
class MailSummary:
    """What the report says of inbound e-mail over its period."""

    messages: int = 0
    threads: int = 0
    followups: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    replies: dict[str, int] = field(default_factory=dict)
    not_answered: dict[str, int] = field(default_factory=dict)
    with_articles: int = 0
    #: seconds from a thread's first message to its acknowledgement
    first_response_median: float | None = None
    first_response_p90: float | None = None
    first_responses: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = q * (len(sorted_values) - 1)
    lo = int(i)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (i - lo)


def _t(v) -> datetime:
    return parse_iso(v) if isinstance(v, str) else to_utc(v)


def mail_summary(
    store, *, since: datetime | None = None, until: datetime | None = None, include_simulated: bool = False
) -> MailSummary:
    """The summary of the messages received in ``[since, until)``, counted in the store."""
    p: dict = {}
    cond = period_condition("received_at", since, until, p)
    if not include_simulated:
        cond.append("simulated = :no")
        p["no"] = False
    where = f"WHERE {' AND '.join(cond)}" if cond else ""
    and_ = "AND" if cond else "WHERE"
    counts, times, ((threads,),) = store.query_all(  # one read transaction: the figures agree
        [
            (
                f"SELECT outcome, reply_state, reply_reason, reply_articles, followup, COUNT(*) "
                f"FROM mail_messages {where} "
                "GROUP BY outcome, reply_state, reply_reason, reply_articles, followup",
                p,
            ),
            (
                f"SELECT received_at, replied_at FROM mail_messages {where} {and_} reply_state = 'sent' "
                "AND replied_at IS NOT NULL",
                p,
            ),
            (f"SELECT COUNT(DISTINCT thread) FROM mail_messages {where}", p),
        ]
    )
    out = MailSummary()
    by_outcome, replies, not_answered = Counter(), Counter(), Counter()
    for outcome, state, reason, articles, followup, n in counts:
        n = int(n)
        out.messages += n
        by_outcome[outcome] += n
        replies[state] += n
        if state == "none":
            not_answered[reason or "unknown"] += n
        if state == "sent" and bool(articles):
            out.with_articles += n
        if bool(followup):
            out.followups += n
    out.threads = int(threads)
    out.by_outcome, out.replies, out.not_answered = dict(by_outcome), dict(replies), dict(not_answered)
    secs = sorted((_t(b) - _t(a)).total_seconds() for a, b in times)
    out.first_responses = len(secs)
    out.first_response_median = _quantile(secs, 0.5)
    out.first_response_p90 = _quantile(secs, 0.9)
    return out
