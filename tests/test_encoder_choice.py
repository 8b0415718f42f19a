"""Which encoder serves a knowledge base (``encoder=auto``), the defaults calibrated per
encoder, and the fusion weight ``deflect tune`` chooses."""

from __future__ import annotations

import pytest
from conftest import KEYWORDS, small_kb, write_kb

from deflect.config import (
    E5,
    ENCODER_DEFAULTS,
    MINILM,
    Settings,
    defaults_for,
    encoder_for_languages,
    packaged_encoder,
)
from deflect.engine import Engine, SuggestQuery
from deflect.eval.offline import Answer, choose_alpha
from deflect.kb_ingest.pipeline import ingest
from deflect.models.embedders import KeywordEmbedder


def test_english_only_knowledge_bases_get_minilm_others_e5():
    assert encoder_for_languages({"en"}) == MINILM
    assert encoder_for_languages({"en", None}) == MINILM  # undetected articles do not force a switch
    assert encoder_for_languages(set()) == MINILM
    assert encoder_for_languages({"en", "zh"}) == E5
    assert encoder_for_languages({"id"}) == E5


def test_an_explicit_encoder_or_model_path_wins_over_auto(tmp_path):
    assert Settings(home=tmp_path, encoder=E5).chosen_encoder({"en"}) == E5
    assert Settings(home=tmp_path, encoder=MINILM).chosen_encoder({"zh"}) == MINILM
    assert Settings(home=tmp_path, model_path=str(tmp_path)).chosen_encoder({"zh"}) is None
    assert Settings(home=tmp_path).chosen_encoder() == MINILM  # auto, no index yet


def test_ingest_asks_the_chooser_with_the_articles_languages(tmp_path):
    kb = write_kb(
        tmp_path / "kb",
        {
            "refund": ("Refund policy", "How to get a refund of your payment within thirty days of the order."),
            "zh": ("退款政策", "訂單付款後三十天內可以申請退款，我們會退回原付款方式。"),
        },
    )
    seen = []

    def chooser(languages):
        seen.append(languages)
        return KeywordEmbedder(KEYWORDS, name=RECORDED[encoder_for_languages(languages)])

    summary = ingest(kb, tmp_path / "home", chooser)
    assert seen == [frozenset({"en", "zh"})]
    assert summary.encoder == RECORDED[E5] and summary.languages == {"en": 1, "zh": 1}


#: the names bundles record for the packaged encoders (their model directories' own)
RECORDED = {MINILM: "sentence-transformers/all-MiniLM-L6-v2", E5: "intfloat/multilingual-e5-small"}


def test_the_packaged_encoders_record_the_names_the_choice_reads(e5_model_dir):
    from deflect.models.embedders.files import model_name, packaged_minilm_path

    assert model_name(packaged_minilm_path()) == RECORDED[MINILM]
    assert model_name(e5_model_dir) == RECORDED[E5]
    assert packaged_encoder(RECORDED[E5]) == E5 and packaged_encoder(RECORDED[MINILM]) == MINILM
    assert packaged_encoder("someone/else") is None and packaged_encoder(None) is None


def test_serving_and_training_follow_the_current_indexs_encoder(tmp_path):
    home = tmp_path / "home"
    ingest(small_kb(tmp_path), home, KeywordEmbedder(KEYWORDS, name=RECORDED[E5]))
    assert Settings(home=home).chosen_encoder() == E5  # auto, and the index was built with e5
    ingest(small_kb(tmp_path), home, KeywordEmbedder(KEYWORDS, name=RECORDED[MINILM]), full=True)
    assert Settings(home=home).chosen_encoder() == MINILM


