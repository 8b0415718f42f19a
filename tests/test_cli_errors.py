"""Errors for people: every CLI error is one line naming the file, the value or the variable;
a traceback only with --verbose. Inspecting changes nothing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from deflect.cli.main import app
from tests.conftest import write

runner = CliRunner()


def one_line_error(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 1, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output, r.output
    return lines[0]


def test_a_folder_read_as_csv_and_a_jsonl_read_as_markdown(tmp_path):
    (tmp_path / "kb").mkdir()
    line = one_line_error("ingest", str(tmp_path / "kb"), "--format", "csv", "--home", str(tmp_path / "h"))
    assert "is a folder: --format csv reads one file" in line
    f = write(tmp_path / "kb.jsonl", '{"id": "a", "title": "A", "body": "x"}\n')
    line = one_line_error("ingest", str(f), "--format", "markdown", "--home", str(tmp_path / "h"))
    assert "looks like jsonl, not markdown" in line and "--format jsonl" in line


def test_tune_reset_needs_no_other_option_and_tune_without_queries_says_so(tmp_path):
    line = one_line_error("tune", "--home", str(tmp_path / "empty"))
    assert "no index" in line or "--queries" in line


def test_an_unexpected_error_is_one_line_and_verbose_shows_the_traceback(tmp_path, monkeypatch):
    import deflect.cli.serve as serve

    def boom(*a, **k):
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(serve, "settings_for", boom)
    line = one_line_error("index", "list")
    assert "the disk caught fire (RuntimeError; `deflect --verbose ...` shows where it happened)" in line
    r = runner.invoke(app, ["--verbose", "index", "list"])
    assert r.exit_code == 1 and isinstance(r.exception, RuntimeError)


def test_events_info_changes_nothing(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    r = runner.invoke(app, ["events", "info", "--home", str(home)])
    assert r.exit_code == 0 and "nothing recorded yet" in r.output
    assert not (home / "events.db").exists()
    (home / "events.db").touch()
    r = runner.invoke(app, ["events", "info", "--home", str(home)])
    assert r.exit_code == 0 and "no tables yet" in r.output
    import sqlite3

    with sqlite3.connect(home / "events.db") as c:
        assert c.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0


@pytest.mark.parametrize("value", ["abc", "-1"])
def test_a_bad_variable_is_one_line(tmp_path, monkeypatch, value):
    monkeypatch.setenv("DEFLECT_MIN_SCORE", value)
    line = one_line_error("index", "list", "--home", str(tmp_path))
    assert f"DEFLECT_MIN_SCORE={value!r}" in line
