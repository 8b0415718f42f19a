"""Run labeled queries through an index and score them (used by `make bench` and `deflect eval`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deflect.eval.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from deflect.models.retrieval import rank_articles


@dataclass
class Ranked:
    """Per-query rankings (article ids, best first) and top scores."""

    ids: list[list[str]]
    top_scores: list[float | None]


def rank_queries(
    bundle,
    embedder,
    texts: Sequence[str],
    *,
    mode: str = "convex",
    alpha: float = 0.9,
    title_weight: float = 0.3,
    candidates: int = 50,
    k: int = 10,
    vectors: np.ndarray | None = None,
) -> Ranked:
    """Rank every query with one fusion ``mode``; query vectors are computed once in a batch."""
    if vectors is None and mode != "lexical":
        vectors = embedder.encode(list(texts), batch_size=32)
    ids, tops = [], []
    for i, text in enumerate(texts):
        hits = rank_articles(
            bundle,
            text,
            None if vectors is None else vectors[i],
            k,
            mode=mode,
            alpha=alpha,
            title_weight=title_weight,
            candidates=candidates,
        )
        ids.append([h.article_id for h in hits])
        tops.append(hits[0].score if hits else None)
    return Ranked(ids, tops)


def retrieval_metrics(ranked: Sequence[Sequence[str]], relevant: Sequence[frozenset[str]]) -> dict[str, float]:
    """Recall@1/3/5/10, MRR@10 and nDCG@10 over the answerable queries."""
    return {
        "recall@1": recall_at_k(ranked, relevant, 1),
        "recall@3": recall_at_k(ranked, relevant, 3),
        "recall@5": recall_at_k(ranked, relevant, 5),
        "recall@10": recall_at_k(ranked, relevant, 10),
        "mrr@10": mrr_at_k(ranked, relevant, 10),
        "ndcg@10": ndcg_at_k(ranked, relevant, 10),
    }
