"""`deflect eval intent`: the intent model on a team's own train/test files, beside two
baselines trained in the same run (logistic regression on the sentence embeddings, and
TF-IDF with a linear SVM).

The model is trained exactly as ``deflect train`` trains it (same function, into a
scratch home), so the figures describe what would be served.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from deflect.models.classification_metrics import accuracy, expected_calibration_error, macro_f1, oos_auroc, per_class


@dataclass(frozen=True)
class ReliabilityBin:
    """Predictions whose confidence lies in ``[lo, hi)``: how many, their mean confidence
    and their accuracy (None for an empty bin)."""

    lo: float
    hi: float
    count: int
    confidence: float | None
    accuracy: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ConfusedPair:
    """A frequent mistake: ``true`` predicted as ``predicted``, ``count`` times."""

    true: str
    predicted: str
    count: int
    examples: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class IntentSystemFigures:
    """One system's figures on the test file; the optional ones are absent from the JSON
    when not computed (out-of-scope figures need an out-of-scope label)."""

    accuracy: float
    macro_f1: float
    ece: float | None
    train_seconds: float
    per_intent: dict[str, dict[str, float]] | None = None
    confused: list[ConfusedPair] | None = None
    reliability: list[ReliabilityBin] | None = None
    oos_recall: float | None = None
    oos_auroc: float | None = None

    def to_dict(self) -> dict:
        out: dict = {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "ece": self.ece}
        out["train_seconds"] = self.train_seconds
        if self.per_intent is not None:
            out["per_intent"] = self.per_intent
        if self.confused is not None:
            out["confused"] = [c.to_dict() for c in self.confused]
        if self.reliability is not None:
            out["reliability"] = [b.to_dict() for b in self.reliability]
        for name in ("oos_recall", "oos_auroc"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclass(frozen=True)
class IntentReport:
    """``deflect eval intent``: the model and both baselines on the same test file."""

    train: str
    test: str
    train_rows: int
    test_rows: int
    intents: int
    oos_label: str | None
    test_labels_unseen_in_training: list[str]
    model_version_in_scratch: str
    systems: dict[str, IntentSystemFigures]
    created_at: datetime | None = None

    def to_dict(self) -> dict:
        out = {
            "train": self.train,
            "test": self.test,
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            "intents": self.intents,
            "oos_label": self.oos_label,
            "test_labels_unseen_in_training": self.test_labels_unseen_in_training,
            "model_version_in_scratch": self.model_version_in_scratch,
            "systems": {name: f.to_dict() for name, f in self.systems.items()},
        }
        if self.created_at is not None:
            out["created_at"] = self.created_at.isoformat()
        return out


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[ReliabilityBin]:
    """Equal-width confidence bins (empty bins have count 0)."""
    if len(confidence) != len(correct):
        raise ValueError(f"{len(confidence)} confidences but {len(correct)} outcomes")
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        mask = (conf >= lo) & (conf < hi) if i < bins - 1 else (conf >= lo) & (conf <= hi)
        n = int(mask.sum())
        out.append(
            ReliabilityBin(
                lo=float(lo),
                hi=float(hi),
                count=n,
                confidence=float(conf[mask].mean()) if n else None,
                accuracy=float(ok[mask].mean()) if n else None,
            )
        )
    return out


def confused_pairs(
    y_true: Sequence[str], y_pred: Sequence[str], texts: Sequence[str], *, top: int = 10, examples: int = 2
) -> list[ConfusedPair]:
    """The most frequent (true, predicted) mistakes, with example texts, most frequent first."""
    if not (len(y_true) == len(y_pred) == len(texts)):
        raise ValueError(f"lengths differ: {len(y_true)} labels, {len(y_pred)} predictions, {len(texts)} texts")
    pairs = Counter((t, p) for t, p in zip(y_true, y_pred, strict=True) if t != p)
    out = []
    for (t, p), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
        ex = [x for x, a, b in zip(texts, y_true, y_pred, strict=True) if a == t and b == p][:examples]
        out.append(ConfusedPair(t, p, n, ex))
    return out


def _oos_figures(labels, pred_labels, in_scores, oos_label) -> dict[str, float]:
    """``oos_recall`` and ``oos_auroc`` (empty without an out-of-scope label or such test rows)."""
    if oos_label is None:
        return {}
    ins = [i for i, lab in enumerate(labels) if lab != oos_label]
    oos = [i for i, lab in enumerate(labels) if lab == oos_label]
    if not oos:
        return {}
    return {
        "oos_recall": float(np.mean([pred_labels[i] == oos_label for i in oos])),
        "oos_auroc": oos_auroc([in_scores[i] for i in ins], [in_scores[i] for i in oos]),
    }


def evaluate_intents(
    train_path: Path,
    test_path: Path,
    embedder,
    *,
    text_col: str = "text",
    label_col: str = "label",
    oos_label: str | None = None,
    seed: int = 0,
) -> IntentReport:
    """The model and both baselines on the test file, with the figures ``deflect eval intent`` reports."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    from deflect.models.labeled import load_labeled_texts
    from deflect.models.registry import load_model
    from deflect.models.training import TrainOptions, train

    tr = load_labeled_texts(train_path, text_col=text_col, label_col=label_col)
    te = load_labeled_texts(test_path, text_col=text_col, label_col=label_col)
    unknown = sorted(set(te.labels) - set(tr.labels) - ({oos_label} if oos_label else set()))
    systems: dict[str, IntentSystemFigures] = {}

    # the model, trained as `deflect train` trains it
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="deflect-eval-intent-") as scratch:
        res = train(tr, Path(scratch), embedder, TrainOptions(oos_label=oos_label, seed=seed))
        clf = load_model(Path(scratch), res.version, embedder).classifier
        secs = time.perf_counter() - t0
        # encoded by the classifier itself, one text at a time, as served (with its head, if any)
        preds = clf.predict_intents(te.texts)
        emb = embedder.encode(te.texts, batch_size=32)
    y_pred = [oos_label if (p.out_of_scope and oos_label) else p.label for p in preds]
    conf = [p.confidence for p in preds]
    ok = [p.label == t for p, t in zip(preds, te.labels, strict=True)]
    systems["deflect"] = IntentSystemFigures(
        accuracy=accuracy(te.labels, y_pred),
        macro_f1=macro_f1(te.labels, y_pred),
        ece=expected_calibration_error(conf, ok),
        train_seconds=secs,
        per_intent=per_class(te.labels, y_pred),
        confused=confused_pairs(te.labels, y_pred, te.texts),
        reliability=reliability_bins(conf, ok),
        **_oos_figures(te.labels, y_pred, [p.oos_score for p in preds], oos_label),
    )

    # baseline 1: logistic regression on the sentence embeddings
    t0 = time.perf_counter()
    tr_emb = embedder.encode(tr.texts, batch_size=32)
    lr = LogisticRegression(C=10, max_iter=3000).fit(tr_emb, tr.labels)
    proba = lr.predict_proba(emb)
    lr_pred = lr.classes_[np.argmax(proba, axis=1)].tolist()
    in_scope = _in_scope_max(proba, lr.classes_, oos_label)
    systems["LR on embeddings"] = IntentSystemFigures(
        accuracy=accuracy(te.labels, lr_pred),
        macro_f1=macro_f1(te.labels, lr_pred),
        ece=expected_calibration_error(proba.max(axis=1), [a == b for a, b in zip(lr_pred, te.labels, strict=True)]),
        train_seconds=time.perf_counter() - t0,
        **_oos_figures(te.labels, lr_pred, in_scope, oos_label),
    )

    # baseline 2: TF-IDF with a linear SVM
    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    svm = LinearSVC(C=1.0, random_state=seed).fit(vec.fit_transform(tr.texts), tr.labels)
    dec = svm.decision_function(vec.transform(te.texts))
    if dec.ndim == 1:
        dec = np.c_[-dec, dec]
    sv_pred = svm.classes_[np.argmax(dec, axis=1)].tolist()
    systems["TF-IDF + linear SVM"] = IntentSystemFigures(
        accuracy=accuracy(te.labels, sv_pred),
        macro_f1=macro_f1(te.labels, sv_pred),
        ece=None,  # an SVM gives no probabilities
        train_seconds=time.perf_counter() - t0,
        **_oos_figures(te.labels, sv_pred, _in_scope_max(dec, svm.classes_, oos_label), oos_label),
    )
    return IntentReport(
        train=str(train_path),
        test=str(test_path),
        train_rows=len(tr.texts),
        test_rows=len(te.texts),
        intents=len(set(tr.labels)),
        oos_label=oos_label,
        test_labels_unseen_in_training=unknown,
        model_version_in_scratch=res.version,
        systems=systems,
    )


def _in_scope_max(scores: np.ndarray, classes, oos_label: str | None) -> list[float]:
    """The best in-scope class's score of each row (an explicit out-of-scope class left out)."""
    s = np.array(scores, dtype=np.float64, copy=True)
    if oos_label is not None and oos_label in set(classes):
        s[:, list(classes).index(oos_label)] = -np.inf
    return s.max(axis=1).tolist()
