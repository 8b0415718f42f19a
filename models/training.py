"""Training an intent model (``deflect train``): fit, calibrate, validate, write a bundle.

:func:`train` runs the steps in order, each a function of its own:

1. the validation plan (cross-validation folds, or a held-out split);
2. the encoder: the serving one, or one fine-tuned on the rows (:func:`_finetuned_encoder`);
3. every text's views, encoded one at a time as serving encodes a query;
4. decision values of every validation row from a model that did not see it
   (:func:`_validation_decisions`), then the nearest-neighbour weight and the temperature;
5. the fine-tuned head, when there is enough data to weigh it (:func:`_fit_head`);
6. the out-of-scope threshold and the validation figures (:func:`_validate`);
7. the bundle (:func:`_write_bundle`), and promotion by the registry's not-worse rule.

Reading the rows lives in :mod:`.labeled`; loading, promotion, history and rollback in
:mod:`.registry`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deflect.core.datahome import DataHome
from deflect.core.errors import InvalidInputError
from deflect.models import bundle as B
from deflect.models.classification_metrics import prediction_metrics
from deflect.models.embedders.protocol import Embedder, EncoderViews
from deflect.models.encoding import ENCODE_BATCH
from deflect.models.intent import (
    DEFAULT_PARAMS,
    NN_WEIGHTS,
    IntentClassifier,
    IntentPrediction,
    choose_nn_weight,
    choose_oos_threshold,
    fit_temperature,
)
from deflect.models.intent_head import HEAD_WEIGHTS, OnnxHead, choose_head_weight, combine, train_head
from deflect.models.labeled import LabeledTexts, kfold, split, text_hash
from deflect.models.registry import promote_if_not_worse

log = logging.getLogger("deflect.train")


@dataclass(frozen=True)
class TrainOptions:
    """How :func:`train` trains (the ``deflect train`` options).

    Attributes:
        oos_label: the label of out-of-scope rows in the data, if it has one.
        val_split: the share of each intent held out (with ``cv_folds=0``, with
            ``finetune``, and to weigh the head).
        cv_folds: folds of cross-validation for calibration and figures; 0: hold out ``val_split``.
        seed: the seed of every split, fit and initialisation (no global generator is touched).
        params: classifier parameters over :data:`~deflect.models.intent.DEFAULT_PARAMS`.
        promote: make the model current if it is not worse than the current one.
        force: promote whatever the comparison says.
        progress: show progress bars (fine-tuning).
        finetune: adapt the encoder itself to the rows first (within ``time_budget_s``).
        time_budget_s: the fine-tuning time budget, in seconds.
        finetune_epochs: at most this many fine-tuning epochs.
    """

    oos_label: str | None = None
    val_split: float = 0.1
    cv_folds: int = 5
    seed: int = 0
    params: dict | None = None
    promote: bool = False
    force: bool = False
    progress: bool = False
    finetune: bool = False
    time_budget_s: float = 600.0
    finetune_epochs: int = 3


@dataclass
class TrainResult:
    """A trained model: its version, validation figures, and whether it was promoted (and why)."""

    version: str
    metrics: dict
    promoted: bool
    promotion_note: str
    seconds: float
    manifest: dict = field(default_factory=dict)


def learned_links(labels: list[str], article_ids: list[str], min_share: float = 0.2) -> dict[str, list[str]]:
    """Intent -> article ids, from training rows that carry an ``article_id``."""
    per: dict[str, Counter] = {}
    for lab, aid in zip(labels, article_ids, strict=True):
        for a in filter(None, (x.strip() for x in aid.split("|"))):
            per.setdefault(lab, Counter())[a] += 1
    out = {}
    for lab, c in per.items():
        total = sum(c.values())
        out[lab] = [a for a, n in c.most_common() if n / total >= min_share][:3]
    return out


@dataclass
class _Plan:
    """Which rows the served model is fit on (``tr``) and which rows validate it (``va``)."""

    cv_folds: int
    tr: np.ndarray
    va: np.ndarray
    fold: np.ndarray | None


@dataclass
class _HeadFit:
    head: OnnxHead
    logits: np.ndarray  # on the head's validation rows
    info: dict


def train(data: LabeledTexts, home: Path, embedder: Embedder, options: TrainOptions | None = None) -> TrainResult:
    """Train a classifier, validate it, write a model bundle, and (optionally) promote it.

    With ``cv_folds >= 2`` (the default): ``cv_folds``-fold cross-validation gives every row a
    prediction from a model that did not see it; the temperature, the out-of-scope threshold
    and the validation figures come from these out-of-fold predictions, and the served model
    is then fit on all the rows. With ``cv_folds=0``: ``val_split`` of each intent is held out,
    the served model is fit on the rest, and calibration and figures come from the held-out part.

    With ``finetune``, the encoder itself is first adapted to the training rows (within
    ``time_budget_s``); the bundle then carries its own encoder, exported to ONNX when served.
    Fine-tuning always holds out ``val_split``: an encoder tuned on every row would make
    out-of-fold predictions look better than they are.

    Raises :class:`InvalidInputError` for an ``oos_label`` that is not in the data, a bad
    split, or ``finetune`` with an embedder that has no model directory. Scratch directories
    in the data home are removed whatever happens.
    """
    o = options or TrainOptions()
    t0 = time.perf_counter()
    home = Path(home)
    DataHome(home).check_writable()
    for path, size in DataHome(home).clean_leftovers():
        log.info("removed %s (%d bytes), left by a run that did not finish", path.name, size)
    if o.oos_label is not None and o.oos_label not in set(data.labels):
        raise InvalidInputError(
            f"{data.path}: --oos-label {o.oos_label!r} is not a label in the file", field="oos_label"
        )
    plan = _plan(data, o)
    with ExitStack() as scratch:  # every scratch directory goes when training ends, however it ends
        encoder, encoder_info = _finetuned_encoder(data, home, embedder, plan, o, scratch)
        merged = {**DEFAULT_PARAMS, **(o.params or {})}
        use_head, head_rows, head_info = _head_plan(data, encoder, plan, merged, o)
        views = encoder.encode_views(data.texts, batch_size=ENCODE_BATCH, trunk=use_head)
        classes = np.array(sorted(set(data.labels)))
        final, svm, sim, knn_all, method = _validation_decisions(data, encoder, views, plan, classes, o)

        labels = np.array(data.labels, dtype=object)
        y_val = np.searchsorted(classes, labels[plan.va].astype(str))
        fixed = (o.params or {}).get("nn_weight")
        nn_weight = choose_nn_weight(svm, sim, y_val, NN_WEIGHTS if fixed is None else (float(fixed),))
        final.params["nn_weight"] = nn_weight
        dec = svm + nn_weight * sim
        final.temperature = fit_temperature(dec, y_val)
        final.oos_label = o.oos_label

        rows = np.arange(len(plan.va))  # the validation rows (positions in dec) the figures come from
        logp = combine(dec / final.temperature, None, 0.0)
        if use_head:
            fit = _fit_head(data, home, encoder, views, head_rows, classes, merged, o, scratch)
            if isinstance(fit, str):
                head_info = {"skipped": fit}
            else:
                htr, hva = head_rows
                pos = hva if plan.cv_folds else np.arange(len(plan.va))  # as positions in dec
                y_all = np.searchsorted(classes, labels.astype(str))
                t2 = fit_temperature(fit.logits, y_all[hva])
                fixed_head = merged["head_weight"]
                weight = choose_head_weight(
                    dec[pos] / final.temperature,
                    fit.logits / t2,
                    y_all[hva],
                    HEAD_WEIGHTS if fixed_head is None else (float(fixed_head),),
                )
                head_info = {"weight": weight, "temperature": t2, **fit.info}
                if weight > 0:
                    final.head, final.head_weight, final.head_temperature = fit.head, weight, t2
                    rows = pos
                    logp = combine(dec[pos] / final.temperature, fit.logits / t2, weight)
                    method += (
                        f"; combined with a fine-tuned head (weight {weight:g}) trained on all but "
                        f"{o.val_split:g} of each intent, so the figures and the out-of-scope threshold "
                        "come from those held-out rows"
                    )
        val_texts, val_labels, val_preds, metrics = _validate(data, final, plan, rows, logp, knn_all, classes, o)
        metrics["method"] = method
        metrics["cv_folds"] = plan.cv_folds
        seconds = time.perf_counter() - t0
        version = _write_bundle(
            home,
            final,
            data,
            plan,
            o,
            embedder,
            encoder_dir=None if encoder is embedder else encoder.model_dir,
            validation=(val_texts, val_labels),
            metrics=metrics,
            method=method,
            encoder_info=encoder_info,
            head_info=head_info,
            seconds=seconds,
        )
    promoted, note = False, "not promoted (use --promote)"
    if o.promote:
        promoted, note = promote_if_not_worse(
            home,
            version,
            embedder,
            data,
            val_texts,
            val_labels,
            val_preds,
            metrics,
            o.oos_label,
            seed=o.seed,
            force=o.force,
        )
    manifest = B.read_manifest(B.bundle_path(home, "model", version))
    return TrainResult(version, metrics, promoted, note, seconds, manifest)


def _plan(data: LabeledTexts, o: TrainOptions) -> _Plan:
    cv_folds = 0 if o.finetune else o.cv_folds
    if cv_folds:
        everything = np.arange(len(data.texts))  # fit on all; every row validated out of fold
        return _Plan(cv_folds, everything, everything, kfold(data.labels, cv_folds, o.seed))
    tr, va = split(data.labels, o.val_split, o.seed)
    return _Plan(0, tr, va, None)


def _scratch_dir(home: Path, purpose: str, scratch: ExitStack) -> Path:
    """A temporary directory in the data home, removed when ``scratch`` closes."""
    home.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=home, prefix=DataHome(home).temp_prefix(purpose)))
    scratch.callback(shutil.rmtree, path, True)
    return path


def _finetuned_encoder(
    data: LabeledTexts, home: Path, embedder: Embedder, plan: _Plan, o: TrainOptions, scratch: ExitStack
) -> tuple[Embedder, dict | None]:
    """The encoder the classifier reads: ``embedder``, or (with ``finetune``) a copy adapted
    to the training rows, served through ONNX; and the manifest's ``encoder`` block."""
    if not o.finetune:
        return embedder, None
    from deflect.models.embedders import OnnxEmbedder
    from deflect.models.finetune import finetune_encoder

    if embedder.model_dir is None:
        raise InvalidInputError("--finetune needs a sentence-transformers model (not the test fake)")
    ft_dir = _scratch_dir(home, "finetune", scratch)
    rep = finetune_encoder(
        embedder.model_dir,
        [data.texts[i] for i in plan.tr],
        [data.labels[i] for i in plan.tr],
        ft_dir / "encoder",
        budget_s=o.time_budget_s,
        epochs=o.finetune_epochs,
        seed=o.seed,
        progress=o.progress,
    )
    encoder = OnnxEmbedder(
        ft_dir / "encoder",
        DataHome(home).onnx_cache,
        quantize=embedder.quantize,
        threads=1,
        parallel=max(1, embedder.parallel),
    )
    info = {
        "finetuned": True,
        "fingerprint": encoder.fingerprint,
        "steps": rep.steps,
        "epochs": round(rep.epochs_done, 2),
        "seconds": round(rep.seconds, 1),
        "stopped_by_budget": rep.stopped_by_budget,
        "time_budget_s": o.time_budget_s,
    }
    return encoder, info


