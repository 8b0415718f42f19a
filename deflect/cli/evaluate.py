"""deflect eval retrieval|intent|deflection|compare, and deflect tune."""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from deflect.cli.common import HomeOpt, friendly, settings_for
from deflect.core.datahome import DataHome
from deflect.core.errors import InvalidInputError

eval_app = typer.Typer(help="Offline evaluation on your own data (no server needed).", no_args_is_help=True)

OutOpt = Annotated[
    Path, typer.Option("--out", envvar="DEFLECT_EVAL_OUT", help="Directory for report.json and report.html.")
]
QueriesOpt = Annotated[Path, typer.Option("--queries", help="Labeled queries, CSV or JSONL (docs/evaluation.md).")]


@contextmanager
def engine_for(home: Path | None, kb: str | None, index: str | None):
    """An engine on ``--index current`` (the home's index) or on ``--kb SOURCE`` ingested
    into a temporary home that shares this home's intent models and ONNX cache."""
    from deflect.engine import Engine
    from deflect.models import bundle as B

    settings = settings_for(home)
    if (kb is None) == (index is None):
        raise InvalidInputError("give either --kb SOURCE or --index current", field="kb")
    if index is not None:
        if index != "current":
            raise InvalidInputError(f"--index: only 'current' is supported, got {index!r}", field="index")
        yield Engine(settings)
        return
    from deflect.kb_ingest.pipeline import ingest
    from deflect.models.embedders import load_embedder

    real = DataHome(settings.home)
    real.root.mkdir(parents=True, exist_ok=True)
    tmp = DataHome(tempfile.mkdtemp(prefix=real.temp_prefix("eval"), dir=real.root))
    try:
        real.onnx_cache.mkdir(exist_ok=True)
        tmp.onnx_cache.symlink_to(real.onnx_cache.resolve(), target_is_directory=True)
        model = B.read_pointer(real.root, "model")
        if model is not None:
            tmp.bundles("model").symlink_to(real.bundles("model").resolve(), target_is_directory=True)
            B.write_pointer(tmp.root, "model", model)
        tsettings = settings.model_copy(update={"home": tmp.root})
        summary = ingest(
            kb,
            tmp.root,
            lambda languages: load_embedder(tsettings, purpose="ingest", languages=languages),
            chunk_tokens=settings.chunk_tokens,
            chunk_overlap=settings.chunk_overlap,
            ann_threshold=settings.ann_threshold,
        )
        if summary.skipped:
            typer.secho(f"ingest skipped {len(summary.skipped)} records (see `deflect ingest`)", fg="yellow", err=True)
        yield Engine(tsettings)
    finally:
        shutil.rmtree(tmp.root, ignore_errors=True)


