"""Hybrid retrieval: dense (FAISS) and lexical (BM25) chunk scores, fused, aggregated to articles.

Fusion modes:

* ``convex`` (default): ``alpha * cosine + (1 - alpha) * bm25 / max_bm25`` over the union of
  both retrievers' candidates. The cosine part is absolute, so a low score means a poor match
  and the abstention threshold keeps its meaning across queries.
* ``rrf``: reciprocal-rank fusion, ``1/(60 + rank_dense) + 1/(60 + rank_lexical)``.
* ``dense`` / ``lexical``: one retriever alone (baselines in evaluations).

An article's score is its best chunk's; that chunk is the snippet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.index_bundle import IndexBundle

RRF_K = 60


@dataclass
class ArticleHit:
    """An article and the chunk that earned its score."""

    article_id: str
    score: float
    chunk: int


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    n = min(n, len(scores))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.argpartition(-scores, n - 1)[:n]
    return idx[np.argsort(-scores[idx], kind="stable")]


def score_chunks(
    bundle: IndexBundle, query: str, query_vector: np.ndarray | None, *, mode: str = "convex",
    alpha: float = 0.75, candidates: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate chunk ids and their fused scores (unsorted)."""
    n = len(bundle.chunks)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    dense_ids = np.zeros(0, dtype=np.int64)
    if mode != "lexical":
        assert query_vector is not None
        _, ids = bundle.dense.search(query_vector.reshape(1, -1), candidates)
        dense_ids = ids[0][ids[0] >= 0]
    lex_ids = np.zeros(0, dtype=np.int64)
    lex = None
    if mode != "dense":
        lex = bundle.lexical.scores(query)
        lex_ids = _top(lex, candidates)
        lex_ids = lex_ids[lex[lex_ids] > 0]
    if mode == "dense":
        ids = dense_ids
        return ids, bundle.vectors[ids] @ query_vector
    if mode == "lexical":
        ids = lex_ids
        mx = float(lex.max()) if len(lex) else 0.0
        return ids, (lex[ids] / mx if mx > 0 else lex[ids])
    ids = np.union1d(dense_ids, lex_ids)
    if mode == "rrf":
        dense_rank = {int(c): r for r, c in enumerate(dense_ids)}
        lex_rank = {int(c): r for r, c in enumerate(lex_ids)}
        scores = np.array([
            (1.0 / (RRF_K + 1 + dense_rank[c]) if c in dense_rank else 0.0)
            + (1.0 / (RRF_K + 1 + lex_rank[c]) if c in lex_rank else 0.0)
            for c in map(int, ids)
        ], dtype=np.float32)
        return ids, scores
    cos = bundle.vectors[ids] @ query_vector  # exact cosine even for ANN / lexical-only candidates
    mx = float(lex[ids].max()) if len(ids) else 0.0
    lexn = lex[ids] / mx if mx > 0 else np.zeros(len(ids), dtype=np.float32)
    return ids, (alpha * cos + (1.0 - alpha) * lexn).astype(np.float32)


def rank_articles(
    bundle: IndexBundle, query: str, query_vector: np.ndarray | None, k: int, *, mode: str = "convex",
    alpha: float = 0.75, candidates: int = 50, boost: dict[str, float] | None = None,
) -> list[ArticleHit]:
    """The ``k`` best articles for ``query``, best first (an article counts once)."""
    ids, scores = score_chunks(bundle, query, query_vector, mode=mode, alpha=alpha, candidates=candidates)
    best: dict[int, tuple[float, int]] = {}
    rows = bundle.chunk_article[ids]
    for cid, row, s in zip(ids.tolist(), rows.tolist(), scores.tolist(), strict=True):
        cur = best.get(row)
        if cur is None or s > cur[0]:
            best[row] = (s, cid)
    hits = [ArticleHit(bundle.article_ids[row], float(s), cid) for row, (s, cid) in best.items()]
    if boost:
        for h in hits:
            h.score += boost.get(h.article_id, 0.0)
    hits.sort(key=lambda h: (-h.score, h.article_id))
    return hits[:k]
