"""Train, validate, version and promote intent models (``deflect train``, ``deflect models``)."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from deflect.eval.classification import accuracy, expected_calibration_error, macro_f1, oos_auroc, per_class
from deflect.models import bundle as B
from deflect.models.intent import (
    DEFAULT_PARAMS,
    ENCODE_BATCH,
    NN_WEIGHTS,
    IntentClassifier,
    IntentPrediction,
    choose_nn_weight,
    choose_oos_threshold,
    fit_temperature,
)
from deflect.models.intent_head import HEAD_WEIGHTS, choose_head_weight, combine, train_head

from deflect.errors import BundleError, InvalidInputError, NotReadyError

HISTORY = "model-history"
log = logging.getLogger("deflect.train")


@dataclass
class LabeledTexts:
    """Training data read from a file: texts, labels, optional article ids, and origins."""

    texts: list[str]
    labels: list[str]
    article_ids: list[str]
    fingerprint: str
    path: str


def load_labeled_texts(path: str | Path, text_col: str = "text", label_col: str = "label") -> LabeledTexts:
    """Read CSV or JSONL training data; any problem raises :class:`InvalidInputError` naming it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{path}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 (byte {exc.start}); re-save the file as UTF-8") from exc
    rows: list[tuple[str, dict]] = []
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise InvalidInputError(f"{path}:{n}: invalid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise InvalidInputError(f"{path}:{n}: not a JSON object")
            rows.append((f"{path}:{n}", obj))
        columns = set().union(*(r.keys() for _, r in rows)) if rows else set()
    else:
        reader = csv.DictReader(text.splitlines(keepends=True))
        columns = set(reader.fieldnames or [])
        for row in reader:
            rows.append((f"{path}:{reader.line_num}", row))
    if not rows:
        raise InvalidInputError(f"{path}: no rows")
    for col in (text_col, label_col):
        if col not in columns:
            raise InvalidInputError(
                f"{path}: missing column {col!r} (columns: {', '.join(sorted(columns))}); use --text-col / --label-col",
                field=col,
            )
    texts, labels, arts = [], [], []
    for origin, r in rows:
        t, lab = r.get(text_col), r.get(label_col)
        if not isinstance(t, str) or not t.strip():
            raise InvalidInputError(f"{origin}: empty text in column {text_col!r}", field=text_col)
        if lab is None or not str(lab).strip():
            raise InvalidInputError(f"{origin}: empty label in column {label_col!r}", field=label_col)
        texts.append(t.strip())
        labels.append(str(lab).strip())
        arts.append(str(r.get("article_id") or "").strip())
    counts = Counter(labels)
    if len(counts) < 2:
        raise InvalidInputError(f"{path}: only one class ({next(iter(counts))!r}); at least two are needed")
    rare = sorted(c for c, n in counts.items() if n < 2)
    if rare:
        raise InvalidInputError(
            f"{path}: class {rare[0]!r} has fewer than two examples"
            + (f" (and {len(rare) - 1} more: {', '.join(rare[1:6])})" if len(rare) > 1 else "")
        )
    return LabeledTexts(texts, labels, arts, hashlib.sha256(raw).hexdigest()[:16], str(path))


def split(labels: list[str], val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified split: each class keeps at least one training example, and gives
    ``val_split`` of its examples (at least one when it has three or more) to validation."""
    if not 0.0 < val_split < 0.9:
        raise InvalidInputError(f"--val-split must be between 0 and 0.9, got {val_split}", field="val_split")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    train, val = [], []
    for lab in sorted(by_class):
        idx = np.array(by_class[lab])
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_split))
        n_val = min(max(n_val, 1 if len(idx) >= 3 else 0), len(idx) - 1)
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    return np.array(sorted(train)), np.array(sorted(val))


def kfold(labels: list[str], folds: int, seed: int) -> np.ndarray:
    """The fold (``0..folds-1``) of each row: stratified, each class dealt round-robin from a
    shuffled order and a rotating start, so every fold's training part (all other folds)
    keeps at least one example of every class that has two or more."""
    if folds < 2:
        raise InvalidInputError(f"--cv-folds must be 0 (hold out --val-split) or at least 2, got {folds}")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    fold = np.zeros(len(labels), dtype=np.int64)
    start = 0
    for lab in sorted(by_class):
        idx = np.array(by_class[lab])
        rng.shuffle(idx)
        fold[idx] = (start + np.arange(len(idx))) % folds
        start = (start + len(idx)) % folds
    return fold


def text_hash(text: str) -> str:
    """A short fingerprint of one training text (bundles record what they were fit on)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class TrainResult:
    version: str
    metrics: dict
    promoted: bool
    promotion_note: str
    seconds: float
    manifest: dict = field(default_factory=dict)


def evaluate(clf: IntentClassifier, texts: list[str], labels: list[str], views, oos_label: str | None) -> dict:
    """Validation metrics of ``clf`` on labeled texts (OOS decided by its threshold)."""
    return prediction_metrics(clf.predict_intents(texts, views=views), labels, oos_label)


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


def train(
    data: LabeledTexts,
    home: Path,
    embedder,
    *,
    oos_label: str | None = None,
    val_split: float = 0.1,
    cv_folds: int = 5,
    seed: int = 0,
    params: dict | None = None,
    promote: bool = False,
    force: bool = False,
    progress: bool = False,
    finetune: bool = False,
    time_budget_s: float = 600.0,
    finetune_epochs: int = 3,
) -> TrainResult:
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
    """
    t0 = time.perf_counter()
    home = Path(home)
    if oos_label is not None and oos_label not in set(data.labels):
        raise InvalidInputError(f"{data.path}: --oos-label {oos_label!r} is not a label in the file", field="oos_label")
    if finetune:
        cv_folds = 0
    if cv_folds:
        fold = kfold(data.labels, cv_folds, seed)
        tr = va = np.arange(len(data.texts))  # fit on all; every row validated out of fold
    else:
        tr, va = split(data.labels, val_split, seed)
    base = embedder
    encoder_info = None
    ft_dir = None
    if finetune:
        from deflect.models.embedder import OnnxEmbedder
        from deflect.models.finetune import finetune_encoder

        if not hasattr(embedder, "model_dir"):
            raise InvalidInputError("--finetune needs a sentence-transformers model (not the test fake)")
        home.mkdir(parents=True, exist_ok=True)
        ft_dir = Path(tempfile.mkdtemp(dir=home, prefix=".finetune-"))
        try:
            rep = finetune_encoder(
                embedder.model_dir,
                [data.texts[i] for i in tr],
                [data.labels[i] for i in tr],
                ft_dir / "encoder",
                budget_s=time_budget_s,
                epochs=finetune_epochs,
                seed=seed,
                progress=progress,
            )
            embedder = OnnxEmbedder(
                ft_dir / "encoder",
                home / "onnx",
                quantize=getattr(base, "quantize", "int8"),
                threads=1,
                parallel=max(1, getattr(base, "parallel", 1)),
            )
        except BaseException:
            shutil.rmtree(ft_dir, ignore_errors=True)
            raise
        encoder_info = {
            "finetuned": True,
            "fingerprint": embedder.fingerprint,
            "steps": rep.steps,
            "epochs": round(rep.epochs_done, 2),
            "seconds": round(rep.seconds, 1),
            "stopped_by_budget": rep.stopped_by_budget,
            "time_budget_s": time_budget_s,
        }
    merged = {**DEFAULT_PARAMS, **(params or {})}
    head_epochs = int(merged["head_epochs"])
    fixed_head = merged["head_weight"]
    use_head = (
        head_epochs > 0
        and not finetune
        and getattr(embedder, "trunk_layer", None) is not None
        and hasattr(embedder, "model_dir")
    )
    head_info = None
    if use_head:
        # the head is trained once, on all but val_split of each intent (also under
        # cross-validation: one fine-tune per fold would cost five); its weight, its
        # temperature and then the validation figures come from the rows it did not see
        htr, hva = split(data.labels, val_split, seed) if cv_folds else (tr, va)
        if len(hva) < int(merged["head_min_validation"]):
            use_head = False
            head_info = {
                "skipped": f"{len(hva)} held-out texts to weigh it on, fewer than {merged['head_min_validation']}"
            }
    if use_head:
        emb, mx, states = embedder.encode_views(data.texts, batch_size=ENCODE_BATCH, trunk=True)
    else:
        emb, mx = embedder.encode_views(data.texts, batch_size=ENCODE_BATCH)
    texts = np.array(data.texts, dtype=object)
    labels = np.array(data.labels, dtype=object)
    classes = np.array(sorted(set(data.labels)))

    # decision values and kNN similarities of each validation row from a model that did not see it
    fixed = (params or {}).get("nn_weight")
    nn_weights = NN_WEIGHTS if fixed is None else (float(fixed),)
    y_val = np.searchsorted(classes, labels[va].astype(str))
    if cv_folds:
        svm, sim, knn_all = _out_of_fold(data.texts, data.labels, (emb, mx), fold, classes, params, seed, oos_label)
        final = IntentClassifier(embedder, params, seed=seed).fit(data.texts, data.labels, views=(emb, mx))
        method = (
            f"{cv_folds}-fold cross-validation: out-of-fold predictions of models fit on the other folds; "
            "the served model is fit on all the rows"
        )
    else:
        final = IntentClassifier(embedder, params, seed=seed).fit(
            list(texts[tr]), list(labels[tr]), views=(emb[tr], mx[tr])
        )
        svm = final.svm_decision(list(texts[va]), views=(emb[va], mx[va]))
        sim = final.class_similarity(emb[va])
        knn_all = final.class_knn(emb[va])
        method = f"a held-out split ({val_split:g} of each intent); the served model is fit on the rest"
    nn_weight = choose_nn_weight(svm, sim, y_val, nn_weights)
    final.params["nn_weight"] = nn_weight
    dec = svm + nn_weight * sim
    final.temperature = fit_temperature(dec, y_val)
    final.oos_label = oos_label
    rows = np.arange(len(va))  # the validation rows (positions in dec) the figures come from
    logp = combine(dec / final.temperature, None, 0.0)
    head_dir = None
    if use_head:
        pos = hva if cv_folds else np.arange(len(va))  # the head's validation rows, as positions in dec
        y_all = np.searchsorted(classes, labels.astype(str))
        home.mkdir(parents=True, exist_ok=True)
        head_dir = Path(tempfile.mkdtemp(dir=home, prefix=".head-"))
        try:
            head, rep = train_head(
                embedder.model_dir,
                embedder.trunk_layer,
                [states[i] for i in htr],
                y_all[htr],
                len(classes),
                head_dir,
                epochs=head_epochs,
                seed=seed,
                quantize=getattr(embedder, "quantize", "int8"),
            )
            hl = head.logits(head.embed([states[i] for i in hva]))
        except Exception as exc:  # noqa: BLE001 - e.g. an encoder whose layers cannot be copied
            log.warning("the fine-tuned head could not be trained (%s); training without it", exc)
            shutil.rmtree(head_dir, ignore_errors=True)
            head_dir, use_head = None, False
            head_info = {"skipped": f"it could not be trained: {exc}"}
        except BaseException:
            shutil.rmtree(head_dir, ignore_errors=True)
            if ft_dir is not None:
                shutil.rmtree(ft_dir, ignore_errors=True)
            raise
    if use_head:
        t2 = fit_temperature(hl, y_all[hva])
        weight = choose_head_weight(
            dec[pos] / final.temperature,
            hl / t2,
            y_all[hva],
            HEAD_WEIGHTS if fixed_head is None else (float(fixed_head),),
        )
        head_info = {
            "weight": weight,
            "temperature": t2,
            "trunk_layer": embedder.trunk_layer,
            "epochs": rep.epochs,
            "seconds": round(rep.seconds, 1),
            "trained_rows": len(htr),
            "validation_rows": len(hva),
        }
        if weight > 0:
            final.head, final.head_weight, final.head_temperature = head, weight, t2
            rows = pos
            logp = combine(dec[pos] / final.temperature, hl / t2, weight)
            method += (
                f"; combined with a fine-tuned head (weight {weight:g}) trained on all but {val_split:g} of "
                "each intent, so the figures and the out-of-scope threshold come from those held-out rows"
            )
    proba = np.exp(logp)
    pred_idx = final.in_scope_argmax(proba)
    scores = final.oos_scores(proba, None, knn=knn_all[rows, pred_idx])
    val_texts, val_labels = list(texts[va][rows]), list(labels[va][rows])
    pred = classes[np.argmax(proba, axis=1)]
    is_oos = np.array([lab == oos_label for lab in val_labels])
    correct = (pred == np.array(val_labels)) & ~is_oos
    final.oos_threshold = choose_oos_threshold(
        scores[~is_oos],
        correct[~is_oos],
        oos_scores=scores[is_oos] if is_oos.any() else None,
        oos_caught=(pred[is_oos] == oos_label) if is_oos.any() else None,
    )
    val_preds = [
        IntentPrediction(
            str(pred[i]),
            float(proba[i].max()),
            float(scores[i]),
            bool(scores[i] < final.oos_threshold or pred[i] == oos_label),
        )
        for i in range(len(rows))
    ]
    metrics = prediction_metrics(val_preds, val_labels, oos_label)
    metrics["method"] = method
    metrics["cv_folds"] = cv_folds
    seconds = time.perf_counter() - t0
    links = learned_links(data.labels, data.article_ids)

    def fill(tmp: Path) -> dict:
        if ft_dir is not None:
            shutil.copytree(ft_dir / "encoder", tmp / "encoder")
        final.save(tmp / "classifier")
        (tmp / "links.json").write_text(json.dumps(links, indent=2))
        # what the served model was fit on, so a later --promote compares on texts it never saw
        (tmp / "trained_on.json").write_text(json.dumps({"text_sha256_16": [text_hash(t) for t in texts[tr]]}))
        if not cv_folds:
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
                "label": oos_label,
                "weight": final.params["oos_weight"],
            },
            "temperature": final.temperature,
            "validation": {k: v for k, v in metrics.items() if k != "per_intent"},
            "per_intent": metrics["per_intent"],
            "data": {
                "path": data.path,
                "fingerprint": data.fingerprint,
                "rows": len(data.texts),
                "val_split": None if cv_folds else val_split,
                "cv_folds": cv_folds,
                "seed": seed,
            },
            "embedder": {"name": base.name, "dimension": base.dimension, "fingerprint": base.fingerprint},
            "encoder": encoder_info,
            "head": head_info,
            "params": final.params,
            "training_seconds": round(seconds, 2),
            "links_learned": bool(links),
        }

    try:
        version = B.write_bundle(home, "model", fill, make_current=False)
    finally:
        for tmp_dir in (ft_dir, head_dir):
            if tmp_dir is not None:
                shutil.rmtree(tmp_dir, ignore_errors=True)
    promoted, note = False, "not promoted (use --promote)"
    if promote:
        promoted, note = _promote_if_not_worse(
            home, version, base, data, val_texts, val_labels, val_preds, metrics, oos_label, seed=seed, force=force
        )
    manifest = B.read_manifest(B.bundle_path(home, "model", version))
    return TrainResult(version, metrics, promoted, note, seconds, manifest)


def _out_of_fold(
    texts: list[str],
    labels: list[str],
    views: tuple[np.ndarray, np.ndarray],
    fold: np.ndarray,
    classes: np.ndarray,
    params: dict | None,
    seed: int,
    oos_label: str | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row, from a classifier fit on the other folds: the SVM's decision values, the
    nearest-neighbour class similarities and the kNN similarities to every class (columns in
    ``classes`` order). Folds are fit side by side, one per core."""
    emb, mx = views
    svm = np.zeros((len(texts), len(classes)))
    sim = np.zeros((len(texts), len(classes)))
    knn = np.zeros((len(texts), len(classes)), dtype=np.float32)

    def one(f: int) -> None:
        fit, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        if len(held) == 0:
            return
        clf = IntentClassifier(None, params, seed=seed).fit(
            [texts[i] for i in fit], [labels[i] for i in fit], views=(emb[fit], mx[fit])
        )
        clf.oos_label = oos_label
        d = clf.svm_decision([texts[i] for i in held], views=(emb[held], mx[held]))
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


def _seen_by(home: Path, version: str) -> tuple[set[str], str]:
    """What a model bundle knows about its training texts: ``(hashes, "trained_on")`` for the
    texts it was fit on, or, for bundles older than ``trained_on.json``, ``(texts, "unseen")``
    for its held-out validation texts (the only texts known to be unseen by it)."""
    path = B.bundle_path(home, "model", version)
    try:
        return set(json.loads((path / "trained_on.json").read_text())["text_sha256_16"]), "trained_on"
    except (OSError, ValueError, KeyError):
        pass
    try:
        return set(json.loads((path / "validation.json").read_text())["texts"]), "unseen"
    except (OSError, ValueError, KeyError):
        return set(), "unseen"


def _promote_if_not_worse(
    home: Path,
    version: str,
    embedder,
    data: LabeledTexts,
    val_texts: list[str],
    val_labels: list[str],
    val_preds: list[IntentPrediction],
    metrics: dict,
    oos_label: str | None,
    *,
    seed: int,
    force: bool,
) -> tuple[bool, str]:
    """The not-worse rule on texts that neither model was fit on.

    The new model's figures are its validation predictions (out of fold, or on the held-out
    split); the current model is scored on the subset of those texts it did not see. When it
    saw them all (a retrain on the same data), the two cross-validated macro-F1s are compared
    if both come from the same folds of the same data; otherwise it is not promoted.
    """
    current = B.read_pointer(home, "model")
    if current is None or force:
        return maybe_promote(home, version, embedder, [], [], None, metrics["macro_f1"], oos_label, force=force)
    known, kind = _seen_by(home, current)
    if kind == "trained_on":
        keep = [i for i, t in enumerate(val_texts) if text_hash(t) not in known]
    else:
        keep = [i for i, t in enumerate(val_texts) if t in known]
    if keep:
        labels = [val_labels[i] for i in keep]
        new_f1 = prediction_metrics([val_preds[i] for i in keep], labels, oos_label)["macro_f1"]
        return maybe_promote(
            home, version, embedder, [val_texts[i] for i in keep], labels, None, new_f1, oos_label, force=False
        )
    try:
        cur = B.read_manifest(B.bundle_path(home, "model", current))
    except BundleError as exc:
        promote_version(home, version)
        return True, f"promoted (current model {current} unusable: {exc})"
    same_folds = (
        metrics["cv_folds"]
        and (cur.get("validation") or {}).get("cv_folds") == metrics["cv_folds"]
        and (cur.get("data") or {}).get("fingerprint") == data.fingerprint
        and (cur.get("data") or {}).get("seed") == seed
    )
    if not same_folds:
        return False, (
            f"not promoted: the current model {current} was fit on every validation text, so there is nothing "
            "to compare them on (use --force to promote anyway)"
        )
    new_f1, cur_f1 = metrics["macro_f1"], float(cur["validation"]["macro_f1"])
    return _not_worse(home, version, current, new_f1, cur_f1, "cross-validated macro-F1", "on the same folds")


def _not_worse(
    home: Path, version: str, current: str, new_f1: float, cur_f1: float, metric: str, basis: str
) -> tuple[bool, str]:
    """Promote ``version`` if ``new_f1`` is not below ``cur_f1``; the note says how they compare."""
    if new_f1 + 1e-9 >= cur_f1:
        promote_version(home, version)
        return True, f"promoted: {metric} {new_f1:.4f} >= current {current} {cur_f1:.4f} {basis}"
    return False, (
        f"not promoted: {metric} {new_f1:.4f} < current {current} {cur_f1:.4f} {basis} (use --force to promote anyway)"
    )


def load_model(home: Path, version: str, embedder) -> tuple[IntentClassifier, dict, dict]:
    """A model bundle's classifier, manifest and learned links; refuses another embedder's.

    A fine-tuned model's classifier gets its own encoder (the bundle's ``encoder/``, exported
    to ONNX under ``home/onnx``); ``classifier.embedder`` is then not the serving embedder.
    """
    path = B.bundle_path(home, "model", version)
    manifest = B.read_manifest(path)
    B.check_embedder(manifest, embedder, path)
    own = embedder
    if (manifest.get("encoder") or {}).get("finetuned"):
        from deflect.models.embedder import OnnxEmbedder

        own = OnnxEmbedder(path / "encoder", Path(home) / "onnx", quantize=getattr(embedder, "quantize", "int8"))
        if own.fingerprint != manifest["encoder"]["fingerprint"]:
            raise BundleError(f"{path}/encoder does not match the fingerprint in its manifest")
    clf = IntentClassifier.load(path / "classifier", own)
    try:
        links = json.loads((path / "links.json").read_text())
    except (OSError, ValueError):
        links = {}
    return clf, manifest, links


def maybe_promote(
    home: Path,
    version: str,
    embedder,
    val_texts,
    val_labels,
    views,
    new_f1: float,
    oos_label: str | None,
    *,
    force: bool,
) -> tuple[bool, str]:
    """Make ``version`` current if its validation macro-F1 is not worse than the current
    model's on the same validation data (or ``force``)."""
    current = B.read_pointer(home, "model")
    if current is None or force:
        promote_version(home, version)
        return True, "promoted (forced)" if force and current else "promoted (no current model)"
    try:
        cur, _, _ = load_model(home, current, embedder)
        # the current model encodes the texts itself: it may have its own (fine-tuned) encoder
        cur_f1 = evaluate(cur, val_texts, val_labels, None, oos_label)["macro_f1"]
    except BundleError as exc:
        promote_version(home, version)
        return True, f"promoted (current model {current} unusable: {exc})"
    return _not_worse(home, version, current, new_f1, cur_f1, "macro-F1", "on the same validation data")


def _history(home: Path) -> list[str]:
    try:
        return [v for v in (Path(home) / HISTORY).read_text().split() if v]
    except FileNotFoundError:
        return []


def _write_history(home: Path, versions: list[str]) -> None:
    tmp = Path(home) / f".{HISTORY}.tmp"
    tmp.write_text("\n".join(versions) + "\n")
    tmp.replace(Path(home) / HISTORY)


def promote_version(home: Path, version: str) -> None:
    """Make ``version`` the current model (atomic), remembering the order for rollback."""
    B.write_pointer(home, "model", version)
    _write_history(home, [v for v in _history(home) if v != version] + [version])


def rollback(home: Path) -> str:
    """Go back to the model that was current before this one. Returns its version."""
    current = B.read_pointer(home, "model")
    if current is None:
        raise NotReadyError(f"no current model in {home}")
    hist = [v for v in _history(home) if (B.bundle_path(home, "model", v) / "manifest.json").exists()]
    if current in hist:
        hist = hist[: hist.index(current)]
    if not hist:
        raise NotReadyError(f"nothing to roll back to: {current} is the first model promoted in {home}")
    previous = hist[-1]
    B.write_pointer(home, "model", previous)
    _write_history(home, hist)
    return previous
