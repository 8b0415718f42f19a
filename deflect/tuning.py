"""Suggestion thresholds tuned on labeled queries (``deflect tune``), stored with the index.

``indexes/<version>/tuning.json`` holds the global threshold and optional per-intent ones.
It is made for the index it was tuned on; ``deflect ingest`` carries it to the next index
(re-tuned on the same labeled queries when their file is still there, else copied, marked
``inherited_from``). It is not among the bundle's checksummed files: ``deflect tune`` may
rewrite it. The file is replaced atomically, and the running server picks it
up within ``reload_interval`` seconds, without a restart.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from deflect.core.atomic import atomic_write_text
from deflect.core.datahome import DataHome


def write_tuning(bundle_dir: Path, tuning: dict) -> Path:
    """Write ``tuning`` (``threshold``, ``per_intent``, ...) next to the index, atomically."""
    body = {**tuning, "written_at": datetime.now(UTC).isoformat()}
    return atomic_write_text(DataHome.tuning(bundle_dir), json.dumps(body, indent=2))


def read_tuning(bundle_dir: Path) -> dict | None:
    """The tuning of an index, or None (no file, or one that cannot be read)."""
    try:
        data = json.loads(DataHome.tuning(bundle_dir).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("threshold"), (int, float)):
        return None
    return data


def carry_over(previous_dir: Path, new_dir: Path, previous_version: str) -> dict | None:
    """Copy the tuning of the index at ``previous_dir`` into ``new_dir`` (marked
    ``inherited_from``); the copied tuning, or None when the previous index was not tuned."""
    tuned = read_tuning(previous_dir)
    if tuned is None:
        return None
    body = {k: v for k, v in tuned.items() if k != "written_at"}
    body["inherited_from"] = previous_version
    write_tuning(new_dir, body)
    return body


def remove_tuning(bundle_dir: Path) -> bool:
    try:
        DataHome.tuning(bundle_dir).unlink()
        return True
    except FileNotFoundError:
        return False


class TuningCache:
    """``read_tuning`` for the serving index, re-checked at most every ``interval`` seconds."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._value: dict | None = None
        self._checked = 0.0
        self._dir: Path | None = None

    def get(self, bundle_dir: Path) -> dict | None:
        now = time.monotonic()
        if bundle_dir == self._dir and now - self._checked < self.interval:
            return self._value
        with self._lock:
            try:
                st = DataHome.tuning(bundle_dir).stat()
                key = (str(bundle_dir), st.st_mtime_ns, st.st_size)
            except OSError:
                key = (str(bundle_dir), None, None)
            if key != self._key:
                self._value = read_tuning(bundle_dir) if key[1] is not None else None
                self._key = key
            self._dir, self._checked = bundle_dir, now
            return self._value
