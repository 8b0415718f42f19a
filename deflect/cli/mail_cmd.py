"""deflect mail: triage or replay a mailbox, poll an IMAP folder, see what was answered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deflect.cli.common import HomeOpt, friendly, settings_for

mail_app = typer.Typer(
    help="Inbound e-mail: triage or replay a mailbox, poll an IMAP folder, see what was answered.",
    no_args_is_help=True,
)


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
    deliver: Annotated[
        bool,
        typer.Option(
            "--deliver",
            help="Handle each message as POST /v1/inbound does: record it, acknowledge it (SMTP, or the data "
            "home's mail/outbox), measure it. A message already recorded is skipped.",
        ),
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Triage every message (intent, queue, priority, articles or the abstention) as
    ``POST /v1/inbound`` would. Without ``--deliver`` nothing is recorded or answered: for
    checking the routing on past mail. With it, the mailbox is replayed into the service."""
    from deflect.core.errors import InvalidInputError
    from deflect.engine import Engine
    from deflect.mail import parse_message, triage

    engine = Engine(settings_for(home))
    if deliver:
        return _replay(engine, file, as_json)
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


def _replay(engine, file: Path, as_json: bool) -> None:
    """``mail triage --deliver``: each message through the desk, once."""
    from deflect.core.errors import InvalidInputError
    from deflect.mailer import MailDesk

    desk = MailDesk.open(engine)
    counts: dict[str, int] = {}
    try:
        desk.reconcile()
        for where, raw in read_mailbox(file):
            try:
                h = desk.handle_raw(raw, f"file:{file.name}")
                out = h.to_json()
            except InvalidInputError as exc:
                out = {"outcome": "malformed", "reply": "none", "error": str(exc)}
            counts[out["outcome"]] = counts.get(out["outcome"], 0) + 1
            if as_json:
                typer.echo(json.dumps({"where": where, **out}, ensure_ascii=False))
            else:
                typer.echo(f"{where}  {out['outcome']}  queue {out.get('queue')}  reply {out['reply']}")
    finally:
        desk.store.close()
    if not as_json:
        typer.echo("; ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no messages")


@mail_app.command("poll")
@friendly
def poll_cmd(
    once: Annotated[bool, typer.Option("--once", help="Poll once and stop (for cron or a test).")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls.", min=1.0)] = 60.0,
    home: HomeOpt = None,
) -> None:
    """Read new messages from the IMAP folder (``imap_*`` settings) and handle each once:
    recorded, triaged, acknowledged. The folder is read-only to deflect; what was handled
    is kept in the event store, so a restart (or a crash) starts where it stopped."""
    from deflect.engine import Engine
    from deflect.imap import poll
    from deflect.mailer import MailDesk

    engine = Engine(settings_for(home))
    desk = MailDesk.open(engine)
    try:
        for r in poll(desk, engine.settings, once=once, interval=interval):
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items())) or "nothing new"
            typer.echo(f"{r.mailbox}: {r.fetched} fetched: {outcomes}")
    finally:
        desk.store.close()


@mail_app.command("status")
@friendly
def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
    home: HomeOpt = None,
) -> None:
    """How many messages were recorded, by outcome and by the state of their acknowledgement
    (``unconfirmed`` ones need a person: deflect never sends them again)."""
    from collections import Counter

    from deflect.store import open_store

    s = settings_for(home)
    store = open_store(s.database_url, s.home)
    try:
        rows = store.mail_messages()
    finally:
        store.close()
    out = {
        "messages": len(rows),
        "threads": len({r.thread for r in rows}),
        "followups": sum(r.followup for r in rows),
        "outcomes": dict(Counter(r.outcome for r in rows)),
        "replies": dict(Counter(r.reply_state for r in rows)),
        "unconfirmed": [r.message_key for r in rows if r.reply_state == "unconfirmed"],
    }
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    typer.echo(
        f"{out['messages']} messages in {out['threads']} threads ({out['followups']} further messages on a thread)"
    )
    for title, counts in (("outcome", out["outcomes"]), ("acknowledgement", out["replies"])):
        typer.echo(f"  by {title}: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"))
    for key in out["unconfirmed"]:
        typer.echo(f"  unconfirmed (check by hand, never sent again): {key}")
