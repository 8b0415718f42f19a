"""deflect report / events export|migrate|info|delete / simulate."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from deflect.cli.common import HomeOpt, friendly, settings_for
from deflect.core.errors import InvalidInputError

events_app = typer.Typer(help="The event store: export, migrate, inspect, delete.", no_args_is_help=True)

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="DEFLECT_DATABASE_URL",
        help="Event store URL (default: events.db in the data home).",
        show_default=False,
    ),
]


def parse_duration(text: str) -> timedelta:
    """``24h``, ``90m``, ``2d``, ``3600s`` (or a bare number of hours)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m:
        raise InvalidInputError(f"--window: {text!r} is not a duration like 24h, 90m or 2d", field="window")
    value, unit = float(m.group(1)), m.group(2) or "h"
    delta = timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: value})
    if delta <= timedelta(0):
        raise InvalidInputError("--window must be positive", field="window")
    return delta


def parse_when(text: str | None, name: str) -> datetime | None:
    """An ISO 8601 date or time (UTC when no zone is given)."""
    if not text:
        return None
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(f"--{name}: {text!r} is not an ISO 8601 date or time", field=name) from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def ticket_costs(settings):
    """The report's costs per ticket from the settings (``ticket_cost`` and per channel)."""
    from deflect.eval.deflection import TicketCosts
    from deflect.store.base import CHANNELS

    by_channel = {ch: getattr(settings, f"ticket_cost_{ch}") for ch in CHANNELS}
    return TicketCosts(
        default=settings.ticket_cost,
        by_channel={k: v for k, v in by_channel.items() if v is not None},
        currency=settings.currency,
    )


def _store(settings):
    """The event store the settings name."""
    from deflect.store import open_store

    return open_store(settings.database_url, settings.home)


def read_export(path: Path):
    """Suggestion records and events from a JSONL export (``deflect events export``)."""
    from deflect.store.base import Event, SuggestRecord

    recs, events = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read ({exc})") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            kind = d.pop("kind")
            if kind == "suggestion":
                recs.append(SuggestRecord.from_json(d))
            elif kind == "event":
                events.append(Event.from_json(d))
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(f"{path}:{n}: not an export record ({exc})") from exc
    return recs, events


def _channel_shares(text: str) -> dict[str, float]:
    """``form=0.7,email=0.3`` as a dict (the simulation checks the names and the sum)."""
    out: dict[str, float] = {}
    for pair in text.split(","):
        name, sep, share = pair.partition("=")
        try:
            out[name.strip()] = float(share)
        except ValueError:
            raise InvalidInputError(f"--channels: {pair!r} is not channel=share", field="channels") from None
        if not sep:
            raise InvalidInputError(f"--channels: {pair!r} is not channel=share", field="channels")
    return out


