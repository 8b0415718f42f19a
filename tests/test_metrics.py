import math

import pytest

from deflect.eval.metrics import (
    abstention,
    mrr_at_k,
    ndcg_at_k,
    precision_coverage,
    recall_at_k,
    threshold_for_precision,
)

RANKED = [["a", "b", "c"], ["x", "a", "y"], ["p", "q", "r"], ["z"]]
REL = [frozenset({"a"}), frozenset({"a", "y"}), frozenset({"r"}), frozenset()]  # last: no answer


def test_recall_and_mrr_by_hand():
    assert recall_at_k(RANKED, REL, 1) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED, REL, 2) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, REL, 3) == pytest.approx(1.0)
    assert mrr_at_k(RANKED, REL, 10) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert mrr_at_k(RANKED, REL, 2) == pytest.approx((1 + 1 / 2) / 3)


def test_ndcg_multiple_relevant():
    # query 2: relevant at ranks 2 and 3; ideal has both at ranks 1 and 2
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    got = ndcg_at_k([RANKED[1]], [REL[1]], 10)
    assert got == pytest.approx(dcg / idcg)


def test_mismatched_lengths_and_empty():
    with pytest.raises(ValueError, match="rankings"):
        recall_at_k(RANKED, REL[:2], 1)
    assert math.isnan(recall_at_k([["a"]], [frozenset()], 1))


def test_precision_coverage_counts_unanswerable_as_errors():
    top = ["a", "x", "p", "z"]
    scores = [0.9, 0.5, 0.7, 0.8]
    pts = {p.threshold: p for p in precision_coverage(top, scores, REL, thresholds=[0.0, 0.6, 0.85, 0.95])}
    assert (pts[0.0].coverage, pts[0.0].precision) == (1.0, 0.25)  # only "a" is right
    assert (pts[0.6].shown, pts[0.6].correct) == (3, 1)  # a, p (wrong), z (unanswerable: wrong)
    assert (pts[0.85].coverage, pts[0.85].precision) == (0.25, 1.0)
    assert pts[0.95].shown == 0 and math.isnan(pts[0.95].precision)
    best = threshold_for_precision(list(pts.values()), 0.9)
    assert best.threshold == 0.85
    assert threshold_for_precision(list(pts.values()), 1.01) is None


def test_ties_at_threshold_are_shown():
    pts = precision_coverage(["a", "b"], [0.5, 0.5], [frozenset({"a"}), frozenset({"a"})], thresholds=[0.5])
    assert pts[0].shown == 2 and pts[0].precision == 0.5


def test_abstention_precision_recall():
    a = abstention([0.2, 0.9, 0.3, 0.1], [frozenset({"a"}), frozenset({"a"}), frozenset(), frozenset()], 0.5)
    assert a.precision == pytest.approx(2 / 3) and a.recall == 1.0 and a.answerable_abstained == 0.5