def _head_plan(
    data: LabeledTexts, encoder: Embedder, plan: _Plan, merged: dict, o: TrainOptions
) -> tuple[bool, tuple[np.ndarray, np.ndarray] | None, dict | None]:
    """Whether to train a head, on which rows ``(train, validation)``, and why not.

    The head is trained once, on all but ``val_split`` of each intent (also under
    cross-validation: one fine-tune per fold would cost five); its weight, its temperature
    and then the validation figures come from the rows it did not see."""
    if int(merged["head_epochs"]) <= 0 or o.finetune or encoder.trunk_layer is None or encoder.model_dir is None:
        return False, None, None
    htr, hva = split(data.labels, o.val_split, o.seed) if plan.cv_folds else (plan.tr, plan.va)
    if len(hva) < int(merged["head_min_validation"]):
        return (
            False,
            None,
            {"skipped": f"{len(hva)} held-out texts to weigh it on, fewer than {merged['head_min_validation']}"},
        )
    return True, (htr, hva), None


def _validation_decisions(
    data: LabeledTexts, encoder: Embedder, views: EncoderViews, plan: _Plan, classes: np.ndarray, o: TrainOptions
) -> tuple[IntentClassifier, np.ndarray, np.ndarray, np.ndarray, str]:
    """The served classifier, and for each validation row, from a model that did not see it:
    the SVM's decision values, the nearest-neighbour class similarities and the kNN
    similarities to every class; with the sentence saying where they come from."""
    emb, mx = views.embedding, views.max_pooled
    if plan.cv_folds:
        svm, sim, knn = _out_of_fold(data.texts, data.labels, views, plan.fold, classes, o)
        final = IntentClassifier(encoder, o.params, seed=o.seed).fit(
            data.texts, data.labels, views=EncoderViews(emb, mx)
        )
        method = (
            f"{plan.cv_folds}-fold cross-validation: out-of-fold predictions of models fit on the other folds; "
            "the served model is fit on all the rows"
        )
        return final, svm, sim, knn, method
    texts = np.array(data.texts, dtype=object)
    labels = np.array(data.labels, dtype=object)
    tr, va = plan.tr, plan.va
    final = IntentClassifier(encoder, o.params, seed=o.seed).fit(
        list(texts[tr]), list(labels[tr]), views=EncoderViews(emb[tr], mx[tr])
    )
    svm = final.svm_decision(list(texts[va]), views=EncoderViews(emb[va], mx[va]))
    sim = final.class_similarity(emb[va])
    knn = final.class_knn(emb[va])
    method = f"a held-out split ({o.val_split:g} of each intent); the served model is fit on the rest"
    return final, svm, sim, knn, method