@friendly
def report_cmd(
    home: HomeOpt = None,
    database_url: DbOpt = None,
    since: Annotated[str | None, typer.Option(help="Sessions starting at or after (ISO 8601, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Sessions starting before (ISO 8601, UTC).")] = None,
    window: Annotated[str, typer.Option(help="Attribution window: 24h, 90m, 2d.")] = "24h",
    fmt: Annotated[str, typer.Option("--format", help="html, json or csv.")] = "html",
    out: Annotated[Path | None, typer.Option("--out", help="Write here (default: stdout; html: report.html).")] = None,
    from_export: Annotated[
        Path | None, typer.Option("--from-export", help="Read a JSONL export instead of the store.")
    ] = None,
    themes_by: Annotated[
        str, typer.Option("--themes-by", help="Group content gaps by 'meaning' (the encoder) or 'words'.")
    ] = "meaning",
    include_simulated: Annotated[
        bool, typer.Option("--include-simulated", help="Count rows written by `deflect simulate`.")
    ] = False,
    in_memory: Annotated[
        bool, typer.Option("--in-memory", help="Read every row into memory (the reference computation).")
    ] = False,
) -> None:
    """The deflection report: observed and incremental deflection, by intent, article and day, content gaps.

    Computed in the event store (SQL), so memory does not grow with the number of sessions."""
    from deflect.eval.deflection import BotRules, measure
    from deflect.eval.deflection_sql import measure_in_store
    from deflect.eval.report import build_report, to_csv, to_html, to_json

    if fmt not in ("html", "json", "csv"):
        raise InvalidInputError(f"--format: {fmt!r}; use html, json or csv", field="format")
    if themes_by not in ("meaning", "words"):
        raise InvalidInputError(f"--themes-by: {themes_by!r}; use meaning or words", field="themes_by")
    win = parse_duration(window)
    t0, t1 = parse_when(since, "since"), parse_when(until, "until")
    if t0 and t1 and t0 >= t1:
        raise InvalidInputError("--since must be before --until", field="since")
    settings = settings_for(home, database_url=database_url)
    rules = BotRules.from_settings(settings)
    measured = mail = None
    if from_export is not None:
        recs, events = read_export(from_export)
        measured = measure(recs, events, since=t0, until=t1, window=win, rules=rules)
    else:
        store = _store(settings)
        try:
            if not in_memory:
                measured = measure_in_store(
                    store, since=t0, until=t1, window=win, rules=rules, include_simulated=include_simulated
                )
            else:
                if not include_simulated and store.count_simulated():
                    raise InvalidInputError(
                        "--in-memory reads every row, simulated ones too: add --include-simulated",
                        field="in_memory",
                    )
                # a session that starts before --until may still act up to a window later
                hi = t1 + win if t1 else None
                recs = store.suggestions(since=t0, until=hi)
                events = store.events(since=t0 - win if t0 else None, until=hi)
                rejected = store.rejected(since=t0, until=hi)
                measured = measure(recs, events, since=t0, until=t1, window=win, rejected=rejected, rules=rules)
            from deflect.eval.mail_report import mail_summary

            mail = mail_summary(store, since=t0, until=t1, include_simulated=include_simulated)
            simulated_rows = 0 if include_simulated else store.count_simulated()
        finally:
            store.close()
        if simulated_rows:
            typer.echo(
                f"left out {simulated_rows:,} simulated rows (deflect simulate): --include-simulated counts them",
                err=True,
            )
    vectors = None
    if themes_by == "meaning":
        from deflect.models.embedders import load_embedder

        emb = load_embedder(settings)
        vectors = emb.encode
    rep = build_report(
        measured, vectors=vectors, titles=_titles(settings.home), costs=ticket_costs(settings), mail=mail
    )
    text = {"html": to_html, "json": to_json, "csv": to_csv}[fmt](rep)
    if out is None and fmt == "html":
        out = Path("report.html")
    if out is None:
        typer.echo(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    inc = measured.incremental
    ci = inc.ci95
    typer.echo(
        f"{measured.sessions:,} sessions, {measured.sessions_shown:,} shown suggestions; observed deflection "
        f"{_pct(measured.observed_deflection_rate)}, incremental {_pct(inc.incremental_deflection)}"
        + (f" (95% CI {_pct(ci[0])} to {_pct(ci[1])})" if ci else "")
        + f"; not counted: {measured.integrity.rejected_events:,} rejected events, "
        f"{measured.integrity.flagged_sessions:,} flagged sessions" + f"\nwrote {out}"
    )


def _titles(home: Path) -> dict[str, str]:
    """Article id -> title from the current index (empty when there is none)."""
    from deflect.models import bundle as B
    from deflect.models.index_bundle import read_articles

    version = B.read_pointer(home, "index")
    if version is None:
        return {}
    try:
        return {a.id: a.title for a in read_articles(B.bundle_path(home, "index", version))}
    except (OSError, ValueError, KeyError):
        return {}


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


@events_app.command("export")
@friendly
def export_cmd(
    home: HomeOpt = None,
    database_url: DbOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl (one file) or parquet (a directory).")] = "jsonl",
    out: Annotated[Path | None, typer.Option("--out", help="File (jsonl) or directory (parquet).")] = None,
    since: Annotated[str | None, typer.Option(help="From (ISO 8601, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Before (ISO 8601, UTC).")] = None,
) -> None:
    """Export suggestion records and events, for analysis elsewhere (queries are already redacted)."""
    if fmt not in ("jsonl", "parquet"):
        raise InvalidInputError(f"--format: {fmt!r}; use jsonl or parquet", field="format")
    t0, t1 = parse_when(since, "since"), parse_when(until, "until")
    store = _store(settings_for(home, database_url=database_url))
    try:
        recs, events = store.suggestions(since=t0, until=t1), store.events(since=t0, until=t1)
    finally:
        store.close()
    if fmt == "jsonl":
        lines = [json.dumps({"kind": "suggestion", **r.to_json()}, ensure_ascii=False) for r in recs]
        lines += [json.dumps({"kind": "event", **e.to_json()}, ensure_ascii=False) for e in events]
        text = "\n".join(lines) + ("\n" if lines else "")
        if out is None:
            typer.echo(text, nl=False)
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = out or Path("deflect-export")
        out.mkdir(parents=True, exist_ok=True)
        srows = [{**r.__dict__} for r in recs]
        erows = [{**e.__dict__} for e in events]
        pq.write_table(pa.Table.from_pylist(srows, schema=_suggest_schema(pa)), out / "suggestions.parquet")
        pq.write_table(pa.Table.from_pylist(erows, schema=_event_schema(pa)), out / "events.parquet")
    typer.echo(f"exported {len(recs):,} suggestion records and {len(events):,} events to {out}", err=True)


def _suggest_schema(pa):
    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("request_id", pa.string()),
            ("session_id", pa.string()),
            ("variant", pa.string()),
            ("query", pa.string()),
            ("abstained", pa.bool_()),
            ("reason", pa.string()),
            ("form_id", pa.string()),
            ("intent_label", pa.string()),
            ("intent_confidence", pa.float64()),
            ("shown", pa.list_(pa.string())),
            ("would_show", pa.list_(pa.string())),
            ("top_score", pa.float64()),
            ("index_version", pa.string()),
            ("model_version", pa.string()),
            ("latency_ms", pa.float64()),
            ("created_at", ts),
            ("client", pa.string()),
        ]
    )


