import json

import numpy as np
import pytest

from deflect.core.errors import BundleError, IngestError, NotReadyError
from deflect.kb_ingest.pipeline import ingest
from deflect.models import bundle as B
from deflect.models.embedders import KeywordEmbedder
from deflect.models.index_bundle import IndexBundle, load_current
from tests.conftest import write


def kb(tmp_path, articles: dict[str, str]):
    d = tmp_path / "kb"
    if d.exists():
        for p in d.iterdir():
            p.unlink()
    for aid, body in articles.items():
        write(d / f"{aid}.md", f"---\nid: {aid}\ntitle: {aid.title()}\n---\n{body}\n")
    return d


class CountingEmbedder(KeywordEmbedder):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.encoded = 0

    def encode(self, texts, **kw):
        self.encoded += len(texts)
        return super().encode(texts, **kw)


def test_incremental_ingest_reembeds_only_changes(tmp_path, home, fake_embedder):
    emb = CountingEmbedder(fake_embedder.keywords)
    src = kb(tmp_path, {"a": "reset password", "b": "refund card", "c": "google calendar sync"})
    s1 = ingest(src, home, emb)
    assert (len(s1.added), s1.updated, s1.removed) == (3, [], [])
    first = emb.encoded
    assert first > 0

    s2 = ingest(src, home, emb)
    assert not s2.changed and s2.version == s1.version and emb.encoded == first
    assert len(s2.unchanged) == 3

    src = kb(tmp_path, {"a": "reset password", "b": "refund card to a new card", "d": "sms reminder"})
    emb.encoded = 0
    s3 = ingest(src, home, emb)
    assert (s3.added, s3.updated, s3.unchanged, s3.removed) == (["d"], ["b"], ["a"], ["c"])
    assert s3.embedded_chunks == 2 and emb.encoded == 2 + 2  # two chunks + two new titles
    bundle = load_current(home, emb)
    assert sorted(bundle.articles) == ["a", "b", "d"]
    # reused vectors are the same as freshly computed ones
    i = next(i for i, c in enumerate(bundle.chunks) if c.article_id == "a")
    np.testing.assert_allclose(bundle.vectors[i], emb.encode([bundle.chunks[i].embed_text("A")])[0])


def test_skips_are_reported_and_rest_ingested(tmp_path, home, fake_embedder):
    src = kb(tmp_path, {"a": "reset password"})
    write(src / "dup.md", "---\nid: a\ntitle: Another A\n---\nduplicate id\n")
    write(src / "bad.md", b"\xff\xfe not utf8")
    s = ingest(src, home, fake_embedder)
    assert s.added == ["a"]
    reasons = sorted(x.reason for x in s.skipped)
    assert any("duplicate id 'a'" in r for r in reasons) and any("not UTF-8" in r for r in reasons)


def test_several_sources_form_one_index(tmp_path, home, fake_embedder):
    md = kb(tmp_path, {"a": "reset password", "b": "refund card"})
    faq = write(tmp_path / "faq.csv", "id,title,body\nf1,Sync,google calendar sync\nb,Dup,the id b again\n")
    s = ingest([md, faq], home, fake_embedder)
    assert sorted(s.added) == ["a", "b", "f1"]
    (dup,) = s.skipped
    assert "faq.csv" in dup.origin and "duplicate id 'b'" in dup.reason
    assert sorted(load_current(home, fake_embedder).articles) == ["a", "b", "f1"]
    assert ingest([md, faq], home, fake_embedder).changed is False  # the same sources again: nothing to do
    with pytest.raises(IngestError, match="no source"):
        ingest([], home, fake_embedder)


def test_nothing_usable_keeps_previous_index(tmp_path, home, fake_embedder):
    src = kb(tmp_path, {"a": "reset password"})
    s1 = ingest(src, home, fake_embedder)
    bad = write(tmp_path / "bad" / "x.md", "")
    with pytest.raises(IngestError, match="no article could be ingested"):
        ingest(bad.parent, home, fake_embedder)
    assert B.read_pointer(home, "index") == s1.version


