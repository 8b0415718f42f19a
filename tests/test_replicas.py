"""Two real server processes (uvicorn) on one PostgreSQL store, as a deployment with several
replicas behind a load balancer: a session gets the same variant from either, an event
delivered to both is stored and counted once, and the report computed in the store sees
each session once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from deflect.eval.deflection import BotRules
from deflect.eval.deflection_sql import measure_in_store
from deflect.kb_ingest.pipeline import ingest
from deflect.models.embedders import KeywordEmbedder
from deflect.store import open_store
from tests.conftest import KEYWORDS, ROOT, small_kb
from tests.test_attacks import _free_port, wait_ready

pytestmark = pytest.mark.postgres

SERVER = """
import sys, uvicorn
from deflect.api.main import create_app
from deflect.config import Settings
from deflect.engine import Engine
from deflect.models.embedders import KeywordEmbedder
from tests.conftest import KEYWORDS
s = Settings(home=sys.argv[1], database_url=sys.argv[3], reload_interval=3600, min_score=0.1,
             control_share=0.5, rate_limit_suggest="", rate_limit_suggest_session="",
             rate_limit_events="", rate_limit_events_session="")
uvicorn.run(create_app(s, engine=Engine(s, KeywordEmbedder(KEYWORDS))), host="127.0.0.1",
            port=int(sys.argv[2]), log_level="warning")
"""


@pytest.fixture
def replicas(tmp_path, home, pg_url):
    """Two servers, one data home (the index) and one PostgreSQL store; the same
    DEFLECT_SECRET, as every replica of a deployment must have."""
    ingest(small_kb(tmp_path), home, KeywordEmbedder(KEYWORDS))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs, bases = [], []
    for _ in range(2):
        port = _free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", SERVER, str(home), str(port), pg_url], cwd=ROOT, env=env))
        bases.append(f"http://127.0.0.1:{port}")
    try:
        for base, proc in zip(bases, procs, strict=True):
            wait_ready(base, proc)
        yield bases, pg_url
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def test_every_replica_gives_a_session_the_same_variant_and_counts_its_events_once(replicas):
    (a, b), url = replicas
    ca, cb = httpx.Client(base_url=a, timeout=10), httpx.Client(base_url=b, timeout=10)
    body = {"description": "I need to reset my password"}
    sessions = {}
    for i in range(40):
        sid = f"rep-{uuid.uuid4().hex[:8]}-{i}"
        first, second = (ca, cb) if i % 2 else (cb, ca)
        r1 = first.post("/v1/suggest", json={**body, "session_id": sid}).json()
        r2 = second.post("/v1/suggest", json={**body, "session_id": sid, "token": r1["token"]}).json()
        r3 = second.post("/v1/suggest", json={**body, "session_id": sid}).json()  # no token: the same salt
        assert r1["variant"] == r2["variant"] == r3["variant"], sid
        sessions[sid] = r1
    assert {r["variant"] for r in sessions.values()} == {"treatment", "control"}  # both groups are there

    now = datetime.now(UTC)
    batches = []
    for sid, r in sessions.items():
        ts = now.isoformat()
        events = [{"event_id": f"{sid}-f", "session_id": sid, "type": "form_submitted", "ts": ts, "token": r["token"]}]
        if r["variant"] == "treatment":
            events.insert(
                0,
                {
                    "event_id": f"{sid}-s",
                    "session_id": sid,
                    "type": "suggestions_shown",
                    "ts": ts,
                    "request_id": r["request_id"],
                    "token": r["token"],
                },
            )
        batches.append({"events": events})

    # every batch reaches both replicas at the same time (a retry through the other one)
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    lock = threading.Lock()

    def send(client, batch):
        res = client.post("/v1/events", json=batch)
        assert res.status_code == 200, res.text
        with lock:
            for k in totals:
                totals[k] += res.json()[k]

    threads = [threading.Thread(target=send, args=(c, batch)) for batch in batches for c in (ca, cb)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    n_events = sum(len(x["events"]) for x in batches)
    assert totals == {"accepted": n_events, "duplicates": n_events, "rejected": 0}

    store = open_store(url)
    try:
        # the suggest records are written by each replica's recorder thread shortly after
        deadline = time.time() + 10
        while len(store.suggestions()) < 3 * len(sessions) and time.time() < deadline:
            time.sleep(0.2)
        assert len(store.suggestions()) == 3 * len(sessions)
        assert len(store.events()) == n_events
        # one test client opens every session: not the busy-caller rule this test is about
        m = measure_in_store(store, now=now + timedelta(days=2), rules=BotRules(busy_client_sessions=10**6))
    finally:
        store.close()
    assert m.sessions == len(sessions)
    treatment = sum(r["variant"] == "treatment" for r in sessions.values())
    assert m.sessions_shown == treatment and m.sessions_by_variant == {
        "control": len(sessions) - treatment,
        "treatment": treatment,
    }
    assert m.integrity.rejected_events == 0
