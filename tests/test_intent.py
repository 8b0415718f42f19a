import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from deflect.api.main import create_app
from deflect.config import Settings
from deflect.core.errors import BundleError, InvalidInputError, NotReadyError
from deflect.engine import Engine, SuggestQuery
from deflect.kb_ingest.pipeline import ingest
from deflect.models import bundle as B
from deflect.models.embedders import KeywordEmbedder
from deflect.models.intent import IntentClassifier, choose_oos_threshold
from deflect.models.labeled import kfold, load_labeled_texts
from deflect.models.registry import load_model, maybe_promote, promote_version, rollback
from deflect.models.training import TrainOptions, train
from tests.conftest import Hammer, write, write_kb

INTENTS = {
    "password": ["reset my password please", "forgot password cant login", "password reset link", "login password"],
    "refund": ["I want a refund for the card payment", "refund my payment", "card refund please", "refund billing"],
    "calendar": ["google calendar sync broken", "calendar not syncing with google", "sync my calendar", "google sync"],
    "webhook": ["webhook api key", "api key for webhook", "create an api key", "webhook export api"],
}
OOS = ["what is the weather like", "do you sell pizza", "tell me a joke", "who won the football game"]


def rows(extra_oos=True):
    out = []
    for label, texts in INTENTS.items():
        for t in texts:
            out.append((t, label, {"password": "pw", "refund": "refund", "calendar": "gcal", "webhook": ""}[label]))
    if extra_oos:
        out += [(t, "out_of_scope", "") for t in OOS]
    return out


def write_csv(path, data, header="text,label,article_id"):
    lines = [header] + [f'"{t}",{lab},{a}' for t, lab, a in data]
    return write(path, "\n".join(lines) + "\n")


