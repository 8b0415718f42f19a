"""Classification metrics as plain functions (inputs checked for matching lengths), and the
validation figures of intent predictions that training, promotion and ``deflect eval intent``
report."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score

from deflect.models.intent import IntentPrediction


def _same_length(*arrays: Sequence) -> None:
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"inputs differ in length: {[len(a) for a in arrays]}")


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    _same_length(y_true, y_pred)
    if not len(y_true):
        return float("nan")
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None) -> float:
    """Macro-averaged F1 over ``labels`` (default: the labels present in ``y_true``)."""
    _same_length(y_true, y_pred)
    labels = sorted(set(y_true)) if labels is None else list(labels)
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def per_class(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support for each label present in ``y_true``."""
    _same_length(y_true, y_pred)
    labels = sorted(set(y_true))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, lab in enumerate(labels)
    }


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = 15) -> float:
    """ECE: the support-weighted gap between confidence and accuracy over equal-width bins."""
    _same_length(confidence, correct)
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if not len(conf):
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs(conf[mask].mean() - ok[mask].mean())
    return float(ece)


def oos_auroc(in_scope_scores: Sequence[float], oos_scores: Sequence[float]) -> float:
    """AUROC of separating out-of-scope (positive, low score) from in-scope texts."""
    if not len(in_scope_scores) or not len(oos_scores):
        return float("nan")
    y = np.r_[np.zeros(len(in_scope_scores)), np.ones(len(oos_scores))]
    s = -np.r_[np.asarray(in_scope_scores, float), np.asarray(oos_scores, float)]
    return float(roc_auc_score(y, s))


def prediction_metrics(preds: list[IntentPrediction], labels: list[str], oos_label: str | None) -> dict:
    """Accuracy, macro-F1, per-intent figures, ECE and (with out-of-scope rows) OOS figures."""
    in_scope = [i for i, lab in enumerate(labels) if lab != oos_label]
    oos = [i for i, lab in enumerate(labels) if lab == oos_label]
    y_pred = [oos_label if (p.out_of_scope and oos_label) else p.label for p in preds]
    y_true = list(labels)
    m = {
        "n": len(labels),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred),
        "per_intent": per_class(y_true, y_pred),
        "ece": expected_calibration_error(
            [p.confidence for p in preds], [p.label == t for p, t in zip(preds, labels, strict=True)]
        ),
    }
    if oos:
        m["oos_recall"] = float(np.mean([preds[i].out_of_scope or preds[i].label == oos_label for i in oos]))
        m["oos_auroc"] = oos_auroc([preds[i].oos_score for i in in_scope], [preds[i].oos_score for i in oos])
        m["in_scope_accuracy"] = (
            float(np.mean([preds[i].label == labels[i] and not preds[i].out_of_scope for i in in_scope]))
            if in_scope
            else float("nan")
        )
    return m
