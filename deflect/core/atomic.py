"""Durable atomic writes: a reader sees the old file or the new one, never half of either.

Every file deflect writes in place goes through :func:`atomic_write_text` (or
:func:`atomic_replace` for a file another library wrote): the data is written to a temporary
file in the same directory and fsynced, renamed over the target, and the directory is
fsynced so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(path: str | Path) -> None:
    """Flush a directory's entries (a rename or a new file in it) to disk."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a platform that cannot open directories: nothing more to do
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    """Flush a file's contents to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def atomic_replace(src: str | Path, dst: str | Path) -> None:
    """Move the finished file ``src`` over ``dst`` durably: fsync it, rename, fsync the directory.

    ``src`` must be on the same file system as ``dst`` (a temporary file beside it)."""
    fsync_file(src)
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)


def publish_dir(tmp: str | Path, final: str | Path) -> Path:
    """Move the finished directory ``tmp`` to ``final`` durably: fsync every file in it,
    rename, fsync the parent. Returns ``final``.

    ``final`` must not exist (a directory is never replaced: the caller removes an old one
    when the operator asks for it); ``tmp`` must be beside it, on the same file system.
    Raises :class:`FileExistsError` when ``final`` exists."""
    tmp, final = Path(tmp), Path(final)
    if final.exists():
        raise FileExistsError(f"{final} exists")
    for p in tmp.rglob("*"):
        if p.is_file():
            fsync_file(p)
    os.rename(tmp, final)
    fsync_dir(final.parent)
    return final


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably. Returns ``path``.

    Raises :class:`OSError` when the directory is missing or not writable; the target is
    then unchanged and no temporary file is left behind."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably. Returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))