def _event_schema(pa):
    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("event_id", pa.string()),
            ("session_id", pa.string()),
            ("type", pa.string()),
            ("ts", ts),
            ("received_at", ts),
            ("request_id", pa.string()),
            ("article_id", pa.string()),
            ("helpful", pa.bool_()),
        ]
    )


@events_app.command("migrate")
@friendly
def migrate_cmd(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Upgrade the event store's schema to this version of deflect (safe to run again)."""
    from deflect.store import open_store

    s = settings_for(home, database_url=database_url)
    store = open_store(s.database_url, s.home, migrate=False)
    try:
        before = store.schema_version()
        applied = store.migrate()
        typer.echo(
            f"{store.url}: schema {before} -> {store.schema_version()}"
            + (f" (applied {', '.join(map(str, applied))})" if applied else " (up to date)")
        )
    finally:
        store.close()


@events_app.command("delete")
@friendly
def delete_cmd(
    session: Annotated[
        str | None, typer.Option("--session", help="Delete every row of this session (a privacy request).")
    ] = None,
    before: Annotated[
        str | None,
        typer.Option("--before", help="Delete every row older than this (ISO 8601, UTC): a retention period."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be deleted; delete nothing.")] = False,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Delete a session's rows, or every row before a date, from the event store; prints what it deleted.

    Suggestion records count from when they were made, events from their time, rejected events
    from when they arrived. With both options, only that session's rows before the date go.
    """
    if session is None and before is None:
        raise InvalidInputError("name what to delete: --session ID, --before DATE, or both", field="session")
    if session is not None and not session.strip():
        raise InvalidInputError("--session must not be empty", field="session")
    t = parse_when(before, "before")
    store = _store(settings_for(home, database_url=database_url))
    try:
        counts = store.delete(session_id=session, before=t, dry_run=dry_run)
    finally:
        store.close()
    what = " and ".join(
        x for x in (f"session {session!r}" if session else "", f"before {t.isoformat()}" if t else "") if x
    )
    verb = "would delete" if dry_run else "deleted"
    typer.echo(f"{store.url}: {verb} {sum(counts.values()):,} rows of {what}")
    for table, n in counts.items():
        typer.echo(f"  {table:<16} {n:>10,}")


@events_app.command("info")
@friendly
def info_cmd(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Where the event store is, its schema version, and how many rows it holds. Changes
    nothing: a store that does not exist yet, or has no tables, is said to be so."""
    from deflect.core.datahome import DataHome
    from deflect.store import open_store

    settings = settings_for(home, database_url=database_url)
    url = (settings.database_url or "").strip()
    path = DataHome(settings.home).events_db if not url else (Path(url[10:]) if url.startswith("sqlite:///") else None)
    if path is not None and not path.exists():
        typer.echo(f"store:       {path}\nschema:      none (no such file: nothing recorded yet)")
        return
    store = open_store(settings.database_url, settings.home, migrate=False)
    try:
        version = store.schema_version()
        if version == 0:
            typer.echo(
                f"store:       {store.url}\nschema:      none (no tables yet: `deflect events migrate` makes them)"
            )
            return
        n = store.counts()
        typer.echo(
            f"store:       {store.url}\nschema:      {version}\n"
            + "".join(f"{k + ':':<12} {v:,}\n" for k, v in n.items())
        )
    finally:
        store.close()


@friendly
def simulate_cmd(
    queries: Annotated[Path, typer.Option("--queries", help="Labeled queries (CSV or JSONL, docs/evaluation.md).")],
    sessions: Annotated[int, typer.Option("--sessions", min=1, help="How many sessions.")] = 10_000,
    true_effect: Annotated[
        float, typer.Option("--true-effect", help="True drop in submit rate from suggestions.")
    ] = 0.15,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    days: Annotated[int, typer.Option("--days", min=1, help="Spread sessions over this many days.")] = 14,
    channels: Annotated[
        str,
        typer.Option(
            "--channels",
            help="Share of sessions per channel, e.g. form=0.7,chat=0.2,email=0.1 (e-mail sessions are threads: "
            "acknowledged, then a further message when the customer still needs a person).",
        ),
    ] = "form=0.7,chat=0.2,email=0.1",
    home: HomeOpt = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="The store to write into, named explicitly (default: simulated.db in the data home, never "
            "the live event store).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write simulated sessions (real engine answers, known true effect) into a store, marked as simulated."""
    from deflect.engine import Engine
    from deflect.eval.queries import load_queries
    from deflect.eval.simulate import simulate

    shares = _channel_shares(channels)
    qs = load_queries(queries)
    settings = settings_for(home)
    target = database_url or f"sqlite:///{Path(settings.home) / 'simulated.db'}"
    from deflect.store import open_store

    store = open_store(target, settings.home)
    engine = Engine(settings)

    try:
        summary = simulate(
            store,
            engine.suggest,
            qs,
            sessions=sessions,
            true_effect=true_effect,
            seed=seed,
            control_share=settings.control_share,
            salt=settings.control_salt or engine.provenance.salt,
            days=days,
            channels=shares,
        )
    finally:
        store.close()
    typer.echo(
        f"simulated {summary.sessions:,} sessions ({summary.rows:,} rows) from {summary.start:%Y-%m-%d} to "
        f"{summary.end:%Y-%m-%d} into {store.url}; true effect {true_effect} (a right article opened lowers the "
        f"submit probability by {summary.effect_per_right_open:.3f}); engine shows something for "
        f"{100 * summary.eligible_share:.0f}% of the queries\n"
        f"report: deflect report --database-url {target} --include-simulated"
    )
