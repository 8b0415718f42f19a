"""deflect config show | get KEY | set KEY VALUE... | unset KEY: the data home's settings file.

The file (``deflect.toml`` in the data home) holds the deployment's policy, so that ``serve``,
``suggest``, ``simulate``, ``report`` and ``train`` read the same values whatever the shell's
environment; an environment variable still overrides it, and ``show`` says which applies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deflect.cli.common import HomeOpt, friendly, settings_for

config_app = typer.Typer(
    help="The data home's settings file (deflect.toml): show, get, set, unset.", no_args_is_help=True
)


def _plain(value):
    """A setting's value as TOML and JSON can hold it."""
    if hasattr(value, "get_secret_value"):
        return "********"
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def _parse(key: str, values: list[str]):
    """VALUE... as given on the command line, for ``key``: lists comma-separated or repeated,
    ``intent_articles`` as ``intent=article,article ...`` pairs or a JSON file of the mapping
    (copied into the settings file), ``mail_queues`` as ``intent=queue`` pairs or a JSON file of them."""
    if key == "intent_articles" and len(values) == 1 and values[0].endswith(".json"):
        from deflect.engine import _read_mapping  # the mapping goes into the file: it travels with the home

        return _read_mapping(values[0])
    if key == "intent_articles" and any("=" in v for v in values):
        out: dict[str, list[str]] = {}
        for pair in values:
            intent, sep, articles = pair.partition("=")
            if not sep or not intent.strip():
                raise typer.BadParameter(f"{pair!r}: expected intent=article,article")
            out[intent.strip()] = [a.strip() for a in articles.split(",") if a.strip()]
        return out
    if key == "mail_queues" and len(values) == 1 and values[0].endswith(".json"):
        try:
            queues = json.loads(Path(values[0]).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"{values[0]}: {exc}") from None
        if not isinstance(queues, dict) or not all(isinstance(v, str) for v in queues.values()):
            raise typer.BadParameter(f"{values[0]}: expected a JSON object of intent -> queue")
        return queues
    if key == "mail_queues" and any("=" in v for v in values):
        queues: dict[str, str] = {}
        for pair in ",".join(values).split(","):
            intent, sep, queue = pair.partition("=")
            if not sep or not intent.strip() or not queue.strip():
                raise typer.BadParameter(f"{pair!r}: expected intent=queue")
            queues[intent.strip()] = queue.strip()
        return queues
    return ",".join(values) if len(values) > 1 else values[0]


@config_app.command("show")
@friendly
def show_cmd(
    home: HomeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every setting's value and where it comes from (env, file, default)."""
    from deflect.config import settings_file, value_sources

    settings = settings_for(home)
    sources = value_sources(settings, {"home": home})
    rows = {k: {"value": _plain(getattr(settings, k)), "source": sources[k]} for k in sources}
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    typer.echo(f"settings file: {settings_file(settings.home)}")
    width = max(len(k) for k in rows)
    for k, r in rows.items():
        typer.echo(f"{k:<{width}}  {r['source']:<7}  {json.dumps(r['value'], ensure_ascii=False)}")


@config_app.command("get")
@friendly
def get_cmd(
    key: Annotated[str, typer.Argument(help="A setting's name, e.g. never_deflect.")], home: HomeOpt = None
) -> None:
    """One setting's effective value (JSON)."""
    settings = settings_for(home)
    _known(key)
    typer.echo(json.dumps(_plain(getattr(settings, key)), ensure_ascii=False))


@config_app.command("set")
@friendly
def set_cmd(
    key: Annotated[str, typer.Argument(help="A setting's name, e.g. never_deflect.")],
    values: Annotated[list[str], typer.Argument(help="Its value (lists: comma-separated or several).")],
    home: HomeOpt = None,
) -> None:
    """Write a setting into the data home's settings file, once it is valid (intent names are
    checked against the current model)."""
    from deflect.config import check_intents, current_model_labels, load_settings, settings_file

    _known(key)
    base = settings_for(home)
    candidate = load_settings(home=base.home, **{key: _parse(key, values)})
    version, labels = current_model_labels(base.home)
    if key in ("never_deflect", "intent_articles"):
        check_intents(candidate, labels, model=f"model {version}")
    if key == "mail_templates" and candidate.mail_templates:
        from deflect.mail import load_templates

        candidate.mail_templates = str(Path(candidate.mail_templates).resolve())
        load_templates(candidate.mail_templates)  # a file that cannot be used is not written
    value = _plain(getattr(candidate, key))
    _write(settings_file(base.home), key, value)
    shown = json.dumps(value, ensure_ascii=False)
    if len(shown) > 200 and isinstance(value, dict):
        shown = f"{{{len(value)} entries}}"
    typer.echo(f"{key} = {shown} (in {settings_file(base.home)})")
    if key in ("never_deflect", "intent_articles") and not labels:
        typer.echo("no intent model yet: the names are checked when one is trained (--promote) and at start")
    _warn_env(key)


@config_app.command("unset")
@friendly
def unset_cmd(key: Annotated[str, typer.Argument(help="A setting's name.")], home: HomeOpt = None) -> None:
    """Remove a setting from the settings file (its default, or the environment, applies)."""
    from deflect.config import settings_file

    _known(key)
    base = settings_for(home)
    _write(settings_file(base.home), key, None)
    typer.echo(f"{key} removed from {settings_file(base.home)}")


def _known(key: str) -> None:
    from deflect.config import check_setting_name

    check_setting_name(key)


def _write(path, key: str, value) -> None:
    """``key = value`` in the TOML file at ``path`` (None: removed), its comments kept, atomically."""
    import tomlkit

    from deflect.core.atomic import atomic_write_text

    doc = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    if not path.exists():
        doc.add(
            tomlkit.comment(
                "deflect's settings for this data home (`deflect config set`); DEFLECT_* variables override them"
            )
        )
    if value is None or value == "" or value == []:
        doc.pop(key, None)
    else:
        doc[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, tomlkit.dumps(doc))


def _warn_env(key: str) -> None:
    import os

    env = f"DEFLECT_{key.upper()}"
    if env in os.environ:
        typer.secho(f"note: {env} is set in this environment and overrides the file", fg=typer.colors.YELLOW)
