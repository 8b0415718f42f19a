"""The intent classifier's fine-tuned head (models/intent_head.py), with the real encoder:
its trunk output, training and ONNX export, persistence, training through ``train`` and
serving through the engine."""

import json
import logging

import numpy as np
import pytest

from deflect.config import Settings
from deflect.core.errors import BundleError
from deflect.engine import Engine
from deflect.models.encoding import QueryEncoding
from deflect.models.intent import IntentClassifier
from deflect.models.intent_head import OnnxHead, choose_head_weight, combine, train_head
from deflect.models.labeled import LabeledTexts, load_labeled_texts
from deflect.models.registry import load_model
from deflect.models.training import TrainOptions, train
from tests.conftest import DEMO_KB

INTENTS = {
    "password": [
        "reset my password please",
        "forgot my password and cannot log in",
        "the password reset link does not work",
        "how do I change my login password",
        "locked out after too many password attempts",
        "password reset email never arrived",
    ],
    "refund": [
        "I want a refund for my last payment",
        "please give me my money back",
        "how long does a refund take",
        "refund the duplicate charge",
        "can I get a refund for the annual plan",
        "I was charged twice, refund one of them",
    ],
    "calendar": [
        "google calendar sync is broken",
        "my events do not show up in outlook",
        "calendar stopped syncing yesterday",
        "connect my calendar to the app",
        "meetings appear at the wrong time in my calendar",
        "how do I sync with apple calendar",
    ],
    "export": [
        "export all my data to csv",
        "download a report of last month",
        "how do I export invoices as pdf",
        "bulk export of contacts",
        "can I schedule a weekly export",
        "the export file is empty",
    ],
}
TEXTS = [t for ts in INTENTS.values() for t in ts]
LABELS = [lab for lab, ts in INTENTS.items() for _ in ts]
Y = np.searchsorted(sorted(INTENTS), LABELS)
QUERIES = ["i forgot the password for my account", "money back for the subscription", "outlook calendar is empty"]


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_combine_is_a_normalised_weighted_geometric_mean():
    lin = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    head = np.array([[0.0, 3.0, 0.0], [1.0, -1.0, 0.5]])
    np.testing.assert_allclose(combine(lin, None, 0.5), _log_softmax(lin))
    np.testing.assert_allclose(combine(lin, head, 0.0), _log_softmax(lin))
    np.testing.assert_allclose(combine(lin, head, 1.0), _log_softmax(head))
    mixed = combine(lin, head, 0.3)
    np.testing.assert_allclose(np.exp(mixed).sum(axis=1), 1.0)
    np.testing.assert_allclose(mixed, _log_softmax(0.7 * _log_softmax(lin) + 0.3 * _log_softmax(head)))


def test_head_weight_is_zero_for_a_useless_head_and_positive_for_a_useful_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 2000)

    def noisy():  # right about 70% of the time, errors independent of the other model's
        z = rng.normal(0, 1, (len(y), 5))
        z[np.arange(len(y)), y] += 1.5
        return z

    lin = noisy()
    assert choose_head_weight(lin, rng.normal(0, 3, (len(y), 5)), y) == 0.0
    assert choose_head_weight(lin, noisy(), y) > 0.0


def test_trunk_output_is_per_text_and_batching_one_at_a_time_matches_serving(real_embedder):
    texts = ["hello there", "a much longer sentence about the card that never arrived"]
    v = real_embedder.encode_views(texts, batch_size=1, trunk=True)
    emb, mx, states = v.embedding, v.max_pooled, v.trunk
    assert emb.shape == mx.shape == (2, real_embedder.dimension)
    n_tokens = [len(real_embedder.token_spans(t)) + 2 for t in texts]  # plus [CLS] and [SEP]
    assert [s.shape for s in states] == [(n, real_embedder.dimension) for n in n_tokens]
    one = real_embedder.encode_views(texts[1:], trunk=True)  # the serving path
    e1, s1 = one.embedding, one.trunk
    np.testing.assert_allclose(s1[0], states[1], atol=1e-5)
    np.testing.assert_allclose(e1[0], emb[1], atol=1e-6)


@pytest.fixture(scope="module")
def trained_head(real_embedder, tmp_path_factory):
    states = real_embedder.encode_views(TEXTS, batch_size=1, trunk=True).trunk
    out = tmp_path_factory.mktemp("head")
    head, rep = train_head(
        real_embedder.model_dir, real_embedder.trunk_layer, states, Y, len(INTENTS), out, epochs=8, seed=0
    )
    return head, rep, states, out


def test_head_learns_the_training_intents_and_its_onnx_export_reloads(trained_head):
    head, rep, states, out = trained_head
    assert rep.epochs == 8 and rep.seconds > 0
    logits = head.logits(head.embed(states))
    assert np.mean(logits.argmax(axis=1) == Y) >= 0.95
    again = OnnxHead(out)
    np.testing.assert_allclose(again.embed(states), head.embed(states), atol=1e-6)
    assert again.trunk_layer == head.trunk_layer and again.weights.shape == (len(INTENTS), 384)