@pytest.mark.parametrize("name", [MINILM, E5])
def test_the_threshold_and_weight_default_to_the_indexs_encoder(tmp_path, name):
    home = tmp_path / "home"
    emb = KeywordEmbedder(KEYWORDS, name=RECORDED[name])
    ingest(small_kb(tmp_path), home, emb)
    engine = Engine(Settings(home=home, reload_interval=0.0), emb)
    bundle = engine.index.get()
    assert engine.min_score(bundle) == ENCODER_DEFAULTS[name].min_score
    assert engine.fusion_alpha(bundle) == ENCODER_DEFAULTS[name].fusion_alpha
    # the operator's settings win over the calibrated defaults
    engine = Engine(Settings(home=home, reload_interval=0.0, min_score=0.2, fusion_alpha=0.5), emb)
    assert engine.min_score(bundle) == 0.2 and engine.fusion_alpha(bundle) == 0.5


def test_e5s_calibrated_threshold_is_above_minilms():
    # e5's cosines sit in a narrow, high band (bench "calibration" measures both)
    assert defaults_for(E5).min_score > defaults_for(MINILM).min_score
    assert defaults_for("someone-elses-model") == defaults_for(MINILM)


def test_a_tuned_fusion_weight_is_used_by_the_engine(tmp_path):
    from deflect.tuning import write_tuning

    home = tmp_path / "home"
    emb = KeywordEmbedder(KEYWORDS)
    ingest(small_kb(tmp_path), home, emb)
    engine = Engine(Settings(home=home, reload_interval=0.0, fusion_alpha=0.9), emb)
    bundle = engine.index.get()
    write_tuning(bundle.path, {"threshold": 0.3, "fusion_alpha": 0.0})
    assert engine.fusion_alpha(bundle) == 0.0
    r = engine.suggest(SuggestQuery(subject="refund"))
    assert r.suggestions and r.suggestions[0].score == 1.0  # lexical alone: the best article scores 1


def test_choose_alpha_never_ranks_worse_than_lexical_alone():
    rel = [frozenset({"a"}), frozenset({"b"}), frozenset({"c"}), frozenset({"d"})]
    per_alpha = {
        0.0: [
            Answer(["a"], 1.0, None, None),
            Answer(["b"], 1.0, None, None),
            Answer(["c"], 1.0, None, None),
            Answer(["x"], 1.0, None, None),
        ],
        # higher-confidence scores give this weight coverage at the target, but it ranks worse
        0.9: [
            Answer(["a"], 0.9, None, None),
            Answer(["x"], 0.2, None, None),
            Answer(["y"], 0.2, None, None),
            Answer(["z"], 0.2, None, None),
        ],
    }
    pick = choose_alpha(per_alpha, rel, 0.9, current=0.9)
    assert pick.alpha == 0.0
    assert [t.alpha for t in pick.tried] == [0.0, 0.9]
    assert pick.tried[0].recall_at_1 == 0.75 and pick.tried[1].recall_at_1 == 0.25


def test_choose_alpha_prefers_coverage_then_recall_then_the_current_weight():
    rel = [frozenset({"a"}), frozenset({"b"}), frozenset()]
    lexical = [Answer(["a"], 1.0, None, None), Answer(["x"], 1.0, None, None), Answer(["a"], 1.0, None, None)]
    good = [Answer(["a"], 0.8, None, None), Answer(["b"], 0.7, None, None), Answer(["a"], 0.1, None, None)]
    pick = choose_alpha({0.0: lexical, 0.7: good, 0.9: good}, rel, 0.9, current=0.9)
    assert pick.alpha == 0.9  # 0.7 and 0.9 tie on coverage and recall: the current one stays
    pick = choose_alpha({0.0: lexical, 0.7: good, 0.9: lexical}, rel, 0.9, current=0.9)
    assert pick.alpha == 0.7
    chosen = next(t for t in pick.tried if t.alpha == 0.7)
    assert chosen.coverage == pytest.approx(2 / 3) and chosen.threshold == 0.7
    with pytest.raises(ValueError, match="lexical alone"):
        choose_alpha({0.9: good}, rel, 0.9, current=0.9)
