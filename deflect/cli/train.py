"""deflect train / deflect models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deflect.cli.common import HomeOpt, friendly, print_manifest, settings_for

models_app = typer.Typer(help="List, inspect, promote and roll back intent models.", no_args_is_help=True)


def _print_metrics(m: dict) -> None:
    typer.echo(
        f"validation ({m['n']} texts): accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  ECE {m['ece']:.4f}"
    )
    if "oos_recall" in m:
        typer.echo(
            f"out of scope: recall {m['oos_recall']:.4f}  AUROC {m['oos_auroc']:.4f}  "
            f"in-scope accuracy (correct and accepted) {m['in_scope_accuracy']:.4f}"
        )
    typer.echo(f"\n{'intent':<32} {'precision':>9} {'recall':>7} {'F1':>6} {'n':>5}")
    for label, r in sorted(m["per_intent"].items()):
        typer.echo(f"{label:<32} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['f1']:>6.3f} {r['support']:>5}")


@friendly
def train_cmd(
    data: Annotated[list[Path], typer.Argument(help="CSV or JSONL files of labeled texts (several form one set).")],
    text_col: Annotated[str, typer.Option(help="Column with the text.")] = "text",
    label_col: Annotated[str, typer.Option(help="Column with the intent label.")] = "label",
    oos_label: Annotated[str | None, typer.Option(help="Label that marks out-of-scope examples.")] = None,
    val_split: Annotated[
        float, typer.Option(help="With --cv-folds 0 or --finetune: share of each intent held out for validation.")
    ] = 0.1,
    cv_folds: Annotated[
        int,
        typer.Option(
            help="Cross-validation folds for calibration and validation; the model is then fit on all the data "
            "(0: hold out --val-split instead)."
        ),
    ] = 5,
    seed: Annotated[int, typer.Option(help="Seed for the split and the model.")] = 0,
    promote: Annotated[bool, typer.Option(help="Make it current if not worse than the current model.")] = False,
    force: Annotated[bool, typer.Option(help="With --promote: promote even if worse.")] = False,
    finetune: Annotated[
        bool, typer.Option(help="Also adapt the encoder to the data (CPU, bounded by --time-budget).")
    ] = False,
    time_budget: Annotated[
        float, typer.Option(help="Minutes allowed for --finetune's encoder training.", min=0.1)
    ] = 10.0,
    head_epochs: Annotated[
        int,
        typer.Option(
            help="Epochs of the fine-tuned head (the encoder's last two layers re-trained on the intents, "
            "combined with the linear model when validation says it helps); 0: no head.",
            min=0,
        ),
    ] = 4,
    home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train an intent model from labeled texts, validate it, and write a new model bundle."""
    from deflect.config import check_intents, current_index_encoder
    from deflect.core.datahome import DataHome
    from deflect.models.embedders import load_embedder
    from deflect.models.labeled import load_labeled_files
    from deflect.models.language import languages_of
    from deflect.models.training import TrainOptions, train

    settings = settings_for(home)
    DataHome(settings.home).check_writable()  # before the encoder is loaded
    rows = load_labeled_files(data, text_col, label_col)
    if promote:  # the policy's intents must be ones this model will know
        check_intents(settings, sorted(set(rows.labels)), model="the training data")
    # auto: the current index's encoder (one encoder pass per request), else the texts' languages
    languages = None if current_index_encoder(settings.home) else languages_of(rows.texts)
    embedder = load_embedder(settings, purpose="train", languages=languages)
    res = train(
        rows,
        settings.home,
        embedder,
        TrainOptions(
            oos_label=oos_label,
            val_split=val_split,
            cv_folds=cv_folds,
            seed=seed,
            promote=promote,
            force=force,
            finetune=finetune,
            time_budget_s=time_budget * 60,
            progress=finetune and not as_json,
            params={"head_epochs": head_epochs},
        ),
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "version": res.version,
                    "promoted": res.promoted,
                    "note": res.promotion_note,
                    "seconds": round(res.seconds, 2),
                    "validation": res.metrics,
                },
                indent=2,
            )
        )
        return
    typer.echo(
        f"trained {res.version} on {len(rows.texts)} texts, {len(set(rows.labels))} intents in {res.seconds:.1f}s"
    )
    head = res.manifest.get("head")
    if head and "skipped" in head:
        typer.echo(f"fine-tuned head: skipped ({head['skipped']})")
    elif head:
        typer.echo(
            f"fine-tuned head: {head['epochs']} epochs in {head['seconds']:.0f}s on {head['trained_rows']} texts; "
            f"weight {head['weight']:g} chosen on {head['validation_rows']} held-out texts"
            + ("" if head["weight"] > 0 else " (it did not help: not used)")
        )
    _print_metrics(res.metrics)
    typer.echo(f"\n{res.promotion_note}")


@models_app.command("list")
@friendly
def models_list(home: HomeOpt = None) -> None:
    """Model versions on disk, the current one marked with *."""
    from deflect.models import bundle as B

    settings = settings_for(home)
    cur = B.read_pointer(settings.home, "model")
    versions = B.list_versions(settings.home, "model")
    if not versions:
        typer.echo(f"no models in {settings.home}: run `deflect train DATA`")
    for v in versions:
        m = B.read_manifest(B.bundle_path(settings.home, "model", v))
        val = m.get("validation", {})
        typer.echo(
            f"{'*' if v == cur else ' '} {v}  {len(m.get('labels', [])):>3} intents  "
            f"macro-F1 {val.get('macro_f1', float('nan')):.4f}  data {m.get('data', {}).get('path')}"
        )


@models_app.command("show")
@friendly
def models_show(
    version: Annotated[str, typer.Argument(help="A model version, or 'current'.")], home: HomeOpt = None
) -> None:
    """The manifest of a model: labels, threshold, validation metrics, data and embedder."""
    print_manifest(settings_for(home).home, "model", version)


@models_app.command("promote")
@friendly
def models_promote(
    version: Annotated[str, typer.Argument(help="The model version to make current.")], home: HomeOpt = None
) -> None:
    """Make VERSION the current model (the API picks it up without a restart)."""
    from deflect.config import check_intents
    from deflect.models import bundle as B
    from deflect.models.registry import promote_version

    settings = settings_for(home)
    labels = B.read_manifest(B.bundle_path(settings.home, "model", version)).get("labels") or []
    check_intents(settings, list(labels), model=f"model {version}")
    promote_version(settings.home, version)
    typer.echo(f"{version} is now the current model")


@models_app.command("rollback")
@friendly
def models_rollback(home: HomeOpt = None) -> None:
    """Go back to the model that was current before the current one."""
    from deflect.models.registry import rollback

    settings = settings_for(home)
    typer.echo(f"rolled back: {rollback(settings.home)} is now the current model")


def _models_prune():
    from deflect.cli.serve import prune_cmd

    return prune_cmd("model")


models_app.command("prune")(_models_prune())
