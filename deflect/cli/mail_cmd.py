"""deflect mail triage FILE: the inbound-mail triage over an mbox file or a Maildir folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deflect.cli.common import HomeOpt, friendly, settings_for

mail_app = typer.Typer(help="Inbound e-mail: triage a mailbox.", no_args_is_help=True)


def read_mailbox(path: Path):
    """``(where, raw bytes)`` of every message of an mbox file or a Maildir folder."""
    import mailbox

    from deflect.core.errors import InvalidInputError

    if path.is_dir():
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise InvalidInputError(f"{path}: a folder that is not a Maildir (no cur/ or new/)", field="file")
        box = mailbox.Maildir(path, factory=None, create=False)
    elif path.is_file():
        box = mailbox.mbox(path, factory=None, create=False)
    else:
        raise InvalidInputError(f"{path}: no such file or directory", field="file")
    for n, key in enumerate(sorted(box.keys()) if path.is_dir() else box.keys(), 1):
        yield f"{path}#{n}", box.get_bytes(key)


@mail_app.command("triage")
@friendly
def triage_cmd(
    file: Annotated[Path, typer.Argument(help="An mbox file or a Maildir folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per message.")] = False,
    home: HomeOpt = None,
) -> None:
    """Triage every message (intent, queue, priority, articles or the abstention) as
    ``POST /v1/inbound`` would, without recording or answering anything: for backfills and
    for checking the routing on past mail."""
    from deflect.core.errors import InvalidInputError
    from deflect.engine import Engine
    from deflect.mail import parse_message, triage

    engine = Engine(settings_for(home))
    counts = {"messages": 0, "unreadable": 0, "automatic": 0, "answered": 0}
    for where, raw in read_mailbox(file):
        counts["messages"] += 1
        try:
            mail = parse_message(raw)
        except InvalidInputError as exc:
            counts["unreadable"] += 1
            typer.secho(f"{where}: skipped: {exc}", fg=typer.colors.YELLOW, err=True)
            continue
        t, _, _ = triage(engine, mail)
        counts["automatic"] += bool(mail.automatic)
        counts["answered"] += bool(t.suggestions) and not mail.automatic
        if as_json:
            typer.echo(json.dumps({"where": where, "subject": mail.subject, **t.to_json()}, ensure_ascii=False))
            continue
        if t.abstained:
            answer = f"abstained: {t.reason}"
        else:
            answer = ", ".join(s["article_id"] for s in t.suggestions) or "control group: shown nothing"
        auto = f"  [automatic: {mail.automatic}]" if mail.automatic else ""
        typer.echo(f"{where}  {t.intent or '-'}  queue {t.queue}  {t.priority}  {answer}{auto}  | {mail.subject[:60]}")
    if not as_json:
        typer.echo(
            f"{counts['messages']} messages: {counts['answered']} with articles, {counts['automatic']} automatic, "
            f"{counts['unreadable']} unreadable"
        )
