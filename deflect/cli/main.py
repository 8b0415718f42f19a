"""The ``deflect`` command: one small module per command group."""

from __future__ import annotations

import logging

import typer

from deflect.cli.evaluate import eval_app, tune_cmd
from deflect.cli.events import events_app, report_cmd, simulate_cmd
from deflect.cli.ingest import ingest_cmd
from deflect.cli.mail_cmd import mail_app
from deflect.cli.serve import index_app, serve_cmd, suggest_cmd
from deflect.cli.settings_cmd import config_app
from deflect.cli.train import models_app, train_cmd

app = typer.Typer(
    help="deflect: suggest help-center articles while customers type, and measure deflection.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("ingest")(ingest_cmd)
app.command("serve")(serve_cmd)
app.command("suggest")(suggest_cmd)
app.command("train")(train_cmd)
app.add_typer(index_app, name="index")
app.add_typer(models_app, name="models")
app.command("report")(report_cmd)
app.command("simulate")(simulate_cmd)
app.add_typer(events_app, name="events")
app.add_typer(eval_app, name="eval")
app.command("tune")(tune_cmd)
app.add_typer(config_app, name="config")
app.add_typer(mail_app, name="mail")


# libraries whose records below WARNING the command line never prints
QUIET_LIBRARIES = ("bm25s",)


class QuietLibraries(logging.Filter):
    """Drops records below WARNING from :data:`QUIET_LIBRARIES`. A filter on our handlers,
    not a logger level: bm25s logs every index build and sets its own logger to DEBUG when
    it is imported, which happens lazily, after this command's logging is configured."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] not in QUIET_LIBRARIES


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more; tracebacks of errors.")) -> None:
    from deflect.cli import common

    common.VERBOSE = verbose
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:  # the command line's choice, not the library's
        if not any(isinstance(f, QuietLibraries) for f in handler.filters):
            handler.addFilter(QuietLibraries())


if __name__ == "__main__":
    app()