def _fit_head(
    data: LabeledTexts,
    home: Path,
    encoder: Embedder,
    views: EncoderViews,
    head_rows: tuple[np.ndarray, np.ndarray],
    classes: np.ndarray,
    merged: dict,
    o: TrainOptions,
    scratch: ExitStack,
) -> _HeadFit | str:
    """Train the head on its training rows and score its validation rows. A head that cannot
    be trained (e.g. an encoder whose layers cannot be copied) is skipped with a warning; the
    reason is returned instead, for the manifest."""
    htr, hva = head_rows
    y_all = np.searchsorted(classes, np.array(data.labels, dtype=object).astype(str))
    head_dir = _scratch_dir(home, "head", scratch)
    states = views.trunk
    try:
        head, rep = train_head(
            encoder.model_dir,
            encoder.trunk_layer,
            [states[i] for i in htr],
            y_all[htr],
            len(classes),
            head_dir,
            epochs=int(merged["head_epochs"]),
            seed=o.seed,
            quantize=encoder.quantize,
        )
        logits = head.logits(head.embed([states[i] for i in hva]))
    except Exception as exc:  # noqa: BLE001 - e.g. an encoder whose layers cannot be copied
        log.warning("the fine-tuned head could not be trained (%s); training without it", exc)
        return f"it could not be trained: {exc}"
    info = {
        "trunk_layer": encoder.trunk_layer,
        "epochs": rep.epochs,
        "seconds": round(rep.seconds, 1),
        "trained_rows": len(htr),
        "validation_rows": len(hva),
    }
    return _HeadFit(head, logits, info)


