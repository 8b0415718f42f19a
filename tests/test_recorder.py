"""The recorder when the event store is down at start or fails mid-run: nothing is
acknowledged before it is committed, suggestion records wait, and it reconnects by itself."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from deflect.core.errors import ConfigError, StoreError
from deflect.recorder import Recorder, StoreUnavailable
from deflect.store import Event, SuggestRecord, open_store

T = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class Flaky:
    """Opens a real SQLite store, unless ``down``; its writes fail while ``failing``."""

    def __init__(self, path) -> None:
        self.path, self.down, self.failing, self.opened = path, False, False, 0

    def connect(self):
        if self.down:
            raise StoreError("event store: cannot connect (down for the test)")
        self.opened += 1
        store = open_store(f"sqlite:///{self.path}")
        real_write = store.write

        def write(*a, **kw):
            if self.failing:
                raise StoreError("event store: write failed (connection lost)")
            return real_write(*a, **kw)

        store.write = write
        return store

    def rows(self):
        s = open_store(f"sqlite:///{self.path}")
        try:
            return s.events(), s.suggestions()
        finally:
            s.close()


def ev(i: int) -> Event:
    return Event(f"e{i}", "s1", "form_submitted", T, T)


def rec(i: int) -> SuggestRecord:
    return SuggestRecord(f"r{i}", "s1", "treatment", "q", False, created_at=T)


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def flaky(tmp_path):
    return Flaky(tmp_path / "events.db")


def test_a_store_down_at_start_refuses_events_keeps_records_and_reconnects(flaky):
    flaky.down = True
    r = Recorder(flaky.connect, backoff=0.05, max_backoff=0.2, max_delay=0.01)
    try:
        assert not r.available and "down for the test" in r.last_error
        with pytest.raises(StoreUnavailable):
            r.submit_events([ev(1)]).result(timeout=1)
        r.record_suggestion(rec(1))
        wait_for(lambda: r.pending == 1)  # waiting in memory, not dropped
        time.sleep(0.3)  # several reconnect attempts, all failing
        assert not r.available and r.dropped == 0
        flaky.down = False
        wait_for(lambda: r.available)
        wait_for(lambda: r.pending == 0)
        assert r.submit_events([ev(2)]).result(timeout=5).accepted == 1
        assert r.reconnects == 1 and r.last_error is None
    finally:
        r.close()
    events, recs = flaky.rows()
    assert [e.event_id for e in events] == ["e2"] and [x.request_id for x in recs] == ["r1"]


def test_a_write_that_fails_is_not_acknowledged_and_the_next_one_reconnects(flaky):
    r = Recorder(flaky.connect, backoff=0.05, max_delay=0.01)
    try:
        assert r.submit_events([ev(1)]).result(timeout=5).accepted == 1
        flaky.failing = True
        with pytest.raises(StoreError, match="connection lost"):
            r.submit_events([ev(2)]).result(timeout=5)
        assert not r.available and "connection lost" in r.last_error
        flaky.failing = False
        # the client sends the batch again (the widget keeps it); the recorder reconnects
        wait_for(lambda: r.available)
        assert r.submit_events([ev(2)]).result(timeout=5).accepted == 1
        assert r.reconnects == 1 and flaky.opened == 2
    finally:
        r.close()
    assert [e.event_id for e in flaky.rows()[0]] == ["e1", "e2"]


def test_records_beyond_the_waiting_room_are_dropped_and_counted(flaky):
    flaky.down = True
    r = Recorder(flaky.connect, backoff=10, max_delay=0.01, max_pending=3)
    try:
        for i in range(5):
            r.record_suggestion(rec(i))
        wait_for(lambda: r.pending + r.dropped == 5)
        assert (r.pending, r.dropped) == (3, 2)
    finally:
        r.close()


def test_a_wrong_url_is_not_retried():
    with pytest.raises(ConfigError):
        Recorder(lambda: open_store("mysql://nowhere"))
