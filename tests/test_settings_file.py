"""The deployment's policy in the data home's settings file (deflect.toml): written by
`deflect config set`, read the same way by every command, overridden by the environment,
intent names checked against the model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deflect.cli.main import app
from deflect.config import Settings, load_settings, settings_file
from deflect.core.errors import ConfigError
from deflect.engine import Engine, SuggestQuery
from deflect.kb_ingest.pipeline import ingest
from deflect.models.labeled import load_labeled_texts
from deflect.models.training import TrainOptions, train
from tests.test_intent import _kb, rows, write_csv

runner = CliRunner()


def cli(*args: str, ok: bool = True):
    r = runner.invoke(app, list(args))
    assert (r.exit_code == 0) == ok, r.output
    return r.output


@pytest.fixture
def trained(tmp_path, home, fake_embedder, monkeypatch):
    for var in ("DEFLECT_NEVER_DEFLECT", "DEFLECT_INTENT_ARTICLES", "DEFLECT_MIN_SCORE", "DEFLECT_CONTROL_SHARE"):
        monkeypatch.delenv(var, raising=False)
    ingest(_kb(tmp_path), home, fake_embedder)
    data = load_labeled_texts(write_csv(tmp_path / "d.csv", rows()))
    train(data, home, fake_embedder, TrainOptions(oos_label="out_of_scope", val_split=0.25, promote=True))
    return home


def test_the_policy_set_once_is_what_every_command_reads(trained, fake_embedder, monkeypatch):
    home = str(trained)
    cli("config", "set", "never_deflect", "refund", "--home", home)
    cli("config", "set", "intent_articles", "password=pw", "calendar=gcal", "--home", home)
    cli("config", "set", "min_score", "0.05", "--home", home)
    text = settings_file(trained).read_text()
    assert 'never_deflect = ["refund"]' in text and "[intent_articles]" in text
    s = Settings(home=trained)  # what serve, suggest, simulate and report build
    assert s.never_deflect == ["refund"] and s.intent_articles == {"password": ["pw"], "calendar": ["gcal"]}
    r = Engine(s, fake_embedder).suggest(SuggestQuery(description="refund my card payment please"))
    assert r.abstained and r.reason == "never_deflect"
    shown = json.loads(cli("config", "show", "--json", "--home", home))
    assert shown["never_deflect"] == {"value": ["refund"], "source": "file"}
    assert shown["control_share"]["source"] == "default"
    monkeypatch.setenv("DEFLECT_MIN_SCORE", "0.3")  # the environment overrides the file
    shown = json.loads(cli("config", "show", "--json", "--home", home))
    assert shown["min_score"] == {"value": 0.3, "source": "env"}
    cli("config", "unset", "min_score", "--home", home)
    assert "min_score" not in settings_file(trained).read_text()


def test_a_misspelt_intent_is_refused_with_the_closest_names(trained, fake_embedder):
    home = str(trained)
    out = cli("config", "set", "never_deflect", "refnd", "--home", home, ok=False)
    assert "unknown intent 'refnd' (did you mean 'refund'?)" in out and len(out.strip().splitlines()) == 1
    assert not settings_file(trained).exists()  # nothing written
    settings_file(trained).write_text('never_deflect = ["refnd"]\n')  # written by hand
    with pytest.raises(ConfigError, match="did you mean 'refund'"):
        Engine(Settings(home=trained), fake_embedder)  # the server does not start with it


def test_promoting_a_model_that_lacks_a_policy_intent_is_refused(trained, tmp_path):
    from deflect.models import bundle as B

    home = str(trained)
    cli("config", "set", "never_deflect", "refund", "--home", home)
    data = write_csv(tmp_path / "small.csv", [r for r in rows() if r[1] != "refund"])
    out = cli("train", str(data), "--oos-label", "out_of_scope", "--promote", "--home", home, ok=False)
    assert "unknown intent 'refund'" in out and "the training data" in out
    versions = B.list_versions(trained, "model")
    assert len(versions) == 1  # nothing trained


@pytest.mark.parametrize(
    ("setup", "env", "message"),
    [
        ("min_score = 'abc'\n", {}, "deflect.toml: min_score = 'abc': Input should be a valid number"),
        ("", {"DEFLECT_MIN_SCORE": "abc"}, "DEFLECT_MIN_SCORE='abc': Input should be a valid number"),
        ("", {"DEFLECT_CONTROL_SHARE": "0.9"}, "DEFLECT_CONTROL_SHARE='0.9': Input should be less than or equal"),
        ("min_scor = 0.5\n", {}, "unknown setting 'min_scor' (did you mean min_score?)"),
        ("never_deflect = [\n", {}, "deflect.toml: cannot read"),
    ],
)
def test_a_bad_value_is_one_line_naming_where_it_came_from(tmp_path, monkeypatch, setup, env, message):
    home = tmp_path / "home"
    home.mkdir()
    if setup:
        settings_file(home).write_text(setup)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=None) as exc:
        load_settings(home=home)
    assert message in str(exc.value)
    out = cli("config", "show", "--home", str(home), ok=False)
    assert len(out.strip().splitlines()) == 1 and message.split(": ")[-1][:20] in out
