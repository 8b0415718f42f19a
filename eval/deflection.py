"""Deflection measured from the event store, honestly (DESIGN.md, "Measuring deflection honestly").

Definitions (all per session; a session is everything carrying one ``session_id``):

- A session belongs to the report's period by its **start**: its earliest suggest call
  (server time) or event (client time).
- **Shown**: the widget reported ``suggestions_shown``. The attribution window starts at
  the first one.
- **Engaged**: opened an article (``article_opened``) or said one helped (``feedback``
  with ``helpful: true``), at any time in the session.
- **Submitted within the window**: a ``form_submitted`` whose client ``ts`` lies in
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
- A session whose window has not closed by ``as_of`` (the end of the data: ``until`` +
  window, or now, whichever is earlier) is **pending**: left out of every rate above and
  counted separately, so a report run today never counts today's customers as deflected.

Events arriving late, out of order or twice are handled by construction: rows are
grouped by session and ordered by client time; the store keeps one row per ``event_id``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from deflect.store.base import Event, SuggestRecord, to_utc

Z95 = 1.959963984540054


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
        return any(start <= e.ts <= end for e in self.of_type("form_submitted"))

    @property
    def submitted(self) -> bool:
        return bool(self.of_type("form_submitted"))

    @property
    def last_suggestion(self) -> SuggestRecord | None:
        return self.suggestions[-1] if self.suggestions else None


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

    def to_dict(self) -> dict:
        return {**self.__dict__, "observed_deflection_rate": _rate(self.deflected, self.shown)}


@dataclass
class ArticleFigures:
    article_id: str
    shown: int = 0
    opened: int = 0
    helpful: int = 0
    not_helpful: int = 0
    opened_then_submitted: int = 0
    opened_not_submitted: int = 0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["open_rate"] = _rate(self.opened, self.shown)
        d["ticket_after_open_rate"] = _rate(self.opened_then_submitted, self.opened)
        return d


@dataclass
class GapQuery:
    """A query that was abstained on, or ended in a ticket after suggestions."""

    query: str
    why: str  # "abstained:<reason>" or "ticket_after_suggestions"
    intent: str | None


def measure(
    suggestions: Sequence[SuggestRecord],
    events: Sequence[Event],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    window: timedelta = timedelta(hours=24),
    now: datetime | None = None,
) -> dict:
    """Every figure of the deflection report, as plain numbers (see the module docstring).

    ``suggestions`` and ``events`` may extend past ``until`` (by up to ``window``): rows
    after ``until`` only complete sessions that started before it.
    """
    if window <= timedelta(0):
        raise ValueError(f"window must be positive, got {window}")
    now = to_utc(now) if now is not None else datetime.now(UTC)
    as_of = min(now, to_utc(until) + window) if until is not None else now
    all_sessions = sessions_from(suggestions, events)
    sessions = [
        s
        for s in all_sessions.values()
        if (since is None or s.start >= to_utc(since)) and (until is None or s.start < to_utc(until))
    ]
    sessions.sort(key=lambda s: (s.start, s.session_id))
    in_period = {s.session_id for s in sessions}

    # ---- headline (treatment sessions shown suggestions) ---------------------------------
    shown = [s for s in sessions if s.shown_at is not None]
    closed = [s for s in shown if s.shown_at + window <= as_of]
    pending = len(shown) - len(closed)

    def deflected(s: Session) -> bool:
        return s.engaged and not s.submitted_between(s.shown_at, s.shown_at + window)

    def self_reported(s: Session) -> bool:
        return s.helpful and not s.submitted_between(s.shown_at, s.shown_at + window)

    observed = sum(deflected(s) for s in closed)
    reported = sum(self_reported(s) for s in closed)
    feedback_sessions = [s for s in sessions if s.gave_feedback]

    # ---- the experiment: eligible sessions by group --------------------------------------
    groups: dict[str, list[bool]] = {"treatment": [], "control": []}
    exp_pending = 0
    for s in sessions:
        t = s.eligible_at
        if t is None or s.variant not in groups:
            continue
        if t + window > as_of:
            exp_pending += 1
            continue
        groups[s.variant].append(s.submitted_between(t, t + window))
    n_t, n_c = len(groups["treatment"]), len(groups["control"])
    x_t, x_c = sum(groups["treatment"]), sum(groups["control"])
    diff = diff_of_proportions(x_c, n_c, x_t, n_t)
    incremental = {
        "treatment_sessions": n_t,
        "control_sessions": n_c,
        "treatment_submit_rate": _rate(x_t, n_t),
        "control_submit_rate": _rate(x_c, n_c),
        "incremental_deflection": diff.estimate if diff else None,
        "ci95": [diff.low, diff.high] if diff else None,
        "tickets_avoided": diff.estimate * n_t if diff else None,
        "tickets_avoided_ci95": [diff.low * n_t, diff.high * n_t] if diff else None,
        "relative_reduction": (diff.estimate / (x_c / n_c)) if diff and x_c else None,
        "pending": exp_pending,
        "note": None
        if diff
        else "no eligible sessions in one of the groups: is the control group configured (control_share)?",
    }

    # ---- suggest calls: abstention by reason --------------------------------------------
    calls = [r for r in suggestions if r.session_id is None or r.session_id in in_period]
    calls = [r for r in calls if (since is None or r.created_at >= to_utc(since))]
    calls = [r for r in calls if (until is None or r.created_at < to_utc(until))]
    reasons = Counter(r.reason for r in calls if r.abstained)
    abstention = {
        "calls": len(calls),
        "abstained": sum(reasons.values()),
        "rate": _rate(sum(reasons.values()), len(calls)),
        "by_reason": {k or "unknown": {"calls": v, "rate": v / len(calls)} for k, v in sorted(reasons.items())},
    }

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

    return {
        "period": {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "as_of": as_of.isoformat(),
            "window_hours": window.total_seconds() / 3600,
            "first_session": sessions[0].start.isoformat() if sessions else None,
            "last_session": sessions[-1].start.isoformat() if sessions else None,
        },
        "sessions": len(sessions),
        "sessions_with_suggest": sum(bool(s.suggestions) for s in sessions),
        "sessions_without_suggest": sum(not s.suggestions for s in sessions),
        "sessions_by_variant": dict(Counter(s.variant or "(no suggest)" for s in sessions)),
        "sessions_shown": len(shown),
        "sessions_shown_closed": len(closed),
        "pending": pending,
        "click_through_rate": _rate(sum(bool(s.opened) for s in closed), len(closed)),
        "helpful_rate": _rate(sum(s.helpful for s in feedback_sessions), len(feedback_sessions)),
        "feedback_sessions": len(feedback_sessions),
        "observed_deflection_rate": _rate(observed, len(closed)),
        "observed_deflected_sessions": observed,
        "self_reported_deflection_rate": _rate(reported, len(closed)),
        "self_reported_deflected_sessions": reported,
        "incremental": incremental,
        "abstention": abstention,
        "by_intent": [b.to_dict() for b in sorted(by_intent.values(), key=lambda b: (-b.sessions, b.key))],
        "by_article": [
            a.to_dict() for a in sorted(articles.values(), key=lambda a: (-a.shown, -a.opened, a.article_id))
        ],
        "by_day": [b.to_dict() for b in sorted(by_day.values(), key=lambda b: b.key)],
        "gap_queries": [g.__dict__ for g in gaps],
    }
