"""Hybrid retrieval over an index bundle, ranking articles.

Fusion modes (``mode``):

* ``convex`` (default): for each candidate article,
  ``dense = (1 - title_weight) * best_chunk_cosine + title_weight * title_cosine`` and
  ``score = alpha * dense + (1 - alpha) * bm25 / max_bm25`` (BM25 of the article's best chunk,
  divided by the best article's BM25 for this query). The cosine part is absolute, so a low
  score means a poor match and the abstention threshold keeps its meaning across queries.
  Defaults (alpha 0.9, title_weight 0.3) were chosen by measuring on StackFAQ and the demo
  queries (docs/retrieval.md).
* ``rrf``: reciprocal-rank fusion of the dense and lexical chunk rankings.
* ``dense`` / ``lexical``: one retriever alone, best chunk per article (baselines).

Candidates come from FAISS (top chunks), the title vectors and BM25; the article's exact
best-chunk cosine is then computed from its stored vectors. The snippet is the article's
best chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deflect.models.index_bundle import IndexBundle

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
    lang: str | None = None,
) -> list[ArticleHit]:
    """The ``k`` best articles for ``query``, best first (each article once). ``lang``:
    the query's language for the lexical analyser (None: detected)."""
    if mode not in MODES:
        raise ValueError(f"unknown fusion mode {mode!r}; one of {', '.join(MODES)}")
    if not bundle.chunks or k <= 0:
        return []
    q = None if query_vector is None else np.asarray(query_vector, dtype=np.float32).reshape(-1)
    if mode != "lexical" and q is None:
        raise ValueError(f"mode {mode!r} needs a query vector")

    if mode == "rrf":
        return _rrf(bundle, query, q, k, candidates, lang)

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
        chunk_lex = bundle.lexical.scores(query, lang)
        art_lex = _article_lex(bundle, chunk_lex)
        top_lex = _top(art_lex, candidates)
        cand.update(top_lex[art_lex[top_lex] > 0].tolist())
        mx = float(art_lex.max()) if len(art_lex) else 0.0
        if mx > 0:
            chunk_lex = chunk_lex / mx
            art_lex = art_lex / mx
    if not cand:
        return []
    arts = np.fromiter(cand, dtype=np.int64, count=len(cand))
    starts, ends = bundle.article_start[arts], bundle.article_end[arts]
    keep = ends > starts
    arts, starts, ends = arts[keep], starts[keep], ends[keep]
    if not len(arts):
        return []
    # every candidate article's chunks in one gather: segment i is chunks starts[i]..ends[i]
    lens = ends - starts
    seg = np.zeros(len(arts), dtype=np.int64)
    np.cumsum(lens[:-1], out=seg[1:])
    idx = np.repeat(starts - seg, lens) + np.arange(int(lens.sum()))
    lex = chunk_lex[idx] if chunk_lex is not None else np.zeros(len(idx), dtype=np.float32)
    if mode == "lexical":
        chunk_score = lex
        score = art_lex[arts]
    else:
        cos = bundle.vectors[idx] @ q  # exact cosine, also for ANN / title / lexical-only candidates
        best = np.maximum.reduceat(cos, seg)
        if mode == "dense":
            chunk_score, score = cos, best
        else:
            chunk_score = alpha * cos + (1 - alpha) * lex
            dense = best if title_cos is None else (1 - title_weight) * best + title_weight * title_cos[arts]
            score = alpha * dense + (1 - alpha) * (art_lex[arts] if art_lex is not None else 0.0)
    order = sorted(range(len(arts)), key=lambda i: (-float(score[i]), bundle.article_ids[arts[i]]))
    hits: list[ArticleHit] = []
    for i in order:
        if mode == "lexical" and score[i] <= 0:
            continue
        s0 = int(seg[i])
        j = int(np.argmax(chunk_score[s0 : s0 + int(lens[i])]))  # snippet: best chunk by the chunk score
        hits.append(ArticleHit(bundle.article_ids[arts[i]], float(score[i]), int(starts[i]) + j))
        if len(hits) == k:
            break
    return hits


def _rrf(bundle: IndexBundle, query: str, q: np.ndarray, k: int, candidates: int, lang: str | None) -> list[ArticleHit]:
    _, ids = bundle.dense.search(q.reshape(1, -1), candidates)
    dense_chunks = ids[0][ids[0] >= 0]
    lex = bundle.lexical.scores(query, lang)
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
