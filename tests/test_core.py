"""The shared kernel: the data home's layout and the one atomic write."""

from __future__ import annotations

import pytest

from deflect.core import atomic
from deflect.core.atomic import atomic_write_text
from deflect.core.datahome import TEMP_PREFIXES, DataHome
from deflect.models import bundle as B


def test_the_data_home_names_every_path(tmp_path):
    h = DataHome(tmp_path)
    assert h.bundles("index") == tmp_path / "indexes" and h.bundle("model", "v1") == tmp_path / "models" / "v1"
    assert h.pointer("model") == tmp_path / "current-model" and h.events_db == tmp_path / "events.db"
    assert h.model_history == tmp_path / "model-history" and h.onnx_cache == tmp_path / "onnx"
    assert DataHome.tuning(h.bundle("index", "v1")).name == "tuning.json"
    assert all(p.startswith(".") for p in TEMP_PREFIXES.values())
    with pytest.raises(ValueError, match="unknown bundle kind"):
        h.bundles("nope")
    assert not list(tmp_path.iterdir())  # naming paths creates nothing


def test_atomic_write_replaces_whole_and_syncs_the_directory(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(atomic, "fsync_dir", lambda p: synced.append(p))
    target = tmp_path / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two" and synced == [tmp_path, tmp_path]
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary file left


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_every_in_place_write_goes_through_the_helper(tmp_path, monkeypatch):
    """The pointer, the model history and the tuning file are all written by atomic_write_text."""
    from deflect import tuning

    written = []
    real = atomic.atomic_write_bytes

    def spy(path, data):
        written.append(path.name)
        return real(path, data)

    monkeypatch.setattr(atomic, "atomic_write_bytes", spy)
    (tmp_path / "models" / "v1").mkdir(parents=True)
    (tmp_path / "models" / "v1" / "manifest.json").write_text("{}")
    B.set_current(tmp_path, "model", "v1")
    tuning.write_tuning(tmp_path / "models" / "v1", {"threshold": 0.5})
    assert written == ["current-model", "model-history", "tuning.json"]
