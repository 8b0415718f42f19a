"""Versioned bundles under the data home, and the atomic ``current-*`` pointers.

A bundle is written into a temporary directory beside its final place, renamed into
place, and only then is the pointer file replaced (``os.replace`` of a temp file). A crash
at any moment leaves the previous version serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from deflect.core.atomic import atomic_write_text, publish_dir
from deflect.core.datahome import TUNING_FILE, DataHome
from deflect.core.errors import BundleError

FORMAT_VERSION = 1
KINDS = ("index", "model")
log = logging.getLogger("deflect.models.bundle")


def _dir(home: Path, kind: str) -> Path:
    return DataHome(home).bundles(kind)


def new_version() -> str:
    """A unique version name that sorts in the order versions were made (to the
    microsecond), such as ``20261123T130501482113Z-3f2a9c``."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def pointer_path(home: Path, kind: str) -> Path:
    return DataHome(home).pointer(kind)


def read_pointer(home: Path, kind: str) -> str | None:
    """The version named by ``current-<kind>``, or None when there is none."""
    try:
        value = pointer_path(home, kind).read_text().strip()
    except FileNotFoundError:
        return None
    return value or None


def write_pointer(home: Path, kind: str, version: str) -> None:
    """Make ``version`` current, atomically. The bundle must exist."""
    if not (bundle_path(home, kind, version) / "manifest.json").exists():
        raise BundleError(f"no {kind} bundle {version!r} in {home}")
    atomic_write_text(pointer_path(home, kind), version + "\n")


def history(home: Path, kind: str) -> list[str]:
    """The versions of ``kind`` made current, oldest first (``<kind>-history``)."""
    try:
        return [v for v in DataHome(home).history(kind).read_text().split() if v]
    except FileNotFoundError:
        return []


def set_current(home: Path, kind: str, version: str) -> None:
    """Make ``version`` current (atomic), remembering the order for :func:`roll_back`."""
    write_pointer(home, kind, version)
    hist = [v for v in history(home, kind) if v != version] + [version]
    atomic_write_text(DataHome(home).history(kind), "\n".join(hist) + "\n")


def roll_back(home: Path, kind: str) -> str:
    """Make current the version that was current before this one; returns it."""
    from deflect.core.errors import NotReadyError

    current = read_pointer(home, kind)
    if current is None:
        raise NotReadyError(f"no current {kind} in {home}")
    hist = [v for v in history(home, kind) if (bundle_path(home, kind, v) / "manifest.json").exists()]
    if current in hist:
        hist = hist[: hist.index(current)]
    if not hist:
        raise NotReadyError(f"nothing to roll back to: {current} is the first {kind} made current in {home}")
    previous = hist[-1]
    write_pointer(home, kind, previous)
    atomic_write_text(DataHome(home).history(kind), "\n".join(hist) + "\n")
    return previous


def prunable(home: Path, kind: str, keep: int) -> list[str]:
    """The versions :func:`prune` would delete: all but the newest ``keep``, never the current
    one nor the one a rollback would go back to."""
    versions = list_versions(home, kind)
    current = read_pointer(home, kind)
    hist = history(home, kind)
    previous = hist[hist.index(current) - 1] if current in hist and hist.index(current) > 0 else None
    kept = set(versions[-keep:] if keep > 0 else []) | {current, previous}
    return [v for v in versions if v not in kept]


def prune(home: Path, kind: str, keep: int) -> list[str]:
    """Delete the versions of :func:`prunable`; returns them."""
    gone = []
    for v in prunable(home, kind, keep):
        shutil.rmtree(bundle_path(home, kind, v))
        gone.append(v)
    if gone:
        left = [v for v in history(home, kind) if v not in gone]
        atomic_write_text(DataHome(home).history(kind), "\n".join(left) + ("\n" if left else ""))
    return gone


def bundle_path(home: Path, kind: str, version: str) -> Path:
    if not version or "/" in version or version.startswith("."):
        raise BundleError(f"invalid {kind} version {version!r}")
    return DataHome(home).bundle(kind, version)


