"""deflect ingest SOURCE [SOURCE ...]."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deflect.cli.common import HomeOpt, friendly, settings_for


@friendly
def ingest_cmd(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Folders of Markdown/HTML/text files, CSV/JSONL files or Zendesk exports; several form one index."
        ),
    ],
    fmt: Annotated[str, typer.Option("--format", help="auto, markdown, html, csv, jsonl or zendesk.")] = "auto",
    home: HomeOpt = None,
    full: Annotated[bool, typer.Option("--full", help="Re-embed every article, not only changed ones.")] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Accept removing more than DEFLECT_INGEST_MAX_REMOVED of the articles.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would change; write nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Ingest a knowledge base (from one source or several): embed new and changed articles, drop
    deleted ones, swap the index in."""
    import sys

    from deflect.kb_ingest.pipeline import RemovalRefused, ingest
    from deflect.models.embedders import load_embedder

    settings = settings_for(home)

    def run(limit):
        return ingest(
            sources,
            settings.home,
            lambda languages: load_embedder(settings, purpose="ingest", languages=languages),
            fmt=fmt,
            chunk_tokens=settings.chunk_tokens,
            chunk_overlap=settings.chunk_overlap,
            ann_threshold=settings.ann_threshold,
            progress=not as_json and not dry_run,
            full=full,
            dry_run=dry_run,
            max_removed=limit,
        )

    limit = None if replace or dry_run or settings.ingest_max_removed >= 1 else settings.ingest_max_removed
    try:
        summary = run(limit)
    except RemovalRefused as exc:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise
        typer.secho(str(exc), fg=typer.colors.YELLOW)
        if not typer.confirm(f"remove these {len(exc.summary.removed)} articles?", default=False):
            raise SystemExit(1) from None
        summary = run(None)
    if dry_run:
        _print_dry_run(summary, as_json)
        return
    tuning = _carry_tuning(settings, summary) if summary.changed and summary.previous_version else None
    if as_json:
        typer.echo(json.dumps({**summary.as_dict(), "tuning": tuning}, indent=2))
        return
    langs = ", ".join(f"{n} {lang}" for lang, n in sorted(summary.languages.items(), key=lambda x: -x[1]))
    typer.echo(f"articles by language: {langs}; encoder {summary.encoder}")
    typer.echo(
        f"added {len(summary.added)}, updated {len(summary.updated)}, unchanged {len(summary.unchanged)}, "
        f"removed {len(summary.removed)}, skipped {len(summary.skipped)}"
    )
    if summary.leftovers_removed:
        typer.echo(
            f"removed {summary.leftovers_removed} temporary files or folders left by a run that did not finish "
            f"({summary.leftover_bytes / 1e6:.1f} MB)"
        )
    for s in summary.skipped:
        typer.secho(f"  skipped {s.origin}: {s.reason}", fg=typer.colors.YELLOW)
    if summary.changed:
        typer.echo(
            f"index {summary.version} is now current ({summary.chunks} chunks, "
            f"{summary.embedded_chunks} embedded, {summary.seconds:.1f}s)"
        )
    else:
        typer.echo(f"no changes; index {summary.version} stays current")
    if tuning:
        typer.echo(tuning)


def _carry_tuning(settings, summary) -> str | None:
    """The previous index's tuning, carried to the new one: re-tuned on the same labeled
    queries when their file is still there (same target precision, per-intent choice and
    fusion choice), else copied. What was done, in one line (None: it was not tuned)."""
    from deflect.cli.evaluate import tune_index
    from deflect.models import bundle as B
    from deflect.tuning import carry_over, read_tuning, write_tuning

    prev_dir = B.bundle_path(settings.home, "index", summary.previous_version)
    new_dir = B.bundle_path(settings.home, "index", summary.version)
    tuned = read_tuning(prev_dir)
    if tuned is None:
        return None
    queries = Path(tuned.get("queries") or "")
    if tuned.get("queries") and queries.is_file() and tuned.get("target_precision"):
        from deflect.core.errors import InvalidInputError
        from deflect.engine import Engine

        engine = Engine(settings)
        engine.index.refresh(wait=True)
        try:
            body = tune_index(
                engine,
                queries,
                float(tuned["target_precision"]),
                per_intent=bool(tuned.get("per_intent_asked", bool(tuned.get("per_intent")))),
                min_queries=int(tuned.get("min_queries", 20)),
                keep_fusion=bool(tuned.get("keep_fusion", "fusion_alpha" not in tuned)),
                echo=lambda _line: None,
            )
        except InvalidInputError:  # its queries name too many articles this index no longer has
            body = None
        if body is not None:
            write_tuning(new_dir, body)
            return (
                f"tuning: re-tuned on {queries} for precision {tuned['target_precision']:g}: "
                f"threshold {tuned['threshold']:.4f} -> {body['threshold']:.4f}"
            )
    copied = carry_over(prev_dir, new_dir, summary.previous_version)
    why = "its queries file is gone" if not queries.is_file() else "it could not be re-tuned on the new index"
    return (
        f"tuning: copied from index {summary.previous_version} (threshold {copied['threshold']:.4f}; {why}: "
        "run `deflect tune` to tune this index)"
    )


def _print_dry_run(summary, as_json: bool) -> None:
    """What an ingest would change (``--dry-run``)."""
    if as_json:
        typer.echo(json.dumps({**summary.as_dict(), "dry_run": True, "removed_ids": summary.removed}, indent=2))
        return
    typer.echo(
        f"dry run, nothing written: would add {len(summary.added)}, update {len(summary.updated)}, keep "
        f"{len(summary.unchanged)} unchanged, remove {len(summary.removed)}, skip {len(summary.skipped)}; "
        f"{summary.embedded_chunks} chunks to embed"
    )
    for what, ids in (("add", summary.added), ("update", summary.updated), ("remove", summary.removed)):
        if ids:
            typer.echo(f"  {what}: {', '.join(ids[:20])}{', ...' if len(ids) > 20 else ''}")
    for s in summary.skipped:
        typer.secho(f"  skip {s.origin}: {s.reason}", fg=typer.colors.YELLOW)
