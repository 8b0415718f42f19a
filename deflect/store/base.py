"""The event store's records, its protocol, and the schema migrations both backends share.

Two kinds of rows:

- :class:`SuggestRecord`: one per ``/v1/suggest`` call, written by the server (the query
  already redacted), with what was shown and, for the control group, what would have been.
- :class:`Event`: what the widget reports (``suggestions_shown``, ``article_opened``,
  ``feedback``, ``form_submitted``, ``form_abandoned``), keyed by the client's ``event_id``
  so that a retried batch is never counted twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

EVENT_TYPES = ("suggestions_shown", "article_opened", "feedback", "form_submitted", "form_abandoned")
#: events only the server writes: ``mail_followup``, the customer wrote again on an e-mail
#: thread (for e-mail, the ticket the customer still needed)
SERVER_EVENT_TYPES = ("mail_followup",)
#: the events that say the customer still needed a person (the report's "submitted")
SUBMIT_TYPES = ("form_submitted", "mail_followup")
#: where a session's customer would have sent the ticket: the report counts tickets avoided
#: (and their cost) per channel
CHANNELS = ("form", "chat", "email")


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_utc(ts: datetime) -> datetime:
    """``ts`` as an aware UTC datetime (naive values are taken to be UTC)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def iso(ts: datetime) -> str:
    """A fixed-width ISO 8601 UTC string (sorts as text in SQLite): 2026-11-23T10:00:00.000000Z."""
    return to_utc(ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return to_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


@dataclass
class Event:
    """One thing the customer did, as the widget reported it."""

    event_id: str
    session_id: str
    type: str
    ts: datetime
    received_at: datetime = field(default_factory=utcnow)
    request_id: str | None = None
    article_id: str | None = None
    helpful: bool | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["ts"], d["received_at"] = iso(self.ts), iso(self.received_at)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Event:
        return cls(
            event_id=d["event_id"],
            session_id=d["session_id"],
            type=d["type"],
            ts=parse_iso(d["ts"]),
            received_at=parse_iso(d["received_at"]),
            request_id=d.get("request_id"),
            article_id=d.get("article_id"),
            helpful=d.get("helpful"),
        )


@dataclass
class SuggestRecord:
    """One ``/v1/suggest`` call as the server saw it (query text redacted)."""

    request_id: str
    session_id: str | None
    variant: str
    query: str
    abstained: bool
    reason: str | None = None
    form_id: str | None = None
    intent_label: str | None = None
    intent_confidence: float | None = None
    shown: list[str] = field(default_factory=list)
    would_show: list[str] = field(default_factory=list)
    top_score: float | None = None
    index_version: str | None = None
    model_version: str | None = None
    latency_ms: float = 0.0
    created_at: datetime = field(default_factory=utcnow)
    #: a keyed hash of the caller's address (never the address): who opened how many sessions
    client: str | None = None
    #: the channel the ticket would have come through (:data:`CHANNELS`)
    channel: str = "form"

    def to_json(self) -> dict:
        d = asdict(self)
        d["created_at"] = iso(self.created_at)
        return d

    @classmethod
    def from_json(cls, d: dict) -> SuggestRecord:
        d = dict(d)
        d["created_at"] = parse_iso(d["created_at"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @property
    def eligible(self) -> bool:
        """The engine had something to show (shown, or withheld only because of the control group)."""
        return bool(self.would_show) and not self.abstained


@dataclass
class RejectedEvent:
    """An event that is kept apart and never counted, with why (:data:`deflect.provenance.REJECT_REASONS`)."""

    event: Event
    reason: str


@dataclass
class AddResult:
    """What happened to a batch of events: newly stored, already there (same ``event_id``),
    and kept apart as rejected."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0


@runtime_checkable
class EventStore(Protocol):
    """Where suggestion records and widget events are kept.

    ``write`` stores suggestion records, any number of event batches and rejected events
    in one transaction and returns one :class:`AddResult` per batch; when it returns,
    everything is committed (durable). Events whose ``event_id`` is already stored are
    counted as duplicates and not written again. Reads return rows ordered by time;
    ``since`` is inclusive, ``until`` exclusive (client ``ts`` for events, ``created_at``
    for suggestion records, server ``received_at`` for rejected events, whose client time
    may be forged). Raises :class:`deflect.core.errors.StoreError` when the database
    cannot be used.
    """

    url: str

    def write(
        self,
        suggestions: Sequence[SuggestRecord],
        event_batches: Sequence[Sequence[Event]],
        rejected: Sequence[RejectedEvent] = (),
    ) -> list[AddResult]: ...

    def events(self, *, since: datetime | None = None, until: datetime | None = None) -> list[Event]: ...

    def rejected(self, *, since: datetime | None = None, until: datetime | None = None) -> list[RejectedEvent]: ...

    def suggestions(self, *, since: datetime | None = None, until: datetime | None = None) -> list[SuggestRecord]: ...

    def schema_version(self) -> int: ...

    def bulk_load(
        self, suggestions: Sequence[SuggestRecord], events: Sequence[Event], *, simulated: bool = True
    ) -> None: ...

    def query_all(self, steps: Sequence[tuple[str, dict]]) -> list[list[tuple]]: ...

    def modify_all(self, steps: Sequence[tuple[str, dict]]) -> list[int]: ...

    def counts(self) -> dict[str, int]: ...

    def delete(
        self, *, session_id: str | None = None, before: datetime | None = None, dry_run: bool = False
    ) -> dict[str, int]: ...

    def close(self) -> None: ...


class StoreBase:
    """Convenience methods shared by the backends (built on ``write``)."""

    def count_simulated(self) -> int:
        """How many suggestion records and events are marked simulated (``deflect simulate``)."""
        ((n,),) = self.query_all(
            [
                (
                    "SELECT (SELECT COUNT(*) FROM suggestions WHERE simulated = :yes) "
                    "+ (SELECT COUNT(*) FROM events WHERE simulated = :yes)",
                    {"yes": True},
                )
            ]
        )[0]
        return int(n)

    def counts(self) -> dict[str, int]:
        """How many suggestion records, events, rejected events and sessions the store holds
        (simulated rows included), counted in the database."""
        ((s, e, r, n),) = self.query_all(
            [
                (
                    "SELECT (SELECT COUNT(*) FROM suggestions), (SELECT COUNT(*) FROM events), "
                    "(SELECT COUNT(*) FROM rejected_events), (SELECT COUNT(*) FROM (SELECT session_id FROM "
                    "suggestions WHERE session_id IS NOT NULL UNION SELECT session_id FROM events) x)",
                    {},
                )
            ]
        )[0]
        return {"suggestions": int(s), "events": int(e), "rejected": int(r), "sessions": int(n)}

    def delete(
        self, *, session_id: str | None = None, before: datetime | None = None, dry_run: bool = False
    ) -> dict[str, int]:
        """Delete one session's rows (a privacy request) or every row older than ``before`` (a
        retention period), or both conditions at once, in one transaction; returns how many
        rows each table lost (with ``dry_run``: would lose, nothing is deleted)."""
        if session_id is None and before is None:
            raise ValueError("delete needs a session id or a date")
        steps = []
        for table, scol, col in _DELETE_FROM:
            cond = ([f"{scol} = :sid"] if session_id is not None else []) + (
                [f"{col} < :before"] if before is not None else []
            )
            verb = "SELECT COUNT(*)" if dry_run else "DELETE"
            steps.append((f"{verb} FROM {table} WHERE {' AND '.join(cond)}", {"sid": session_id, "before": before}))
        counts = [int(rows[0][0]) for rows in self.query_all(steps)] if dry_run else self.modify_all(steps)
        return {table: n for (table, _, _), n in zip(_DELETE_FROM, counts, strict=True)}

    def add_events(self, events: Sequence[Event]) -> AddResult:
        """Store one batch of events; returns how many were new and how many duplicates."""
        return self.write([], [events])[0]

    def add_suggestions(self, records: Sequence[SuggestRecord]) -> None:
        """Store suggestion records (a request id already stored is left as it was)."""
        self.write(records, [])

    # ---- inbound e-mail (deflect.mailer) ---------------------------------------------
    def mail_claim(self, m: MailRecord) -> bool:
        """Store ``m`` unless a message with its key is stored already; True when it was new.
        This is the lock that keeps a message from being handled twice (by two pollers, a
        retried webhook, or a restart)."""
        return self.mail_claim_many([m]) == 1

    def mail_claim_many(self, records: Sequence[MailRecord]) -> int:
        """Store many messages in one transaction (``deflect simulate``); returns how many were new."""
        return sum(self.modify_all([(_CLAIM_SQL, m.values()) for m in records])) if records else 0

    def mail_update(self, key: str, expect_state: str | None = None, **changes) -> bool:
        """Change columns of one stored message; with ``expect_state``, only if its
        ``reply_state`` is that (a compare-and-set). True when the row changed."""
        bad = set(changes) - set(MAIL_COLUMNS)
        if bad:
            raise ValueError(f"unknown mail columns: {sorted(bad)}")
        sets = ", ".join(f"{c} = :{c}" for c in changes)
        cond = " AND reply_state = :expect" if expect_state is not None else ""
        params = {**changes, "key": key, "expect": expect_state}
        return self.modify_all([(f"UPDATE mail_messages SET {sets} WHERE message_key = :key{cond}", params)])[0] == 1

    def mail_messages(
        self,
        *,
        key: str | None = None,
        thread: str | None = None,
        states: Sequence[str] = (),
        reply_ids: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[MailRecord]:
        """Stored messages matching every condition given, oldest first (``reply_ids``: whose
        acknowledgement has one of these ``Message-ID``s)."""
        cond, params = [], {}
        if reply_ids:
            ids = list(reply_ids)[:100]
            cond.append("reply_id IN (" + ", ".join(f":r{i}" for i in range(len(ids))) + ")")
            params.update({f"r{i}": v for i, v in enumerate(ids)})
        for col, val in (("message_key", key), ("thread", thread)):
            if val is not None:
                cond.append(f"{col} = :{col}")
                params[col] = val
        if states:
            cond.append("reply_state IN (" + ", ".join(f":s{i}" for i in range(len(states))) + ")")
            params.update({f"s{i}": v for i, v in enumerate(states)})
        cond += period_condition("received_at", since, until, params)
        where = f" WHERE {' AND '.join(cond)}" if cond else ""
        sql = f"SELECT {', '.join(MAIL_COLUMNS)} FROM mail_messages{where} ORDER BY received_at, message_key"
        return [MailRecord.from_row(r) for r in self.query_all([(sql, params)])[0]]

    def mail_replies_to(self, sender: str, since: datetime) -> int:
        """How many acknowledgements ``sender`` (its keyed hash) was sent, or is being sent, since ``since``."""
        sql = (
            "SELECT COUNT(*) FROM mail_messages WHERE sender = :sender AND reply_state IN "
            "('pending', 'sending', 'sent', 'unconfirmed') AND received_at >= :since"
        )
        return int(self.query_all([(sql, {"sender": sender, "since": since})])[0][0][0])

    def mail_cursor(self, mailbox: str) -> tuple[int, int] | None:
        """The IMAP folder's UIDVALIDITY and the last UID handled, or None before the first poll."""
        rows = self.query_all([("SELECT uidvalidity, last_uid FROM mail_cursors WHERE mailbox = :m", {"m": mailbox})])[
            0
        ]
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def set_mail_cursor(self, mailbox: str, uidvalidity: int, last_uid: int) -> None:
        """Remember that every message of ``mailbox`` up to ``last_uid`` is handled."""
        self.modify_all(
            [
                (
                    "INSERT INTO mail_cursors (mailbox, uidvalidity, last_uid, updated_at) VALUES (:m, :v, :u, :t) "
                    "ON CONFLICT (mailbox) DO UPDATE SET uidvalidity = :v, last_uid = :u, updated_at = :t",
                    {"m": mailbox, "v": uidvalidity, "u": last_uid, "t": utcnow()},
                )
            ]
        )


def period_condition(col: str, since: datetime | None, until: datetime | None, params: dict) -> list[str]:
    """The SQL conditions ``since <= col < until`` (each only when given), their values put in ``params``."""
    cond = []
    if since is not None:
        cond.append(f"{col} >= :since")
        params["since"] = since
    if until is not None:
        cond.append(f"{col} < :until")
        params["until"] = until
    return cond


# each table, the column that names its session, and the time its retention period is counted from
_DELETE_FROM = (
    ("suggestions", "session_id", "created_at"),
    ("events", "session_id", "ts"),
    ("rejected_events", "session_id", "received_at"),
    ("mail_messages", "thread", "received_at"),
)

#: the states of a message's acknowledgement: ``none`` (not sent, see ``reply_reason``),
#: ``pending`` (recorded, not yet handed to the mail server), ``sending`` (being handed over:
#: after a crash it becomes ``unconfirmed`` and is never sent again), ``sent``, ``failed``
#: (refused before the server took it: may be sent again), ``unconfirmed``
REPLY_STATES = ("none", "pending", "sending", "sent", "failed", "unconfirmed")

MAIL_COLUMNS = (
    "message_key", "source", "thread", "sender", "received_at", "outcome", "request_id", "variant", "intent",
    "queue", "priority", "followup", "reply_state", "reply_reason", "reply_id", "reply_articles", "replied_at",
    "error", "simulated", "reply_message", "attempts",
)  # fmt: skip


_CLAIM_SQL = (
    f"INSERT INTO mail_messages ({', '.join(MAIL_COLUMNS)}) VALUES ({', '.join(f':{c}' for c in MAIL_COLUMNS)}) "
    "ON CONFLICT (message_key) DO NOTHING"
)


def _when(v) -> datetime | None:
    """A stored time (SQLite: ISO text; PostgreSQL: a datetime) as an aware datetime."""
    if v is None:
        return None
    return parse_iso(v) if isinstance(v, str) else to_utc(v)


@dataclass
class MailRecord:
    """One inbound message as the store keeps it: never its text, its sender only as a keyed hash."""

    message_key: str
    source: str
    thread: str
    sender: str | None
    received_at: datetime
    outcome: str
    request_id: str | None = None
    variant: str | None = None
    intent: str | None = None
    queue: str | None = None
    priority: str | None = None
    followup: bool = False
    reply_state: str = "none"
    reply_reason: str | None = None
    reply_id: str | None = None
    reply_articles: bool = False
    replied_at: datetime | None = None
    error: str | None = None
    simulated: bool = False
    #: the composed acknowledgement while it is not yet sent (deleted once it is)
    reply_message: str | None = None
    #: how many times it was handed to the mail server
    attempts: int = 0

    def values(self) -> dict:
        return {c: getattr(self, c) for c in MAIL_COLUMNS}

    def to_json(self) -> dict:
        """The record without the unsent acknowledgement (it holds the customer's address)."""
        d = self.values()
        del d["reply_message"]
        d["received_at"] = iso(self.received_at)
        d["replied_at"] = iso(self.replied_at) if self.replied_at else None
        return d

    @classmethod
    def from_row(cls, r: Sequence) -> MailRecord:
        d = dict(zip(MAIL_COLUMNS, r, strict=True))
        d["received_at"], d["replied_at"] = _when(d["received_at"]), _when(d["replied_at"])
        for c in ("followup", "reply_articles", "simulated"):
            d[c] = bool(d[c])
        return cls(**d)


# ---- schema migrations -------------------------------------------------------------------
# Numbered, applied in order, each in its own transaction, recorded in schema_migrations.
# A deployed database is upgraded by opening it (or `deflect events migrate`). Never edit
# a migration that has shipped: add a new one.


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


_REPORT_INDEXES = (  # the same SQL in both dialects
    "CREATE INDEX suggestions_created ON suggestions (created_at)",
    "CREATE INDEX suggestions_session ON suggestions (session_id)",
    "CREATE INDEX events_ts ON events (ts)",
    "CREATE INDEX events_session ON events (session_id)",
)


def _mail_tables(ts: str, flag: str, no: str) -> tuple[str, ...]:
    """Migration 5 in one dialect (``ts``: the time type, ``flag``: the boolean type)."""
    return (
        f"""CREATE TABLE mail_messages (
            message_key TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            thread TEXT NOT NULL,
            sender TEXT,
            received_at {ts} NOT NULL,
            outcome TEXT NOT NULL,
            request_id TEXT,
            variant TEXT,
            intent TEXT,
            queue TEXT,
            priority TEXT,
            followup {flag} NOT NULL DEFAULT {no},
            reply_state TEXT NOT NULL,
            reply_reason TEXT,
            reply_id TEXT,
            reply_articles {flag} NOT NULL DEFAULT {no},
            replied_at {ts},
            error TEXT,
            simulated {flag} NOT NULL DEFAULT {no},
            reply_message TEXT,
            attempts INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX mail_thread ON mail_messages (thread, received_at)",
        "CREATE INDEX mail_sender ON mail_messages (sender, received_at)",
        "CREATE INDEX mail_received ON mail_messages (received_at)",
        "CREATE INDEX mail_reply_state ON mail_messages (reply_state)",
        "CREATE INDEX mail_reply_id ON mail_messages (reply_id)",
        f"""CREATE TABLE mail_cursors (
            mailbox TEXT PRIMARY KEY,
            uidvalidity BIGINT NOT NULL,
            last_uid BIGINT NOT NULL,
            updated_at {ts} NOT NULL
        )""",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "suggestions and events",
        sqlite=(
            """CREATE TABLE suggestions (
                request_id TEXT PRIMARY KEY,
                session_id TEXT,
                variant TEXT NOT NULL,
                form_id TEXT,
                query TEXT NOT NULL,
                intent_label TEXT,
                intent_confidence REAL,
                abstained INTEGER NOT NULL,
                reason TEXT,
                shown TEXT NOT NULL,
                would_show TEXT NOT NULL,
                top_score REAL,
                index_version TEXT,
                model_version TEXT,
                latency_ms REAL NOT NULL,
                created_at TEXT NOT NULL
            )""",
            """CREATE TABLE events (
                event_id TEXT PRIMARY KEY,
                session_id TEXT NOT NULL,
                type TEXT NOT NULL,
                ts TEXT NOT NULL,
                received_at TEXT NOT NULL,
                request_id TEXT,
                article_id TEXT,
                helpful INTEGER
            )""",
        ),
        postgres=(
            """CREATE TABLE suggestions (
                request_id TEXT PRIMARY KEY,
                session_id TEXT,
                variant TEXT NOT NULL,
                form_id TEXT,
                query TEXT NOT NULL,
                intent_label TEXT,
                intent_confidence DOUBLE PRECISION,
                abstained BOOLEAN NOT NULL,
                reason TEXT,
                shown JSONB NOT NULL,
                would_show JSONB NOT NULL,
                top_score DOUBLE PRECISION,
                index_version TEXT,
                model_version TEXT,
                latency_ms DOUBLE PRECISION NOT NULL,
                created_at TIMESTAMPTZ NOT NULL
            )""",
            """CREATE TABLE events (
                event_id TEXT PRIMARY KEY,
                session_id TEXT NOT NULL,
                type TEXT NOT NULL,
                ts TIMESTAMPTZ NOT NULL,
                received_at TIMESTAMPTZ NOT NULL,
                request_id TEXT,
                article_id TEXT,
                helpful BOOLEAN
            )""",
        ),
    ),
    Migration(
        2,
        "indexes for reports (by time and by session)",
        sqlite=_REPORT_INDEXES,
        postgres=_REPORT_INDEXES,
    ),
    Migration(
        3,
        "rejected events, the caller of each suggest call, simulated rows marked",
        sqlite=(
            """CREATE TABLE rejected_events (
                event_id TEXT NOT NULL,
                session_id TEXT NOT NULL,
                type TEXT NOT NULL,
                ts TEXT NOT NULL,
                received_at TEXT NOT NULL,
                request_id TEXT,
                article_id TEXT,
                helpful INTEGER,
                reason TEXT NOT NULL
            )""",
            "CREATE INDEX rejected_received ON rejected_events (received_at)",
            "ALTER TABLE suggestions ADD COLUMN client TEXT",
            "ALTER TABLE suggestions ADD COLUMN simulated INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE events ADD COLUMN simulated INTEGER NOT NULL DEFAULT 0",
        ),
        postgres=(
            """CREATE TABLE rejected_events (
                event_id TEXT NOT NULL,
                session_id TEXT NOT NULL,
                type TEXT NOT NULL,
                ts TIMESTAMPTZ NOT NULL,
                received_at TIMESTAMPTZ NOT NULL,
                request_id TEXT,
                article_id TEXT,
                helpful BOOLEAN,
                reason TEXT NOT NULL
            )""",
            "CREATE INDEX rejected_received ON rejected_events (received_at)",
            "ALTER TABLE suggestions ADD COLUMN client TEXT",
            "ALTER TABLE suggestions ADD COLUMN simulated BOOLEAN NOT NULL DEFAULT false",
            "ALTER TABLE events ADD COLUMN simulated BOOLEAN NOT NULL DEFAULT false",
        ),
    ),
    Migration(
        4,
        "the channel of each suggest call",
        sqlite=("ALTER TABLE suggestions ADD COLUMN channel TEXT NOT NULL DEFAULT 'form'",),
        postgres=("ALTER TABLE suggestions ADD COLUMN channel TEXT NOT NULL DEFAULT 'form'",),
    ),
    Migration(
        5,
        "inbound e-mail: each message, its outcome and its acknowledgement; IMAP cursors",
        sqlite=_mail_tables("TEXT", "INTEGER", "0"),
        postgres=_mail_tables("TIMESTAMPTZ", "BOOLEAN", "false"),
    ),
)

LATEST = MIGRATIONS[-1].version


EVENT_COLUMNS = "event_id, session_id, type, ts, received_at, request_id, article_id, helpful"
SUGGEST_COLUMNS = (
    "request_id, session_id, variant, form_id, query, intent_label, intent_confidence, abstained, reason, "
    "shown, would_show, top_score, index_version, model_version, latency_ms, created_at, client, channel"
)
SUGGEST_WIDTH = SUGGEST_COLUMNS.count(",") + 1
REJECTED_COLUMNS = EVENT_COLUMNS + ", reason"


def event_from_row(r: Sequence, ts) -> Event:
    """An :class:`Event` from a row in ``EVENT_COLUMNS`` order; ``ts`` converts the stored times."""
    return Event(r[0], r[1], r[2], ts(r[3]), ts(r[4]), r[5], r[6], None if r[7] is None else bool(r[7]))


def suggest_from_row(r: Sequence, ts, ids) -> SuggestRecord:
    """A :class:`SuggestRecord` from a row in ``SUGGEST_COLUMNS`` order (``ids`` converts the lists)."""
    return SuggestRecord(
        request_id=r[0],
        session_id=r[1],
        variant=r[2],
        form_id=r[3],
        query=r[4],
        intent_label=r[5],
        intent_confidence=r[6],
        abstained=bool(r[7]),
        reason=r[8],
        shown=ids(r[9]),
        would_show=ids(r[10]),
        top_score=r[11],
        index_version=r[12],
        model_version=r[13],
        latency_ms=r[14],
        created_at=ts(r[15]),
        client=r[16],
        channel=r[17] or "form",
    )


def event_values(e: Event, ts, flag=lambda b: b) -> tuple:
    """The values of ``e`` in ``EVENT_COLUMNS`` order; ``ts`` and ``flag`` convert times and booleans."""
    helpful = None if e.helpful is None else flag(e.helpful)
    return (e.event_id, e.session_id, e.type, ts(e.ts), ts(e.received_at), e.request_id, e.article_id, helpful)


def rejected_from_row(r: Sequence, ts) -> RejectedEvent:
    """A :class:`RejectedEvent` from a row in ``REJECTED_COLUMNS`` order."""
    return RejectedEvent(event_from_row(r[:8], ts), r[8])


def suggest_values(r: SuggestRecord, ts, ids, flag=lambda b: b) -> tuple:
    """The values of ``r`` in ``SUGGEST_COLUMNS`` order (``ids`` converts the article lists)."""
    return (
        r.request_id,
        r.session_id,
        r.variant,
        r.form_id,
        r.query,
        r.intent_label,
        r.intent_confidence,
        flag(r.abstained),
        r.reason,
        ids(r.shown),
        ids(r.would_show),
        r.top_score,
        r.index_version,
        r.model_version,
        r.latency_ms,
        ts(r.created_at),
        r.client,
        r.channel,
    )


def dumps_ids(ids: list[str]) -> str:
    return json.dumps(ids, ensure_ascii=False)