def list_versions(home: Path, kind: str) -> list[str]:
    """Complete bundles of ``kind``, oldest first."""
    d = _dir(home, kind)
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if not p.name.startswith(".") and (p / "manifest.json").exists())


def read_manifest(path: Path) -> dict:
    try:
        return json.loads((Path(path) / "manifest.json").read_text())
    except FileNotFoundError as exc:
        raise BundleError(f"bundle {path} has no manifest.json") from exc
    except ValueError as exc:
        raise BundleError(f"bundle {path} has a corrupt manifest.json: {exc}") from exc


def checksums(path: Path) -> dict[str, str]:
    """``sha256:<hex>`` of every file under the bundle directory ``path`` (but its manifest and
    an index's ``tuning.json``),
    by path relative to it, in ``/`` form."""
    out = {}
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel in ("manifest.json", TUNING_FILE):  # tuning.json: rewritten by `deflect tune`
            continue
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        out[rel] = "sha256:" + h.hexdigest()
    return out


def verified_manifest(path: Path) -> dict:
    """The manifest of the bundle at ``path``, once every file it lists has its recorded
    checksum and none is missing (:class:`BundleError` naming the files otherwise; files
    added since are logged). Bundles written before checksums were recorded load with a warning."""
    manifest = read_manifest(path)
    want = manifest.get("files")
    if want is None:
        log.warning("bundle %s has no checksums (written by an older deflect): not verified", Path(path).name)
        return manifest
    got = checksums(path)
    bad = sorted(k for k in want if got.get(k) != want[k] and k in got)
    missing = sorted(set(want) - set(got))
    if bad or missing:
        parts = [f"{what}: {', '.join(names[:5])}" for what, names in (("changed", bad), ("missing", missing)) if names]
        raise BundleError(f"bundle {path} fails its checksums ({'; '.join(parts)})")
    if extra := sorted(set(got) - set(want)):  # never read by a loader; worth a look
        log.warning("bundle %s holds files it was not written with: %s", Path(path).name, ", ".join(extra[:5]))
    return manifest


@contextmanager
def staging(home: Path, kind: str) -> Iterator[Path]:
    """A temporary directory for a bundle in the making; removed if the block fails."""
    parent = _dir(home, kind)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=DataHome(home).temp_prefix("bundle")))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bundle(home: Path, kind: str, fill: Callable[[Path], dict], *, make_current: bool = True) -> str:
    """Create a bundle: ``fill(tmpdir)`` writes the files and returns the manifest fields.

    The manifest is written last, with the checksum of every file (:func:`verified_manifest`
    checks them at load), the directory renamed into place, then (optionally) the pointer
    replaced. Returns the new version.
    """
    version = new_version()
    with staging(home, kind) as tmp:
        manifest = fill(tmp)
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **manifest,
            "files": checksums(tmp),
        }
        with open(tmp / "manifest.json", "w") as f:
            json.dump(manifest, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        publish_dir(tmp, bundle_path(home, kind, version))
    if make_current:
        set_current(home, kind, version)
    return version


def check_embedder(manifest: dict, embedder, where: Path) -> None:
    """Refuse a bundle built with another embedder than ``embedder``."""
    built = manifest.get("embedder") or {}
    if built.get("fingerprint") != embedder.fingerprint or int(built.get("dimension", -1)) != embedder.dimension:
        raise BundleError(
            f"{where} was built with embedder {built.get('name')!r} (fingerprint {built.get('fingerprint')}, "
            f"dimension {built.get('dimension')}) but the configured embedder is {embedder.name!r} "
            f"(fingerprint {embedder.fingerprint}, dimension {embedder.dimension}); "
            "re-run `deflect ingest` with this embedder or point DEFLECT_MODEL_PATH at the original model "
            "(a running server keeps the encoder it started with: restart it to serve this bundle)"
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{where} has format version {manifest.get('format_version')}, expected {FORMAT_VERSION}")
