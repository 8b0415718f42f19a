"""Deflection measured from the event store, honestly (docs/deflection.md).

Definitions (all per session; a session is everything carrying one ``session_id``):

- A session belongs to the report's period by its **start**: its earliest suggest call
  (server time) or event (client time).
- **Shown**: the widget reported ``suggestions_shown``. The attribution window starts at
  the first one.
- **Engaged**: opened an article (``article_opened``) or said one helped (``feedback``
  with ``helpful: true``), at any time in the session.
- **Submitted within the window**: a ``form_submitted`` (for e-mail: ``mail_followup``, the
  server's record of a further message from the sender on the thread) whose ``ts`` lies in
  ``[start of window, start of window + window]`` (both ends included).
- **Observed deflection rate**: of shown sessions, the share engaged and not submitted
  within the window. **Self-reported deflection**: of shown sessions, the share that said
  "helpful" and did not submit within the window.
- **Eligible** (for the experiment): a session with a suggest call for which the engine
  had something to show (not abstained). The window starts at the first such call
  (server time), in both groups, so treatment and control are measured the same way.
- **Incremental deflection** = submit rate of eligible control sessions − submit rate of
  eligible treatment sessions, with a 95% Wald interval (unpooled variances); **tickets
  avoided** = that difference × eligible treatment sessions.
- **By channel**: the experiment again within each channel (form, chat, e-mail: the
  ``channel`` of the session's first suggest call), so that each channel's tickets avoided
  can be priced at its own cost (:func:`money`).
- A session whose window has not closed by ``as_of`` (the end of the data: ``until`` +
  window, or now, whichever is earlier) is **pending**: left out of every rate above and
  counted separately, so a report run today never counts today's customers as deflected.

Events arriving late, out of order or twice are handled by construction: rows are
grouped by session and ordered by client time; the store keeps one row per ``event_id``.

What is not counted (:class:`Integrity`, shown beside the figures):

- **Rejected events**: events the server kept apart because they had no valid token for
  their session (``rejected_events``; :mod:`deflect.provenance`), counted by reason over
  the rows read for the report (received from ``since`` to ``until`` + window).
- **Flagged sessions**, whose behaviour cannot be a person's (:class:`BotRules`), are left
  out of every figure above, each counted once under the first rule it breaks:
  ``too_many_suggests`` (more than ``max_suggest_calls`` suggest calls), ``event_burst``
  (more than ``burst_events`` events dated within one second, client time),
  ``events_before_suggest`` (a ``suggestions_shown``, ``article_opened`` or ``feedback``
  event dated more than ``clock_skew`` before the session's first suggest call, or in a
  session with none), ``busy_client`` (the caller of the session's first suggest call, by
  its keyed address hash, started more than ``busy_client_sessions`` sessions in that clock
  hour, UTC).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from deflect.store.base import SUBMIT_TYPES, Event, RejectedEvent, SuggestRecord, to_utc

Z95 = 1.959963984540054
#: the event types a person can only send after a suggest call
AFTER_SUGGEST = ("suggestions_shown", "article_opened", "feedback")
FLAG_REASONS = ("too_many_suggests", "event_burst", "events_before_suggest", "busy_client")


@dataclass(frozen=True)
class BotRules:
    """When a session's behaviour cannot be a person's (see the module docstring)."""

    max_suggest_calls: int = 500
    burst_events: int = 20
    clock_skew: timedelta = timedelta(hours=1)
    busy_client_sessions: int = 30

    @classmethod
    def from_settings(cls, settings) -> BotRules:
        return cls(
            max_suggest_calls=settings.bot_max_suggest_calls,
            burst_events=settings.bot_burst_events,
            clock_skew=timedelta(minutes=settings.clock_skew_minutes),
            busy_client_sessions=settings.bot_busy_client_sessions,
        )


@dataclass(frozen=True)
class Integrity:
    """What the figures leave out: events rejected by the server and sessions flagged here."""

    rejected_by_reason: dict[str, int]
    flagged_by_reason: dict[str, int]

    @property
    def rejected_events(self) -> int:
        return sum(self.rejected_by_reason.values())

    @property
    def flagged_sessions(self) -> int:
        return sum(self.flagged_by_reason.values())

    def to_dict(self) -> dict:
        return {
            "rejected_events": self.rejected_events,
            "rejected_by_reason": dict(self.rejected_by_reason),
            "flagged_sessions": self.flagged_sessions,
            "flagged_by_reason": dict(self.flagged_by_reason),
        }


@dataclass
class Session:
    """Everything known about one session, in time order."""

    session_id: str
    suggestions: list[SuggestRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def start(self) -> datetime:
        times = [r.created_at for r in self.suggestions] + [e.ts for e in self.events]
        return min(times)

    @property
    def variant(self) -> str | None:
        return self.suggestions[0].variant if self.suggestions else None

    @property
    def channel(self) -> str | None:
        return self.suggestions[0].channel if self.suggestions else None

    def of_type(self, type_: str) -> list[Event]:
        return [e for e in self.events if e.type == type_]

    @property
    def shown_at(self) -> datetime | None:
        shown = self.of_type("suggestions_shown")
        return shown[0].ts if shown else None

    @property
    def eligible_at(self) -> datetime | None:
        for r in self.suggestions:
            if r.eligible:
                return r.created_at
        return None

    @property
    def opened(self) -> list[str]:
        return [e.article_id for e in self.of_type("article_opened") if e.article_id]

    @property
    def helpful(self) -> bool:
        return any(e.helpful is True for e in self.of_type("feedback"))

    @property
    def gave_feedback(self) -> bool:
        return any(e.helpful is not None for e in self.of_type("feedback"))

    @property
    def engaged(self) -> bool:
        return bool(self.opened) or self.helpful

    def submitted_between(self, start: datetime, end: datetime) -> bool:
        return any(start <= e.ts <= end for e in self.events if e.type in SUBMIT_TYPES)

    @property
    def submitted(self) -> bool:
        return any(e.type in SUBMIT_TYPES for e in self.events)

    @property
    def last_suggestion(self) -> SuggestRecord | None:
        return self.suggestions[-1] if self.suggestions else None

    def own_flag(self, rules: BotRules) -> str | None:
        """The first per-session rule of ``rules`` this session breaks (``busy_client`` is
        decided across sessions, in :func:`flag_sessions`)."""
        if len(self.suggestions) > rules.max_suggest_calls:
            return "too_many_suggests"
        if self.events:
            per_second = Counter(e.ts.replace(microsecond=0) for e in self.events)
            if max(per_second.values()) > rules.burst_events:
                return "event_burst"
        first = self.suggestions[0].created_at if self.suggestions else None
        for e in self.events:
            if e.type in AFTER_SUGGEST and (first is None or e.ts < first - rules.clock_skew):
                return "events_before_suggest"
        return None


def flag_sessions(sessions: dict[str, Session], rules: BotRules) -> dict[str, str]:
    """Session id -> the first rule it breaks (see the module docstring), for flagged sessions only."""
    flags = {sid: f for sid, s in sessions.items() if (f := s.own_flag(rules)) is not None}
    per_client: dict[tuple[str, str], list[str]] = {}
    for sid, s in sessions.items():
        if s.suggestions and s.suggestions[0].client:
            first = s.suggestions[0]
            per_client.setdefault((first.client, first.created_at.strftime("%Y-%m-%dT%H")), []).append(sid)
    for sids in per_client.values():
        if len(sids) > rules.busy_client_sessions:
            for sid in sids:
                flags.setdefault(sid, "busy_client")
    return flags


def sessions_from(suggestions: Iterable[SuggestRecord], events: Iterable[Event]) -> dict[str, Session]:
    """Group rows by session (suggest calls without a session id cannot be followed and are skipped)."""
    out: dict[str, Session] = {}
    for r in suggestions:
        if r.session_id:
            out.setdefault(r.session_id, Session(r.session_id)).suggestions.append(r)
    seen: set[str] = set()
    for e in events:
        if e.event_id in seen:  # an export or a second store may repeat a row
            continue
        seen.add(e.event_id)
        out.setdefault(e.session_id, Session(e.session_id)).events.append(e)
    for s in out.values():
        s.suggestions.sort(key=lambda r: (r.created_at, r.request_id))
        s.events.sort(key=lambda e: (e.ts, e.event_id))
    return out


@dataclass
class RateCI:
    """A difference of two proportions with its 95% interval."""

    estimate: float
    low: float
    high: float


def diff_of_proportions(x_a: int, n_a: int, x_b: int, n_b: int) -> RateCI | None:
    """``x_a/n_a − x_b/n_b`` with a 95% Wald interval (unpooled); None when a group is empty."""
    if n_a == 0 or n_b == 0:
        return None
    pa, pb = x_a / n_a, x_b / n_b
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    d = pa - pb
    return RateCI(d, d - Z95 * se, d + Z95 * se)


def _rate(x: int, n: int) -> float | None:
    return x / n if n else None


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


@dataclass(frozen=True)
class Period:
    """What the report covers: sessions starting in ``[since, until)``, data up to ``as_of``."""

    since: datetime | None
    until: datetime | None
    as_of: datetime
    window: timedelta
    first_session: datetime | None
    last_session: datetime | None

    @property
    def window_hours(self) -> float:
        return self.window.total_seconds() / 3600

    def to_dict(self) -> dict:
        return {
            "since": _iso(self.since),
            "until": _iso(self.until),
            "as_of": self.as_of.isoformat(),
            "window_hours": self.window_hours,
            "first_session": _iso(self.first_session),
            "last_session": _iso(self.last_session),
        }


@dataclass(frozen=True)
class Incremental:
    """The experiment: eligible sessions of each group that closed, and how many sent the form."""

    treatment_sessions: int
    control_sessions: int
    treatment_submitted: int
    control_submitted: int
    pending: int

    @property
    def treatment_submit_rate(self) -> float | None:
        return _rate(self.treatment_submitted, self.treatment_sessions)

    @property
    def control_submit_rate(self) -> float | None:
        return _rate(self.control_submitted, self.control_sessions)

    @property
    def difference(self) -> RateCI | None:
        """Control submit rate minus treatment submit rate, with its 95% interval."""
        return diff_of_proportions(
            self.control_submitted, self.control_sessions, self.treatment_submitted, self.treatment_sessions
        )

    @property
    def incremental_deflection(self) -> float | None:
        d = self.difference
        return d.estimate if d else None

    @property
    def ci95(self) -> tuple[float, float] | None:
        d = self.difference
        return (d.low, d.high) if d else None

    @property
    def tickets_avoided(self) -> float | None:
        d = self.difference
        return d.estimate * self.treatment_sessions if d else None

    @property
    def tickets_avoided_ci95(self) -> tuple[float, float] | None:
        d = self.difference
        return (d.low * self.treatment_sessions, d.high * self.treatment_sessions) if d else None

    @property
    def relative_reduction(self) -> float | None:
        d = self.difference
        return d.estimate / (self.control_submitted / self.control_sessions) if d and self.control_submitted else None

    @property
    def note(self) -> str | None:
        if self.difference:
            return None
        return "no eligible sessions in one of the groups: is the control group configured (control_share)?"

    def to_dict(self) -> dict:
        ci, tci = self.ci95, self.tickets_avoided_ci95
        return {
            "treatment_sessions": self.treatment_sessions,
            "control_sessions": self.control_sessions,
            "treatment_submit_rate": self.treatment_submit_rate,
            "control_submit_rate": self.control_submit_rate,
            "incremental_deflection": self.incremental_deflection,
            "ci95": list(ci) if ci else None,
            "tickets_avoided": self.tickets_avoided,
            "tickets_avoided_ci95": list(tci) if tci else None,
            "relative_reduction": self.relative_reduction,
            "pending": self.pending,
            "note": self.note,
        }


@dataclass(frozen=True)
class Abstention:
    """Suggest calls in the period, and those that showed nothing by reason."""

    calls: int
    by_reason: dict[str, int]

    @property
    def abstained(self) -> int:
        return sum(self.by_reason.values())

    @property
    def rate(self) -> float | None:
        return _rate(self.abstained, self.calls)

    def reason_rate(self, reason: str) -> float:
        return self.by_reason[reason] / self.calls

    def to_dict(self) -> dict:
        return {
            "calls": self.calls,
            "abstained": self.abstained,
            "rate": self.rate,
            "by_reason": {k: {"calls": v, "rate": self.reason_rate(k)} for k, v in self.by_reason.items()},
        }


@dataclass
class Breakdown:
    """Figures for one group of sessions (an intent, a day, ...)."""

    key: str
    sessions: int = 0
    shown: int = 0
    engaged: int = 0
    deflected: int = 0
    submitted: int = 0
    abstained: int = 0
    pending: int = 0

    @property
    def observed_deflection_rate(self) -> float | None:
        return _rate(self.deflected, self.shown)

    def to_dict(self) -> dict:
        return {**self.__dict__, "observed_deflection_rate": self.observed_deflection_rate}


@dataclass
class ArticleFigures:
    """How one article did among closed shown sessions."""

    article_id: str
    shown: int = 0
    opened: int = 0
    helpful: int = 0
    not_helpful: int = 0
    opened_then_submitted: int = 0
    opened_not_submitted: int = 0

    @property
    def open_rate(self) -> float | None:
        return _rate(self.opened, self.shown)

    @property
    def ticket_after_open_rate(self) -> float | None:
        return _rate(self.opened_then_submitted, self.opened)

    def to_dict(self) -> dict:
        return {**self.__dict__, "open_rate": self.open_rate, "ticket_after_open_rate": self.ticket_after_open_rate}


@dataclass(frozen=True)
class GapQuery:
    """A query that was abstained on, or ended in a ticket after suggestions."""

    query: str
    why: str  # "abstained:<reason>" or "ticket_after_suggestions"
    intent: str | None

    def to_dict(self) -> dict:
        return {"query": self.query, "why": self.why, "intent": self.intent}


@dataclass(frozen=True)
class DeflectionMeasurement:
    """Every figure of the deflection report (see the module docstring for the definitions).

    Counts are fields; rates are properties computed from them. :meth:`to_dict` gives the
    JSON that ``deflect report --format json`` writes (its keys are a public interface)."""

    period: Period
    sessions: int
    sessions_with_suggest: int
    sessions_by_variant: dict[str, int]
    sessions_shown: int
    sessions_shown_closed: int
    clicked_sessions: int
    feedback_sessions: int
    helpful_sessions: int
    observed_deflected_sessions: int
    self_reported_deflected_sessions: int
    incremental: Incremental
    abstention: Abstention
    by_intent: list[Breakdown]
    by_article: list[ArticleFigures]
    by_day: list[Breakdown]
    gap_queries: list[GapQuery]
    integrity: Integrity = field(default_factory=lambda: Integrity({}, {}))
    #: content-gap sessions by ``why``, exact even when ``gap_queries`` is a sample
    gap_counts: dict[str, int] = field(default_factory=dict)
    #: the experiment within each channel that has eligible sessions
    incremental_by_channel: dict[str, Incremental] = field(default_factory=dict)

    @property
    def sessions_without_suggest(self) -> int:
        return self.sessions - self.sessions_with_suggest

    @property
    def pending(self) -> int:
        """Shown sessions whose attribution window has not closed by ``as_of``."""
        return self.sessions_shown - self.sessions_shown_closed

    @property
    def click_through_rate(self) -> float | None:
        return _rate(self.clicked_sessions, self.sessions_shown_closed)

    @property
    def helpful_rate(self) -> float | None:
        return _rate(self.helpful_sessions, self.feedback_sessions)

    @property
    def observed_deflection_rate(self) -> float | None:
        return _rate(self.observed_deflected_sessions, self.sessions_shown_closed)

    @property
    def self_reported_deflection_rate(self) -> float | None:
        return _rate(self.self_reported_deflected_sessions, self.sessions_shown_closed)

    def summary(self) -> dict[str, int | float | None]:
        """The headline figures, in the order of the JSON report."""
        return {
            "sessions": self.sessions,
            "sessions_with_suggest": self.sessions_with_suggest,
            "sessions_without_suggest": self.sessions_without_suggest,
            "sessions_shown": self.sessions_shown,
            "sessions_shown_closed": self.sessions_shown_closed,
            "pending": self.pending,
            "click_through_rate": self.click_through_rate,
            "helpful_rate": self.helpful_rate,
            "feedback_sessions": self.feedback_sessions,
            "observed_deflection_rate": self.observed_deflection_rate,
            "observed_deflected_sessions": self.observed_deflected_sessions,
            "self_reported_deflection_rate": self.self_reported_deflection_rate,
            "self_reported_deflected_sessions": self.self_reported_deflected_sessions,
        }

    def to_dict(self) -> dict:
        head = self.summary()
        return {
            "period": self.period.to_dict(),
            "sessions": head.pop("sessions"),
            "sessions_with_suggest": head.pop("sessions_with_suggest"),
            "sessions_without_suggest": head.pop("sessions_without_suggest"),
            "sessions_by_variant": dict(self.sessions_by_variant),
            **head,
            "incremental": self.incremental.to_dict(),
            "incremental_by_channel": {k: v.to_dict() for k, v in self.incremental_by_channel.items()},
            "abstention": self.abstention.to_dict(),
            "by_intent": [b.to_dict() for b in self.by_intent],
            "by_article": [a.to_dict() for a in self.by_article],
            "by_day": [b.to_dict() for b in self.by_day],
            "gap_queries": [g.to_dict() for g in self.gap_queries],
            "integrity": self.integrity.to_dict(),
        }


@dataclass(frozen=True)
class TicketCosts:
    """What one ticket costs the support team: per channel, else ``default`` (settings
    ``ticket_cost``, ``ticket_cost_form``, ``ticket_cost_chat``, ``ticket_cost_email``)."""

    default: float | None = None
    by_channel: dict[str, float] = field(default_factory=dict)
    currency: str = "USD"

    def cost(self, channel: str) -> float | None:
        return self.by_channel.get(channel, self.default)

    @property
    def configured(self) -> bool:
        return self.default is not None or bool(self.by_channel)


@dataclass(frozen=True)
class ChannelMoney:
    """One channel's tickets avoided priced at its cost per ticket, with 95% intervals."""

    channel: str
    cost_per_ticket: float | None
    tickets_avoided: float | None
    tickets_avoided_ci95: tuple[float, float] | None
    saved: float | None
    saved_ci95: tuple[float, float] | None

    def to_dict(self) -> dict:
        return {
            "channel": self.channel,
            "cost_per_ticket": self.cost_per_ticket,
            "tickets_avoided": self.tickets_avoided,
            "tickets_avoided_ci95": list(self.tickets_avoided_ci95) if self.tickets_avoided_ci95 else None,
            "saved": self.saved,
            "saved_ci95": list(self.saved_ci95) if self.saved_ci95 else None,
        }


