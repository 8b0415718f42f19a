"""The attacks on the deflection figure, replayed against a real server (uvicorn, a real
SQLite store) with only the public endpoints, as an attacker would.

A store holds simulated sessions with a known effect. The attacker then:

1. picks session ids that the documented old salt puts in the control group, calls
   /v1/suggest for them and sends ``form_submitted``; picks "treatment" ids and sends
   nothing; and, reading the ``variant`` of each answer, sends ``form_submitted`` exactly
   for the sessions the server put in the control group;
2. sends ``suggestions_shown``, ``article_opened`` and ``feedback: helpful`` for sessions
   that never called /v1/suggest, with made-up request ids, backdated into the closed
   period, with no token, a made-up one, or its own;
3. sends ``form_submitted`` for other customers' sessions;
4. replays its own genuine token backdated, and for a request it was not issued for.

The report's figures must stay inside the interval they had before the attack, and every
forged event must be counted as rejected. The same attack measured with the defences
switched off moves the incremental figure outside its interval: the test can fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from deflect.config import Settings
from deflect.engine import Engine
from deflect.eval.deflection import BotRules, measure
from deflect.eval.queries import LabeledQuery
from deflect.eval.simulate import simulate
from deflect.experiment import assign_variant
from deflect.kb_ingest.pipeline import ingest
from deflect.models.embedders import KeywordEmbedder
from deflect.provenance import Provenance
from deflect.store import open_store
from tests.conftest import KEYWORDS, ROOT, small_kb

SERVER = """
import sys, uvicorn
from deflect.api.main import create_app
from deflect.config import Settings
from deflect.engine import Engine
from deflect.models.embedders import KeywordEmbedder
from tests.conftest import KEYWORDS
s = Settings(home=sys.argv[1], reload_interval=3600, min_score=0.1, control_share=0.5,
             rate_limit_suggest="5000/minute", rate_limit_events="5000/minute")
uvicorn.run(create_app(s, engine=Engine(s, KeywordEmbedder(KEYWORDS))), host="127.0.0.1",
            port=int(sys.argv[2]), log_level="warning")
"""
QUERIES = [
    LabeledQuery("password", "I need to reset my password", frozenset({"pw"})),
    LabeledQuery("refund", "refund my card payment please", frozenset({"refund"})),
    LabeledQuery("calendar", "google calendar does not sync", frozenset({"gcal"})),
    LabeledQuery("login", "cannot login, reset password link", frozenset({"pw"})),
]
OLD_SALT = "deflect-control-v1"  # the documented default the attacker knows


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until the server at ``base`` answers /readyz with 200 (fails if it exits first)."""
    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.time() < deadline and proc.poll() is None, "server did not start"
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path, home):
    emb = KeywordEmbedder(KEYWORDS)
    ingest(small_kb(tmp_path), home, emb)
    settings = Settings(home=home, reload_interval=3600, min_score=0.1, control_share=0.5)
    engine = Engine(settings, emb)
    store = open_store("", home)
    try:
        summary = simulate(
            store,
            engine.suggest,
            QUERIES,
            sessions=3000,
            true_effect=0.15,
            seed=7,
            control_share=0.5,
            salt=engine.provenance.salt,
        )
    finally:
        store.close()
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(home), str(port)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, proc)
    try:
        yield base, settings, summary
    finally:
        proc.terminate()
        proc.wait(10)


NO_RULES = BotRules(max_suggest_calls=10**9, burst_events=10**9, busy_client_sessions=10**9)


def report(settings, now, *, count_rejected=False, rules=None):
    """The report as of ``now``; ``count_rejected`` and ``rules`` switch the defences off."""
    store = open_store("", settings.home)
    try:
        recs, events, rejected = store.suggestions(), store.events(), store.rejected()
    finally:
        store.close()
    if count_rejected:
        events, rejected = events + [r.event for r in rejected], []
    return measure(recs, events, now=now, rejected=rejected, rules=rules or BotRules.from_settings(settings))


