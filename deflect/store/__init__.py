"""The event store: suggestion records and widget events, in SQLite (default) or PostgreSQL.

:func:`open_store` picks the backend from a URL: empty means ``events.db`` in the data
home; ``sqlite:///path`` a SQLite file; ``postgresql://...`` a PostgreSQL database.
"""

from __future__ import annotations

from pathlib import Path

from deflect.core.datahome import DataHome
from deflect.core.errors import ConfigError
from deflect.store.base import (
    EVENT_TYPES,
    LATEST,
    MIGRATIONS,
    AddResult,
    Event,
    EventStore,
    SuggestRecord,
)

__all__ = [
    "EVENT_TYPES",
    "LATEST",
    "MIGRATIONS",
    "AddResult",
    "Event",
    "EventStore",
    "SuggestRecord",
    "open_store",
    "store_label",
]


def store_label(url: str, home: Path | None = None) -> str:
    """The store's URL as it may be shown (``/readyz``, logs): without its password."""
    import re

    url = (url or "").strip()
    if not url and home is not None:
        return f"sqlite:///{DataHome(home).events_db}"
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_store(url: str, home: Path | None = None, *, migrate: bool = True, target: int | None = None) -> EventStore:
    """The event store named by ``url`` (``DEFLECT_DATABASE_URL``), migrated to the latest schema."""
    url = (url or "").strip()
    if not url:
        if home is None:
            raise ConfigError("database_url: empty and no data home to put events.db in")
        from deflect.store.sqlite import SQLiteStore

        return SQLiteStore(DataHome(home).events_db, migrate=migrate, target=target)
    if url.startswith("sqlite:///"):
        from deflect.store.sqlite import SQLiteStore

        return SQLiteStore(url[len("sqlite:///") :], migrate=migrate, target=target)
    if url.startswith(("postgresql://", "postgres://")):
        from deflect.store.postgres import PostgresStore

        return PostgresStore(url, migrate=migrate, target=target)
    raise ConfigError(
        f"database_url: unsupported {url.split(':', 1)[0]!r}; use sqlite:///PATH or postgresql://USER@HOST/DB"
    )
