"""The server's writer to the event store: one thread, group commit.

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
  calls then in flight (never an acknowledged event). If the queue is full or the store
  fails, records are dropped and counted (``dropped``), and suggestions keep working.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from deflect.core.errors import StoreError
from deflect.store.base import Event, EventStore, RejectedEvent, SuggestRecord

log = logging.getLogger("deflect.recorder")


@dataclass
class _Batch:
    events: list[Event]
    future: Future
    rejected: list[RejectedEvent] = field(default_factory=list)


class RecorderFull(StoreError):
    """Too many writes are waiting: the store is slower than the traffic."""


class Recorder:
    """Group-commit writer in front of an :class:`EventStore`."""

    def __init__(
        self, store: EventStore, *, max_queue: int = 20_000, max_rows: int = 2_000, max_delay: float = 0.05
    ) -> None:
        self.store = store
        self.max_rows = max_rows
        self.max_delay = max_delay
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self.written_suggestions = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="deflect-recorder", daemon=True)
        self._thread.start()

    # ---- producers --------------------------------------------------------------------
    def submit_events(self, events: list[Event], rejected: list[RejectedEvent] | None = None) -> Future:
        """Queue a batch (and the events of it that are kept apart as ``rejected``); the future
        gives its :class:`AddResult` once committed (or raises StoreError)."""
        fut: Future = Future()
        if self._closed:
            fut.set_exception(StoreError("the recorder is closed"))
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

    # ---- the writer thread ------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._q.get()
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
        recs = [i for i in items if isinstance(i, SuggestRecord)]
        batches = [i for i in items if isinstance(i, _Batch)]
        try:
            rejected = [r for b in batches for r in b.rejected]
            results = self.store.write(recs, [b.events for b in batches], rejected)
        except Exception as exc:  # the store failed: tell each waiting request, drop the records
            log.error("event store write failed: %s", exc)
            self.dropped += len(recs)
            err = exc if isinstance(exc, StoreError) else StoreError(f"event store: write failed ({exc})")
            for b in batches:
                b.future.set_exception(err)
            return
        self.written_suggestions += len(recs)
        for b, res in zip(batches, results, strict=True):
            res.rejected = len(b.rejected)
            b.future.set_result(res)

    # ---- lifecycle --------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written."""
        fut = self.submit_events([])
        with contextlib.suppress(StoreError):
            fut.result(timeout=timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, stop the thread, close the store."""
        if self._closed:
            return
        self._closed = True
        self._q.put(None)
        self._thread.join(timeout)
        self.store.close()
