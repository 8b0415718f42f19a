"""Retrieval metrics as plain functions: ranked ids and relevant sets in, numbers out.

Names follow sentence-transformers' InformationRetrievalEvaluator (``recall@k``,
``mrr@10``, ``ndcg@10``). Queries with no relevant article are excluded from ranking
metrics and handled by the abstention metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def _mean_over_answerable(
    ranked: Sequence[Sequence[str]], relevant: Sequence[frozenset[str] | set[str]], per_query: Callable
) -> float:
    """Mean of ``per_query(ranking, relevant_set)`` over queries with a relevant id (nan if none)."""
    if len(ranked) != len(relevant):
        raise ValueError(f"{len(ranked)} rankings but {len(relevant)} relevance sets")
    values = [per_query(r, rel) for r, rel in zip(ranked, relevant, strict=True) if rel]
    return sum(values) / len(values) if values else float("nan")


def recall_at_k(ranked: Sequence[Sequence[str]], relevant: Sequence[set[str]], k: int) -> float:
    """Share of answerable queries with a relevant id in the top ``k`` (hit rate)."""
    return _mean_over_answerable(ranked, relevant, lambda r, rel: float(any(d in rel for d in r[:k])))


def mrr_at_k(ranked: Sequence[Sequence[str]], relevant: Sequence[set[str]], k: int = 10) -> float:
    """Mean reciprocal rank of the first relevant id within the top ``k``."""
    return _mean_over_answerable(
        ranked, relevant, lambda r, rel: next((1.0 / (i + 1) for i, d in enumerate(r[:k]) if d in rel), 0.0)
    )


def ndcg_at_k(ranked: Sequence[Sequence[str]], relevant: Sequence[set[str]], k: int = 10) -> float:
    """Binary-relevance nDCG@k; the ideal ranking puts all relevant ids first."""

    def one(r: Sequence[str], rel: set[str]) -> float:
        seen: set[str] = set()
        dcg = 0.0
        for i, d in enumerate(r[:k]):
            if d in rel and d not in seen:
                dcg += 1.0 / math.log2(i + 2)
                seen.add(d)
        return dcg / sum(1.0 / math.log2(i + 2) for i in range(min(len(rel), k)))

    return _mean_over_answerable(ranked, relevant, one)


@dataclass(frozen=True)
class CurvePoint:
    """At ``threshold``: what share is shown something, and how often the top one is right."""

    threshold: float
    coverage: float
    precision: float
    shown: int
    correct: int


def precision_coverage(
    top_ids: Sequence[str | None],
    top_scores: Sequence[float],
    relevant: Sequence[set[str]],
    thresholds: Sequence[float] | None = None,
) -> list[CurvePoint]:
    """Precision of the top suggestion against coverage, over thresholds.

    A query is shown something when its top score is at least the threshold. Precision: the
    top id is relevant, among shown queries; a query no article answers counts as an error
    whenever anything is shown for it. Coverage: shown / all queries.
    """
    if not (len(top_ids) == len(top_scores) == len(relevant)):
        raise ValueError(f"lengths differ: {len(top_ids)} ids, {len(top_scores)} scores, {len(relevant)} labels")
    n = len(top_ids)
    if thresholds is None:
        thresholds = sorted({round(float(s), 4) for s in top_scores if s is not None and not math.isnan(s)})
    points = []
    for t in thresholds:
        shown = correct = 0
        for tid, s, rel in zip(top_ids, top_scores, relevant, strict=True):
            if tid is None or s is None or s < t:
                continue
            shown += 1
            correct += tid in rel
        points.append(
            CurvePoint(
                float(t), shown / n if n else float("nan"), correct / shown if shown else float("nan"), shown, correct
            )
        )
    return points


def threshold_for_precision(points: Sequence[CurvePoint], target: float) -> CurvePoint | None:
    """The point with the most coverage whose precision reaches ``target`` (None if none does)."""
    ok = [p for p in points if p.shown and p.precision >= target]
    return max(ok, key=lambda p: (p.coverage, -p.threshold)) if ok else None


@dataclass(frozen=True)
class AbstentionScore:
    """How well abstention separates unanswerable queries at a threshold."""

    threshold: float
    precision: float  # of abstentions, the share that had no answer
    recall: float  # of unanswerable queries, the share abstained on
    answerable_abstained: float  # of answerable queries, the share abstained on


def abstention(top_scores: Sequence[float], relevant: Sequence[set[str]], threshold: float) -> AbstentionScore:
    """Precision and recall of abstaining (score below ``threshold``) on queries no article answers."""
    if len(top_scores) != len(relevant):
        raise ValueError(f"{len(top_scores)} scores but {len(relevant)} labels")
    abst = [s is None or s < threshold for s in top_scores]
    unans = [not rel for rel in relevant]
    tp = sum(a and u for a, u in zip(abst, unans, strict=True))
    n_abst, n_unans = sum(abst), sum(unans)
    n_ans = len(relevant) - n_unans
    ans_abst = sum(a and not u for a, u in zip(abst, unans, strict=True))
    return AbstentionScore(
        threshold,
        tp / n_abst if n_abst else float("nan"),
        tp / n_unans if n_unans else float("nan"),
        ans_abst / n_ans if n_ans else float("nan"),
    )
