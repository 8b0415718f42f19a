"""The offline-evaluation functions on hand-built answers (exact values), and every
`deflect eval` command and `deflect tune` end to end on the demo data with the real model."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from deflect.cli.main import app
from deflect.eval.offline import Answer, compare_reports, curve_of, estimate_deflection, flatten, tune_thresholds
from tests.conftest import DEMO_KB, DEMO_QUERIES

runner = CliRunner()
R = [frozenset({"a"}), frozenset({"b", "c"}), frozenset(), frozenset({"d"}), frozenset({"a"})]
A = [
    Answer(["a", "x"], 0.9, None, "i1"),  # right
    Answer(["c", "b"], 0.7, None, "i1"),  # right (either of two ids)
    Answer(["a"], 0.6, None, "i2"),  # unanswerable: wrong whenever shown
    Answer(["x", "d"], 0.8, None, "i2"),  # wrong first
    Answer(["a"], 0.95, "out_of_scope", "i1"),  # blocked: never shown
]


def test_estimate_deflection_by_hand():
    rows = {r.threshold: r.to_dict() for r in estimate_deflection(A, R, thresholds=[0.0, 0.65, 0.75, 0.85, 0.99])}
    assert rows[0.0] == {"threshold": 0.0, "right_first": 2 / 5, "wrong_shown": 2 / 5, "abstained": 1 / 5}
    assert rows[0.65]["right_first"] == 2 / 5 and rows[0.65]["wrong_shown"] == 1 / 5
    assert rows[0.75]["right_first"] == 1 / 5 and rows[0.75]["wrong_shown"] == 1 / 5  # ties (0.8 >= 0.75) shown
    assert rows[0.85] == {"threshold": 0.85, "right_first": 1 / 5, "wrong_shown": 0.0, "abstained": 4 / 5}
    assert rows[0.99]["abstained"] == 1.0
    for r in rows.values():
        assert r["right_first"] + r["wrong_shown"] + r["abstained"] == pytest.approx(1.0)


def test_estimate_deflection_default_thresholds_and_errors():
    rows = [r.to_dict() for r in estimate_deflection(A, R)]
    assert [r["threshold"] for r in rows] == [0.0, 0.6, 0.7, 0.8, 0.9]  # blocked 0.95 is not a threshold
    (empty,) = estimate_deflection([], [])
    assert empty.threshold == 0.0 and math.isnan(empty.right_first)
    with pytest.raises(ValueError, match="answers"):
        estimate_deflection(A, R[:2])


def test_curve_never_shows_blocked_queries():
    pts = {p.threshold: p for p in curve_of(A, R)}
    assert pts[0.6].shown == 4 and pts[0.6].correct == 2
    assert pts[0.9].shown == 1 and pts[0.9].precision == 1.0


def test_tune_global_and_per_intent():
    res = tune_thresholds(A, R, 0.6).to_dict()
    # thresholds: 0.6 -> 2/4, 0.7 -> 2/3 (coverage 3/5), 0.8 -> 1/2, 0.9 -> 1/1
    assert res["threshold"] == 0.7 and res["expected"] == {"precision": 2 / 3, "coverage": 3 / 5}
    res = tune_thresholds(A, R, 0.6, per_intent=True, min_queries=2).to_dict()
    # i1 (two shown-able queries, both right): its lowest threshold 0.7 reaches 1.0
    assert res["per_intent"]["i1"]["threshold"] == 0.7
    # i2 never reaches 0.6 precision: it keeps the global threshold
    assert "i2" not in res["per_intent"]
    assert tune_thresholds(A, R, 1.0).threshold == 0.9
    assert tune_thresholds([A[2]], [R[2]], 0.5).threshold is None
    with pytest.raises(ValueError, match="target"):
        tune_thresholds(A, R, 1.5)


def test_compare_and_flatten():
    a = {"systems": {"x": {"metrics": {"recall@1": 0.5, "mrr@10": 0.6}}}, "queries": 10, "flag": True}
    b = {"systems": {"x": {"metrics": {"recall@1": 0.75, "mrr@10": 0.6}}}, "queries": 10, "new": 1}
    assert flatten(a) == {"systems.x.metrics.recall@1": 0.5, "systems.x.metrics.mrr@10": 0.6, "queries": 10.0}
    rows = {r[0]: r for r in compare_reports(a, b)}
    assert rows["systems.x.metrics.recall@1"] == ("systems.x.metrics.recall@1", 0.5, 0.75, 0.25)
    assert rows["new"] == ("new", None, 1.0, None)


# ---- end to end, real model ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_home(tmp_path_factory, onnx_cache):
    home = tmp_path_factory.mktemp("eval-home")
    (home / "onnx").symlink_to(onnx_cache, target_is_directory=True)
    for args in (
        ["ingest", str(DEMO_KB)],
        ["train", str(DEMO_KB.parent / "intents.csv"), "--oos-label", "out_of_scope", "--promote"],
    ):
        r = runner.invoke(app, [*args, "--home", str(home)])
        assert r.exit_code == 0, r.output
    return home


@pytest.mark.slow
def test_eval_retrieval_side_by_side_with_target(trained_home, tmp_path):
    out = tmp_path / "ret"
    r = runner.invoke(
        app,
        ["eval", "retrieval", "--index", "current", "--queries", str(DEMO_QUERIES), "--target-precision", "0.9"]
        + ["--out", str(out), "--home", str(trained_home)],
    )
    assert r.exit_code == 0, r.output
    assert "lexical only" in r.output and "dense only" in r.output and "default engine" in r.output
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["systems"]) == {"lexical only", "dense only", "default engine"}
    assert rep["model_version"] and rep["unanswerable"] == 40
    default = rep["systems"]["default engine"]
    assert default["metrics"]["recall@1"] >= rep["systems"]["dense only"]["metrics"]["recall@1"]
    assert default["target"]["achieved_precision"] >= 0.9 and default["target"]["coverage"] > 0.3
    assert f"threshold {default['target']['threshold']:.4f}" in r.output
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 1 and "<script" not in html and "Precision against coverage" in html


@pytest.mark.slow
def test_eval_retrieval_on_a_kb_source(trained_home, tmp_path):
    from tests.conftest import write

    kb = tmp_path / "kb"
    for f in sorted((DEMO_KB / "security").glob("*.md")):
        write(kb / f.name, f.read_text())
    out = tmp_path / "kb-out"
    r = runner.invoke(
        app,
        ["eval", "retrieval", "--kb", str(kb), "--queries", str(DEMO_QUERIES), "--out", str(out)]
        + ["--home", str(trained_home)],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["source"]["kb"] == str(kb)
    assert rep["systems"]["default engine"]["metrics"]["recall@10"] < 0.5  # most answers are not in this KB
    assert not list(trained_home.glob(".eval-*"))  # the temporary home is gone
    r = runner.invoke(app, ["eval", "retrieval", "--queries", str(DEMO_QUERIES), "--home", str(trained_home)])
    assert r.exit_code == 1 and "--kb" in r.output


@pytest.mark.slow
def test_eval_deflection_and_compare(trained_home, tmp_path):
    out = tmp_path / "defl"
    r = runner.invoke(
        app, ["eval", "deflection", "--queries", str(DEMO_QUERIES), "--out", str(out), "--home", str(trained_home)]
    )
    assert r.exit_code == 0, r.output
    assert "assumptions:" in r.output and "<- current" in r.output
    rep = json.loads((out / "report.json").read_text())
    for row in rep["table"]:
        assert row["right_first"] + row["wrong_shown"] + row["abstained"] == pytest.approx(1.0)
    assert (out / "report.html").read_text().count("<svg") == 1

    # compare two retrieval runs: the same run twice has no differences
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        runner.invoke(
            app,
            ["eval", "retrieval", "--index", "current", "--queries", str(DEMO_QUERIES), "--out", str(d)]
            + ["--home", str(trained_home)],
        )
    r = runner.invoke(app, ["eval", "compare", str(a / "report.json"), str(b / "report.json")])
    assert r.exit_code == 0 and "(no differences)" in r.output
    r = runner.invoke(app, ["eval", "compare", str(a / "report.json"), str(out / "report.json")])
    assert r.exit_code == 0 and "systems.default engine.metrics.recall@1" in r.output


@pytest.mark.slow
def test_tune_writes_thresholds_the_engine_uses(trained_home):
    from deflect.config import Settings
    from deflect.engine import Engine
    from deflect.models import bundle as B

    engine = Engine(Settings(home=trained_home, reload_interval=0.0))
    bundle = engine.index.get()
    before = engine.min_score(bundle)
    r = runner.invoke(
        app,
        ["tune", "--queries", str(DEMO_QUERIES), "--target-precision", "0.95", "--per-intent", "--min-queries", "8"]
        + ["--home", str(trained_home)],
        input="n\n",
    )
    assert r.exit_code == 0 and "nothing written" in r.output  # asked, and declined
    assert not (B.bundle_path(trained_home, "index", bundle.version) / "tuning.json").exists()
    r = runner.invoke(
        app,
        ["tune", "--queries", str(DEMO_QUERIES), "--target-precision", "0.95", "--per-intent", "--min-queries", "8"]
        + ["--yes", "--home", str(trained_home)],
    )
    assert r.exit_code == 0, r.output
    tuning = json.loads((B.bundle_path(trained_home, "index", bundle.version) / "tuning.json").read_text())
    assert tuning["target_precision"] == 0.95 and tuning["expected"]["precision"] >= 0.95
    assert engine.min_score(bundle) == tuning["threshold"] != before  # the running engine picked it up
    # the fusion weight was chosen too, never ranking worse than lexical alone
    from deflect.eval.offline import ALPHA_GRID

    tried = {t["alpha"]: t for t in tuning["fusion_tried"]}
    assert sorted(tried) == sorted(ALPHA_GRID) and tuning["fusion_alpha"] in tried
    assert tried[tuning["fusion_alpha"]]["recall_at_1"] >= tried[0.0]["recall_at_1"]
    assert engine.fusion_alpha(bundle) == tuning["fusion_alpha"]
    assert "fusion weight" in r.output and "<- chosen" in r.output
    for intent, d in tuning["per_intent"].items():
        assert engine.min_score(bundle, intent) == d["threshold"]
    r = runner.invoke(
        app,
        ["tune", "--queries", str(DEMO_QUERIES), "--target-precision", "0.9", "--reset"]
        + ["--home", str(trained_home)],
    )
    assert "tuning removed" in r.output and engine.min_score(bundle) == before


def test_reliability_bins_and_confused_pairs_by_hand():
    from deflect.eval.intent_eval import confused_pairs, reliability_bins

    bins = reliability_bins([0.05, 0.15, 0.95, 1.0, 0.92], [False, True, True, True, False], bins=10)
    assert bins[0].to_dict() == {"lo": 0.0, "hi": 0.1, "count": 1, "confidence": 0.05, "accuracy": 0.0}
    assert bins[9].count == 3 and bins[9].accuracy == pytest.approx(2 / 3)  # 1.0 falls in the last bin
    assert bins[5].count == 0 and bins[5].accuracy is None
    pairs = confused_pairs(["a", "a", "b", "a", "c"], ["b", "b", "b", "c", "c"], ["t1", "t2", "t3", "t4", "t5"])
    assert pairs[0].to_dict() == {"true": "a", "predicted": "b", "count": 2, "examples": ["t1", "t2"]}
    assert pairs[1].predicted == "c" and len(pairs) == 2
    with pytest.raises(ValueError, match="lengths"):
        confused_pairs(["a"], ["a", "b"], ["t"])
    with pytest.raises(ValueError):
        reliability_bins([0.5], [])


@pytest.mark.slow
def test_eval_intent_beside_its_baselines(trained_home, tmp_path):
    import csv
    import random

    rows = list(csv.DictReader((DEMO_KB.parent / "intents.csv").open()))
    random.Random(0).shuffle(rows)
    cut = int(len(rows) * 0.7)
    for name, part in (("train.csv", rows[:cut]), ("test.csv", rows[cut:])):
        with (tmp_path / name).open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(part)
    out = tmp_path / "intent"
    r = runner.invoke(
        app,
        ["eval", "intent", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv")]
        + ["--oos-label", "out_of_scope", "--out", str(out), "--home", str(trained_home)],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["systems"]) == {"deflect", "LR on embeddings", "TF-IDF + linear SVM"}
    main = rep["systems"]["deflect"]
    assert 0.5 < main["accuracy"] <= 1 and 0 <= main["ece"] < 0.5 and 0.5 < main["oos_auroc"] <= 1
    assert "out_of_scope" in main["per_intent"] and main["confused"] and len(main["reliability"]) == 10
    assert "most confused" in r.output and "LR on embeddings" in r.output
    html = (out / "report.html").read_text()
    assert "Calibration" in html and html.count("<svg") == 1
    r = runner.invoke(
        app, ["eval", "intent", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "x.csv")]
    )
    assert r.exit_code == 1 and "x.csv" in r.output


@pytest.mark.slow
def test_a_new_index_keeps_the_tuning_retuned_or_copied(tmp_path, onnx_cache):
    """`deflect tune`, then an article edited and re-ingested: the new index is re-tuned on
    the same queries (their file is there), and copied when the file is gone; ingest says so."""
    import shutil

    from deflect.models import bundle as B

    home = tmp_path / "home"
    home.mkdir()
    (home / "onnx").symlink_to(onnx_cache, target_is_directory=True)
    kb = tmp_path / "kb"
    shutil.copytree(DEMO_KB, kb)
    queries = tmp_path / "queries.csv"
    shutil.copy(DEMO_QUERIES, queries)

    def run(*args):
        r = runner.invoke(app, [*args, "--home", str(home)])
        assert r.exit_code == 0, r.output
        return r.output

    run("ingest", str(kb))
    run("tune", "--queries", str(queries), "--target-precision", "0.9", "--yes")
    first = B.read_pointer(home, "index")
    tuned = json.loads((B.bundle_path(home, "index", first) / "tuning.json").read_text())
    page = sorted(kb.rglob("*.md"))[0]
    page.write_text(page.read_text() + "\n\nOne more sentence about this.\n")
    out = run("ingest", str(kb))
    second = B.read_pointer(home, "index")
    assert second != first and f"tuning: re-tuned on {queries}" in out
    again = json.loads((B.bundle_path(home, "index", second) / "tuning.json").read_text())
    assert again["target_precision"] == 0.9 and "inherited_from" not in again
    queries.unlink()
    page.write_text(page.read_text() + "\nAnd another.\n")
    out = run("ingest", str(kb))
    third = B.read_pointer(home, "index")
    copied = json.loads((B.bundle_path(home, "index", third) / "tuning.json").read_text())
    assert f"tuning: copied from index {second}" in out and "its queries file is gone" in out
    assert copied["threshold"] == again["threshold"] and copied["inherited_from"] == second
    assert tuned["threshold"] > 0


def test_labels_naming_articles_not_in_the_index_are_counted_and_can_stop_tuning(tmp_path, capsys):
    from types import SimpleNamespace

    from deflect.cli.evaluate import check_labels
    from deflect.core.errors import InvalidInputError
    from deflect.eval.queries import LabeledQuery

    bundle = SimpleNamespace(articles={"pw": 1, "refund": 2}, version="v1")
    qs = [LabeledQuery(f"q{i}", "text", frozenset({"pw"})) for i in range(18)]
    qs += [LabeledQuery("typo", "text", frozenset({"pww"})), LabeledQuery("gone", "text", frozenset({"old", "pw"}))]
    assert check_labels(qs, bundle, tmp_path / "q.csv") == 2
    err = capsys.readouterr().err
    assert "2 of 20 queries (10.0%) name 2 article ids that are not in index v1" in err and "pww" in err
    with pytest.raises(InvalidInputError, match="more than 5%, so nothing is tuned"):
        check_labels(qs, bundle, tmp_path / "q.csv", refuse_over=0.05)
    assert check_labels(qs, bundle, tmp_path / "q.csv", refuse_over=0.05, allow=True) == 2
    assert check_labels(qs[:18], bundle, tmp_path / "q.csv", refuse_over=0.05) == 0