def _validate(
    data: LabeledTexts,
    final: IntentClassifier,
    plan: _Plan,
    rows: np.ndarray,
    logp: np.ndarray,
    knn_all: np.ndarray,
    classes: np.ndarray,
    o: TrainOptions,
) -> tuple[list[str], list[str], list[IntentPrediction], dict]:
    """Choose the out-of-scope threshold on the validation rows and compute their figures."""
    texts = np.array(data.texts, dtype=object)
    labels = np.array(data.labels, dtype=object)
    proba = np.exp(logp)
    pred_idx = final.in_scope_argmax(proba)
    scores = final.oos_scores(proba, None, knn=knn_all[rows, pred_idx])
    val_texts, val_labels = list(texts[plan.va][rows]), list(labels[plan.va][rows])
    pred = classes[np.argmax(proba, axis=1)]
    is_oos = np.array([lab == o.oos_label for lab in val_labels])
    correct = (pred == np.array(val_labels)) & ~is_oos
    final.oos_threshold = choose_oos_threshold(
        scores[~is_oos],
        correct[~is_oos],
        oos_scores=scores[is_oos] if is_oos.any() else None,
        oos_caught=(pred[is_oos] == o.oos_label) if is_oos.any() else None,
    )
    val_preds = [
        IntentPrediction(
            str(pred[i]),
            float(proba[i].max()),
            float(scores[i]),
            bool(scores[i] < final.oos_threshold or pred[i] == o.oos_label),
        )
        for i in range(len(rows))
    ]
    return val_texts, val_labels, val_preds, prediction_metrics(val_preds, val_labels, o.oos_label)