def test_classifier_with_a_head_round_trips_and_the_head_counts(trained_head, real_embedder, tmp_path, caplog):
    head = trained_head[0]
    clf = IntentClassifier(real_embedder, {"nn_weight": 0.0}).fit(TEXTS, LABELS)
    linear = clf.predict_proba(QUERIES)
    clf.head, clf.head_weight, clf.head_temperature = head, 0.5, 1.0
    combined = clf.predict_proba(QUERIES)
    assert not np.allclose(combined, linear, atol=1e-3)  # the head is part of the answer
    np.testing.assert_allclose(combined.sum(axis=1), 1.0, rtol=1e-6)
    clf.save(tmp_path / "clf")
    assert (tmp_path / "clf" / "head" / "head.onnx").exists()
    loaded = IntentClassifier.load(tmp_path / "clf", real_embedder)
    assert loaded.uses_head and loaded.head_weight == 0.5
    np.testing.assert_allclose(loaded.predict_proba(QUERIES), combined, atol=1e-5)
    # one text at a time through precomputed views (the serving path) gives the same answer
    v = real_embedder.encode_views(QUERIES[:1], trunk=True)
    enc = QueryEncoding.from_views(v, head_input=loaded.head.embed(v.trunk))
    one = loaded.predict_intents(QUERIES[:1], encoding=enc)[0]
    assert one.label == loaded.classes_[combined[0].argmax()]
    assert one.confidence == pytest.approx(combined[0].max(), abs=1e-5)
    # an embedder without the trunk output: the linear model alone, with a warning, no failure
    blind = IntentClassifier.load(tmp_path / "clf", None)
    with caplog.at_level(logging.WARNING, logger="deflect.intent"):
        plain = QueryEncoding.from_views(real_embedder.encode_views(QUERIES, batch_size=1))
        alone = blind.predict_proba(QUERIES, encoding=plain)
    np.testing.assert_allclose(alone, linear, atol=1e-5)
    assert "trunk output" in caplog.text


def test_a_corrupt_head_is_refused(trained_head, real_embedder, tmp_path):
    clf = IntentClassifier(real_embedder).fit(TEXTS, LABELS)
    clf.head, clf.head_weight = trained_head[0], 0.3
    clf.save(tmp_path / "clf")
    (tmp_path / "clf" / "head" / "head.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(BundleError, match="intent head"):
        IntentClassifier.load(tmp_path / "clf", real_embedder)


def test_train_with_a_head_and_the_engine_serves_it(real_embedder, real_home):
    data = load_labeled_texts(DEMO_KB.parent / "intents.csv")
    res = train(
        data,
        real_home,
        real_embedder,
        TrainOptions(
            oos_label="out_of_scope",
            params={"head_epochs": 2, "head_weight": 0.3, "head_min_validation": 0},
            promote=True,
        ),
    )
    head = res.manifest["head"]
    assert head["weight"] == 0.3 and head["epochs"] == 2 and head["trunk_layer"] == real_embedder.trunk_layer
    assert head["trained_rows"] + head["validation_rows"] == len(data.texts)
    assert res.metrics["n"] == head["validation_rows"]  # figures from rows the head never saw
    assert "fine-tuned head" in res.metrics["method"]
    assert not list(real_home.glob(".head-*"))  # the scratch export is gone
    clf = load_model(real_home, res.version, real_embedder).classifier
    assert clf.uses_head
    engine = Engine(Settings(home=real_home), real_embedder)
    text = "i never got the email to reset my password"
    encoding = engine.encode_query(text)
    # the head's input from the same forward pass, made for this model
    assert encoding.head_input is not None and len(encoding.head_input) == 1
    assert encoding.model_version == res.version
    pred, model = engine.classify(text, encoding)
    direct = clf.predict_intents([text])[0]
    assert model.version == res.version and pred.label == direct.label
    assert pred.confidence == pytest.approx(direct.confidence, abs=1e-5)
    manifest = json.loads((real_home / "models" / res.version / "manifest.json").read_text())
    assert manifest["params"]["head_epochs"] == 2


def test_without_head_epochs_or_enough_validation_texts_there_is_no_head(real_embedder, real_home):
    data = LabeledTexts(TEXTS, LABELS, [""] * len(TEXTS), "tiny", "tiny")
    res = train(data, real_home, real_embedder, TrainOptions(params={"head_epochs": 0}))
    assert res.manifest["head"] is None
    assert not (real_home / "models" / res.version / "classifier" / "head").exists()
    res = train(data, real_home, real_embedder)  # 4 held-out texts: too few to weigh a head on
    assert "fewer than 200" in res.manifest["head"]["skipped"]
    assert res.metrics["n"] == len(TEXTS)  # figures out of fold, on every text
    assert not (real_home / "models" / res.version / "classifier" / "head").exists()


def test_a_head_that_cannot_be_trained_leaves_a_model_without_it(real_embedder, real_home, monkeypatch):
    import deflect.models.training as T

    def broken(*args, **kwargs):
        raise RuntimeError("this encoder's layers cannot be copied")

    monkeypatch.setattr(T, "train_head", broken)
    data = LabeledTexts(TEXTS, LABELS, [""] * len(TEXTS), "tiny", "tiny")
    res = train(data, real_home, real_embedder, TrainOptions(params={"head_min_validation": 0}, promote=True))
    assert "cannot be copied" in res.manifest["head"]["skipped"]
    assert res.promoted and res.metrics["n"] == len(TEXTS)  # out of fold, on every text
    assert not list(real_home.glob(".head-*"))
    clf = load_model(real_home, res.version, real_embedder).classifier
    assert not clf.uses_head and clf.predict(QUERIES[:1])[0] == "password"