@dataclass(frozen=True)
class Money:
    """What the tickets avoided are worth: per channel and in total, with 95% intervals."""

    currency: str
    channels: list[ChannelMoney]
    saved: float | None
    saved_ci95: tuple[float, float] | None
    notes: list[str]

    def to_dict(self) -> dict:
        return {
            "currency": self.currency,
            "saved": self.saved,
            "saved_ci95": list(self.saved_ci95) if self.saved_ci95 else None,
            "by_channel": [c.to_dict() for c in self.channels],
            "notes": list(self.notes),
        }


def money(m: DeflectionMeasurement, costs: TicketCosts) -> Money | None:
    """Tickets avoided times the cost per ticket, per channel, and their sum (None when no
    cost is configured).

    Each channel's tickets avoided is its incremental deflection × its eligible treatment
    sessions; the channels are independent samples, so the total's 95% interval adds their
    Wald variances: ``saved ± 1.96 · sqrt(Σ (cost · sessions · se)²)``. A channel without a
    cost, or without both groups, is left out of the total and named in ``notes``."""
    if not costs.configured:
        return None
    rows, notes = [], []
    total, var = 0.0, 0.0
    for ch, inc in m.incremental_by_channel.items():
        cost, d = costs.cost(ch), inc.difference
        if d is None:
            notes.append(f"{ch}: no eligible sessions in one of the groups, not priced")
            rows.append(ChannelMoney(ch, cost, None, None, None, None))
            continue
        n = inc.treatment_sessions
        tickets, half = d.estimate * n, (d.high - d.estimate) * n
        if cost is None:
            notes.append(f"{ch}: no cost per ticket configured (ticket_cost_{ch} or ticket_cost), not priced")
            rows.append(ChannelMoney(ch, None, tickets, (tickets - half, tickets + half), None, None))
            continue
        saved = tickets * cost
        rows.append(
            ChannelMoney(
                ch, cost, tickets, (tickets - half, tickets + half), saved, (saved - half * cost, saved + half * cost)
            )
        )
        total += saved
        var += (half * cost / Z95) ** 2
    priced = any(r.saved is not None for r in rows)
    half_total = Z95 * math.sqrt(var)
    return Money(
        currency=costs.currency,
        channels=rows,
        saved=total if priced else None,
        saved_ci95=(total - half_total, total + half_total) if priced else None,
        notes=notes,
    )


