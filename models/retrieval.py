"""Hybrid retrieval over an index bundle, ranking articles.

Fusion modes (``mode``):

* ``convex`` (default): for each candidate article,
  ``dense = (1 - title_weight) * best_chunk_cosine + title_weight * title_cosine`` and
  ``score = alpha * dense + (1 - alpha) * bm25 / max_bm25`` (BM25 of the article's best chunk,
  divided by the best article's BM25 for this query). The cosine part is absolute, so a low
  score means a poor match and the abstention threshold keeps its meaning across queries.
  Defaults (alpha 0.9, title_weight 0.3) were chosen by measuring on StackFAQ and the demo
  queries (README, "Retrieval").
* ``rrf``: reciprocal-rank fusion of the dense and lexical chunk rankings.
* ``dense`` / ``lexical``: one retriever alone, best chunk per article (baselines).

Candidates come from FAISS (top chunks), the title vectors and BM25; the article's exact
best-chunk cosine is then computed from its stored vectors. The snippet is the article's
best chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.index_bundle import IndexBundle

RRF_K = 60
MODES = ("convex", "rrf", "dense", "lexical")


@dataclass
class ArticleHit:
    """An article, its score, and the chunk shown as its snippet."""

    article_id: str
    score: float
    chunk: int


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    n = min(n, len(scores))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.argpartition(-scores, n - 1)[:n]
    return idx[np.argsort(-scores[idx], kind="stable")]


def _article_lex(bundle: IndexBundle, chunk_lex: np.ndarray) -> np.ndarray:
    return np.maximum.reduceat(chunk_lex, bundle.article_start) if len(chunk_lex) else chunk_lex


def rank_articles(
    bundle: IndexBundle,
    query: str,
    query_vector: np.ndarray | None,
    k: int,
    *,
    mode: str = "convex",
    alpha: float = 0.9,
    title_weight: float = 0.3,
    candidates: int = 50,
) -> list[ArticleHit]:
    """The ``k`` best articles for ``query``, best first (each article once)."""
    if mode not in MODES:
        raise ValueError(f"unknown fusion mode {mode!r}; one of {', '.join(MODES)}")
    if not bundle.chunks or k <= 0:
        return []
    q = None if query_vector is None else np.asarray(query_vector, dtype=np.float32).reshape(-1)
    if mode != "lexical" and q is None:
        raise ValueError(f"mode {mode!r} needs a query vector")

    if mode == "rrf":
        return _rrf(bundle, query, q, k, candidates)

    cand: set[int] = set()
    dense_chunks = np.zeros(0, dtype=np.int64)
    if mode != "lexical":
        _, ids = bundle.dense.search(q.reshape(1, -1), candidates)
        dense_chunks = ids[0][ids[0] >= 0]
        cand.update(bundle.chunk_article[dense_chunks].tolist())
    title_cos = None
    if mode == "convex" and title_weight > 0:
        title_cos = bundle.title_vectors @ q
        cand.update(_top(title_cos, candidates).tolist())
    chunk_lex = art_lex = None
    if mode != "dense":
        chunk_lex = bundle.lexical.scores(query)
        art_lex = _article_lex(bundle, chunk_lex)
        top_lex = _top(art_lex, candidates)
        cand.update(top_lex[art_lex[top_lex] > 0].tolist())
        mx = float(art_lex.max()) if len(art_lex) else 0.0
        if mx > 0:
            chunk_lex = chunk_lex / mx
            art_lex = art_lex / mx
    hits: list[ArticleHit] = []
    for a in cand:
        s, e = int(bundle.article_start[a]), int(bundle.article_end[a])
        if s == e:
            continue
        if mode == "lexical":
            cl = chunk_lex[s:e]
            j = int(np.argmax(cl))
            if cl[j] <= 0:
                continue
            hits.append(ArticleHit(bundle.article_ids[a], float(art_lex[a]), s + j))
            continue
        cos = bundle.vectors[s:e] @ q
        if mode == "dense":
            j = int(np.argmax(cos))
            hits.append(ArticleHit(bundle.article_ids[a], float(cos[j]), s + j))
            continue
        lex = chunk_lex[s:e] if chunk_lex is not None else np.zeros(e - s, dtype=np.float32)
        j = int(np.argmax(alpha * cos + (1 - alpha) * lex))  # snippet: best chunk by the fused chunk score
        dense = float(cos.max())
        if title_cos is not None:
            dense = (1 - title_weight) * dense + title_weight * float(title_cos[a])
        score = alpha * dense + (1 - alpha) * float(art_lex[a] if art_lex is not None else 0.0)
        hits.append(ArticleHit(bundle.article_ids[a], score, s + j))
    hits.sort(key=lambda h: (-h.score, h.article_id))
    return hits[:k]


def _rrf(bundle: IndexBundle, query: str, q: np.ndarray, k: int, candidates: int) -> list[ArticleHit]:
    _, ids = bundle.dense.search(q.reshape(1, -1), candidates)
    dense_chunks = ids[0][ids[0] >= 0]
    lex = bundle.lexical.scores(query)
    lex_chunks = _top(lex, candidates)
    lex_chunks = lex_chunks[lex[lex_chunks] > 0]
    best: dict[int, tuple[float, int]] = {}
    scores: dict[int, float] = {}
    for ranking in (dense_chunks, lex_chunks):
        seen: set[int] = set()
        rank = 0
        for c in ranking.tolist():
            a = int(bundle.chunk_article[c])
            if a in seen:
                continue
            seen.add(a)
            scores[a] = scores.get(a, 0.0) + 1.0 / (RRF_K + 1 + rank)
            rank += 1
            if a not in best:
                best[a] = (0.0, c)
    hits = [ArticleHit(bundle.article_ids[a], s, best[a][1]) for a, s in scores.items()]
    hits.sort(key=lambda h: (-h.score, h.article_id))
    return hits[:k]
