"""deflect serve / suggest / index info."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from deflect.cli.common import HomeOpt, friendly, print_manifest, settings_for

index_app = typer.Typer(help="List, inspect, promote, roll back and prune index versions.", no_args_is_help=True)


@friendly
def serve_cmd(
    host: Annotated[str, typer.Option(envvar="DEFLECT_HOST", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="DEFLECT_PORT", help="TCP port.")] = 8000,
    home: HomeOpt = None,
    workers: Annotated[int, typer.Option(envvar="DEFLECT_WORKERS", help="Server processes.")] = 1,
) -> None:
    """Serve the HTTP API (and the widget) with uvicorn."""
    import logging
    import os

    import uvicorn

    from deflect.api.server import uvicorn_options
    from deflect.config import check_intents, current_model_labels

    logging.getLogger("deflect").setLevel(logging.INFO)  # swaps of index and model, the access log
    settings = settings_for(home)
    version, labels = current_model_labels(settings.home)
    check_intents(settings, labels, model=f"model {version}")  # one line, before the server starts
    bounds = uvicorn_options(settings)  # header and keep-alive timeouts, connection limit
    if workers > 1:
        os.environ["DEFLECT_HOME"] = str(settings.home)
        uvicorn.run(
            "deflect.api.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
            **bounds,
        )
        return
    from deflect.api.main import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=False, **bounds)


@friendly
def suggest_cmd(
    text: Annotated[str, typer.Argument(help="What the customer typed.")],
    k: Annotated[int, typer.Option("-k", min=1, max=10, help="How many suggestions.")] = 3,
    home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the suggestions for TEXT, as the API would return them."""
    from deflect.engine import Engine, SuggestQuery

    engine = Engine(settings_for(home))
    res = engine.suggest(SuggestQuery(description=text, k=k))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "intent": res.intent.summary() if res.intent else None,
                    "model_version": res.model_version,
                    "abstained": res.abstained,
                    "reason": res.reason,
                    "suggestions": [s.__dict__ for s in res.would_show],
                    "index_version": res.index_version,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    if res.intent:
        typer.echo(
            f"intent: {res.intent.label} ({res.intent.confidence:.2f})"
            + ("  [out of scope]" if res.intent.out_of_scope else "")
        )
    if res.abstained:
        typer.secho(f"abstained: {res.reason} (what would have been shown is listed below)", fg=typer.colors.YELLOW)
    for i, s in enumerate(res.would_show, 1):
        typer.echo(f"{i}. [{s.score:.3f}] {s.title}  ({s.article_id})\n   {s.url}\n   {s.snippet[:160]!s}")


@index_app.command("info")
@friendly
def index_info(
    home: HomeOpt = None, version: Annotated[str | None, typer.Option(help="A version; default current.")] = None
) -> None:
    """Version, counts, embedder and creation time of an index bundle."""
    from deflect.core.errors import NotReadyError
    from deflect.models import bundle as B

    settings = settings_for(home)
    version = version or B.read_pointer(settings.home, "index")
    if version is None:
        raise NotReadyError(f"no index in {settings.home}: run `deflect ingest SOURCE` first")
    m = B.read_manifest(B.bundle_path(settings.home, "index", version))
    emb = m.get("embedder", {})
    typer.echo(
        f"version:    {m['version']}\ncreated:    {m['created_at']}\n"
        f"articles:   {m['counts']['articles']}\nchunks:     {m['counts']['chunks']}\n"
        f"embedder:   {emb.get('name')} (dim {emb.get('dimension')}, fingerprint {emb.get('fingerprint')})\n"
        f"vectors:    {m.get('vector_index')}\nchunking:   {m.get('chunking')}\nsource:     {m.get('source')}"
    )
    others = B.list_versions(settings.home, "index")
    typer.echo(f"versions:   {len(others)} on disk")


@index_app.command("list")
@friendly
def index_list(home: HomeOpt = None) -> None:
    """Index versions on disk, the current one marked."""
    from deflect.models import bundle as B

    settings = settings_for(home)
    cur = B.read_pointer(settings.home, "index")
    for v in B.list_versions(settings.home, "index"):
        m = B.read_manifest(B.bundle_path(settings.home, "index", v))
        typer.echo(
            f"{'*' if v == cur else ' '} {v}  {m['counts']['articles']:>6} articles {m['counts']['chunks']:>7} chunks"
        )


@index_app.command("show")
@friendly
def index_show(
    version: Annotated[str, typer.Argument(help="A version, or current.")] = "current", home: HomeOpt = None
) -> None:
    """An index version's manifest (JSON)."""
    print_manifest(settings_for(home).home, "index", version)


@index_app.command("promote")
@friendly
def index_promote(
    version: Annotated[str, typer.Argument(help="The index version to make current.")], home: HomeOpt = None
) -> None:
    """Make VERSION the current index (a running server picks it up without a restart)."""
    from deflect.models import bundle as B
    from deflect.models.index_bundle import IndexBundle

    settings = settings_for(home)
    IndexBundle.load(B.bundle_path(settings.home, "index", version))  # verified before it is made current
    B.set_current(settings.home, "index", version)
    typer.echo(f"{version} is now the current index")


@index_app.command("rollback")
@friendly
def index_rollback(home: HomeOpt = None) -> None:
    """Go back to the index that was current before the current one."""
    from deflect.models import bundle as B

    settings = settings_for(home)
    typer.echo(f"rolled back: {B.roll_back(settings.home, 'index')} is now the current index")


def prune_cmd(kind: str):
    """``deflect index prune`` / ``deflect models prune``."""

    @friendly
    def prune(
        keep: Annotated[int, typer.Option("--keep", min=1, help="How many of the newest versions to keep.")] = 5,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be deleted.")] = False,
        home: HomeOpt = None,
    ) -> None:
        from deflect.models import bundle as B

        settings = settings_for(home)
        doomed = B.prunable(settings.home, kind, keep)
        if dry_run or not doomed:
            typer.echo(f"would delete {len(doomed)} {kind} versions" + (f": {', '.join(doomed)}" if doomed else ""))
            return
        gone = B.prune(settings.home, kind, keep)
        typer.echo(f"deleted {len(gone)} {kind} versions: {', '.join(gone)} (kept the newest {keep}, the current "
                   "one and the one a rollback returns to)")  # fmt: skip

    prune.__doc__ = (
        f"Delete old {kind} versions: all but the newest --keep, never the current one or the one a rollback "
        "returns to."
    )
    return prune


index_app.command("prune")(prune_cmd("index"))