def test_crash_while_writing_bundle_leaves_previous_serving(tmp_path, home, fake_embedder):
    src = kb(tmp_path, {"a": "reset password"})
    s1 = ingest(src, home, fake_embedder)
    src = kb(tmp_path, {"a": "reset password", "b": "refund"})
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest(src, home, fake_embedder, _fail_after="vectors")
    assert B.read_pointer(home, "index") == s1.version
    assert B.list_versions(home, "index") == [s1.version]
    assert not [p for p in (home / "indexes").iterdir() if p.name.startswith(".tmp")]
    assert sorted(load_current(home, fake_embedder).articles) == ["a"]


def test_serving_engine_survives_a_crashed_ingest(tmp_path, home, fake_embedder):
    from deflect.config import Settings
    from deflect.engine import Engine, SuggestQuery

    s1 = ingest(kb(tmp_path, {"a": "reset password"}), home, fake_embedder)
    engine = Engine(Settings(home=home, reload_interval=0.0, min_score=0.0), fake_embedder)
    assert engine.suggest(SuggestQuery(description="password")).index_version == s1.version
    with pytest.raises(RuntimeError):
        ingest(kb(tmp_path, {"a": "reset password", "b": "refund"}), home, fake_embedder, _fail_after="vectors")
    res = engine.suggest(SuggestQuery(description="password"))
    assert res.index_version == s1.version and res.suggestions[0].article_id == "a"
    # a bundle that is present but unreadable is not switched to either
    s2 = ingest(kb(tmp_path, {"a": "reset password", "c": "refund"}), home, fake_embedder)
    (home / "indexes" / s2.version / "chunks.jsonl").write_text("{broken")
    engine.index.refresh(wait=True)
    res = engine.suggest(SuggestQuery(description="password"))
    assert res.index_version == s1.version and "chunks" in (engine.index.last_error or "")


def test_half_written_bundle_is_never_listed_or_loaded(tmp_path, home, fake_embedder):
    s1 = ingest(kb(tmp_path, {"a": "reset password"}), home, fake_embedder)
    (home / "indexes" / ".tmp-leftover").mkdir()
    (home / "indexes" / "20990101T000000Z-000000").mkdir()  # no manifest: incomplete
    assert B.list_versions(home, "index") == [s1.version]
    with pytest.raises(BundleError):
        B.write_pointer(home, "index", "20990101T000000Z-000000")


def test_bundle_from_another_embedder_is_refused(tmp_path, home, fake_embedder):
    ingest(kb(tmp_path, {"a": "reset password"}), home, fake_embedder)
    other = KeywordEmbedder(["different", "words"], name="other-model")
    with pytest.raises(BundleError, match="built with embedder 'keyword-fake'.*configured embedder is 'other-model'"):
        load_current(home, other)


def test_manifest_names_embedder_and_counts(tmp_path, home, fake_embedder):
    s = ingest(kb(tmp_path, {"a": "reset password", "b": "refund"}), home, fake_embedder)
    m = json.loads((home / "indexes" / s.version / "manifest.json").read_text())
    assert m["embedder"] == {
        "name": "keyword-fake",
        "dimension": fake_embedder.dimension,
        "fingerprint": fake_embedder.fingerprint,
    }
    assert m["counts"] == {"articles": 2, "chunks": 2} and m["format_version"] == B.FORMAT_VERSION


def test_no_index_is_not_ready(home, fake_embedder):
    with pytest.raises(NotReadyError, match="deflect ingest"):
        load_current(home, fake_embedder)


def test_corrupt_bundle_is_reported(tmp_path, home, fake_embedder):
    s = ingest(kb(tmp_path, {"a": "reset password"}), home, fake_embedder)
    (home / "indexes" / s.version / "vectors.faiss").write_bytes(b"garbage")
    with pytest.raises(BundleError):
        IndexBundle.load(home / "indexes" / s.version, fake_embedder)
