"""The files in deploy/: what the Dockerfile copies exists, and the commands they run are
ones `deflect` has, with options it takes."""

from __future__ import annotations

import configparser
import itertools
import re
import shlex

import pytest
from typer.testing import CliRunner

from deflect.cli.main import app
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"


def _takes(command: list[str]) -> None:
    """``deflect SUBCOMMAND --opt ...``: every option is one the subcommand's --help lists."""
    assert command[0].endswith("deflect"), command
    sub = list(itertools.takewhile(lambda a: not a.startswith("-"), command[1:]))  # e.g. serve, or mail poll
    helptext = CliRunner().invoke(app, [*sub, "--help"], terminal_width=200).output
    for opt in (a.split("=")[0] for a in command[1:] if a.startswith("--")):
        assert opt in helptext, f"{opt} is not an option of deflect {' '.join(sub)}"


def test_the_dockerfile_copies_what_exists_and_runs_deflect_serve():
    text = (DEPLOY / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (\S+)", text, flags=re.M):
        assert (ROOT / src).exists(), src
    assert "torch==2.13.0" in text and "download.pytorch.org/whl/cpu" in text
    cmd = re.search(r"^CMD (\[.*\])", text, flags=re.M).group(1)
    _takes(eval(cmd))  # noqa: S307 (a JSON array of strings)
    for var in re.findall(r"(DEFLECT_[A-Z_]+)=", text):
        from deflect.config import Settings

        assert var.removeprefix("DEFLECT_").lower() in Settings.model_fields or var in (
            "DEFLECT_HOST", "DEFLECT_PORT", "DEFLECT_WORKERS"
        ), var  # fmt: skip


@pytest.mark.parametrize(
    ("name", "command"), [("deflect.service", ["serve"]), ("deflect-mail.service", ["mail", "poll"])]
)
def test_the_systemd_units_run_deflect_with_options_it_takes(name, command):
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string((DEPLOY / name).read_text())
    exec_start = shlex.split(unit["Service"]["ExecStart"])
    assert exec_start[1 : 1 + len(command)] == command
    _takes(exec_start)
    assert unit["Service"]["ReadWritePaths"] == "/var/lib/deflect" and unit["Install"]["WantedBy"]
