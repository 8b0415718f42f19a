"""Shared CLI plumbing: settings from options, errors to exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import click
import typer

from deflect.config import Settings, load_settings
from deflect.core.errors import DeflectError

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", envvar="DEFLECT_HOME", help="Data home (indexes, models, events).", show_default=False),
]


def settings_for(home: Path | None, **overrides) -> Settings:
    """Settings from the data home's ``deflect.toml`` and the environment, with CLI options
    applied on top; a value that is not valid is one line naming where it came from."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if home is not None:
        values["home"] = home
    return load_settings(**values)


#: set by ``deflect --verbose``: an unexpected error then shows its traceback
VERBOSE = False


def friendly(fn: Callable) -> Callable:
    """Turn a :class:`DeflectError` into a message on stderr and exit code 1, and any other
    error into one line too (with its traceback only under ``--verbose``)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DeflectError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            sys.exit(1)
        except (KeyboardInterrupt, SystemExit, typer.Exit, typer.Abort, click.exceptions.ClickException):
            raise
        except Exception as exc:
            if VERBOSE:
                raise
            where = f"{exc.filename}: " if isinstance(exc, OSError) and exc.filename else ""
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            typer.secho(
                f"error: {where}{text or type(exc).__name__} ({type(exc).__name__}; `deflect --verbose ...` shows "
                "where it happened)",
                fg=typer.colors.RED,
                err=True,
            )
            sys.exit(1)

    return wrapper


def version_or_current(home: Path, kind: str, version: str) -> str:
    """``version``, or the current one of ``kind`` for ``current`` (:class:`NotReadyError` when
    there is none)."""
    from deflect.core.errors import NotReadyError
    from deflect.models import bundle as B

    if version != "current":
        return version
    current = B.read_pointer(home, kind)
    if current is None:
        hint = ": run `deflect ingest SOURCE` first" if kind == "index" else ""
        raise NotReadyError(f"no current {kind} in {home}{hint}")
    return current


def print_manifest(home: Path, kind: str, version: str) -> None:
    """``deflect index show`` / ``deflect models show``: a version's manifest as JSON."""
    import json

    from deflect.models import bundle as B

    version = version_or_current(home, kind, version)
    typer.echo(json.dumps(B.read_manifest(B.bundle_path(home, kind, version)), indent=2))