def test_classifier_has_the_sklearn_shape(fake_embedder):
    texts = [t for t, _, _ in rows(False)]
    labels = [lab for _, lab, _ in rows(False)]
    clf = IntentClassifier(fake_embedder, seed=0)
    assert clf.fit(texts, labels) is clf
    assert list(clf.classes_) == sorted(INTENTS)
    proba = clf.predict_proba(["my password is lost", "refund the card"])
    assert proba.shape == (2, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert list(clf.predict(["my password is lost", "refund the card", "google calendar"])) == [
        "password",
        "refund",
        "calendar",
    ]


def test_save_load_round_trip_without_pickle(tmp_path, fake_embedder):
    texts = [t for t, _, _ in rows()]
    labels = [lab for _, lab, _ in rows()]
    clf = IntentClassifier(fake_embedder, seed=0).fit(texts, labels)
    clf.temperature, clf.oos_threshold, clf.oos_label = 0.5, 0.3, "out_of_scope"
    clf.save(tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.pkl")) and not list((tmp_path / "m").glob("*.joblib"))
    back = IntentClassifier.load(tmp_path / "m", fake_embedder)
    probe = ["password reset", "weather today", "api key"]
    np.testing.assert_allclose(back.predict_proba(probe), clf.predict_proba(probe), rtol=1e-5)
    assert [p.__dict__ for p in back.predict_intents(probe)] == [p.__dict__ for p in clf.predict_intents(probe)]


def test_oos_threshold_rules():
    scores = np.array([0.9, 0.8, 0.3, 0.2])
    correct = np.array([True, True, False, False])
    # rejecting the two wrong ones costs nothing: the threshold goes up to the lowest correct score
    assert choose_oos_threshold(scores, correct) == pytest.approx(0.8)
    t = choose_oos_threshold(scores, correct, oos_scores=np.array([0.1, 0.25]))
    assert 0.25 < t <= 0.8


def test_train_writes_a_versioned_bundle(tmp_path, home, fake_embedder):
    data = load_labeled_texts(write_csv(tmp_path / "d.csv", rows()))
    res = train(data, home, fake_embedder, TrainOptions(oos_label="out_of_scope", val_split=0.25, seed=0, promote=True))
    m = res.manifest
    assert res.promoted and B.read_pointer(home, "model") == res.version
    assert set(m["labels"]) == {*INTENTS, "out_of_scope"}
    assert m["data"]["fingerprint"] == data.fingerprint and m["embedder"]["fingerprint"] == fake_embedder.fingerprint
    assert m["oos"]["threshold"] is not None and "macro_f1" in m["validation"] and "ece" in m["validation"]
    assert "oos_recall" in m["validation"] and "training_seconds" in m and "created_at" in m
    links = load_model(home, res.version, fake_embedder).links
    assert links["password"] == ["pw"] and links["refund"] == ["refund"]


def test_several_files_form_one_training_set(tmp_path):
    from deflect.models.labeled import load_labeled_files

    data = rows()
    a = write_csv(tmp_path / "en.csv", data[: len(data) // 2] + data[-4:])
    b = write_csv(tmp_path / "id.csv", data[len(data) // 2 :])
    both = load_labeled_files([a, b])
    assert both.texts == load_labeled_texts(a).texts + load_labeled_texts(b).texts
    assert str(a) in both.path and str(b) in both.path
    assert both.fingerprint != load_labeled_texts(a).fingerprint
    assert load_labeled_files([a]).fingerprint == load_labeled_texts(a).fingerprint
    with pytest.raises(InvalidInputError, match="no training file"):
        load_labeled_files([])


def test_model_from_another_embedder_is_refused(tmp_path, home, fake_embedder):
    data = load_labeled_texts(write_csv(tmp_path / "d.csv", rows()))
    res = train(data, home, fake_embedder, TrainOptions(val_split=0.25))
    with pytest.raises(BundleError, match="built with embedder"):
        load_model(home, res.version, KeywordEmbedder(["other"], name="other-model"))


def test_promote_not_worse_rule_force_and_rollback(tmp_path, home, fake_embedder):
    good = load_labeled_texts(write_csv(tmp_path / "good.csv", rows()))
    v1 = train(good, home, fake_embedder, TrainOptions(val_split=0.25, seed=1, promote=True)).version
    r2 = train(good, home, fake_embedder, TrainOptions(val_split=0.25, seed=1))  # written, not promoted
    assert not r2.promoted and B.read_pointer(home, "model") == v1
    val = [t for t, _, _ in rows()]
    labels = [lab for _, lab, _ in rows()]
    # a candidate whose macro-F1 is below the current model's on the same data is refused...
    ok, note = maybe_promote(home, r2.version, fake_embedder, val, labels, 0.5, None, force=False)
    assert not ok and "not promoted: macro-F1 0.5000 <" in note and B.read_pointer(home, "model") == v1
    # ...an equal one is accepted
    ok, note = maybe_promote(home, r2.version, fake_embedder, val, labels, 1.0, None, force=False)
    assert ok and B.read_pointer(home, "model") == r2.version
    promote_version(home, v1)
    r3 = train(good, home, fake_embedder, TrainOptions(val_split=0.25, seed=1, promote=True, force=True))
    assert r3.promoted and B.read_pointer(home, "model") == r3.version
    assert rollback(home) == v1 and B.read_pointer(home, "model") == v1
    assert rollback(home) == r2.version  # history: r2, then v1 (promoted again), then r3
    with pytest.raises(NotReadyError, match="nothing to roll back"):
        rollback(home)
    promote_version(home, r3.version)
    assert B.read_pointer(home, "model") == r3.version
    with pytest.raises(BundleError):
        promote_version(home, "20990101T000000Z-nope00")


def test_kfold_is_stratified_and_keeps_every_class_in_training():
    labels = ["a"] * 7 + ["b"] * 2 + ["c"] * 3
    fold = kfold(labels, 5, seed=0)
    assert fold.shape == (12,) and set(fold) <= set(range(5))
    for f in range(5):
        assert {lab for lab, g in zip(labels, fold, strict=True) if g != f} == {"a", "b", "c"}
    assert np.bincount(fold[:7], minlength=5).max() - np.bincount(fold[:7], minlength=5).min() <= 1
    np.testing.assert_array_equal(fold, kfold(labels, 5, seed=0))
    with pytest.raises(InvalidInputError, match="--cv-folds"):
        kfold(labels, 1, seed=0)


def test_cross_validated_model_is_fit_on_all_rows_and_promotes_honestly(tmp_path, home, fake_embedder):
    good = load_labeled_texts(write_csv(tmp_path / "good.csv", rows()))
    r1 = train(good, home, fake_embedder, TrainOptions(oos_label="out_of_scope", cv_folds=3, seed=1, promote=True))
    assert r1.promoted and r1.manifest["validation"]["cv_folds"] == 3 and r1.metrics["n"] == len(rows())
    trained_on = json.loads((B.bundle_path(home, "model", r1.version) / "trained_on.json").read_text())
    assert len(trained_on["text_sha256_16"]) == len(rows())  # the served model saw every row
    # same data, same folds: the current model saw every text, so the cross-validated figures are compared
    r2 = train(good, home, fake_embedder, TrainOptions(oos_label="out_of_scope", cv_folds=3, seed=1, promote=True))
    assert r2.promoted and "cross-validated macro-F1" in r2.promotion_note
    # other folds: nothing both figures are honest on, so no promotion without --force
    r3 = train(good, home, fake_embedder, TrainOptions(oos_label="out_of_scope", cv_folds=3, seed=2, promote=True))
    assert not r3.promoted and "nothing to compare" in r3.promotion_note
    # new texts: compared on the texts the current model never saw
    more = rows() + [("refund for my card payment please", "refund", "refund"), ("api key webhook", "webhook", "")]
    data = load_labeled_texts(write_csv(tmp_path / "more.csv", more))
    r4 = train(data, home, fake_embedder, TrainOptions(oos_label="out_of_scope", cv_folds=3, seed=1, promote=True))
    assert "macro-F1" in r4.promotion_note and "same folds" not in r4.promotion_note
    assert "nothing to compare" not in r4.promotion_note


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("txt,label\nhello,a\nbye,b\n", "missing column 'text'"),
        ("text,label\nhello,a\n,a\nbye,b\nbye bye,b\n", "d.csv:3: empty text"),
        ("text,label\nhello,a\nhi,\nbye,b\nbye bye,b\n", "d.csv:3: empty label"),
        ("text,label\nhello,a\nhi,a\nbye,b\n", "class 'b' has fewer than two examples"),
        ("text,label\nhello,a\nhi,a\n", "only one class"),
        (b"text,label\ncaf\xe9,a\n", "not UTF-8"),
        ("", "no rows"),
    ],
)
def test_bad_training_data_is_refused_and_changes_nothing(tmp_path, home, fake_embedder, content, message):
    good = load_labeled_texts(write_csv(tmp_path / "good.csv", rows()))
    v1 = train(good, home, fake_embedder, TrainOptions(val_split=0.25, promote=True)).version
    with pytest.raises(InvalidInputError, match=message):
        data = load_labeled_texts(write(tmp_path / "d.csv", content))
        train(data, home, fake_embedder, TrainOptions(promote=True))
    assert B.read_pointer(home, "model") == v1 and B.list_versions(home, "model") == [v1]


def test_unknown_oos_label_is_refused(tmp_path, home, fake_embedder):
    data = load_labeled_texts(write_csv(tmp_path / "d.csv", rows()))
    with pytest.raises(InvalidInputError, match="--oos-label 'nope'"):
        train(data, home, fake_embedder, TrainOptions(oos_label="nope"))


def _kb(tmp_path):
    return write_kb(
        tmp_path / "kb",
        {
            "pw": ("Reset your password", "Click reset password on the login page."),
            "refund": ("Refund policy", "We refund card payment within 14 days."),
            "gcal": ("Google calendar sync", "Connect google calendar to sync bookings."),
            "api": ("API keys", "Create an api key for the webhook."),
        },
    )


@pytest.fixture
def served(tmp_path, home, fake_embedder):
    ingest(_kb(tmp_path), home, fake_embedder)
    data = load_labeled_texts(write_csv(tmp_path / "d.csv", rows()))
    train(data, home, fake_embedder, TrainOptions(oos_label="out_of_scope", val_split=0.25, promote=True))
    s = Settings(home=home, min_score=0.05, reload_interval=0.0, never_deflect=["refund"], oos_override_score=1.5)
    return s, Engine(s, fake_embedder)


def test_api_returns_intent_and_model_version(served):
    s, engine = served
    with TestClient(create_app(s, engine=engine)) as c:
        body = c.post("/v1/suggest", json={"description": "forgot my password, login broken"}).json()
    assert body["intent"]["label"] == "password" and 0 < body["intent"]["confidence"] <= 1
    assert body["model_version"] == B.read_pointer(s.home, "model")
    assert not body["abstained"] and body["suggestions"][0]["article_id"] == "pw"


def test_abstains_for_never_deflect_and_out_of_scope(served):
    _, engine = served
    r = engine.suggest(SuggestQuery(description="refund my card payment please"))
    assert r.abstained and r.reason == "never_deflect" and r.suggestions == [] and r.would_show
    r = engine.suggest(SuggestQuery(description="tell me a joke about the weather"))
    assert r.intent.out_of_scope and r.abstained and r.reason == "out_of_scope"


def test_no_model_means_null_intent(tmp_path, home, fake_embedder):
    ingest(_kb(tmp_path), home, fake_embedder)
    s = Settings(home=home, min_score=0.0, reload_interval=0.0)
    r = Engine(s, fake_embedder).suggest(SuggestQuery(description="password"))
    assert r.intent is None and r.model_version is None


def test_intent_boost_ranks_linked_articles_higher(tmp_path, home, fake_embedder):
    ingest(_kb(tmp_path), home, fake_embedder)
    mapping = write(tmp_path / "map.json", json.dumps({"calendar": ["refund"]}))
    data = load_labeled_texts(write_csv(tmp_path / "d.csv", rows()))
    train(data, home, fake_embedder, TrainOptions(val_split=0.25, promote=True))
    q = SuggestQuery(description="google calendar sync", k=4)
    plain = Engine(Settings(home=home, min_score=0.0, intent_boost=0.0), fake_embedder).suggest(q)
    boosted = Engine(
        Settings(home=home, min_score=0.0, intent_boost=0.5, intent_articles=str(mapping)), fake_embedder
    ).suggest(q)
    pos = [s.article_id for s in plain.suggestions].index("refund")
    assert [s.article_id for s in boosted.suggestions].index("refund") < pos


def test_model_swap_under_requests_in_flight(tmp_path, served, fake_embedder):
    s, engine = served
    data = load_labeled_texts(write_csv(tmp_path / "d2.csv", rows()))
    with TestClient(create_app(s, engine=engine)) as c:
        with Hammer(c, {"description": "forgot password"}, "model_version") as h:
            versions = [
                train(
                    data, s.home, fake_embedder, TrainOptions(val_split=0.25, seed=i, promote=True, force=True)
                ).version
                for i in range(3)
            ]
            h.wait_for(versions[-1])
        errors, seen = h.errors, h.seen
        back = rollback(s.home)
        deadline = time.time() + 5
        while c.post("/v1/suggest", json={"description": "password"}).json()["model_version"] != back:
            assert time.time() < deadline
            time.sleep(0.05)
    assert errors == [] and versions[-1] in seen


def test_single_text_fast_path_matches_the_sparse_path(fake_embedder):
    texts = [t for t, _, _ in rows()]
    labels = [lab for _, lab, _ in rows()]
    clf = IntentClassifier(fake_embedder, seed=0).fit(texts, labels)
    probe = texts + ["completely unseen words here", "password!!! RESET", ""]
    batch = clf.decision_function(probe)  # more than 4 texts: sklearn's sparse path
    one = np.stack([clf.decision_function([t])[0] for t in probe])  # one at a time: the serving path
    np.testing.assert_allclose(one, batch, rtol=1e-9, atol=1e-9)
