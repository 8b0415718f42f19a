"""HTML pages for the offline evaluation reports (``deflect eval ...``)."""

from __future__ import annotations

from deflect.eval.charts import e, fmt, line_chart, page, reliability_chart, table
from deflect.eval.intent_eval import IntentReport
from deflect.eval.offline import DeflectionEstimate, RetrievalReport

METRICS = ["recall@1", "recall@3", "recall@5", "recall@10", "mrr@10", "ndcg@10"]


def retrieval_html(rep: RetrievalReport) -> str:
    """The retrieval report: ranking quality, the precision/coverage curve, the target's threshold."""
    systems = rep.systems
    rows = [[name] + [s.metrics[m] for m in METRICS] for name, s in systems.items()]
    series = {name: [(p.coverage, p.precision) for p in s.curve] for name, s in systems.items()}
    marks = []
    target_rows = []
    for name, s in systems.items():
        t = s.target
        if t:
            target_rows.append([name, t.threshold, t.coverage, t.achieved_precision])
            if name == "default engine" and t.threshold is not None:
                marks.append((t.coverage, t.achieved_precision, f"threshold {t.threshold:.3f}"))
    chart = line_chart(
        series,
        x_label="coverage (share of queries shown something)",
        y_label="precision (top suggestion right)",
        title="Precision against coverage",
        marks=marks,
    )
    sections = [
        ("metrics", "Ranking quality", table(["system", *METRICS], rows)),
        (
            "curve",
            "Precision against coverage",
            "<p>Each point is one threshold on the top article's score. A query that no article answers counts "
            "as an error whenever anything is shown for it.</p>" + chart,
        ),
    ]
    if target_rows:
        sections.append(
            (
                "target",
                f"Threshold for precision {systems['default engine'].target.precision}",
                table(["system", "threshold", "coverage", "precision"], target_rows),
            )
        )
    sub = (
        f"{rep.queries} queries ({rep.unanswerable} that no article answers); index {rep.index_version}; "
        f"intent model {rep.model_version or 'none'}; current threshold {fmt(rep.current_threshold)}"
    )
    return page("Retrieval evaluation", sub, sections)


def deflection_html(rep: DeflectionEstimate) -> str:
    """The pre-launch estimate: outcome shares by threshold, as a chart and a table."""
    curve = rep.curve
    series = {
        "right article first": [(r.threshold, r.right_first) for r in curve],
        "wrong article shown": [(r.threshold, r.wrong_shown) for r in curve],
        "nothing shown": [(r.threshold, r.abstained) for r in curve],
    }
    hi = max([r.threshold for r in curve] + [1.0])
    chart = line_chart(
        series,
        x_label="threshold",
        y_label="share of queries",
        title="Outcomes by threshold",
        x_range=(0.0, hi),
        marks=[(rep.current_threshold, 0.0, "current")],
    )
    rows = [[r.threshold, r.right_first, r.wrong_shown, r.abstained] for r in rep.table]
    assume = "<ul class='assume'>" + "".join(f"<li>{e(a)}</li>" for a in rep.assumptions) + "</ul>"
    return page(
        "Deflection estimate before launch",
        f"{rep.queries} labeled queries, {rep.unanswerable} that no article answers; current threshold "
        f"{fmt(rep.current_threshold)}",
        [
            ("chart", "Outcomes by threshold", chart),
            (
                "table",
                "Table",
                table(["threshold", "right first", "wrong shown", "nothing shown"], rows, numeric_from=0),
            ),
            ("assumptions", "Assumptions", assume),
        ],
    )


INTENT_FIGURES = ["accuracy", "macro_f1", "ece", "oos_recall", "oos_auroc", "train_seconds"]


def intent_html(rep: IntentReport) -> str:
    """The intent report: the model beside its baselines, per intent, confusions, calibration."""
    systems = rep.systems
    rows = [[name] + [getattr(s, k) for k in INTENT_FIGURES] for name, s in systems.items()]
    main = systems["deflect"]
    per = [
        [lab, d["precision"], d["recall"], d["f1"], d["support"]]
        for lab, d in sorted(main.per_intent.items(), key=lambda kv: kv[1]["f1"])
    ]
    conf = [[c.true, c.predicted, " | ".join(c.examples), c.count] for c in main.confused]
    sections = [
        ("summary", "Against the baselines (trained in the same run)", table(["system", *INTENT_FIGURES], rows)),
        ("per-intent", "Per intent (weakest first)", table(["intent", "precision", "recall", "F1", "support"], per)),
        (
            "confused",
            "Most confused pairs",
            table(["true intent", "predicted", "examples", "count"], conf, numeric_from=3) if conf else "<p>None.</p>",
        ),
        (
            "calibration",
            "Calibration",
            f"<p>Expected calibration error {fmt(main.ece)}: how far confidence is from accuracy.</p>"
            + reliability_chart(main.reliability),
        ),
    ]
    return page(
        "Intent evaluation",
        f"train {rep.train} ({rep.train_rows} texts), test {rep.test} ({rep.test_rows} texts); "
        f"out-of-scope label {rep.oos_label or 'none'}",
        sections,
    )
