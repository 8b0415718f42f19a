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
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Ingest a knowledge base (from one source or several): embed new and changed articles, drop
    deleted ones, swap the index in."""
    from deflect.kb_ingest.pipeline import ingest
    from deflect.models.embedders import load_embedder

    settings = settings_for(home)
    summary = ingest(
        sources,
        settings.home,
        lambda languages: load_embedder(settings, purpose="ingest", languages=languages),
        fmt=fmt,
        chunk_tokens=settings.chunk_tokens,
        chunk_overlap=settings.chunk_overlap,
        ann_threshold=settings.ann_threshold,
        progress=not as_json,
        full=full,
    )
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
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
