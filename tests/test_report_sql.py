"""The report computed in the store (SQL) equals the in-memory computation, on SQLite and
PostgreSQL, on the same stores: simulated sessions (late, duplicated, out-of-order events,
both groups, sessions without a suggest call), hand-built edge cases (pending windows,
boundaries, flags, rejected events), every period choice."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from deflect.eval.deflection import BotRules, measure
from deflect.eval.deflection_sql import measure_in_store
from deflect.eval.queries import LabeledQuery
from deflect.eval.simulate import simulate
from deflect.store import Event, SuggestRecord, open_store
from deflect.store.base import RejectedEvent

T = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)
H24 = timedelta(hours=24)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'events.db'}")
        yield s
        s.close()
        return
    s = open_store(request.getfixturevalue("pg_url"))
    yield s
    s.close()


class FakeEngine:
    """Answers like the engine, from a fixed table (the simulation only needs its records)."""

    ANSWERS = {
        "password": ["pw", "login"],
        "refund": ["refund"],
        "weather": [],  # abstains
        "calendar": ["gcal", "pw"],
    }

    def __call__(self, q):
        from deflect.engine import SuggestResult
        from deflect.models.documents import Suggestion

        key = q.subject
        ids = self.ANSWERS[key]
        sugg = [Suggestion(a, a.upper(), f"https://help/{a}", "snippet", 0.8 - i / 10, []) for i, a in enumerate(ids)]
        return SuggestResult(
            request_id="x",
            variant="treatment",
            abstained=not ids,
            reason=None if ids else "low_confidence",
            intent=None,
            suggestions=sugg,
            index_version="v1",
            model_version=None,
            would_show=sugg,
        )


QUERIES = [
    LabeledQuery("password", "reset it", frozenset({"pw"})),
    LabeledQuery("refund", "money back", frozenset({"refund"})),
    LabeledQuery("weather", "sunny?", frozenset()),
    LabeledQuery("calendar", "sync", frozenset({"gcal"})),
]


def edge_cases(store) -> None:
    """Rows the simulation does not make: boundaries, flags, rejected events, odd values."""
    recs, evs = [], []

    def rec(sid, at, rid, **kw):
        base = dict(request_id=rid, session_id=sid, variant="treatment", query=f"q {sid}", abstained=False)
        recs.append(SuggestRecord(**{**base, "shown": ["pw"], "would_show": ["pw"], "created_at": at, **kw}))

    def ev(sid, type_, at, **kw):
        evs.append(Event(uuid.uuid4().hex, sid, type_, at, at + S, **kw))

    # submitted exactly at the window's end (counts) and one microsecond after (does not)
    rec("edge-in", T, "r-in")
    ev("edge-in", "suggestions_shown", T, request_id="r-in")
    ev("edge-in", "form_submitted", T + H24)
    rec("edge-out", T, "r-out", variant="control", shown=[])
    ev("edge-out", "form_submitted", T + H24 + timedelta(microseconds=1))
    # two suggest calls at the same time: the last by request id decides the intent
    rec("tie", T + S, "r-tie-a", intent_label="a", abstained=True, reason="out_of_scope", would_show=[])
    rec("tie", T + S, "r-tie-b", intent_label="b", abstained=True, reason=None, would_show=[])
    # a suggest call without a session, and one abstained session with an empty intent
    rec(None, T + 2 * S, "r-anon", abstained=True, reason="no_match", would_show=[])
    rec("empty-intent", T + 3 * S, "r-e", intent_label="")
    # flags: a burst, events before any suggestion, a busy caller
    rec("burst", T, "r-b")
    for i in range(25):
        ev("burst", "article_opened", T + 5 * S + i * timedelta(milliseconds=10), article_id="pw")
    ev("early", "feedback", T, article_id="pw", helpful=True)
    for i in range(31):
        rec(f"busy-{i}", T + timedelta(hours=3, minutes=i), f"r-busy-{i}", client="c1")
    # an article opened with an empty id, feedback without a verdict, a shown event of another request
    rec("odd", T + 4 * S, "r-odd")
    ev("odd", "suggestions_shown", T + 5 * S, request_id="r-in")
    ev("odd", "article_opened", T + 6 * S, article_id="")
    ev("odd", "feedback", T + 7 * S, article_id="pw", helpful=None)
    # a session still pending at as_of
    rec("pending", T + timedelta(days=20), "r-p")
    ev("pending", "suggestions_shown", T + timedelta(days=20), request_id="r-p")
    store.write(recs, [evs])
    forged = Event("f1", "s", "form_submitted", T, T + timedelta(hours=1))
    store.write([], [], [RejectedEvent(forged, "no_token"), RejectedEvent(replace(forged, event_id="f2"), "bad_token")])


def both(store, **kw):
    """The in-memory measurement (reading what `deflect report` reads) and the SQL one."""
    since, until, window = kw.get("since"), kw.get("until"), kw.get("window", H24)
    hi = until + window if until else None
    recs = store.suggestions(since=since, until=hi)
    events = store.events(since=since - window if since else None, until=hi)
    rejected = store.rejected(since=since, until=hi)
    mem = measure(recs, events, rejected=rejected, **kw)
    sql = measure_in_store(store, include_simulated=True, **kw)
    return mem, sql


def assert_same(mem, sql) -> None:
    a, b = mem.to_dict(), sql.to_dict()
    for key in a:
        assert a[key] == b[key], key
    assert mem.gap_counts == sql.gap_counts


NOW = T + timedelta(days=21)


@pytest.mark.parametrize(
    "period",
    [
        {},
        {"since": T + timedelta(days=2), "until": T + timedelta(days=9)},
        {"since": T},
        {"until": T + timedelta(days=5), "window": timedelta(hours=2)},
    ],
)
def test_the_store_computes_the_same_report(store, period):
    simulate(store, FakeEngine(), QUERIES, sessions=3000, true_effect=0.1, seed=3, end=T + timedelta(days=14))
    edge_cases(store)
    rules = BotRules(max_suggest_calls=5, busy_client_sessions=30)
    mem, sql = both(store, now=NOW, rules=rules, **period)
    assert mem.sessions > 500 and mem.incremental.control_sessions > 20 and mem.by_article
    if not period.get("since"):  # the edge cases are at the start: these periods hold them
        assert mem.integrity.flagged_sessions >= 3 and mem.integrity.rejected_events == 2
    assert_same(mem, sql)


def test_pending_windows_are_the_same(store):
    simulate(store, FakeEngine(), QUERIES, sessions=800, true_effect=0.1, seed=5, end=T + timedelta(days=3))
    mem, sql = both(store, now=T + timedelta(days=2))  # a third of the windows still open
    assert mem.pending > 0 and mem.incremental.pending > 0
    assert_same(mem, sql)


def test_simulated_rows_are_left_out_unless_asked_for(store):
    simulate(store, FakeEngine(), QUERIES, sessions=200, true_effect=0.1, seed=1, end=T + timedelta(days=3))
    edge_cases(store)
    live = measure_in_store(store, now=NOW)
    with_sim = measure_in_store(store, now=NOW, include_simulated=True)
    assert with_sim.sessions > live.sessions > 0
    assert store.count_simulated() > 0


def test_gap_queries_are_sampled_evenly_and_counted_exactly(store):
    simulate(store, FakeEngine(), QUERIES, sessions=600, true_effect=0.1, seed=2, end=T + timedelta(days=3))
    full = measure_in_store(store, now=NOW, include_simulated=True)
    sample = measure_in_store(store, now=NOW, include_simulated=True, max_gap_queries=50)
    total = sum(full.gap_counts.values())
    assert total > 100 and len(full.gap_queries) == total
    assert sample.gap_counts == full.gap_counts and 25 <= len(sample.gap_queries) <= 50
    assert [g.query for g in sample.gap_queries] == [g.query for g in full.gap_queries][:: -(-total // 50)]


@pytest.mark.postgres
def test_a_role_that_may_not_create_a_schema_gets_the_same_report(pg_url, monkeypatch):
    """The report makes its tables in a schema of its own; a read-only reporting role cannot,
    and gets temporary tables instead: the same figures."""
    import psycopg

    owner = open_store(pg_url)
    try:
        simulate(owner, FakeEngine(), QUERIES, sessions=400, true_effect=0.1, seed=2, end=T + timedelta(days=3))
        expected = measure_in_store(owner, now=NOW, include_simulated=True)
    finally:
        owner.close()
    schema = pg_url.rsplit("%3D", 1)[1]
    role = f"deflect_reader_{uuid.uuid4().hex[:8]}"
    admin = pg_url.split("?", 1)[0]
    with psycopg.connect(admin, autocommit=True) as conn:
        db = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"REVOKE CREATE ON DATABASE {db} FROM PUBLIC")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
    try:
        from deflect.eval import deflection_sql

        tried = []
        real = deflection_sql._run_postgres
        monkeypatch.setattr(
            deflection_sql, "_run_postgres", lambda st, steps, sc: tried.append(sc) or real(st, steps, sc)
        )
        reader_url = pg_url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
        reader = open_store(reader_url, migrate=False)
        try:
            got = measure_in_store(reader, now=NOW, include_simulated=True)
        finally:
            reader.close()
        assert_same(expected, got)
        assert tried[0] is not None and tried[1:] == [None]  # refused its own schema, then temporary tables
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}")
            conn.execute(f"REVOKE ALL ON SCHEMA {schema} FROM {role}")
            conn.execute(f"DROP ROLE {role}")


def test_sqlite_branches_leave_no_scratch_files_and_name_the_store_on_failure(tmp_path, monkeypatch):
    import tempfile

    from deflect.core.errors import StoreError

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    s = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        edge_cases(s)
        mem, sql = both(s, now=NOW)
        assert mem.sessions > 0
        assert_same(mem, sql)
        assert not list(scratch.iterdir())  # the scratch databases are gone
        stages = [
            [[("CREATE TABLE r0.t AS SELECT 1 AS x", {})]],
            [[("SELECT x FROM t", {})], [("SELECT x FROM no_such_table", {})]],
        ]
        with pytest.raises(StoreError, match=r"events\.db: query failed \(no such table: no_such_table\)"):
            s.query_stages(stages)
        assert not list(scratch.iterdir())
    finally:
        s.close()


def test_e_mail_deflection_is_measured_like_the_forms_with_its_first_response_time(store):
    """Simulated e-mail threads (acknowledged with articles unless control; the ticket still
    needed is a further message on the thread): the report finds the true effect within its
    interval for e-mail as for the form, in the store and in memory alike, and the e-mail
    section counts the acknowledgements and their first-response time."""
    from deflect.eval.mail_report import mail_summary

    simulate(store, FakeEngine(), QUERIES, sessions=6000, true_effect=0.15, seed=11, control_share=0.3,
             end=T + timedelta(days=14), channels={"form": 0.5, "email": 0.5})  # fmt: skip
    mem, sql = both(store, now=NOW)
    assert_same(mem, sql)
    for ch in ("form", "email"):
        inc = mem.incremental_by_channel[ch]
        lo, hi = inc.ci95
        assert inc.control_sessions > 300 and lo <= 0.15 <= hi, (ch, inc.ci95)
    mail = mail_summary(store, include_simulated=True)
    threads = sum(1 for r in store.suggestions() if r.channel == "email")
    assert mail.threads == threads and mail.first_responses == threads
    assert mail.followups > 0 and mail.messages == threads + mail.followups
    assert 2 <= mail.first_response_median <= 30 and mail.first_response_p90 <= 30
    assert mail_summary(store).messages == 0  # simulated rows are left out unless asked for
