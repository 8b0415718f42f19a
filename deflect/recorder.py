"""The server's writer to the event store: one thread, group commit, reconnecting.

Requests hand their rows to :class:`Recorder`; its thread takes everything queued at that
moment and writes it in one transaction. Under load many requests share one commit (and
one fsync), so recording costs the suggest path almost nothing.

- Event batches (``submit_events``) are written at once (or, when suggestion records are
  being gathered, at most ``max_delay`` later) and return a future that resolves only
  after their transaction has committed: the API acknowledges events only then, so an
  acknowledged event survives the server being killed right after.
- Suggestion records (``record_suggestion``) are written behind the response: the
  customer never waits for the database. They are gathered for up to ``max_delay``
  (50 ms) and committed together, so a busy server makes about 20 commits a second for
  them rather than one per request. A crash in that interval can lose the records of the
  calls then in flight (never an acknowledged event).
- **The store may be down** when the server starts or fail while it runs. Then the
  recorder is *unavailable*: event batches are refused at once (:class:`StoreUnavailable`,
  the API answers 503 and the widget keeps them to send again), suggestion records wait in
  memory (at most ``max_pending``; beyond that they are dropped and counted), and the
  thread reconnects with exponential backoff (``backoff`` seconds, doubling up to
  ``max_backoff``). A failed write is never acknowledged; the first write after
  reconnecting carries the waiting records.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from deflect.core.errors import ConfigError, StoreError
from deflect.store.base import Event, EventStore, RejectedEvent, SuggestRecord

log = logging.getLogger("deflect.recorder")


@dataclass
class _Batch:
    events: list[Event]
    future: Future
    rejected: list[RejectedEvent] = field(default_factory=list)


class RecorderFull(StoreError):
    """Too many writes are waiting: the store is slower than the traffic."""


class StoreUnavailable(StoreError):
    """The event store cannot be reached right now; the recorder is reconnecting."""


class Recorder:
    """Group-commit writer in front of an :class:`EventStore`, which ``connect`` opens (and
    opens again after a failure)."""

    def __init__(
        self,
        connect: Callable[[], EventStore],
        *,
        url: str = "",
        max_queue: int = 20_000,
        max_rows: int = 2_000,
        max_delay: float = 0.05,
        max_pending: int = 20_000,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self._connect = connect
        self.url = url
        self.max_rows = max_rows
        self.max_delay = max_delay
        self.max_pending = max_pending
        self.backoff, self.max_backoff = backoff, max_backoff
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self.written_suggestions = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self.store: EventStore | None = None
        self._pending: list[SuggestRecord] = []  # records that wait for the store to come back
        self._delay = backoff
        self._retry_at = 0.0
        self._closed = False
        self._open()  # at once, so that a store that is up is used from the first request
        self._thread = threading.Thread(target=self._run, name="deflect-recorder", daemon=True)
        self._thread.start()

    @property
    def available(self) -> bool:
        """Whether the store is connected (events can be acknowledged)."""
        return self.store is not None

    @property
    def pending(self) -> int:
        """Suggestion records waiting for the store."""
        return len(self._pending)

    # ---- producers --------------------------------------------------------------------
    def submit_events(self, events: list[Event], rejected: list[RejectedEvent] | None = None) -> Future:
        """Queue a batch (and the events of it that are kept apart as ``rejected``); the future
        gives its :class:`AddResult` once committed, or raises StoreError (never both)."""
        fut: Future = Future()
        if self._closed:
            fut.set_exception(StoreError("the recorder is closed"))
            return fut
        if self.store is None:
            fut.set_exception(StoreUnavailable(f"event store unavailable ({self.last_error}); retry shortly"))
            return fut
        try:
            self._q.put_nowait(_Batch(list(events), fut, list(rejected or [])))
        except queue.Full:
            fut.set_exception(RecorderFull("event store: too many writes waiting; retry shortly"))
        return fut

    def record_suggestion(self, rec: SuggestRecord) -> None:
        """Queue a suggestion record; never blocks, never raises."""
        if self._closed:
            self.dropped += 1
            return
        try:
            self._q.put_nowait(rec)
        except queue.Full:
            self.dropped += 1

    # ---- the connection ---------------------------------------------------------------
    def _open(self) -> None:
        """Connect; on failure remember why and when to try again (backoff doubles)."""
        try:
            self.store = self._connect()
        except ConfigError:
            raise  # a wrong URL does not get better by waiting
        except Exception as exc:  # noqa: BLE001 - any failure to connect means "try again later"
            self.last_error = str(exc)
            self._retry_at = time.monotonic() + self._delay
            log.error("event store unavailable, next try in %.1f s: %s", self._delay, exc)
            self._delay = min(self.max_backoff, self._delay * 2)
            return
        if self.last_error is not None:
            self.reconnects += 1
            log.warning("event store available again: %s", self.url)
        self.last_error = None
        self._delay = self.backoff

    def _lost(self, exc: Exception) -> None:
        """A write failed: drop the connection; the next write reconnects first."""
        with contextlib.suppress(Exception):
            self.store.close()
        self.store = None
        self.last_error = str(exc)
        self._retry_at = 0.0  # the first reconnect at once, then with backoff

    def _keep(self, recs: list[SuggestRecord]) -> None:
        room = self.max_pending - len(self._pending)
        self._pending.extend(recs[: max(0, room)])
        self.dropped += max(0, len(recs) - max(0, room))

    # ---- the writer thread ------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                # while the store is down, wake up to reconnect even without traffic
                wait = None if self.store is not None else max(0.05, self._retry_at - time.monotonic())
                item = self._q.get(timeout=wait)
            except queue.Empty:
                if self.store is None and time.monotonic() >= self._retry_at:
                    self._open()
                    if self.store is not None and self._pending:
                        self._write([])
                continue
            if item is None:
                return
            if not isinstance(item, _Batch) and self.max_delay > 0:
                # Only suggestion records so far: sleep, then take all that came meanwhile.
                # Sleeping (rather than waiting on the queue) matters: a thread woken by every
                # put competes for the GIL on each request and slows the suggest path (measured).
                time.sleep(self.max_delay)
            items = [item]
            rows = len(item.events) + len(item.rejected) if isinstance(item, _Batch) else 1
            stop = False
            while rows < self.max_rows:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
                rows += len(nxt.events) + len(nxt.rejected) if isinstance(nxt, _Batch) else 1
            self._write(items)
            if stop:
                return

    def _write(self, items: list) -> None:
        recs = self._pending + [i for i in items if isinstance(i, SuggestRecord)]
        self._pending = []
        batches = [i for i in items if isinstance(i, _Batch)]
        if self.store is None and time.monotonic() >= self._retry_at:
            self._open()
        if self.store is None:
            err = StoreUnavailable(f"event store unavailable ({self.last_error}); retry shortly")
            for b in batches:
                b.future.set_exception(err)
            self._keep(recs)
            return
        try:
            rejected = [r for b in batches for r in b.rejected]
            results = self.store.write(recs, [b.events for b in batches], rejected)
        except Exception as exc:  # the store failed: nothing was committed, nothing is acknowledged
            log.error("event store write failed: %s", exc)
            self._lost(exc)
            err = exc if isinstance(exc, StoreError) else StoreError(f"event store: write failed ({exc})")
            for b in batches:
                b.future.set_exception(err)
            self._keep(recs)
            return
        self.written_suggestions += len(recs)
        for b, res in zip(batches, results, strict=True):
            res.rejected = len(b.rejected)
            b.future.set_result(res)

    # ---- lifecycle --------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written (when the store is up)."""
        fut: Future = Future()
        try:
            self._q.put(_Batch([], fut), timeout=timeout)
        except queue.Full:
            return
        with contextlib.suppress(Exception):
            fut.result(timeout=timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, stop the thread, close the store."""
        if self._closed:
            return
        self._closed = True
        self._q.put(None)
        self._thread.join(timeout)
        if self.store is not None:
            self.store.close()