def pool_channels(cells: dict[tuple[str, str], Sequence[int]]) -> dict[tuple[str, str], list[int]]:
    """The cells of every channel added up, under the channel ``""``."""
    out: dict[tuple[str, str], list[int]] = {}
    for (_, v), c in cells.items():
        acc = out.setdefault(("", v), [0, 0, 0])
        for i in range(3):
            acc[i] += c[i]
    return out


def experiment_by_channel(cells: dict[tuple[str, str], Sequence[int]]) -> dict[str, Incremental]:
    """:class:`Incremental` per channel from ``(channel, variant) -> (pending, closed,
    submitted)`` counts of eligible sessions (both computations of the report share it)."""
    out = {}
    for ch in sorted({ch for ch, _ in cells}):
        t, c = cells.get((ch, "treatment"), (0, 0, 0)), cells.get((ch, "control"), (0, 0, 0))
        out[ch] = Incremental(
            treatment_sessions=int(t[1] or 0),
            control_sessions=int(c[1] or 0),
            treatment_submitted=int(t[2] or 0),
            control_submitted=int(c[2] or 0),
            pending=int((t[0] or 0) + (c[0] or 0)),
        )
    return out


def measure(
    suggestions: Sequence[SuggestRecord],
    events: Sequence[Event],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    window: timedelta = timedelta(hours=24),
    now: datetime | None = None,
    rejected: Sequence[RejectedEvent] = (),
    rules: BotRules | None = None,
) -> DeflectionMeasurement:
    """Every figure of the deflection report (see the module docstring).

    ``suggestions`` and ``events`` may extend past ``until`` (by up to ``window``): rows
    after ``until`` only complete sessions that started before it. ``rejected``: the
    rejected events read for the report (only counted). ``rules``: when a session is
    flagged and left out (default :class:`BotRules`).
    """
    if window <= timedelta(0):
        raise ValueError(f"window must be positive, got {window}")
    now = to_utc(now) if now is not None else datetime.now(UTC)
    as_of = min(now, to_utc(until) + window) if until is not None else now
    all_sessions = sessions_from(suggestions, events)
    flags = flag_sessions(all_sessions, rules or BotRules())
    sessions = [
        s
        for s in all_sessions.values()
        if (since is None or s.start >= to_utc(since)) and (until is None or s.start < to_utc(until))
    ]
    flagged = Counter(flags[s.session_id] for s in sessions if s.session_id in flags)
    sessions = [s for s in sessions if s.session_id not in flags]
    integrity = Integrity(
        rejected_by_reason=dict(sorted(Counter(r.reason for r in rejected).items())),
        flagged_by_reason={k: flagged[k] for k in FLAG_REASONS if flagged[k]},
    )
    sessions.sort(key=lambda s: (s.start, s.session_id))
    in_period = {s.session_id for s in sessions}

    # ---- headline (treatment sessions shown suggestions) ---------------------------------
    shown = [s for s in sessions if s.shown_at is not None]
    closed = [s for s in shown if s.shown_at + window <= as_of]

    def deflected(s: Session) -> bool:
        return s.engaged and not s.submitted_between(s.shown_at, s.shown_at + window)

    def self_reported(s: Session) -> bool:
        return s.helpful and not s.submitted_between(s.shown_at, s.shown_at + window)

    feedback_sessions = [s for s in sessions if s.gave_feedback]

    # ---- the experiment: eligible sessions by group --------------------------------------
    # (channel, variant) -> [pending, closed, submitted]
    cells: dict[tuple[str, str], list[int]] = {}
    for s in sessions:
        t = s.eligible_at
        if t is None or s.variant not in ("treatment", "control"):
            continue
        cell = cells.setdefault((s.channel or "form", s.variant), [0, 0, 0])
        if t + window > as_of:
            cell[0] += 1
            continue
        cell[1] += 1
        cell[2] += s.submitted_between(t, t + window)
    by_channel = experiment_by_channel(cells)
    incremental = experiment_by_channel(pool_channels(cells)).get("", Incremental(0, 0, 0, 0, 0))

    # ---- suggest calls: abstention by reason --------------------------------------------
    calls = [r for r in suggestions if r.session_id is None or r.session_id in in_period]
    calls = [r for r in calls if (since is None or r.created_at >= to_utc(since))]
    calls = [r for r in calls if (until is None or r.created_at < to_utc(until))]
    reasons = Counter(r.reason or "unknown" for r in calls if r.abstained)
    abstention = Abstention(len(calls), dict(sorted(reasons.items())))

    # ---- by intent, by day -------------------------------------------------------------
    by_intent: dict[str, Breakdown] = {}
    by_day: dict[str, Breakdown] = {}
    for s in sessions:
        last = s.last_suggestion
        intent = (last.intent_label if last else None) or "(none)"
        day = s.start.strftime("%Y-%m-%d")
        for b in (by_intent.setdefault(intent, Breakdown(intent)), by_day.setdefault(day, Breakdown(day))):
            b.sessions += 1
            b.abstained += bool(last and last.abstained)
            b.submitted += s.submitted
            if s.shown_at is None:
                continue
            if s.shown_at + window > as_of:
                b.pending += 1
                continue
            b.shown += 1
            b.engaged += s.engaged
            b.deflected += deflected(s)

    # ---- by article -------------------------------------------------------------------
    shown_lists = {r.request_id: r.shown for r in suggestions}
    articles: dict[str, ArticleFigures] = {}
    for s in closed:
        ids: set[str] = set()
        for e in s.of_type("suggestions_shown"):
            ids.update(shown_lists.get(e.request_id or "", []))
        for a in ids:
            articles.setdefault(a, ArticleFigures(a)).shown += 1
        for a in set(s.opened):
            f = articles.setdefault(a, ArticleFigures(a))
            f.opened += 1
            first_open = min(e.ts for e in s.of_type("article_opened") if e.article_id == a)
            if s.submitted_between(first_open, first_open + window):
                f.opened_then_submitted += 1
            else:
                f.opened_not_submitted += 1
        for e in s.of_type("feedback"):
            if e.article_id and e.helpful is not None:
                f = articles.setdefault(e.article_id, ArticleFigures(e.article_id))
                f.helpful += e.helpful
                f.not_helpful += not e.helpful

    # ---- content gaps -----------------------------------------------------------------
    gaps: list[GapQuery] = []
    for s in sessions:
        last = s.last_suggestion
        if last is None:
            continue
        if last.abstained:
            gaps.append(GapQuery(last.query, f"abstained:{last.reason}", last.intent_label))
        elif (
            s.shown_at is not None
            and s.shown_at + window <= as_of
            and s.submitted_between(s.shown_at, s.shown_at + window)
        ):
            gaps.append(GapQuery(last.query, "ticket_after_suggestions", last.intent_label))

    return DeflectionMeasurement(
        period=Period(
            since=since,
            until=until,
            as_of=as_of,
            window=window,
            first_session=sessions[0].start if sessions else None,
            last_session=sessions[-1].start if sessions else None,
        ),
        sessions=len(sessions),
        sessions_with_suggest=sum(bool(s.suggestions) for s in sessions),
        sessions_by_variant=dict(Counter(s.variant or "(no suggest)" for s in sessions)),
        sessions_shown=len(shown),
        sessions_shown_closed=len(closed),
        clicked_sessions=sum(bool(s.opened) for s in closed),
        feedback_sessions=len(feedback_sessions),
        helpful_sessions=sum(s.helpful for s in feedback_sessions),
        observed_deflected_sessions=sum(deflected(s) for s in closed),
        self_reported_deflected_sessions=sum(self_reported(s) for s in closed),
        incremental=incremental,
        incremental_by_channel=by_channel,
        abstention=abstention,
        by_intent=sorted(by_intent.values(), key=lambda b: (-b.sessions, b.key)),
        by_article=sorted(articles.values(), key=lambda a: (-a.shown, -a.opened, a.article_id)),
        by_day=sorted(by_day.values(), key=lambda b: b.key),
        gap_queries=gaps,
        integrity=integrity,
        gap_counts=dict(sorted(Counter(g.why for g in gaps).items())),
    )
