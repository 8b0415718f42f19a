"""POST /v1/events, the suggest records, the control group, and durability under kill -9."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from deflect.api.main import create_app
from deflect.config import Settings
from deflect.engine import Engine
from deflect.experiment import assign_variant
from deflect.kb_ingest.pipeline import ingest
from deflect.store import open_store
from tests.conftest import NO_LIMITS, ROOT, small_kb, token

# events are dated a few minutes ago: a token is valid for DEFLECT_TOKEN_TTL_HOURS after it is issued
_NOW = datetime.now(UTC).replace(microsecond=0)
TS = (_NOW - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.120Z")
LATER = (_NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def settings(home):
    return Settings(home=home, min_score=0.1, reload_interval=0.0, control_share=0.0)


def stored(settings):
    s = open_store(settings.database_url, settings.home)
    try:
        return s.events(), s.suggestions()
    finally:
        s.close()


def event(i: int = 0, **kw) -> dict:
    e = {"event_id": f"e{i}", "session_id": "s1", "type": "form_submitted", "ts": TS}
    e.update(kw)
    return e


def signed(settings, batch: list[dict], issued=None) -> list[dict]:
    """``batch`` with each event carrying a genuine token of its session (and request id)."""
    when = issued or _NOW - timedelta(minutes=15)
    return [{**e, "token": token(settings, e["session_id"], e.get("request_id") or "r1", issued=when)} for e in batch]


def test_events_are_stored_and_retries_count_once(client, settings):
    batch = [
        event(1, type="suggestions_shown", request_id="r1"),
        event(2, type="article_opened", article_id="pw", request_id="r1"),
        event(3, type="feedback", article_id="pw", helpful=True),
    ]
    batch = signed(settings, batch)
    r = client.post("/v1/events", json={"events": batch})
    assert r.status_code == 200 and r.json() == {"accepted": 3, "duplicates": 0, "rejected": 0}
    r = client.post("/v1/events", json={"events": batch + signed(settings, [event(4)])})  # a retry, plus one new
    assert r.json() == {"accepted": 1, "duplicates": 3, "rejected": 0}
    events, _ = stored(settings)
    assert sorted(e.event_id for e in events) == ["e1", "e2", "e3", "e4"]
    fb = next(e for e in events if e.type == "feedback")
    assert fb.helpful is True and fb.article_id == "pw" and fb.received_at >= fb.ts


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"type": "clicked"}, "events.1.type"),
        ({"type": "article_opened"}, "events.1.article_id"),
        ({"type": "feedback", "article_id": "pw"}, "events.1.helpful"),
        ({"type": "feedback", "helpful": "yes"}, "events.1.helpful"),
        ({"type": "suggestions_shown"}, "events.1.request_id"),
        ({"ts": "yesterday"}, "events.1.ts"),
        ({"ts": "1970-01-01T00:00:00Z"}, "events.1.ts"),
        ({"ts": "2999-01-01T00:00:00Z"}, "events.1.ts"),
        ({"event_id": ""}, "events.1.event_id"),
        ({"session_id": None}, "events.1.session_id"),
        ({"event_id": "x" * 200}, "events.1.event_id"),
    ],
)
def test_a_bad_event_names_its_index_and_field_and_nothing_is_stored(client, settings, bad, field):
    r = client.post("/v1/events", json={"events": [event(0), event(1, **bad)]})
    assert r.status_code == 422, r.text
    fields = [d["field"] for d in r.json()["details"]]
    assert field in fields, fields
    assert stored(settings)[0] == []


def test_beacon_text_plain_is_read_as_json(client, settings):
    import json

    body = json.dumps({"events": signed(settings, [event(7, type="form_abandoned")])})
    r = client.post("/v1/events", content=body, headers={"content-type": "text/plain;charset=UTF-8"})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert client.get("/readyz").json()["events"]["available"] is True


def test_batch_limits(client):
    assert client.post("/v1/events", json={"events": []}).status_code == 422
    r = client.post("/v1/events", json={"events": [event(i) for i in range(101)]})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "events"
    assert client.post("/v1/events", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    # a full batch of the longest valid events fits in the 64 KiB body limit; more does not
    full = {"events": [event(i, article_id="a" * 256, type="article_opened", session_id="s" * 128) for i in range(100)]}
    assert client.post("/v1/events", json=full).status_code == 200
    big = {"events": [event(1)], "padding": "x" * 70_000}
    assert client.post("/v1/events", json=big).status_code == 413


def test_events_out_of_order_are_kept(client, settings):
    batch = [event(2, ts=LATER), event(1, type="form_abandoned", ts=TS, session_id="s9")]
    r = client.post("/v1/events", json={"events": signed(settings, batch)})
    assert r.json()["accepted"] == 2
    assert [e.event_id for e in stored(settings)[0]] == ["e1", "e2"]


def test_each_suggest_call_is_recorded_with_the_query_redacted(client, settings):
    body = {
        "subject": "password",
        "description": "reset password please, I am jane@example.com, card 4111 1111 1111 1111",
        "session_id": "s1",
        "form_id": "contact",
    }
    r = client.post("/v1/suggest", json=body).json()
    client.app.state.recorder.flush()
    (rec,) = stored(settings)[1]
    assert rec.request_id == r["request_id"] and rec.session_id == "s1" and rec.form_id == "contact"
    assert "jane@example.com" not in rec.query and "4111" not in rec.query
    assert "[EMAIL]" in rec.query and "[CARD]" in rec.query and "reset password" in rec.query
    assert rec.variant == "treatment" and rec.shown == [s["article_id"] for s in r["suggestions"]]
    assert rec.would_show[0] == "pw" and rec.index_version == r["index_version"] and rec.latency_ms > 0
    assert rec.channel == "form"  # the default: the widget sits on the contact form


def test_the_channel_is_recorded_and_an_unknown_one_is_refused(client, settings):
    body = {"description": "reset password please", "session_id": "s2", "channel": "chat"}
    assert client.post("/v1/suggest", json=body).status_code == 200
    client.app.state.recorder.flush()
    assert [r.channel for r in stored(settings)[1]] == ["chat"]
    r = client.post("/v1/suggest", json={**body, "channel": "fax"})
    assert r.status_code == 422 and "channel" in r.text


def test_recording_can_be_turned_off(tmp_path, home, fake_embedder):
    s = Settings(home=home, min_score=0.1, reload_interval=0.0, record_suggestions=False)
    ingest(small_kb(tmp_path), home, fake_embedder)
    with TestClient(create_app(s, engine=Engine(s, fake_embedder))) as c:
        assert c.post("/v1/suggest", json={"description": "reset password", "session_id": "s1"}).status_code == 200
        c.app.state.recorder.flush()
    assert stored(s)[1] == []


def test_control_group_sees_nothing_but_what_it_would_have_seen_is_recorded(tmp_path, home, fake_embedder):
    s = Settings(home=home, min_score=0.1, reload_interval=0.0, control_share=0.5, control_salt="t")
    ingest(small_kb(tmp_path), home, fake_embedder)
    sessions = [f"sess-{i}" for i in range(40)]
    with TestClient(create_app(s, engine=Engine(s, fake_embedder))) as c:
        got = {}
        for sid in sessions:
            for _ in range(2):  # the assignment is stable for a session
                r = c.post("/v1/suggest", json={"description": "reset password", "session_id": sid}).json()
                got.setdefault(sid, set()).add(r["variant"])
                if r["variant"] == "control":
                    assert r["suggestions"] == []
                else:
                    assert r["suggestions"][0]["article_id"] == "pw"
        c.app.state.recorder.flush()
    assert all(len(v) == 1 for v in got.values())
    variants = {sid: v.pop() for sid, v in got.items()}
    assert {"control", "treatment"} == set(variants.values())
    assert all(variants[sid] == assign_variant(sid, 0.5, "t") for sid in sessions)
    for rec in stored(s)[1]:
        assert rec.variant == variants[rec.session_id]
        assert rec.would_show[0] == "pw"
        assert rec.shown == ([] if rec.variant == "control" else rec.would_show)


def test_control_share_is_close_to_the_setting():
    share = sum(assign_variant(f"s{i}", 0.1, "deflect") == "control" for i in range(20_000)) / 20_000
    assert 0.09 < share < 0.11
    assert assign_variant(None, 0.5, "x") == "treatment"


def test_events_get_503_when_the_store_cannot_be_opened(tmp_path, home, fake_embedder):
    s = Settings(home=home, reload_interval=0.0, database_url="postgresql://nobody@127.0.0.1:1/none")
    ingest(small_kb(tmp_path), home, fake_embedder)
    with TestClient(create_app(s, engine=Engine(s, fake_embedder))) as c:
        r = c.post("/v1/events", json={"events": [event(1)]})
        assert r.status_code == 503 and "event store is unavailable" in r.json()["message"]
        assert r.headers["retry-after"] == "5"  # the widget keeps the batch and sends it again
        ready = c.get("/readyz").json()
        assert ready["status"] == "degraded" and ready["events"]["available"] is False
        assert "the event store is unreachable" in ready["events"]["reason"]
        assert c.post("/v1/suggest", json={"description": "reset password"}).status_code == 200


def test_concurrent_clients_through_the_api_lose_nothing(tmp_path, settings, fake_embedder):
    settings = settings.model_copy(update=NO_LIMITS)
    ingest(small_kb(tmp_path), settings.home, fake_embedder)
    with TestClient(create_app(settings, engine=Engine(settings, fake_embedder))) as client:
        _hammer_events(client, settings)


def _hammer_events(client, settings):
    errors = []

    def post(w: int) -> None:
        for b in range(10):
            batch = signed(settings, [event(i, session_id=f"w{w}", event_id=f"w{w}-{b}-{i}") for i in range(10)])
            r = client.post("/v1/events", json={"events": batch})
            if r.status_code != 200 or r.json()["accepted"] != 10:
                errors.append(r.text)

    threads = [threading.Thread(target=post, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(stored(settings)[0]) == 800


SERVER = """
import sys, uvicorn
from deflect.api.main import create_app
from deflect.config import Settings
from deflect.engine import Engine
from deflect.models.embedders import KeywordEmbedder
s = Settings(home=sys.argv[1], reload_interval=3600, rate_limit_events="", rate_limit_events_session="")
uvicorn.run(create_app(s, engine=Engine(s, KeywordEmbedder(["password"]))), host="127.0.0.1",
            port=int(sys.argv[2]), log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_acknowledged_events_survive_kill_9(tmp_path, home):
    """Four clients post batches; the server is SIGKILLed right after an acknowledgement.
    Every event whose batch was acknowledged must be in the store."""
    import httpx

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(home), str(port)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline and proc.poll() is None, "server did not start"
            time.sleep(0.1)
        tokens = {w: token(Settings(home=home), f"k{w}") for w in range(4)}
        acked: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()
        count = {"acks": 0}

        def client(w: int) -> None:
            with httpx.Client(base_url=base, timeout=5) as c:
                b = 0
                while not stop.is_set():
                    ids = [f"{w}-{b}-{i}-{uuid.uuid4().hex[:6]}" for i in range(20)]
                    body = {"events": [event(0, event_id=x, session_id=f"k{w}", token=tokens[w]) for x in ids]}
                    try:
                        r = c.post("/v1/events", json=body)
                    except httpx.HTTPError:
                        return
                    if r.status_code == 200:
                        with lock:
                            acked.extend(ids)
                            count["acks"] += 1
                            if count["acks"] == 60:  # kill right after this acknowledgement
                                os.kill(proc.pid, signal.SIGKILL)
                                stop.set()
                    b += 1

        threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    store = open_store("", home)
    have = {e.event_id for e in store.events()}
    store.close()
    assert len(acked) >= 60 * 20
    missing = [x for x in acked if x not in have]
    assert not missing, f"{len(missing)} acknowledged events lost"
