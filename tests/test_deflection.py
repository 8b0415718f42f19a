"""The deflection definitions on hand-built sessions with exact expected figures."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from deflect.eval.deflection import Z95, TicketCosts, diff_of_proportions, measure, money
from deflect.store.base import Event, SuggestRecord

T = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
H24 = timedelta(hours=24)
S = timedelta(seconds=1)


class Builder:
    def __init__(self) -> None:
        self.recs: list[SuggestRecord] = []
        self.events: list[Event] = []
        self.n = 0

    def suggest(
        self,
        sid,
        at,
        *,
        variant="treatment",
        abstained=False,
        reason=None,
        intent="booking",
        query=None,
        channel="form",
    ):
        would = [] if abstained else ["a1", "a2"]
        self.recs.append(
            SuggestRecord(
                request_id=f"r-{sid}",
                session_id=sid,
                variant=variant,
                query=query or f"query of {sid}",
                abstained=abstained,
                reason=reason,
                intent_label=intent,
                shown=[] if variant == "control" or abstained else would,
                would_show=would,
                created_at=at,
                channel=channel,
            )
        )

    def event(self, sid, type_, at, *, eid=None, received=None, **kw):
        self.n += 1
        if type_ == "suggestions_shown":
            kw.setdefault("request_id", f"r-{sid}")
        self.events.append(Event(eid or f"e{self.n}", sid, type_, at, received or at + S, **kw))


@pytest.fixture
def scenario() -> Builder:
    b = Builder()
    # A: shown, opened a1, never submitted -> deflected
    b.suggest("A", T)
    b.event("A", "suggestions_shown", T)
    b.event("A", "article_opened", T + 10 * S, article_id="a1")
    # B: shown, opened a2, said not helpful, submitted 5 minutes later -> not deflected
    b.suggest("B", T, intent="billing")
    b.event("B", "suggestions_shown", T)
    b.event("B", "article_opened", T + 10 * S, article_id="a2")
    b.event("B", "feedback", T + 20 * S, article_id="a2", helpful=False)
    b.event("B", "form_submitted", T + 300 * S)
    # C: shown, said helpful, submitted exactly at the window's end -> counts as submitted
    b.suggest("C", T)
    b.event("C", "suggestions_shown", T)
    b.event("C", "feedback", T + 30 * S, article_id="a1", helpful=True)
    b.event("C", "form_submitted", T + H24)
    # D: shown, opened a1 at once, submitted one second after the window -> deflected
    b.suggest("D", T)
    b.event("D", "suggestions_shown", T)
    b.event("D", "article_opened", T, article_id="a1")
    b.event("D", "form_submitted", T + H24 + S)
    # E: shown, did nothing -> not engaged, not deflected
    b.suggest("E", T)
    b.event("E", "suggestions_shown", T)
    # K: events out of order and one arriving 3 hours late; opened a1 and said helpful -> deflected, self-reported
    b.suggest("K", T)
    b.event("K", "feedback", T + 60 * S, article_id="a1", helpful=True)
    b.event("K", "article_opened", T + 40 * S, article_id="a1", received=T + timedelta(hours=3))
    b.event("K", "suggestions_shown", T)
    # F, G: control group, eligible; F submitted
    b.suggest("F", T, variant="control")
    b.event("F", "form_submitted", T + 120 * S)
    b.suggest("G", T, variant="control")
    b.event("G", "form_abandoned", T + 60 * S)
    # H: abstained, then submitted -> a content gap, not eligible
    b.suggest("H", T, abstained=True, reason="low_confidence", intent="partnership", query="reseller deal")
    b.event("H", "form_submitted", T + 100 * S)
    # I: never triggered a suggest call; the same event delivered twice (a retry) counts once
    b.event("I", "form_submitted", T + 5 * S, eid="dup")
    b.event("I", "form_submitted", T + 5 * S, eid="dup")
    # P: shown an hour before the data ends -> pending, left out of the rates
    b.suggest("P", NOW - timedelta(hours=1))
    b.event("P", "suggestions_shown", NOW - timedelta(hours=1))
    return b


def run(b: Builder, **kw) -> dict:
    """The measurement as the JSON report carries it."""
    return measure(b.recs, b.events, now=NOW, **kw).to_dict()


def test_headline_figures(scenario):
    r = run(scenario)
    assert r["sessions"] == 11
    assert r["sessions_without_suggest"] == 1
    assert r["sessions_shown"] == 7 and r["sessions_shown_closed"] == 6 and r["pending"] == 1
    assert r["click_through_rate"] == pytest.approx(4 / 6)  # A, B, D, K opened
    assert r["helpful_rate"] == pytest.approx(2 / 3)  # B no; C, K yes
    assert r["observed_deflected_sessions"] == 3  # A, D, K
    assert r["observed_deflection_rate"] == pytest.approx(3 / 6)
    assert r["self_reported_deflected_sessions"] == 1  # K (C said helpful but submitted)
    assert r["sessions_by_variant"] == {"treatment": 8, "control": 2, "(no suggest)": 1}


def test_incremental_deflection_and_interval(scenario):
    inc = run(scenario)["incremental"]
    # treatment eligible and closed: A B C D E K (P pending); submitted within window: B, C
    assert (inc["treatment_sessions"], inc["control_sessions"], inc["pending"]) == (6, 2, 1)
    assert inc["treatment_submit_rate"] == pytest.approx(2 / 6)
    assert inc["control_submit_rate"] == pytest.approx(1 / 2)
    assert inc["incremental_deflection"] == pytest.approx(1 / 2 - 1 / 3)
    assert inc["tickets_avoided"] == pytest.approx(1.0)
    lo, hi = inc["ci95"]
    se = ((0.5 * 0.5) / 2 + (1 / 3 * 2 / 3) / 6) ** 0.5
    assert lo == pytest.approx(1 / 6 - 1.959964 * se, abs=1e-6) and hi == pytest.approx(1 / 6 + 1.959964 * se, abs=1e-6)


def test_abstention_intents_articles_days_and_gaps(scenario):
    r = run(scenario)
    assert r["abstention"]["calls"] == 10 and r["abstention"]["abstained"] == 1
    assert r["abstention"]["by_reason"] == {"low_confidence": {"calls": 1, "rate": 0.1}}
    intents = {b["key"]: b for b in r["by_intent"]}
    assert intents["billing"]["shown"] == 1 and intents["billing"]["deflected"] == 0
    assert (
        intents["booking"]["shown"] == 5 and intents["booking"]["deflected"] == 3 and intents["booking"]["pending"] == 1
    )
    assert intents["partnership"]["abstained"] == 1
    arts = {a["article_id"]: a for a in r["by_article"]}
    assert arts["a1"]["shown"] == 6 and arts["a1"]["opened"] == 3  # A, D, K
    assert arts["a1"]["opened_then_submitted"] == 0  # D submitted 24h+1s after opening: outside
    assert arts["a2"]["opened"] == 1 and arts["a2"]["opened_then_submitted"] == 1  # B
    assert (arts["a1"]["helpful"], arts["a2"]["not_helpful"]) == (2, 1)
    days = {d["key"]: d for d in r["by_day"]}
    assert days["2026-11-02"]["sessions"] == 10 and days["2026-11-20"]["pending"] == 1
    gaps = {(g["query"], g["why"]) for g in r["gap_queries"]}
    assert gaps == {
        ("reseller deal", "abstained:low_confidence"),
        ("query of B", "ticket_after_suggestions"),
        ("query of C", "ticket_after_suggestions"),
    }


def test_window_edges_follow_the_setting(scenario):
    # with a 25 h window D's submission (24h + 1s) now counts: D is no longer deflected
    r = run(scenario, window=timedelta(hours=25))
    assert r["observed_deflected_sessions"] == 2
    assert r["incremental"]["treatment_submit_rate"] == pytest.approx(3 / 6)


def test_period_selects_sessions_by_their_start(scenario):
    r = run(scenario, since=T + S, until=NOW)
    assert r["sessions"] == 2  # I (T + 5 s) and P
    r = run(scenario, since=T, until=T + S)
    assert r["sessions"] == 9  # all but I and P
    assert r["pending"] == 0  # P is outside the period


def test_a_session_still_inside_its_window_is_pending_not_deflected():
    b = Builder()
    b.suggest("X", NOW - timedelta(hours=2))
    b.event("X", "suggestions_shown", NOW - timedelta(hours=2))
    b.event("X", "article_opened", NOW - timedelta(hours=2), article_id="a1")
    r = run(b)
    assert r["pending"] == 1 and r["observed_deflection_rate"] is None and r["incremental"]["pending"] == 1


def test_empty_store_gives_no_rates_and_a_note():
    r = measure([], [], now=NOW).to_dict()
    assert r["sessions"] == 0 and r["observed_deflection_rate"] is None
    assert r["incremental"]["incremental_deflection"] is None and "control" in r["incremental"]["note"]


def test_bad_window_is_refused():
    with pytest.raises(ValueError, match="window"):
        measure([], [], window=timedelta(0))


def test_diff_of_proportions():
    d = diff_of_proportions(30, 100, 20, 100)
    assert d.estimate == pytest.approx(0.1)
    se = (0.3 * 0.7 / 100 + 0.2 * 0.8 / 100) ** 0.5
    assert d.high - d.low == pytest.approx(2 * 1.959964 * se, abs=1e-6)
    assert diff_of_proportions(1, 0, 1, 2) is None


# the JSON report's keys are a public interface: scripts read them
MEASUREMENT_KEYS = [
    "period", "sessions", "sessions_with_suggest", "sessions_without_suggest", "sessions_by_variant",
    "sessions_shown", "sessions_shown_closed", "pending", "click_through_rate", "helpful_rate",
    "feedback_sessions", "observed_deflection_rate", "observed_deflected_sessions",
    "self_reported_deflection_rate", "self_reported_deflected_sessions", "incremental",
    "incremental_by_channel", "abstention",
    "by_intent", "by_article", "by_day", "gap_queries", "integrity",
]  # fmt: skip
INCREMENTAL_KEYS = [
    "treatment_sessions", "control_sessions", "treatment_submit_rate", "control_submit_rate",
    "incremental_deflection", "ci95", "tickets_avoided", "tickets_avoided_ci95", "relative_reduction",
    "pending", "note",
]  # fmt: skip


def test_typed_measurement_and_its_json_agree(scenario):
    m = measure(scenario.recs, scenario.events, now=NOW)
    d = m.to_dict()
    assert list(d) == MEASUREMENT_KEYS and list(d["incremental"]) == INCREMENTAL_KEYS
    assert list(d["period"]) == ["since", "until", "as_of", "window_hours", "first_session", "last_session"]
    assert list(d["by_intent"][0]) == [
        "key", "sessions", "shown", "engaged", "deflected", "submitted", "abstained", "pending",
        "observed_deflection_rate",
    ]  # fmt: skip
    assert list(d["by_article"][0]) == [
        "article_id", "shown", "opened", "helpful", "not_helpful", "opened_then_submitted",
        "opened_not_submitted", "open_rate", "ticket_after_open_rate",
    ]  # fmt: skip
    for name, value in m.summary().items():
        assert d[name] == value == getattr(m, name), name
    inc = m.incremental
    assert d["incremental"]["ci95"] == list(inc.ci95) and inc.incremental_deflection == inc.difference.estimate
    assert d["abstention"]["by_reason"]["low_confidence"]["rate"] == m.abstention.reason_rate("low_confidence")
    assert [g["query"] for g in d["gap_queries"]] == [g.query for g in m.gap_queries]
    json.dumps(d)  # plain JSON, no datetimes left


def test_report_renders_from_the_typed_measurement(scenario):
    from deflect.eval.report import build_report, to_csv, to_html, to_json

    m = measure(scenario.recs, scenario.events, now=NOW)
    rep = build_report(m, titles={"a1": "Reset your password"})
    d = json.loads(to_json(rep))
    extra = ["title", "content_gaps", "money", "email", "definitions"]
    assert list(d) == [k for k in MEASUREMENT_KEYS if k != "gap_queries"] + extra
    assert {a["article_id"]: a["title"] for a in d["by_article"]} == {"a1": "Reset your password", "a2": ""}
    assert d["content_gaps"]["queries"] == len(m.gap_queries) == rep.content_gaps.queries
    assert d["content_gaps"]["themes"][0] == rep.content_gaps.themes[0].to_dict()
    html = to_html(rep)
    assert "Reset your password" in html and f"{100 * m.observed_deflection_rate:.1f}%" in html
    rows = list(csv.reader(io.StringIO(to_csv(rep))))
    assert ["summary", "", "sessions", str(m.sessions)] in rows
    assert ["by_article", "a1", "title", "Reset your password"] in rows


def test_sessions_that_cannot_be_a_person_are_flagged_and_left_out():
    from dataclasses import replace

    from deflect.eval.deflection import BotRules
    from deflect.store.base import RejectedEvent

    b = Builder()
    # a genuine deflected session: counted
    b.suggest("ok", T)
    b.event("ok", "suggestions_shown", T)
    b.event("ok", "article_opened", T + 10 * S, article_id="a1")
    # too many suggest calls
    for i in range(6):
        b.suggest("many", T + i * S)
        b.recs[-1] = replace(b.recs[-1], request_id=f"r-many-{i}")
    b.event("many", "suggestions_shown", T + 10 * S)
    # 4 events within one second
    b.suggest("burst", T)
    for i in range(4):
        b.event("burst", "article_opened", T + 5 * S + i * timedelta(milliseconds=100), article_id="a1")
    # shown and helpful two hours before its first suggest call (client time), and one with none at all
    b.suggest("early", T + 3 * timedelta(hours=1))
    b.event("early", "feedback", T + timedelta(hours=1), article_id="a1", helpful=True)
    b.event("nosuggest", "suggestions_shown", T, request_id="made-up")
    # one caller starting 3 sessions in an hour (the limit is 2); the same caller next hour is fine
    for i in range(3):
        b.suggest(f"bot{i}", T + i * 60 * S)
        b.recs[-1] = replace(b.recs[-1], client="c1")
        b.event(f"bot{i}", "suggestions_shown", T + i * 60 * S)
        b.event(f"bot{i}", "form_submitted", T + i * 60 * S + 30 * S)
    b.suggest("later", T + timedelta(hours=1, minutes=5))
    b.recs[-1] = replace(b.recs[-1], client="c1")
    rules = BotRules(max_suggest_calls=5, burst_events=3, clock_skew=timedelta(hours=1), busy_client_sessions=2)
    rejected = [RejectedEvent(Event("x1", "s", "form_submitted", T, T), "bad_token")] * 2 + [
        RejectedEvent(Event("x2", "s", "form_submitted", T, T), "no_token")
    ]
    m = measure(b.recs, b.events, window=H24, now=NOW, rules=rules, rejected=rejected)
    assert m.integrity.flagged_by_reason == {
        "too_many_suggests": 1,
        "event_burst": 1,
        "events_before_suggest": 2,
        "busy_client": 3,
    }
    assert m.integrity.rejected_by_reason == {"bad_token": 2, "no_token": 1}
    assert m.sessions == 2  # ok and later
    assert m.sessions_shown_closed == 1 and m.observed_deflected_sessions == 1
    assert m.to_dict()["integrity"]["flagged_sessions"] == 7
    # with the default rules nothing here is a bot but the events before any suggestion
    d = measure(b.recs, b.events, window=H24, now=NOW)
    assert d.integrity.flagged_by_reason == {"events_before_suggest": 2}


def _experiment(b: Builder, channel: str, groups: dict[str, tuple[int, int]], start: datetime) -> None:
    """Eligible sessions in ``channel``: variant -> (sessions, of which submitted)."""
    for variant, (n, submitted) in groups.items():
        for i in range(n):
            sid = f"{channel}-{variant}-{i}"
            b.suggest(sid, start + i * S, variant=variant, channel=channel)
            if i < submitted:
                b.event(sid, "form_submitted", start + i * S + timedelta(minutes=5))


def test_the_experiment_is_measured_per_channel_and_pooled():
    b = Builder()
    _experiment(b, "form", {"treatment": (100, 40), "control": (20, 12)}, T)
    _experiment(b, "chat", {"treatment": (50, 30), "control": (10, 7)}, T + timedelta(hours=1))
    m = measure(b.recs, b.events, now=NOW)
    form, chat = m.incremental_by_channel["form"], m.incremental_by_channel["chat"]
    assert (form.treatment_sessions, form.treatment_submitted, form.control_sessions, form.control_submitted) == (
        100, 40, 20, 12,
    )  # fmt: skip
    assert form.incremental_deflection == pytest.approx(0.6 - 0.4)
    assert chat.incremental_deflection == pytest.approx(0.7 - 0.6)
    assert set(m.incremental_by_channel) == {"form", "chat"}
    pooled = m.incremental
    assert (pooled.treatment_sessions, pooled.control_sessions) == (150, 30)
    assert (pooled.treatment_submitted, pooled.control_submitted) == (70, 19)


def test_money_prices_each_channel_and_adds_their_variances():
    b = Builder()
    _experiment(b, "form", {"treatment": (100, 40), "control": (20, 12)}, T)
    _experiment(b, "chat", {"treatment": (50, 30), "control": (10, 7)}, T + timedelta(hours=1))
    m = measure(b.recs, b.events, now=NOW)
    assert money(m, TicketCosts()) is None  # nothing configured: no money section
    cash = money(m, TicketCosts(default=10.0, by_channel={"chat": 4.0}, currency="EUR"))
    rows = {r.channel: r for r in cash.channels}
    assert rows["form"].cost_per_ticket == 10.0 and rows["chat"].cost_per_ticket == 4.0
    assert rows["form"].tickets_avoided == pytest.approx(0.2 * 100)
    assert rows["form"].saved == pytest.approx(0.2 * 100 * 10)
    assert rows["chat"].saved == pytest.approx(0.1 * 50 * 4)
    assert cash.saved == pytest.approx(200 + 20) and cash.currency == "EUR"

    def se(x_c, n_c, x_t, n_t):
        pc, pt = x_c / n_c, x_t / n_t
        return (pc * (1 - pc) / n_c + pt * (1 - pt) / n_t) ** 0.5

    half = Z95 * ((10 * 100 * se(12, 20, 40, 100)) ** 2 + (4 * 50 * se(7, 10, 30, 50)) ** 2) ** 0.5
    assert cash.saved_ci95 == pytest.approx((220 - half, 220 + half))
    lo, hi = rows["form"].saved_ci95
    assert (lo + hi) / 2 == pytest.approx(200) and hi - lo == pytest.approx(2 * Z95 * 1000 * se(12, 20, 40, 100))
    # a channel without a cost is named and left out of the total
    only_form = money(m, TicketCosts(by_channel={"form": 10.0}))
    assert only_form.saved == pytest.approx(200) and any("chat" in n for n in only_form.notes)

    from deflect.eval.report import build_report, to_csv, to_html, to_json

    rep = build_report(m, costs=TicketCosts(default=10.0, by_channel={"chat": 4.0}, currency="EUR"))
    html = to_html(rep)
    assert "Saved" in html and "EUR 220" in html and "EUR 4.00" in html and ">chat<" in html
    rows = list(csv.reader(io.StringIO(to_csv(rep))))
    assert ["money", "chat", "cost_per_ticket", "4"] in rows and ["money", "", "currency", "EUR"] in rows
    d = json.loads(to_json(rep))
    assert d["money"]["saved"] == pytest.approx(220) and d["money"]["by_channel"][0]["channel"] == "chat"
    assert json.loads(to_json(build_report(m)))["money"] is None


def test_csv_cells_never_start_a_formula(scenario):
    """OWASP CSV injection: text from outside (titles, queries, intents) that starts with a
    formula character is escaped with a leading quote; numbers (negative ones too) are not."""
    from dataclasses import replace

    from deflect.eval.report import build_report, safe_cell, to_csv

    hostile = ['=HYPERLINK("http://x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    recs = [replace(r, query=hostile[i % len(hostile)] + " reset password", intent_label=hostile[i % len(hostile)])
            for i, r in enumerate(scenario.recs)]  # fmt: skip
    m = measure(recs, scenario.events, now=NOW)
    rep = build_report(m, titles={"a1": "=cmd|' /C calc'!A0", "a2": "@evil"})
    rows = list(csv.reader(io.StringIO(to_csv(rep))))
    cells = [c for row in rows for c in row]
    assert ["by_article", "a1", "title", "'=cmd|' /C calc'!A0"] in rows
    assert any(c.startswith("'@") for c in cells) and any(c.startswith("'=HYPERLINK") for c in cells)
    for c in cells:
        assert not c.startswith(("=", "+", "@", "\t", "\r")), c
        assert not c.startswith("-") or float(c) < 0, c
    assert safe_cell("-0.05") == "-0.05" and safe_cell(-3) == -3 and safe_cell("-2+3") == "'-2+3"
