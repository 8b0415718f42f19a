"""deflect simulate / report / events export, end to end with the real engine on the demo."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from deflect.cli.main import app
from tests.conftest import ARTIFACTS, DEMO_QUERIES

runner = CliRunner()
pytestmark = pytest.mark.slow


def report(home, url: str, *args: str) -> str:
    """``deflect report`` on the simulated store (its rows are marked simulated)."""
    return cli("report", "--home", str(home), "--database-url", url, "--include-simulated", *args)


def cli(*args: str) -> str:
    r = runner.invoke(app, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def simulated(demo_home, tmp_path_factory):
    """20,000 simulated sessions, true effect 0.15, against the real engine on the demo index."""
    db = tmp_path_factory.mktemp("sim") / "events.db"
    url = f"sqlite:///{db}"
    out = cli(
        "simulate",
        "--queries",
        str(DEMO_QUERIES),
        "--sessions",
        "20000",
        "--true-effect",
        "0.15",
        "--seed",
        "7",
        "--home",
        str(demo_home),
        "--database-url",
        url,
    )
    assert "simulated 20,000 sessions" in out
    return demo_home, url


def test_report_recovers_the_true_effect_and_the_observed_rate_differs(simulated, tmp_path):
    home, url = simulated
    out = tmp_path / "report.json"
    db = ["--home", str(home), "--database-url", url, "--include-simulated"]
    cli("report", *db, "--format", "json", "--out", str(out), "--themes-by", "words")
    r = json.loads(out.read_text())
    inc = r["incremental"]
    lo, hi = inc["ci95"]
    assert lo <= 0.15 <= hi, inc
    assert hi - lo < 0.07  # the interval is informative, not just wide
    assert inc["control_sessions"] > 1000 and inc["treatment_sessions"] > 10 * inc["control_sessions"] * 0.7
    # the naive figure is far from the truth: customers who open an article and leave anyway count as deflected
    assert abs(r["observed_deflection_rate"] - 0.15) > 0.1
    assert r["sessions"] > 18_000 and r["abstention"]["by_reason"]
    assert r["by_intent"] and r["by_article"] and len(r["by_day"]) >= 14
    assert r["content_gaps"]["themes"] and r["content_gaps"]["themes"][0]["examples"]


def test_html_report_is_self_contained_with_its_sections_and_figures(simulated, tmp_path):
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    home, url = simulated
    html_path = tmp_path / "report.html"
    json_path = tmp_path / "report.json"
    report(home, url, "--out", str(html_path))
    report(
        home,
        url,
        "--format",
        "json",
        "--out",
        str(json_path),
    )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "deflection-report.html").write_text(html_path.read_text())
    r = json.loads(json_path.read_text())
    doc = HTMLParser(html_path.read_text())
    ids = {n.attributes.get("id") for n in doc.css("section")}
    assert {"headline", "incremental", "abstention", "trend", "by-intent", "by-article", "content-gaps"} <= ids
    assert len(doc.css("svg")) >= 3  # charts are inline
    assert not doc.css("script") and not doc.css("link") and not doc.css("img[src^=http]")
    text = doc.body.text()
    inc = r["incremental"]
    assert f"{100 * inc['incremental_deflection']:.1f}%" in text
    assert f"{100 * inc['ci95'][0]:.1f}%" in text and f"{100 * inc['ci95'][1]:.1f}%" in text
    assert f"{100 * r['observed_deflection_rate']:.1f}%" in text
    assert f"{r['sessions']:,}" in text
    assert r["content_gaps"]["themes"][0]["name"] in text
    headline = doc.css_first("section#headline").text()
    assert "Tickets avoided" in headline and "Self-reported deflection" in headline
    # the simulation's e-mail threads: their acknowledgements and first-response time
    mail = r["email"]
    assert mail["threads"] == mail["first_responses"] > 1000 and mail["followups"] > 0
    assert mail["replies"]["sent"] == mail["first_responses"] and 2 <= mail["first_response_median"] <= 30
    section = doc.css_first("section#email").text()
    assert f"{mail['messages']:,} messages" in section and "First-response time" in section


def test_csv_carries_the_same_figures(simulated):
    home, url = simulated
    out = report(home, url, "--format", "csv", "--themes-by", "words")
    rows = list(csv.DictReader(io.StringIO(out)))
    got = {(r["section"], r["key"], r["metric"]): r["value"] for r in rows}
    js = json.loads(report(home, url, "--format", "json", "--themes-by", "words"))
    assert float(got[("incremental", "", "incremental_deflection")]) == pytest.approx(
        js["incremental"]["incremental_deflection"], rel=1e-5
    )
    assert int(got[("summary", "", "sessions")]) == js["sessions"]
    assert any(k[0] == "by_article" for k in got) and any(k[0] == "content_gaps" for k in got)
    assert int(got[("email", "", "messages")]) == js["email"]["messages"] > 0
    assert int(got[("email", "replies", "sent")]) == js["email"]["replies"]["sent"]


def test_export_jsonl_and_parquet_and_report_from_an_export(simulated, tmp_path):
    import pyarrow.parquet as pq

    home, url = simulated
    exp = tmp_path / "export.jsonl"
    cli("events", "export", "--home", str(home), "--database-url", url, "--out", str(exp))
    lines = exp.read_text().splitlines()
    kinds = {json.loads(x)["kind"] for x in lines[:5] + lines[-5:]}
    assert kinds == {"suggestion", "event"}
    a = json.loads(cli("report", "--from-export", str(exp), "--format", "json", "--themes-by", "words"))
    b = json.loads(report(home, url, "--format", "json", "--themes-by", "words"))
    assert a["incremental"] == b["incremental"] and a["sessions"] == b["sessions"]
    pdir = tmp_path / "parquet"
    cli("events", "export", "--home", str(home), "--database-url", url, "--format", "parquet", "--out", str(pdir))
    ev = pq.read_table(pdir / "events.parquet")
    sg = pq.read_table(pdir / "suggestions.parquet")
    n_events = sum(1 for x in lines if json.loads(x)["kind"] == "event")
    assert ev.num_rows == n_events and sg.num_rows == len(lines) - n_events
    assert "would_show" in sg.column_names and str(ev.schema.field("ts").type).startswith("timestamp")


def test_events_info_and_migrate(simulated, tmp_path):
    home, url = simulated
    assert "schema:      5" in cli("events", "info", "--home", str(home), "--database-url", url)
    fresh = f"sqlite:///{tmp_path / 'new.db'}"
    migrated = cli("events", "migrate", "--home", str(home), "--database-url", fresh)
    assert "schema 0 -> 5 (applied 1, 2, 3, 4, 5)" in migrated
    assert "(up to date)" in cli("events", "migrate", "--home", str(home), "--database-url", fresh)


def test_bad_options_are_named(simulated):
    home, url = simulated
    r = runner.invoke(app, ["report", "--home", str(home), "--database-url", url, "--window", "soon"])
    assert r.exit_code == 1 and "--window" in r.output
    r = runner.invoke(app, ["report", "--home", str(home), "--database-url", url, "--since", "last tuesday"])
    assert r.exit_code == 1 and "--since" in r.output
    r = runner.invoke(app, ["report", "--home", str(home), "--database-url", url, "--format", "pdf"])
    assert r.exit_code == 1 and "--format" in r.output
    r = runner.invoke(
        app,
        ["simulate", "--queries", str(DEMO_QUERIES), "--true-effect", "0.9", "--home", str(home)]
        + ["--database-url", url],
    )
    assert r.exit_code == 1 and "--true-effect" in r.output
    for bad in ("email", "fax=1"):
        r = runner.invoke(app, ["simulate", "--queries", str(DEMO_QUERIES), "--channels", bad, "--home", str(home)]
                          + ["--database-url", url])  # fmt: skip
        assert r.exit_code == 1 and "channels" in r.output, r.output


def test_the_report_prices_tickets_avoided_per_channel(simulated, monkeypatch):
    home, url = simulated
    monkeypatch.setenv("DEFLECT_TICKET_COST", "6.5")
    monkeypatch.setenv("DEFLECT_TICKET_COST_CHAT", "4")
    monkeypatch.setenv("DEFLECT_TICKET_COST_EMAIL", "9")
    monkeypatch.setenv("DEFLECT_CURRENCY", "EUR")
    r = json.loads(report(home, url, "--format", "json", "--themes-by", "words"))
    cash, by_channel = r["money"], r["incremental_by_channel"]
    assert set(by_channel) == {"form", "chat", "email"}  # the simulation's channels
    rows = {c["channel"]: c for c in cash["by_channel"]}
    assert rows["chat"]["cost_per_ticket"] == 4 and rows["form"]["cost_per_ticket"] == 6.5
    assert rows["email"]["cost_per_ticket"] == 9
    for ch, row in rows.items():
        assert row["saved"] == pytest.approx(by_channel[ch]["tickets_avoided"] * row["cost_per_ticket"])
    assert cash["saved"] == pytest.approx(sum(c["saved"] for c in rows.values())) and cash["currency"] == "EUR"
    low, high = cash["saved_ci95"]
    assert low < cash["saved"] < high