def test_replayed_attacks_do_not_move_the_figures_and_every_forgery_is_rejected(server):
    base, settings, summary = server
    later = datetime.now(UTC) + timedelta(days=3)  # every window, the attacker's too, has closed
    before = report(settings, later)
    lo, hi = before.incremental.ci95
    assert lo < 0.15 < hi  # the simulated truth is inside the interval to begin with
    obs0, n0 = before.observed_deflection_rate, before.sessions_shown_closed
    obs_margin = 1.96 * (obs0 * (1 - obs0) / n0) ** 0.5

    c = httpx.Client(base_url=base, timeout=10)
    forged = 0

    def post(events):
        nonlocal forged
        r = c.post("/v1/events", json={"events": events})
        assert r.status_code == 200, r.text
        forged += r.json()["rejected"]
        return r.json()

    def suggest(sid):
        r = c.post("/v1/suggest", json={"subject": "password", "description": "reset my password", "session_id": sid})
        assert r.status_code == 200, r.text
        return r.json()

    now = datetime.now(UTC)
    iso = lambda t: t.isoformat()  # noqa: E731

    # 1. sessions "picked" with the documented salt, and sessions picked by reading the answer
    picked = [f"atk-{i}" for i in range(1200)]
    control_like = [s for s in picked if assign_variant(s, 0.5, OLD_SALT) == "control"][:150]
    treatment_like = [s for s in picked if assign_variant(s, 0.5, OLD_SALT) == "treatment"][:150]
    for sid in control_like:
        res = suggest(sid)
        e = {"event_id": uuid.uuid4().hex, "session_id": sid, "type": "form_submitted", "token": res["token"]}
        out = post([{**e, "ts": iso(datetime.now(UTC))}])
        assert out["accepted"] == 1  # genuine tokens: accepted, and left to the session rules
    for sid in treatment_like:
        suggest(sid)
    adaptive = 0
    for i in range(1000):
        sid = f"adaptive-{i}"
        res = suggest(sid)
        if res["variant"] == "control":
            post([{"event_id": uuid.uuid4().hex, "session_id": sid, "type": "form_submitted",
                   "ts": iso(datetime.now(UTC)),
                   "token": res["token"]}])  # fmt: skip
            adaptive += 1
    assert 400 < adaptive < 600  # the server, not the attacker, chose the groups

    # 2. events for sessions that never called /v1/suggest, backdated into the closed period
    sent = 0
    own = suggest("atk-own")["token"]
    for i in range(300):
        sid = f"ghost-{i}"
        ts = summary.end - timedelta(days=2, minutes=i)
        token = [None, "1.deadbeef.t.0.AAAAAAAAAAAAAAAAAAAAAA", own][i % 3]
        batch = [
            {"type": "suggestions_shown", "request_id": f"r-{i}"},
            {"type": "article_opened", "request_id": f"r-{i}", "article_id": "pw"},
            {"type": "feedback", "request_id": f"r-{i}", "article_id": "pw", "helpful": True},
        ]
        post([{**e, "event_id": uuid.uuid4().hex, "session_id": sid, "ts": iso(ts), "token": token} for e in batch])
        sent += 3

    # 3. form_submitted for other customers' sessions, dated just after they were shown
    #    suggestions (an attacker who watched them): those that sent no form
    store = open_store("", settings.home)
    try:
        evs = store.events()
    finally:
        store.close()
    submitted = {e.session_id for e in evs if e.type == "form_submitted"}
    shown = {e.session_id: e.ts for e in evs if e.type == "suggestions_shown" and e.session_id not in submitted}
    victims = sorted(shown)[:600]
    for i in range(0, len(victims), 50):
        post([
            {"event_id": uuid.uuid4().hex, "session_id": v, "type": "form_submitted",
             "ts": iso(shown[v] + timedelta(minutes=1)), "token": own if j % 2 else None}
            for j, v in enumerate(victims[i : i + 50])
        ])  # fmt: skip
        sent += len(victims[i : i + 50])

    # 4. its own genuine token: backdated, and for a request it was not issued for
    res = suggest("atk-replay")
    post([{"event_id": "b1", "session_id": "atk-replay", "type": "form_submitted",
           "ts": iso(summary.end - timedelta(days=3)), "token": res["token"]},
          {"event_id": "b2", "session_id": "atk-replay", "type": "suggestions_shown",
           "request_id": victims[0] + "-r1", "ts": iso(now), "token": res["token"]}])  # fmt: skip
    sent += 2
    c.close()
    time.sleep(0.5)  # suggestion records are written behind the response

    after = report(settings, later)
    assert forged == sent and after.integrity.rejected_events == sent  # every forgery, counted as rejected
    reasons = after.integrity.rejected_by_reason
    assert set(reasons) == {"no_token", "bad_token", "wrong_request", "before_token"}, reasons
    assert after.integrity.flagged_by_reason.get("busy_client", 0) >= 150 + 150 + 1000
    inc = after.incremental.incremental_deflection
    assert lo <= inc <= hi, (before.incremental.to_dict(), after.incremental.to_dict())
    assert abs(after.observed_deflection_rate - obs0) <= obs_margin
    assert after.incremental.control_sessions == before.incremental.control_sessions

    # without the defences each attack moves the figure out of its interval: the test can fail
    unflagged = report(settings, later, rules=NO_RULES).incremental.incremental_deflection
    assert unflagged > hi, unflagged  # the sessions that read their group and chose to submit
    forgeries = report(settings, later, count_rejected=True).incremental.incremental_deflection
    assert forgeries < lo, forgeries  # other customers' sessions made to submit
    assert Provenance.from_settings(settings).salt != OLD_SALT
