"""The CLI, run as a user would (real model, ONNX export shared across the run)."""

import json

import pytest
from typer.testing import CliRunner

from deflect.cli.main import app
from tests.conftest import DEMO_KB, write

pytestmark = pytest.mark.slow
runner = CliRunner()
INTENTS = DEMO_KB.parent / "intents.csv"


def ingest_demo_and_train(home, *train_args: str):
    """Ingest the demo help center, then `deflect train` the demo intents with ``train_args``."""
    r = runner.invoke(app, ["ingest", str(DEMO_KB), "--home", str(home)])
    assert r.exit_code == 0, r.output
    return runner.invoke(app, ["train", str(INTENTS), "--oos-label", "out_of_scope", *train_args, "--home", str(home)])


def test_ingest_suggest_info_and_incremental(tmp_path, real_home):
    kb = tmp_path / "kb"
    for f in sorted(DEMO_KB.rglob("*.md"))[:6]:
        write(kb / f.name, f.read_text())
    write(kb / "broken.md", b"\xff\xfe\xfa")
    r = runner.invoke(app, ["ingest", str(kb), "--home", str(real_home)])
    assert r.exit_code == 0, r.output
    assert "added 6, updated 0, unchanged 0, removed 0, skipped 1" in r.output
    assert "broken.md: not UTF-8" in r.output

    r = runner.invoke(app, ["index", "info", "--home", str(real_home)])
    assert r.exit_code == 0 and "articles:   6" in r.output and "all-MiniLM-L6-v2" in r.output

    r = runner.invoke(app, ["suggest", "how do I invite my staff", "--home", str(real_home), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["suggestions"][0]["article_id"] == "acc-002"

    (kb / sorted(p.name for p in kb.glob("acc-00*.md"))[0]).unlink()
    r = runner.invoke(app, ["ingest", str(kb), "--home", str(real_home), "--json"])
    summary = json.loads(r.stdout)
    assert (summary["added"], summary["unchanged"], summary["removed"]) == (0, 5, 1)

    faq = write(tmp_path / "faq.csv", "id,title,body\nfaq-1,Opening hours,We answer from 9 to 5 on weekdays.\n")
    r = runner.invoke(app, ["ingest", str(kb), str(faq), "--home", str(real_home)])  # two sources, one index
    assert r.exit_code == 0 and "added 1, updated 0, unchanged 5, removed 0" in r.output, r.output


def test_cli_errors_are_messages_not_tracebacks(tmp_path, real_home):
    r = runner.invoke(app, ["ingest", str(tmp_path / "missing"), "--home", str(real_home)])
    assert r.exit_code == 1 and "no such file" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["index", "info", "--home", str(tmp_path / "empty-home")])
    assert r.exit_code == 1 and "deflect ingest" in r.output


def test_train_models_and_suggest_with_intent(tmp_path, real_home):
    r = ingest_demo_and_train(real_home, "--promote")
    assert r.exit_code == 0, r.output
    assert "macro-F1" in r.output and "out of scope: recall" in r.output and "promoted" in r.output
    assert "billing_dispute" in r.output  # per-intent table
    r = runner.invoke(app, ["models", "list", "--home", str(real_home)])
    assert r.exit_code == 0 and r.output.startswith("* ")
    r = runner.invoke(app, ["models", "show", "current", "--home", str(real_home)])
    manifest = json.loads(r.stdout)
    assert "account_compromised" in manifest["labels"] and manifest["oos"]["label"] == "out_of_scope"
    r = runner.invoke(
        app,
        [
            "suggest",
            "someone logged into my account from another country, i did not do it",
            "--home",
            str(real_home),
            "--json",
        ],
        env={"DEFLECT_NEVER_DEFLECT": "account_compromised"},
    )
    out = json.loads(r.stdout)
    assert out["intent"]["label"] == "account_compromised" and out["abstained"] and out["reason"] == "never_deflect"
    bad = write(tmp_path / "bad.csv", "text,label\nhello,a\n")
    r = runner.invoke(app, ["train", str(bad), "--home", str(real_home)])
    assert r.exit_code == 1 and "only one class" in r.output
    r = runner.invoke(app, ["models", "rollback", "--home", str(real_home)])
    assert r.exit_code == 1 and "nothing to roll back" in r.output


def test_finetune_within_a_time_budget_serves_with_its_own_encoder(tmp_path, real_home):
    r = ingest_demo_and_train(real_home, "--finetune", "--time-budget", "0.15", "--promote", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["promoted"]
    manifest = json.loads(runner.invoke(app, ["models", "show", "current", "--home", str(real_home)]).stdout)
    enc = manifest["encoder"]
    assert enc["finetuned"] and enc["stopped_by_budget"] and enc["seconds"] < 30
    assert (real_home / "models" / manifest["version"] / "encoder" / "model.safetensors").exists()
    assert not list(real_home.glob(".finetune-*"))  # the scratch copy is gone
    r = runner.invoke(
        app, ["suggest", "i forgot my password and the reset email never came", "--json", "--home", str(real_home)]
    )
    res = json.loads(r.stdout)
    assert res["model_version"] == manifest["version"] and res["intent"]["label"]


def test_events_delete_prints_what_it_deleted_and_needs_a_condition(tmp_path):
    from datetime import UTC, datetime

    from deflect.store import Event, open_store

    url = f"sqlite:///{tmp_path / 'events.db'}"
    t = datetime(2026, 1, 5, tzinfo=UTC)
    s = open_store(url)
    s.add_events([Event("e1", "s1", "form_submitted", t, t), Event("e2", "s2", "form_submitted", t, t)])
    s.close()
    base = ["events", "delete", "--home", str(tmp_path), "--database-url", url]
    r = runner.invoke(app, base)
    assert r.exit_code == 1 and "--session" in r.output
    r = runner.invoke(app, [*base, "--before", "yesterday"])
    assert r.exit_code == 1 and "--before" in r.output
    r = runner.invoke(app, [*base, "--session", "s1", "--dry-run"])
    assert r.exit_code == 0 and "would delete 1 rows of session 's1'" in r.output
    r = runner.invoke(app, [*base, "--session", "s1"])
    assert r.exit_code == 0 and "deleted 1 rows of session 's1'" in r.output
    assert "events" in r.output and "sessions:    1" in runner.invoke(app, ["events", "info", *base[2:]]).output
    r = runner.invoke(app, [*base, "--before", "2026-02-01"])
    assert "deleted 1 rows of before 2026-02-01T00:00:00+00:00" in r.output


def test_an_ingest_that_would_empty_the_help_center_stops(tmp_path, real_home):
    kb = tmp_path / "kb"
    for f in sorted(DEMO_KB.rglob("*.md"))[:6]:
        write(kb / f.name, f.read_text())
    h = ["--home", str(real_home)]
    assert runner.invoke(app, ["ingest", str(kb), *h]).exit_code == 0
    faq = write(tmp_path / "faq.csv", "id,title,body\nfaq-1,Opening hours,We answer from 9 to 5 on weekdays.\n")
    r = runner.invoke(app, ["ingest", str(faq), *h])  # the folder left out by mistake
    assert r.exit_code == 1 and "would remove 6 of the 6 current articles (100%, more than 20%)" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["ingest", str(faq), "--dry-run", *h])
    assert r.exit_code == 0 and "dry run, nothing written: would add 1" in r.output and "remove 6" in r.output
    r = runner.invoke(app, ["index", "list", *h])
    assert r.output.count("articles") == 1  # still one version
    r = runner.invoke(app, ["ingest", str(faq), "--replace", *h])
    assert r.exit_code == 0 and "removed 6" in r.output, r.output
    r = runner.invoke(app, ["index", "rollback", *h])
    assert r.exit_code == 0 and "rolled back" in r.output
