"""The PostgreSQL event store (psycopg 3), chosen by ``DEFLECT_DATABASE_URL=postgresql://...``.

One connection per store object, used under a lock (the server writes through one
recorder thread). Migrations take an advisory lock, so several servers starting at once
upgrade the schema exactly once.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Sequence
from datetime import datetime

from deflect.core.errors import StoreError
from deflect.store.base import (
    EVENT_COLUMNS,
    MIGRATIONS,
    REJECTED_COLUMNS,
    SUGGEST_COLUMNS,
    SUGGEST_WIDTH,
    AddResult,
    Event,
    RejectedEvent,
    StoreBase,
    SuggestRecord,
    dumps_ids,
    event_from_row,
    event_values,
    rejected_from_row,
    suggest_from_row,
    suggest_values,
    to_utc,
)

_RETRIES = 5  # a write that meets a deadlock is rolled back and tried again this many times
_MIGRATION_LOCK = 0x64656631  # "def1": the advisory lock key for schema upgrades


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _named(sql: str) -> str:
    """``:name`` parameters (the form the report's SQL uses) as psycopg's ``%(name)s``."""
    return re.sub(r"(?<!:):(\w+)", r"%(\1)s", sql)


class PostgresStore(StoreBase):
    """An :class:`~deflect.store.base.EventStore` in a PostgreSQL database."""

    dialect = "postgres"

    def __init__(self, url: str, *, migrate: bool = True, target: int | None = None) -> None:
        import psycopg

        self.url = _safe_url(url)
        self._psycopg = psycopg
        try:
            self._conn = psycopg.connect(url, autocommit=False, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"event store {self.url}: cannot connect ({exc})") from exc
        self._lock = threading.Lock()
        #: errors after which a write is rolled back and tried again
        self._retryable = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
        if migrate:
            self.migrate(target)

    def _fail(self, what: str, exc: Exception) -> StoreError:
        with contextlib.suppress(self._psycopg.Error):
            self._conn.rollback()
        return StoreError(f"event store {self.url}: {what} failed ({exc})")

    # ---- schema -----------------------------------------------------------------------
    def schema_version(self) -> int:
        with self._lock:
            try:
                with self._conn.cursor() as cur:
                    cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
                    if not cur.fetchone()[0]:
                        self._conn.commit()
                        return 0
                    cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                    v = int(cur.fetchone()[0])
                self._conn.commit()
                return v
            except self._psycopg.Error as exc:
                raise self._fail("reading the schema version", exc) from exc

    def migrate(self, target: int | None = None) -> list[int]:
        """Apply the migrations not yet applied (up to ``target``). Returns their numbers."""
        applied = []
        with self._lock:
            try:
                with self._conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                    cur.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations "
                        "(version INTEGER PRIMARY KEY, name TEXT, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                    )
                    cur.execute("SELECT version FROM schema_migrations")
                    done = {r[0] for r in cur.fetchall()}
                    for m in MIGRATIONS:
                        if target is not None and m.version > target:
                            break
                        if m.version in done:
                            continue
                        for sql in m.postgres:
                            cur.execute(sql)
                        cur.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (m.version, m.name)
                        )
                        applied.append(m.version)
                self._conn.commit()  # all pending migrations, and the lock, in one transaction
            except self._psycopg.Error as exc:
                raise self._fail("migration", exc) from exc
        return applied

    # ---- writes -----------------------------------------------------------------------
    def write(
        self,
        suggestions: Sequence[SuggestRecord],
        event_batches: Sequence[Sequence[Event]],
        rejected: Sequence[RejectedEvent] = (),
    ) -> list[AddResult]:
        # rows in key order: two replicas writing overlapping batches then lock the same keys in
        # the same order and one waits for the other; a deadlock left (with a writer that does
        # not sort) rolls back and is tried again, nothing stored twice
        sugs = sorted(suggestions, key=lambda r: r.request_id)
        rows = sorted(((e.event_id, i, e) for i, batch in enumerate(event_batches) for e in batch), key=lambda x: x[:2])
        attempt = 0
        while True:
            try:
                return self._write_once(sugs, rows, len(event_batches), rejected)
            except self._retryable as exc:
                attempt += 1
                if attempt >= _RETRIES:
                    raise self._fail("write", exc) from exc
                time.sleep(0.01 * attempt)

    def _write_once(self, sugs, rows, n_batches: int, rejected) -> list[AddResult]:
        from psycopg.types.json import Jsonb

        results = [AddResult() for _ in range(n_batches)]
        insert_suggestion = (
            f"INSERT INTO suggestions ({SUGGEST_COLUMNS}) VALUES ({', '.join(['%s'] * SUGGEST_WIDTH)}) "
            "ON CONFLICT (request_id) DO NOTHING"
        )
        insert_event = (
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (event_id) DO NOTHING"
        )
        with self._lock:
            try:
                with self._conn.cursor() as cur:
                    if sugs:
                        cur.executemany(insert_suggestion, [suggest_values(r, to_utc, Jsonb) for r in sugs])
                    for _, i, e in rows:
                        cur.execute(insert_event, event_values(e, to_utc))
                        if cur.rowcount == 1:
                            results[i].accepted += 1
                        else:
                            results[i].duplicates += 1
                    if rejected:
                        cur.executemany(
                            f"INSERT INTO rejected_events ({REJECTED_COLUMNS}) VALUES ({', '.join(['%s'] * 9)})",
                            [(*event_values(r.event, to_utc), r.reason) for r in rejected],
                        )
                self._conn.commit()
            except self._retryable:
                self._conn.rollback()
                raise
            except self._psycopg.Error as exc:
                raise self._fail("write", exc) from exc
        return results

    def bulk_load(
        self, suggestions: Sequence[SuggestRecord], events: Sequence[Event], *, simulated: bool = True
    ) -> None:
        """Many rows with ``COPY`` into staging tables, then inserted skipping ids already
        stored, in one transaction, marked ``simulated``."""
        with self._lock:
            try:
                with self._conn.cursor() as cur:
                    cur.execute(
                        "CREATE TEMP TABLE IF NOT EXISTS bulk_suggestions "
                        "(LIKE suggestions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                    )
                    cur.execute(
                        "CREATE TEMP TABLE IF NOT EXISTS bulk_events "
                        "(LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                    )
                    with cur.copy(f"COPY bulk_suggestions ({SUGGEST_COLUMNS}, simulated) FROM STDIN") as cp:
                        for r in suggestions:
                            cp.write_row((*suggest_values(r, to_utc, dumps_ids), simulated))
                    with cur.copy(f"COPY bulk_events ({EVENT_COLUMNS}, simulated) FROM STDIN") as cp:
                        for e in events:
                            cp.write_row((*event_values(e, to_utc), simulated))
                    cur.execute(
                        "INSERT INTO suggestions SELECT * FROM bulk_suggestions ON CONFLICT (request_id) DO NOTHING"
                    )
                    cur.execute(
                        "INSERT INTO events SELECT DISTINCT ON (event_id) * FROM bulk_events "
                        "ON CONFLICT (event_id) DO NOTHING"
                    )
                self._conn.commit()
            except self._psycopg.Error as exc:
                raise self._fail("bulk load", exc) from exc

    def query_all(self, steps: Sequence[tuple[str, dict]]) -> list[list[tuple]]:
        """Each step's rows, all in one read transaction, rolled back at the end."""
        return self._steps(steps, commit=False)

    def modify_all(self, steps: Sequence[tuple[str, dict]]) -> list[int]:
        """Each step's count of rows changed, all in one write transaction, committed at the end
        (or none of them, when one fails)."""
        return self._steps(steps, commit=True)

    def _steps(self, steps: Sequence[tuple[str, dict]], *, commit: bool) -> list:
        """Run ``steps`` in one transaction: rows of each (read) or rows changed (``commit``)."""
        out: list = []
        with self._lock:
            try:
                with self._conn.cursor() as cur:
                    for sql, params in steps:
                        cur.execute(_named(sql), params)
                        if commit:
                            out.append(cur.rowcount)
                        else:
                            out.append(cur.fetchall() if cur.description else [])
                if commit:
                    self._conn.commit()
            except self._psycopg.Error as exc:
                raise self._fail("change" if commit else "query", exc) from exc
            finally:
                if not commit:
                    self._conn.rollback()
        return out

    # ---- reads ------------------------------------------------------------------------
    def _select(self, sql: str, col: str, since: datetime | None, until: datetime | None, order: str) -> list[tuple]:
        where, args = [], []
        if since is not None:
            where.append(f"{col} >= %s")
            args.append(to_utc(since))
        if until is not None:
            where.append(f"{col} < %s")
            args.append(to_utc(until))
        sql += (" WHERE " + " AND ".join(where)) if where else ""
        with self._lock:
            try:
                with self._conn.cursor() as cur:
                    cur.execute(sql + f" ORDER BY {order}", args)
                    rows = cur.fetchall()
                self._conn.commit()
            except self._psycopg.Error as exc:
                raise self._fail("read", exc) from exc
        return rows

    def events(self, *, since: datetime | None = None, until: datetime | None = None) -> list[Event]:
        rows = self._select(f"SELECT {EVENT_COLUMNS} FROM events", "ts", since, until, "ts, event_id")
        return [event_from_row(r, to_utc) for r in rows]

    def suggestions(self, *, since: datetime | None = None, until: datetime | None = None) -> list[SuggestRecord]:
        rows = self._select(
            f"SELECT {SUGGEST_COLUMNS} FROM suggestions", "created_at", since, until, "created_at, request_id"
        )
        return [suggest_from_row(r, to_utc, list) for r in rows]

    def rejected(self, *, since: datetime | None = None, until: datetime | None = None) -> list[RejectedEvent]:
        rows = self._select(
            f"SELECT {REJECTED_COLUMNS} FROM rejected_events", "received_at", since, until, "received_at, event_id"
        )
        return [rejected_from_row(r, to_utc) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
