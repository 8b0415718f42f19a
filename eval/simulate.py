"""Simulated customers, to check that the report recovers a known effect.

Each simulated session: a customer types a labeled query; the real engine answers it
(the control group, assigned by the same salted hash as the server, is shown nothing);
the customer opens an article or not, may give feedback, and sends the form or leaves.
The probabilities are built so that **showing suggestions truly lowers the submit rate of
eligible sessions by exactly ``true_effect``**:

- every customer would send the form with probability ``base_submit`` without help;
- a treatment customer shown a list containing a right article opens one with
  probability ``open_right`` (a wrong list: ``open_wrong``, and it never helps);
- opening a right article lowers the submit probability by ``R``, chosen as
  ``true_effect / mean(open_right * [right article shown])`` over the eligible queries,
  so the expected drop over eligible treatment sessions is ``true_effect``.

The observed deflection rate (opened, no ticket) also counts customers who opened an
article and left without sending the form for other reasons, so it differs from the
true effect; that difference is what the control group is for.

E-mail sessions (``channels``) are shaped like mail: the session is a thread, its first
message gets an acknowledgement (with the articles unless control) a few seconds later,
recorded in ``mail_messages`` with its first-response time; the ticket the customer still
needs is a further message on the thread hours later (``mail_followup``), never a form.

Realism the estimator must survive: a share of sessions never trigger a suggest call,
events arrive late and out of order, about 2% are sent twice (retries), and
``form_abandoned`` beacons are sometimes lost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from deflect.core.errors import InvalidInputError
from deflect.engine import SuggestQuery, SuggestResult
from deflect.eval.queries import LabeledQuery
from deflect.events import suggest_record
from deflect.experiment import CONTROL, assign_variant
from deflect.store.base import CHANNELS, Event, EventStore, MailRecord, SuggestRecord


@dataclass
class SimulationSummary:
    sessions: int
    rows: int
    effect_per_right_open: float
    eligible_share: float
    start: datetime
    end: datetime


def simulate(
    store: EventStore,
    suggest: Callable[[SuggestQuery], SuggestResult],
    queries: Sequence[LabeledQuery],
    *,
    sessions: int,
    true_effect: float,
    seed: int = 0,
    control_share: float = 0.1,
    salt: str = "deflect-control-v1",
    end: datetime | None = None,
    days: int = 14,
    window: timedelta = timedelta(hours=24),
    base_submit: float = 0.6,
    open_right: float = 0.65,
    open_wrong: float = 0.25,
    no_suggest_share: float = 0.05,
    k: int = 3,
    batch: int = 20_000,
    channels: dict[str, float] | None = None,
) -> SimulationSummary:
    """Write ``sessions`` simulated sessions into ``store`` (see the module docstring), marked
    as simulated, ``batch`` sessions per transaction. ``channels``: the share of sessions from
    each channel (default 70% form, 20% chat, 10% e-mail); the effect is the same in each."""
    if sessions < 1:
        raise InvalidInputError("--sessions must be at least 1", field="sessions")
    if not 0.0 <= true_effect < base_submit:
        raise InvalidInputError(f"--true-effect must be in [0, {base_submit})", field="true_effect")
    if not queries:
        raise InvalidInputError("no queries to simulate with", field="queries")
    rng = np.random.default_rng(seed)
    shares = channels or {"form": 0.7, "chat": 0.2, "email": 0.1}
    names, weights = list(shares), np.array(list(shares.values()), dtype=float)
    if set(names) - set(CHANNELS) or (weights < 0).any() or weights.sum() <= 0:
        raise InvalidInputError(f"channels must be shares of {', '.join(CHANNELS)}", field="channels")
    # its own stream: the sessions are the same whatever the shares
    channel_of = np.random.default_rng([seed, 1]).choice(len(names), size=sessions, p=weights / weights.sum())
    # the engine's answer to each distinct query, as the server would record it (treatment view)
    cache: dict[str, SuggestRecord] = {}
    for q in queries:
        if q.text not in cache:
            sq = SuggestQuery(subject=q.subject, description=q.description, k=k)
            cache[q.text] = suggest_record(sq, suggest(sq))

    def right_shown(q: LabeledQuery) -> bool:
        a = cache[q.text]
        return any(x in q.relevant for x in a.would_show[:k])

    eligible = [q for q in queries if cache[q.text].eligible]
    if not eligible:
        raise InvalidInputError("the engine shows nothing for any of these queries: nothing to measure")
    mean_right_open = float(np.mean([open_right * right_shown(q) for q in eligible]))
    if mean_right_open <= 0 and true_effect > 0:
        raise InvalidInputError("the engine never shows a right article for these queries: no effect is possible")
    effect = true_effect / mean_right_open if true_effect > 0 else 0.0
    if effect > base_submit:
        raise InvalidInputError(
            f"--true-effect {true_effect} is too large for these queries: it would need opening a right article "
            f"to lower the submit probability by {effect:.2f} (> {base_submit})",
            field="true_effect",
        )

    end = end or datetime.now(UTC).replace(microsecond=0) - window - timedelta(hours=1)
    start = end - timedelta(days=days)
    span = (end - start).total_seconds()
    recs: list[SuggestRecord] = []
    events: list[Event] = []
    mails: list[MailRecord] = []
    n_rows = 0

    def sec(x: float) -> timedelta:
        return timedelta(seconds=float(x))

    def emit(sid: str, n: int, type_: str, ts: datetime, **kw) -> None:
        delay = rng.exponential(2.0) if rng.random() > 0.05 else rng.uniform(600, 7200)  # some arrive late
        e = Event(f"{sid}-e{n}", sid, type_, ts, ts + sec(delay), **kw)
        events.append(e)
        if rng.random() < 0.02:  # a retried batch: same event_id
            events.append(Event(e.event_id, sid, type_, ts, ts + sec(delay + 5), **kw))

    def flush() -> None:
        nonlocal n_rows
        n_rows += len(recs) + len(events) + len(mails)
        rng.shuffle(events)  # arrival order is not client order
        store.bulk_load(recs, events, simulated=True)  # one transaction (COPY on PostgreSQL)
        if mails:
            store.mail_claim_many(mails)
        recs.clear()
        events.clear()
        mails.clear()

    for i in range(sessions):
        sid = f"sim{seed}-{i:07d}"
        t = start + sec(rng.uniform(0, span))
        if rng.random() < no_suggest_share:  # typed too little for a suggest call
            if rng.random() < base_submit:
                emit(sid, 0, "form_submitted", t + sec(rng.uniform(20, 300)))
            continue
        q = queries[int(rng.integers(len(queries)))]
        a = cache[q.text]
        variant = assign_variant(sid, control_share, salt)
        shown = a.would_show if a.eligible and variant != CONTROL else []
        rid = f"{sid}-r1"
        mail = names[channel_of[i]] == "email"
        recs.append(
            replace(
                a,
                request_id=rid,
                session_id=sid,
                variant=variant,
                shown=shown,
                latency_ms=float(rng.uniform(2, 8)),
                created_at=t,
                channel=names[channel_of[i]],
            )
        )
        p_submit = base_submit
        now = t + sec(rng.uniform(0.3, 1.5) if not mail else rng.uniform(2, 30))  # mail: the acknowledgement
        n = 0
        if mail:
            mails.append(
                MailRecord(
                    f"<{sid}@sim>",
                    "simulated",
                    sid,
                    f"sender-{sid}",
                    t,
                    "triaged",
                    rid,
                    variant,
                    a.intent_label,
                    "support",
                    "normal",
                    reply_state="sent",
                    reply_articles=bool(shown),
                    replied_at=now,
                    simulated=True,
                )  # fmt: skip
            )
        if shown:
            emit(sid, n, "suggestions_shown", now, request_id=rid)
            n += 1
            right = [x for x in shown if x in q.relevant]
            if rng.random() < (open_right if right else open_wrong):
                opened = right[0] if right else shown[0]
                now += sec(rng.uniform(3, 40))
                emit(sid, n, "article_opened", now, request_id=rid, article_id=opened)
                n += 1
                if right:
                    p_submit = base_submit - effect
        submits = rng.random() < p_submit
        if shown and n > 1 and rng.random() < 0.4:  # some give feedback on the article they read
            helpful = (not submits and rng.random() < 0.85) or (submits and rng.random() < 0.1)
            now += sec(rng.uniform(5, 120))
            emit(sid, n, "feedback", now, request_id=rid, article_id=events[-1].article_id, helpful=bool(helpful))
            n += 1
        if submits and mail:  # the customer writes again on the thread, hours later
            again = now + sec(rng.uniform(600, 0.9 * window.total_seconds()))
            emit(sid, n, "mail_followup", again, request_id=rid)
            mails.append(MailRecord(f"<{sid}-2@sim>", "simulated", sid, f"sender-{sid}", again, "triaged",
                                    followup=True, reply_reason="followup", simulated=True))  # fmt: skip
        elif submits:
            emit(sid, n, "form_submitted", now + sec(rng.uniform(20, 900)))
        elif mail:
            pass  # no beacon: silence on the thread is the resolution
        elif rng.random() < 0.7:  # the beacon is sometimes lost
            emit(sid, n, "form_abandoned", now + sec(rng.uniform(10, 600)))
        if len(recs) >= batch:
            flush()
    flush()
    return SimulationSummary(sessions, n_rows, effect, len(eligible) / len(queries), start, end)