def write_outputs(out: Path, report, html: str) -> None:
    """``report.json`` (the report's ``to_dict()``) and ``report.html`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str))
    (out / "report.html").write_text(html, encoding="utf-8")
    typer.echo(f"\nwrote {out / 'report.json'} and {out / 'report.html'}")


def _f(v, d: int = 3) -> str:
    return "  n/a" if v is None or v != v else f"{v:.{d}f}"


#: the share of labeled queries naming unknown articles past which `deflect tune` refuses
MAX_UNKNOWN_LABELS = 0.05


def check_labels(qs, bundle, path: Path, *, refuse_over: float | None = None, allow: bool = False) -> int:
    """Labeled article ids that are not in the index (misspelt, or deleted since): said with a
    count and examples, since each counts as a miss; with ``refuse_over``, more than that
    share of queries with one is an :class:`InvalidInputError` unless ``allow``. Returns how
    many queries name an unknown id."""
    unknown: dict[str, int] = {}
    affected = 0
    for q in qs:
        missing = [a for a in q.relevant if a not in bundle.articles]
        affected += bool(missing)
        for a in missing:
            unknown[a] = unknown.get(a, 0) + 1
    if not unknown:
        return 0
    examples = ", ".join(sorted(unknown, key=lambda a: -unknown[a])[:5]) + (", ..." if len(unknown) > 5 else "")
    share = affected / len(qs)
    msg = (
        f"{path}: {affected} of {len(qs)} queries ({share:.1%}) name {len(unknown)} article ids that are not in "
        f"index {bundle.version} ({examples}); they count as misses"
    )
    if refuse_over is not None and share > refuse_over and not allow:
        raise InvalidInputError(
            f"{msg}: more than {refuse_over:.0%}, so nothing is tuned (fix the labels, or pass --allow-unknown)",
            field="queries",
        )
    typer.secho(msg, fg="yellow", err=True)
    return affected


def _load_queries(path: Path):
    from deflect.eval.queries import load_queries

    qs = load_queries(path)
    return qs, [q.relevant for q in qs]


# ---- eval retrieval --------------------------------------------------------------------------
@eval_app.command("retrieval")
@friendly
def eval_retrieval(
    queries: QueriesOpt,
    kb: Annotated[str | None, typer.Option("--kb", help="Any ingest source, ingested for this run.")] = None,
    index: Annotated[str | None, typer.Option("--index", help="'current': the home's index instead of --kb.")] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=10, help="Suggestions shown.")] = 3,
    target_precision: Annotated[
        float | None, typer.Option("--target-precision", min=0.01, max=1.0, help="Print the threshold reaching it.")
    ] = None,
    out: OutOpt = Path("eval-report/retrieval"),
    home: HomeOpt = None,
) -> None:
    """Recall@k, MRR, nDCG and the precision/coverage curve: lexical, dense and the default engine."""
    from deflect.eval.offline import evaluate_retrieval
    from deflect.eval.render import METRICS, retrieval_html

    qs, _ = _load_queries(queries)
    with engine_for(home, kb, index) as engine:
        check_labels(qs, engine.index.get(), queries)
        rep = evaluate_retrieval(engine, qs, k=k, target_precision=target_precision)
    rep = replace(rep, source={"kb": kb, "index": index, "queries": str(queries)}, created_at=datetime.now(UTC))
    typer.echo(
        f"{rep.queries} queries ({rep.unanswerable} that no article answers); index {rep.index_version}, "
        f"model {rep.model_version or 'none'}\n"
    )
    typer.echo(f"{'system':<16}" + "".join(f"{x:>11}" for x in METRICS))
    for name, sys_ in rep.systems.items():
        typer.echo(f"{name:<16}" + "".join(f"{_f(sys_.metrics[x]):>11}" for x in METRICS))
    if target_precision is not None:
        typer.echo(f"\nfor precision >= {target_precision} (out-of-scope queries shown anything count as errors):")
        for name, sys_ in rep.systems.items():
            t = sys_.target
            if t.threshold is None:
                typer.echo(f"  {name:<16} not reachable at any threshold")
            else:
                typer.echo(
                    f"  {name:<16} threshold {t.threshold:.4f}: coverage {t.coverage:.3f}, "
                    f"precision {t.achieved_precision:.3f}"
                )
        typer.echo("write the default engine's with: deflect tune --queries ... --target-precision ...")
    write_outputs(out, rep, retrieval_html(rep))


# ---- eval intent -----------------------------------------------------------------------------
@eval_app.command("intent")
@friendly
def eval_intent(
    train_file: Annotated[Path, typer.Option("--train", help="Labeled texts to train on (CSV or JSONL).")],
    test_file: Annotated[Path, typer.Option("--test", help="Labeled texts to test on (CSV or JSONL).")],
    text_col: Annotated[str, typer.Option("--text-col", help="Column with the text.")] = "text",
    label_col: Annotated[str, typer.Option("--label-col", help="Column with the intent.")] = "label",
    oos_label: Annotated[str | None, typer.Option("--oos-label", help="The label meaning out of scope.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    out: OutOpt = Path("eval-report/intent"),
    home: HomeOpt = None,
) -> None:
    """Accuracy, macro-F1, per intent, confusions, out of scope and calibration, beside two baselines."""
    from deflect.eval.intent_eval import evaluate_intents
    from deflect.eval.render import INTENT_FIGURES, intent_html
    from deflect.models.embedders import load_embedder
    from deflect.models.labeled import load_labeled_texts
    from deflect.models.language import languages_of

    settings = settings_for(home)
    # auto: the encoder for the training texts' languages (no index is involved here)
    languages = languages_of(load_labeled_texts(train_file, text_col=text_col, label_col=label_col).texts)
    rep = evaluate_intents(
        train_file,
        test_file,
        load_embedder(settings, purpose="train", languages=languages),
        text_col=text_col,
        label_col=label_col,
        oos_label=oos_label,
        seed=seed,
    )
    rep = replace(rep, created_at=datetime.now(UTC))
    typer.echo(f"train {rep.train_rows} texts, {rep.intents} intents; test {rep.test_rows} texts\n")
    typer.echo(f"{'system':<22}" + "".join(f"{c:>14}" for c in INTENT_FIGURES))
    for name, s in rep.systems.items():
        typer.echo(f"{name:<22}" + "".join(f"{_f(getattr(s, c)):>14}" for c in INTENT_FIGURES))
    main = rep.systems["deflect"]
    typer.echo("\nweakest intents (F1):")
    for lab, d in sorted(main.per_intent.items(), key=lambda kv: kv[1]["f1"])[:8]:
        typer.echo(f"  {lab:<30} P {d['precision']:.3f}  R {d['recall']:.3f}  F1 {d['f1']:.3f}  (n={d['support']})")
    if main.confused:
        typer.echo("most confused (true -> predicted):")
        for c in main.confused[:5]:
            typer.echo(f"  {c.true} -> {c.predicted}: {c.count}  e.g. {c.examples[0][:70]!r}")
    if rep.test_labels_unseen_in_training:
        typer.secho(
            f"test labels never seen in training (always wrong): {', '.join(rep.test_labels_unseen_in_training)}",
            fg="yellow",
        )
    write_outputs(out, rep, intent_html(rep))


# ---- eval deflection -------------------------------------------------------------------------
@eval_app.command("deflection")
@friendly
def eval_deflection(
    queries: QueriesOpt,
    kb: Annotated[str | None, typer.Option("--kb", help="Any ingest source, ingested for this run.")] = None,
    index: Annotated[str | None, typer.Option("--index", help="'current' (default when no --kb).")] = None,
    out: OutOpt = Path("eval-report/deflection"),
    home: HomeOpt = None,
) -> None:
    """Before launch: at each threshold, who would see the right article first, a wrong one, or nothing."""
    from deflect.eval.offline import deflection_estimate, engine_answers
    from deflect.eval.render import deflection_html

    qs, rel = _load_queries(queries)
    with engine_for(home, kb, index if (index or kb) else "current") as engine:
        check_labels(qs, engine.index.get(), queries)
        answers = engine_answers(engine, qs)
        current = engine.min_score(engine.index.get())
    rep = replace(
        deflection_estimate(answers, rel, current),
        source={"kb": kb, "index": index, "queries": str(queries)},
        created_at=datetime.now(UTC),
    )
    typer.echo(f"{rep.queries} queries, {rep.unanswerable} that no article answers\n")
    typer.echo(f"{'threshold':>10} {'right first':>12} {'wrong shown':>12} {'nothing':>9}")
    for r in rep.table:
        mark = "  <- current" if abs(r.threshold - current) < 1e-9 else ""
        typer.echo(f"{r.threshold:>10.2f} {r.right_first:>12.3f} {r.wrong_shown:>12.3f} {r.abstained:>9.3f}{mark}")
    typer.echo("\nassumptions:")
    for a in rep.assumptions:
        typer.echo(f"  - {a}")
    write_outputs(out, rep, deflection_html(rep))


# ---- eval compare ----------------------------------------------------------------------------
@eval_app.command("compare")
@friendly
def eval_compare(
    a: Annotated[Path, typer.Argument(help="A report.json (the baseline).")],
    b: Annotated[Path, typer.Argument(help="Another report.json.")],
    all_rows: Annotated[bool, typer.Option("--all", help="Also rows that did not change.")] = False,
) -> None:
    """Two evaluation runs side by side, with the differences (B - A)."""
    from deflect.eval.offline import compare_reports

    reports = []
    for p in (a, b):
        try:
            reports.append(json.loads(p.read_text()))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{p}: not a readable report.json ({exc})") from exc
    rows = compare_reports(*reports)
    width = max([len(r[0]) for r in rows] + [6])
    typer.echo(f"{'figure':<{width}} {'A':>10} {'B':>10} {'B - A':>10}")
    shown = 0
    for key, va, vb, d in rows:
        if not all_rows and d is not None and abs(d) < 1e-12:
            continue
        shown += 1
        typer.echo(f"{key:<{width}} {_f(va, 4):>10} {_f(vb, 4):>10} {(_f(d, 4) if d is not None else '  -'):>10}")
    if not shown:
        typer.echo("(no differences)")


# ---- tune ------------------------------------------------------------------------------------
@friendly
def tune_cmd(
    queries: Annotated[
        Path | None, typer.Option("--queries", help="Labeled queries, CSV or JSONL (docs/evaluation.md).")
    ] = None,
    target_precision: Annotated[
        float | None,
        typer.Option("--target-precision", min=0.01, max=1.0, help="Precision of the top suggestion to reach."),
    ] = None,
    per_intent: Annotated[
        bool, typer.Option("--per-intent", help="One threshold per intent with enough queries.")
    ] = False,
    min_queries: Annotated[
        int, typer.Option("--min-queries", min=5, help="Queries an intent needs (--per-intent).")
    ] = 20,
    keep_fusion: Annotated[
        bool, typer.Option("--keep-fusion", help="Tune the threshold only; keep the current fusion weight.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Write without asking.")] = False,
    reset: Annotated[bool, typer.Option("--reset", help="Remove the tuning of the current index.")] = False,
    allow_unknown: Annotated[
        bool, typer.Option("--allow-unknown", help="Tune even when over 5% of the queries name unknown articles.")
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Choose the fusion weight and the suggestion threshold from labeled queries and write them
    into the current index."""
    from deflect.engine import Engine
    from deflect.tuning import remove_tuning, write_tuning

    engine = Engine(settings_for(home))
    bundle = engine.index.get()
    if reset:
        removed = remove_tuning(bundle.path)
        typer.echo(f"index {bundle.version}: " + ("tuning removed" if removed else "was not tuned"))
        return
    if queries is None or target_precision is None:
        raise InvalidInputError("deflect tune needs --queries and --target-precision (or --reset)", field="queries")
    body = tune_index(engine, queries, target_precision, per_intent=per_intent, min_queries=min_queries,
                      keep_fusion=keep_fusion, allow_unknown=allow_unknown)  # fmt: skip
    if body is None:
        raise SystemExit(1)
    if not yes and not typer.confirm(f"write this into index {bundle.version}?", default=False):
        typer.echo("nothing written")
        return
    path = write_tuning(bundle.path, body)
    typer.echo(f"wrote {path}; the server uses it within {engine.settings.reload_interval:g}s")


