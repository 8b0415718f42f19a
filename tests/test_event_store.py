"""One contract suite for every event-store backend: SQLite (always) and PostgreSQL
(when DEFLECT_TEST_DATABASE_URL names a server; .ci/run sets it for the one on this machine)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from deflect.core.errors import ConfigError, StoreError
from deflect.store import LATEST, Event, SuggestRecord, open_store
from deflect.store.base import MailRecord

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def ev(eid: str, session: str = "s1", type_: str = "article_opened", minutes: float = 0, **kw) -> Event:
    if type_ == "article_opened":
        kw.setdefault("article_id", "a1")
    return Event(eid, session, type_, T0 + timedelta(minutes=minutes), T0 + timedelta(minutes=minutes + 1), **kw)


def rec(rid: str, session: str | None = "s1", minutes: float = 0, **kw) -> SuggestRecord:
    base = dict(
        variant="treatment",
        query="how do I reset my password",
        abstained=False,
        shown=["a1", "a2"],
        would_show=["a1", "a2"],
        intent_label="password_reset",
        intent_confidence=0.91,
        top_score=0.72,
        index_version="20261101-1",
        model_version=None,
        latency_ms=3.5,
        created_at=T0 + timedelta(minutes=minutes),
    )
    base.update(kw)
    return SuggestRecord(rid, session, **base)


def test_schema_is_at_latest_version(store):
    assert store.schema_version() == LATEST


def test_events_round_trip_with_every_field(store):
    e = Event("e1", "s1", "feedback", T0, T0 + timedelta(seconds=2), request_id="r1", article_id="a9", helpful=False)
    assert store.add_events([e]).accepted == 1
    (got,) = store.events()
    assert got == e
    assert got.ts.tzinfo is not None and got.helpful is False


def test_suggestion_records_round_trip(store):
    r = rec("r1", form_id="contact", reason=None)
    c = rec("r2", session="s2", minutes=1, variant="control", shown=[], reason="low_confidence", abstained=True)
    store.add_suggestions([r, c])
    got = store.suggestions()
    assert [g.request_id for g in got] == ["r1", "r2"]
    assert got[0] == r and got[1] == c
    assert got[1].shown == [] and got[1].would_show == ["a1", "a2"]


def test_duplicates_are_counted_not_stored_twice(store):
    assert store.add_events([ev("e1"), ev("e2")]).accepted == 2
    res = store.add_events([ev("e2"), ev("e3"), ev("e3")])
    assert (res.accepted, res.duplicates) == (1, 2)
    assert sorted(e.event_id for e in store.events()) == ["e1", "e2", "e3"]


def test_several_batches_in_one_write_each_get_their_result(store):
    r1, r2 = store.write([rec("r1")], [[ev("e1"), ev("e2")], [ev("e2"), ev("e3")]])
    assert (r1.accepted, r1.duplicates, r2.accepted, r2.duplicates) == (2, 0, 1, 1)
    assert len(store.suggestions()) == 1


def test_time_range_since_inclusive_until_exclusive(store):
    store.add_events([ev("e0", minutes=0), ev("e1", minutes=10), ev("e2", minutes=20)])
    store.add_suggestions([rec("r0", minutes=0), rec("r1", minutes=10), rec("r2", minutes=20)])
    since, until = T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)
    assert [e.event_id for e in store.events(since=since, until=until)] == ["e1"]
    assert [r.request_id for r in store.suggestions(since=since, until=until)] == ["r1"]
    assert [e.event_id for e in store.events(since=since)] == ["e1", "e2"]


def test_events_come_back_in_client_time_order_whatever_the_arrival_order(store):
    store.add_events([ev("late", minutes=30)])
    store.add_events([ev("early", minutes=1)])
    assert [e.event_id for e in store.events()] == ["early", "late"]


def test_empty_store_reads_empty(store):
    assert store.events() == [] and store.suggestions() == []
    assert store.add_events([]).accepted == 0


def test_many_concurrent_writers_lose_nothing(store_url):
    """8 writers, each with its own connection, 25 batches of 20 events (10% resent)."""
    stores = [open_store(store_url) for _ in range(8)]
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for b in range(25):
                batch = [ev(f"w{w}-b{b}-{i}", session=f"s{w}") for i in range(20)]
                batch += batch[:2]  # a retried part of the same batch
                res = stores[w].add_events(batch)
                assert (res.accepted, res.duplicates) == (20, 2)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    got = stores[0].events()
    assert len(got) == 8 * 25 * 20 == len({e.event_id for e in got})
    for s in stores:
        s.close()


def test_migrations_upgrade_an_older_database_keeping_its_rows(store_url):
    old = open_store(store_url, target=1)
    assert old.schema_version() == 1
    old.add_events([ev("e1")])
    old.close()
    new = open_store(store_url)
    assert new.schema_version() == LATEST
    assert [e.event_id for e in new.events()] == ["e1"]
    assert new.migrate() == []  # idempotent
    new.close()


def test_unsupported_url_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="database_url"):
        open_store("mysql://root@localhost/x")


def test_default_url_is_events_db_in_the_home(tmp_path):
    s = open_store("", tmp_path)
    assert (tmp_path / "events.db").exists()
    s.close()


def test_unreachable_postgres_is_a_store_error():
    with pytest.raises(StoreError, match="cannot connect"):
        open_store("postgresql://nobody@127.0.0.1:1/none")


def _fill(store) -> None:
    from deflect.store.base import RejectedEvent

    store.write(
        [rec("r1", "s1", 0), rec("r2", "s2", 0), rec("r3", "s1", 60 * 24 * 10)],
        [[ev("e1", "s1", minutes=1), ev("e2", "s2", minutes=2), ev("e3", "s1", minutes=60 * 24 * 10 + 1)]],
        [RejectedEvent(ev("x1", "s1", minutes=3), "bad_token")],
    )
    store.mail_claim(MailRecord("<m1@x>", "test", "s1", "h1", T0, "triaged"))
    store.mail_claim(MailRecord("<m2@x>", "test", "s2", "h2", T0 + timedelta(days=10), "triaged"))


def test_mail_messages_are_claimed_once_and_changed_by_compare_and_set(store):
    m = MailRecord("<a@x>", "imap", "mail-t", "h1", T0, "triaged", reply_state="pending", reply_message="To: a@x\n\nhi")
    assert store.mail_claim(m) and not store.mail_claim(m)  # the second claim of one key fails
    assert not store.mail_update("<a@x>", expect_state="sending", reply_state="sent")
    assert store.mail_update("<a@x>", expect_state="pending", reply_state="sending")
    assert store.mail_update("<a@x>", reply_state="sent", replied_at=T0 + timedelta(seconds=3), reply_message=None)
    (got,) = store.mail_messages(thread="mail-t")
    assert got.reply_state == "sent" and got.replied_at == T0 + timedelta(seconds=3) and got.reply_message is None
    assert got.received_at == T0 and got.followup is False and "reply_message" not in got.to_json()
    assert store.mail_replies_to("h1", T0) == 1 and store.mail_replies_to("h1", T0 + timedelta(seconds=1)) == 0
    assert store.mail_messages(states=("pending",)) == [] and store.mail_messages(key="<none>") == []
    assert store.mail_cursor("imap://u@h/INBOX") is None
    store.set_mail_cursor("imap://u@h/INBOX", 7, 41)
    store.set_mail_cursor("imap://u@h/INBOX", 7, 42)
    assert store.mail_cursor("imap://u@h/INBOX") == (7, 42)
    with pytest.raises(ValueError):
        store.mail_update("<a@x>", body="x")


def test_delete_a_session_removes_its_rows_in_every_table_and_nothing_else(store):
    _fill(store)
    one = {"suggestions": 2, "events": 2, "rejected_events": 1, "mail_messages": 1}
    assert store.delete(session_id="s1", dry_run=True) == one
    assert len(store.events()) == 3  # a dry run deletes nothing
    assert store.delete(session_id="s1") == one
    assert {e.session_id for e in store.events()} == {"s2"}
    assert [r.request_id for r in store.suggestions()] == ["r2"]
    assert store.rejected() == []
    assert store.delete(session_id="s1") == {"suggestions": 0, "events": 0, "rejected_events": 0, "mail_messages": 0}
    assert [m.thread for m in store.mail_messages()] == ["s2"]


def test_delete_before_a_date_keeps_newer_rows(store):
    _fill(store)
    cut = T0 + timedelta(days=5)
    assert store.delete(before=cut) == {"suggestions": 2, "events": 2, "rejected_events": 1, "mail_messages": 1}
    assert [e.event_id for e in store.events()] == ["e3"]
    assert [r.request_id for r in store.suggestions()] == ["r3"]
    assert store.counts() == {"suggestions": 1, "events": 1, "rejected": 0, "sessions": 1}


def test_delete_both_conditions_means_that_session_before_the_date(store):
    _fill(store)
    assert store.delete(session_id="s1", before=T0 + timedelta(days=5)) == {
        "suggestions": 1,
        "events": 1,
        "rejected_events": 1,
        "mail_messages": 1,
    }
    assert sorted(e.event_id for e in store.events()) == ["e2", "e3"]


def test_delete_needs_a_condition(store):
    with pytest.raises(ValueError, match="session id or a date"):
        store.delete()
