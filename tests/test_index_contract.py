"""One contract, run against every vector index kind (and the lexical index)."""

import numpy as np
import pytest

from deflect.models.lexical import BM25Index
from deflect.models.vector_index import FaissIndex, build_index


def unit(rng, n, d=16):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(params=["flat", "hnsw"])
def kind(request):
    return request.param


def test_empty_index_returns_no_neighbours(kind):
    idx = FaissIndex(16, kind)
    scores, ids = idx.search(np.ones((2, 16), np.float32), 3)
    assert len(idx) == 0 and ids.shape == (2, 3) and (ids == -1).all() and np.isneginf(scores).all()


def test_add_and_search_finds_itself_first(kind):
    rng = np.random.default_rng(0)
    v = unit(rng, 200)
    idx = FaissIndex(16, kind)
    idx.add(v[:100])
    idx.add(v[100:])
    assert len(idx) == 200
    scores, ids = idx.search(v[[5, 150]], 4)
    assert ids[:, 0].tolist() == [5, 150]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_fewer_vectors_than_k(kind):
    idx = FaissIndex(16, kind)
    idx.add(unit(np.random.default_rng(1), 2))
    _, ids = idx.search(unit(np.random.default_rng(2), 1), 5)
    assert sorted(ids[0][:2].tolist()) == [0, 1] and (ids[0][2:] == -1).all()


def test_save_load_round_trip(kind, tmp_path):
    rng = np.random.default_rng(3)
    v = unit(rng, 50)
    idx = FaissIndex(16, kind)
    idx.add(v)
    idx.save(tmp_path / "v.faiss")
    back = FaissIndex.load(tmp_path / "v.faiss")
    assert (back.kind, back.dimension, len(back)) == (kind, 16, 50)
    q = unit(rng, 3)
    np.testing.assert_array_equal(idx.search(q, 5)[1], back.search(q, 5)[1])


def test_wrong_dimension_is_rejected(kind):
    idx = FaissIndex(16, kind)
    with pytest.raises(ValueError, match="shape"):
        idx.add(np.ones((2, 8), np.float32))
    with pytest.raises(ValueError, match="dimension"):
        idx.search(np.ones((1, 8), np.float32), 1)


def test_build_index_switches_to_ann_above_threshold():
    v = unit(np.random.default_rng(4), 30)
    assert build_index(v, ann_threshold=30).kind == "flat"
    assert build_index(v, ann_threshold=29).kind == "hnsw"


def test_bm25_contract(tmp_path):
    idx = BM25Index()
    idx.index(["How to reset your password", "Refunds for card payments", "the and of"])
    s = idx.scores("I forgot my passwords")  # stemmed: passwords -> password
    assert s.argmax() == 0 and s[1] == 0
    assert (idx.scores("zzz unknown") == 0).all()
    idx.save(tmp_path / "lex")
    back = BM25Index.load(tmp_path / "lex")
    np.testing.assert_allclose(back.scores("card refund"), idx.scores("card refund"))
    empty = BM25Index()
    empty.index([])
    assert len(empty) == 0 and empty.scores("x").shape == (0,)
