"""Content is never replaced by accident: the removal guard, --dry-run, and the index versions
commands (list, show, promote, rollback, prune), and `deflect models prune`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deflect.cli.main import app
from deflect.kb_ingest.pipeline import RemovalRefused, ingest
from deflect.models import bundle as B
from tests.conftest import small_kb, write_kb

runner = CliRunner()


def cli(*args: str, ok: bool = True) -> str:
    r = runner.invoke(app, list(args))
    assert (r.exit_code == 0) == ok, r.output
    return r.output


def test_an_ingest_that_would_remove_too_much_changes_nothing(tmp_path, home, fake_embedder):
    ingest(small_kb(tmp_path), home, fake_embedder)
    before = B.read_pointer(home, "index")
    one = write_kb(tmp_path / "other", {"pw": ("Reset your password", "Click reset password on the login page.")})
    with pytest.raises(RemovalRefused, match=r"would remove 2 of the 3 current articles \(67%, more than 20%\)"):
        ingest(one, home, fake_embedder, max_removed=0.2)
    assert B.read_pointer(home, "index") == before and len(B.list_versions(home, "index")) == 1
    with pytest.raises(RemovalRefused):
        ingest(one, home, fake_embedder, max_removed=0.2, full=True)  # --full too
    dry = ingest(one, home, fake_embedder, dry_run=True)
    assert dry.dry_run and dry.removed == ["gcal", "refund"] and dry.unchanged == ["pw"]
    assert B.read_pointer(home, "index") == before and len(B.list_versions(home, "index")) == 1
    both = ingest([small_kb(tmp_path), one], home, fake_embedder, max_removed=0.2)  # several sources: one index
    assert both.removed == [] and B.read_pointer(home, "index") == before  # nothing changed
    done = ingest(one, home, fake_embedder, max_removed=None)  # --replace
    assert done.removed == ["gcal", "refund"] and B.read_pointer(home, "index") != before


def test_index_versions_promote_rollback_show_and_prune(tmp_path, home, fake_embedder):
    versions = []
    for i in range(4):
        extra = {f"a{j}": (f"Article {j}", f"Text of article {j}.") for j in range(i)}
        ingest(small_kb(tmp_path, extra), home, fake_embedder)
        versions.append(B.read_pointer(home, "index"))
    assert B.history(home, "index") == versions
    h = ["--home", str(home)]
    assert versions[-1] in cli("index", "list", *h)
    assert json.loads(cli("index", "show", "current", *h))["version"] == versions[-1]
    assert f"rolled back: {versions[2]}" in cli("index", "rollback", *h)
    assert B.read_pointer(home, "index") == versions[2]
    cli("index", "promote", versions[0], *h)
    assert B.read_pointer(home, "index") == versions[0]
    out = cli("index", "prune", "--keep", "1", "--dry-run", *h)
    assert f"would delete 1 index versions: {versions[1]}" in out  # kept: newest, current, rollback's
    assert len(B.list_versions(home, "index")) == 4
    out = cli("index", "prune", "--keep", "1", *h)
    assert B.list_versions(home, "index") == [versions[0], versions[2], versions[3]]
    assert f"rolled back: {versions[2]}" in cli("index", "rollback", *h)
    flip = B.bundle_path(home, "index", versions[3]) / "vectors.faiss"
    raw = bytearray(flip.read_bytes())
    raw[-20] ^= 0xFF
    flip.write_bytes(bytes(raw))
    out = cli("index", "promote", versions[3], *h, ok=False)
    assert "fails its checksums" in out and B.read_pointer(home, "index") == versions[2]


def test_models_prune(tmp_path, home, fake_embedder):
    from deflect.models.labeled import load_labeled_texts
    from deflect.models.training import TrainOptions, train
    from tests.test_intent import rows, write_csv

    data = load_labeled_texts(write_csv(tmp_path / "d.csv", rows()))
    made = [train(data, home, fake_embedder, TrainOptions(val_split=0.25, seed=i, promote=True, force=True)).version
            for i in range(3)]  # fmt: skip
    out = cli("models", "prune", "--keep", "1", "--home", str(home))
    assert B.list_versions(home, "model") == made[1:] and made[0] in out
