"""The model registry: loading a model bundle, promoting it (the not-worse rule), the
promotion history and rollback (``deflect train --promote``, ``deflect models``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deflect.core.datahome import DataHome
from deflect.core.errors import BundleError
from deflect.models import bundle as B
from deflect.models.classification_metrics import prediction_metrics
from deflect.models.embedders.protocol import Embedder
from deflect.models.encoding import QueryEncoding, encode_queries
from deflect.models.intent import IntentClassifier, IntentPrediction
from deflect.models.labeled import LabeledTexts, text_hash


@dataclass
class LoadedModel:
    """An intent model in memory: its version, classifier, manifest and intent -> article links.

    ``serving`` is the serving encoder it was loaded for (the manifest's embedder)."""

    version: str
    classifier: IntentClassifier
    manifest: dict
    links: dict[str, list[str]]
    serving: Embedder

    def encode(self, texts: Sequence[str]) -> QueryEncoding:
        """The texts' encoding for this model, as the server makes it (:func:`encode_queries`)."""
        return encode_queries(self.serving, texts, self)

    def predict(self, texts: Sequence[str], encoding: QueryEncoding | None = None) -> list[IntentPrediction]:
        """Intent predictions for ``texts``. An ``encoding`` made for another model version
        (a model swapped in between encoding and classifying) is made again for this one."""
        if encoding is None or encoding.model_version != self.version:
            encoding = self.encode(texts)
        return self.classifier.predict_intents(texts, encoding=encoding)


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


def promote_if_not_worse(
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
        return maybe_promote(home, version, embedder, [], [], metrics["macro_f1"], oos_label, force=force)
    known, kind = _seen_by(home, current)
    if kind == "trained_on":
        keep = [i for i, t in enumerate(val_texts) if text_hash(t) not in known]
    else:
        keep = [i for i, t in enumerate(val_texts) if t in known]
    if keep:
        labels = [val_labels[i] for i in keep]
        new_f1 = prediction_metrics([val_preds[i] for i in keep], labels, oos_label)["macro_f1"]
        return maybe_promote(
            home, version, embedder, [val_texts[i] for i in keep], labels, new_f1, oos_label, force=False
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


def load_model(home: Path, version: str, embedder: Embedder) -> LoadedModel:
    """A model bundle in memory: classifier, manifest and learned links. Refuses a bundle
    built with another embedder (:class:`BundleError`).

    A fine-tuned model's classifier gets its own encoder (the bundle's ``encoder/``, exported
    to ONNX in the data home's cache); ``classifier.embedder`` is then not the serving embedder.
    """
    path = B.bundle_path(home, "model", version)
    manifest = B.verified_manifest(path)
    B.check_embedder(manifest, embedder, path)
    own = embedder
    if (manifest.get("encoder") or {}).get("finetuned"):
        from deflect.models.embedders import OnnxEmbedder

        own = OnnxEmbedder(path / "encoder", DataHome(home).onnx_cache, quantize=embedder.quantize)
        if own.fingerprint != manifest["encoder"]["fingerprint"]:
            raise BundleError(f"{path}/encoder does not match the fingerprint in its manifest")
    clf = IntentClassifier.load(path / "classifier", own)
    try:
        links = json.loads((path / "links.json").read_text())
    except (OSError, ValueError):
        links = {}
    return LoadedModel(version, clf, manifest, links, embedder)


def maybe_promote(
    home: Path,
    version: str,
    embedder,
    val_texts: list[str],
    val_labels: list[str],
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
        cur = load_model(home, current, embedder)
        # the current model encodes the texts itself: it may have its own (fine-tuned) encoder
        cur_f1 = prediction_metrics(cur.predict(val_texts), val_labels, oos_label)["macro_f1"]
    except BundleError as exc:
        promote_version(home, version)
        return True, f"promoted (current model {current} unusable: {exc})"
    return _not_worse(home, version, current, new_f1, cur_f1, "macro-F1", "on the same validation data")


def promote_version(home: Path, version: str) -> None:
    """Make ``version`` the current model (atomic), remembering the order for rollback."""
    B.set_current(home, "model", version)


def rollback(home: Path) -> str:
    """Go back to the model that was current before this one. Returns its version."""
    return B.roll_back(home, "model")