def _write_bundle(
    home: Path,
    final: IntentClassifier,
    data: LabeledTexts,
    plan: _Plan,
    o: TrainOptions,
    base: Embedder,
    *,
    encoder_dir: Path | None,
    validation: tuple[list[str], list[str]],
    metrics: dict,
    method: str,
    encoder_info: dict | None,
    head_info: dict | None,
    seconds: float,
) -> str:
    """Write the model bundle (not made current) and return its version."""
    links = learned_links(data.labels, data.article_ids)
    trained_on = [text_hash(data.texts[i]) for i in plan.tr]

    def fill(tmp: Path) -> dict:
        if encoder_dir is not None:
            shutil.copytree(encoder_dir, tmp / "encoder")
        final.save(tmp / "classifier")
        (tmp / "links.json").write_text(json.dumps(links, indent=2))
        # what the served model was fit on, so a later --promote compares on texts it never saw
        (tmp / "trained_on.json").write_text(json.dumps({"text_sha256_16": trained_on}))
        if not plan.cv_folds:
            val_texts, val_labels = validation
            (tmp / "validation.json").write_text(json.dumps({"texts": val_texts, "labels": val_labels}))
        return {
            "labels": [str(c) for c in final.classes_],
            "oos": {
                "method": (
                    "threshold on w*confidence + (1-w)*mean cosine to the 5 nearest training examples of the "
                    "predicted class (confidence: temperature-scaled softmax of the SVM plus nearest-neighbour "
                    "decision values, combined with the fine-tuned head when it has a weight); temperature and "
                    f"threshold chosen on validation predictions from {method}"
                ),
                "threshold": final.oos_threshold,
                "label": o.oos_label,
                "weight": final.params["oos_weight"],
            },
            "temperature": final.temperature,
            "validation": {k: v for k, v in metrics.items() if k != "per_intent"},
            "per_intent": metrics["per_intent"],
            "data": {
                "path": data.path,
                "fingerprint": data.fingerprint,
                "rows": len(data.texts),
                "val_split": None if plan.cv_folds else o.val_split,
                "cv_folds": plan.cv_folds,
                "seed": o.seed,
            },
            "embedder": {"name": base.name, "dimension": base.dimension, "fingerprint": base.fingerprint},
            "encoder": encoder_info,
            "head": head_info,
            "params": final.params,
            "training_seconds": round(seconds, 2),
            "links_learned": bool(links),
        }

    return B.write_bundle(home, "model", fill, make_current=False)


def _out_of_fold(
    texts: list[str],
    labels: list[str],
    views: EncoderViews,
    fold: np.ndarray,
    classes: np.ndarray,
    o: TrainOptions,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row, from a classifier fit on the other folds: the SVM's decision values, the
    nearest-neighbour class similarities and the kNN similarities to every class (columns in
    ``classes`` order). Folds are fit side by side, one per core."""
    emb, mx = views.embedding, views.max_pooled
    svm = np.zeros((len(texts), len(classes)))
    sim = np.zeros((len(texts), len(classes)))
    knn = np.zeros((len(texts), len(classes)), dtype=np.float32)

    def one(f: int) -> None:
        fit, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        if len(held) == 0:
            return
        clf = IntentClassifier(None, o.params, seed=o.seed).fit(
            [texts[i] for i in fit], [labels[i] for i in fit], views=EncoderViews(emb[fit], mx[fit])
        )
        clf.oos_label = o.oos_label
        d = clf.svm_decision([texts[i] for i in held], views=EncoderViews(emb[held], mx[held]))
        # a class missing from this fold's training part (only with hand-made data) never wins
        cols = np.searchsorted(classes, clf.classes_)
        svm[np.ix_(held, cols)] = d
        sim[np.ix_(held, cols)] = clf.class_similarity(emb[held])
        knn[np.ix_(held, cols)] = clf.class_knn(emb[held])
        if len(cols) < len(classes):
            missing = np.setdiff1d(np.arange(len(classes)), cols)
            svm[np.ix_(held, missing)] = float(d.min()) - 1.0 - max(NN_WEIGHTS)

    # liblinear releases the GIL, so threads overlap the SVM fits
    with ThreadPoolExecutor(max(1, min(int(fold.max()) + 1, os.cpu_count() or 1))) as pool:
        list(pool.map(one, range(int(fold.max()) + 1)))
    return svm, sim, knn