def tune_index(
    engine,
    queries: Path,
    target_precision: float,
    *,
    per_intent: bool,
    min_queries: int,
    keep_fusion: bool,
    echo=None,
    allow_unknown: bool = False,
) -> dict | None:
    """Tune the current index of ``engine`` on ``queries`` (what ``deflect tune`` prints with
    ``echo``); the body of its ``tuning.json``, or None when no threshold reaches the target."""
    from deflect.eval.offline import ALPHA_GRID, choose_alpha, engine_answers, tune_thresholds
    from deflect.models.encoding import encode_queries
    from deflect.tuning import read_tuning

    echo = echo or typer.echo
    bundle = engine.index.get()
    qs, rel = _load_queries(queries)
    check_labels(qs, bundle, queries, refuse_over=MAX_UNKNOWN_LABELS, allow=allow_unknown)
    tuned_before = read_tuning(bundle.path)
    encoding = encode_queries(engine.embedder, [q.text for q in qs], engine.model.get_optional(), batch_size=32)
    current_alpha = engine.fusion_alpha(bundle)
    fusion = None
    if not keep_fusion and engine.settings.fusion == "convex":
        per_alpha = {a: engine_answers(engine, qs, encoding=encoding, alpha=a) for a in ALPHA_GRID}
        fusion = choose_alpha(per_alpha, rel, target_precision, current=current_alpha)
        echo(f"{'fusion weight':>14} {'Recall@1':>9} {'coverage at target':>19}")
        for t in fusion.tried:
            mark = "  <- chosen" if t.alpha == fusion.alpha else ""
            name = f"{t.alpha:.1f}" + (" (lexical)" if t.alpha == 0 else "")
            echo(f"{name:>14} {t.recall_at_1:>9.3f} {t.coverage:>19.3f}{mark}")
        answers = per_alpha[fusion.alpha]
    else:
        answers = engine_answers(engine, qs, encoding=encoding)
    res = tune_thresholds(answers, rel, target_precision, per_intent=per_intent, min_queries=min_queries)
    if res.threshold is None:
        typer.secho(f"no threshold reaches precision {target_precision} on these queries; nothing written", fg="red")
        return None
    exp = res.expected
    if fusion is not None:
        echo(f"index {bundle.version}: fusion weight {fusion.alpha:g} (now {current_alpha:g})")
    was = f" (was {tuned_before['threshold']:.4f}, tuned)" if tuned_before else f" (now {engine.min_score(bundle):.4f})"
    echo(
        f"index {bundle.version}: threshold {res.threshold:.4f} -> precision {exp.precision:.3f}, "
        f"coverage {exp.coverage:.3f} on {len(qs)} queries{was}"
    )
    if per_intent:
        if res.per_intent:
            for intent, d in res.per_intent.items():
                echo(f"  {intent:<28} {d.threshold:.4f}  ({d.queries} queries, coverage {d.coverage:.3f})")
            e2 = res.expected_per_intent
            echo(f"with per-intent thresholds: precision {e2.precision:.3f}, coverage {e2.coverage:.3f}")
        else:
            echo(f"no intent has {min_queries}+ queries reaching the target: the global threshold applies")
    body = {**res.to_dict(), **(fusion.to_dict() if fusion else {}), "queries": str(Path(queries).resolve())}
    body.update(per_intent_asked=per_intent, min_queries=min_queries, keep_fusion=keep_fusion)
    if fusion is None and tuned_before and "fusion_alpha" in tuned_before:
        body["fusion_alpha"] = tuned_before["fusion_alpha"]  # --keep-fusion keeps a tuned weight
    return body
