"""Session tokens, the deployment secret, the control salt, the Origin check and rate limits."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from deflect.api.main import create_app
from deflect.config import Settings
from deflect.core.errors import ConfigError
from deflect.engine import Engine
from deflect.experiment import assign_variant
from deflect.kb_ingest.pipeline import ingest
from deflect.provenance import Provenance, load_secret
from deflect.store import open_store
from tests.conftest import small_kb

NOW = datetime.now(UTC).replace(microsecond=0)
P = Provenance(b"a-secret-for-these-tests-only")


def test_a_token_is_valid_only_for_its_session_request_and_time():
    tok = P.issue("s1", "r1", "control", NOW)
    assert P.check(tok, "s1", "r1", NOW, NOW) is None
    assert P.check(tok, "s1", None, NOW, NOW) is None  # form_submitted names no request
    assert P.check(tok, "s2", "r1", NOW, NOW) == "bad_token"  # another customer's session
    assert P.check(tok, "s1", "r2", NOW, NOW) == "wrong_request"
    assert P.check(tok, "s1", "r1", NOW - timedelta(hours=2), NOW) == "before_token"  # backdated
    assert P.check(tok, "s1", "r1", NOW - timedelta(minutes=30), NOW) is None  # within the clock skew
    assert P.check(tok, "s1", "r1", NOW, NOW + timedelta(hours=49)) == "expired_token"
    assert P.check(None, "s1", "r1", NOW, NOW) == "no_token"
    assert P.variant_of(tok, "s1", NOW) == "control" and P.variant_of(tok, "s2", NOW) is None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # one bit of the MAC
        lambda t: t.replace(".c.", ".t."),  # claim the other group
        lambda t: "2" + t[1:],  # another version
        lambda t: t.rsplit(".", 2)[0] + ".zz." + t.rsplit(".", 1)[1],  # not a time
        lambda t: t + ".x",
        lambda t: "",
        lambda t: "1....",
    ],
)
def test_a_changed_or_malformed_token_is_rejected(mangle):
    tok = P.issue("s1", "r1", "control", NOW)
    assert P.check(mangle(tok), "s1", "r1", NOW, NOW) in {"bad_token", "no_token"}


def test_another_deployment_cannot_issue_tokens_or_compute_the_groups():
    other = Provenance(b"another-deployments-secret")
    assert P.check(other.issue("s1", "r1", "treatment", NOW), "s1", "r1", NOW, NOW) == "bad_token"
    assert P.salt != other.salt and "deflect-control-v1" not in (P.salt, other.salt)
    ids = [f"s{i}" for i in range(2000)]
    same = sum(assign_variant(i, 0.5, P.salt) == assign_variant(i, 0.5, other.salt) for i in ids) / len(ids)
    assert 0.4 < same < 0.6  # independent: knowing one deployment's groups says nothing of another's


def test_the_secret_is_generated_once_owner_only_and_shared(tmp_path):
    a = load_secret("", tmp_path)
    assert load_secret("", tmp_path) == a and len(a) == 64
    assert stat.S_IMODE(os.stat(tmp_path / "secret").st_mode) == 0o600
    assert load_secret("x" * 20, tmp_path) == b"x" * 20  # DEFLECT_SECRET wins
    with pytest.raises(ConfigError, match="at least 16"):
        load_secret("short", tmp_path)
    (tmp_path / "secret").write_text("")
    with pytest.raises(ConfigError, match="empty or too short"):
        load_secret("", tmp_path)


@pytest.fixture
def app_settings(home):
    return Settings(
        home=home,
        min_score=0.1,
        reload_interval=0.0,
        control_share=0.5,
        cors_origins=["https://shop.example"],
        rate_limit_suggest="5/minute",
        rate_limit_suggest_session="3/minute",
        rate_limit_events="4/minute",
        rate_limit_events_session="100/minute",
    )


@pytest.fixture
def api(tmp_path, app_settings, fake_embedder):
    ingest(small_kb(tmp_path), app_settings.home, fake_embedder)
    with TestClient(create_app(app_settings, engine=Engine(app_settings, fake_embedder))) as c:
        yield c


def test_the_server_fixes_the_variant_and_a_token_keeps_it(api, app_settings):
    first = api.post("/v1/suggest", json={"description": "reset password", "session_id": "s1"}).json()
    assert first["token"] and first["variant"] in ("treatment", "control")
    # the operator changes the control share mid-session: the token keeps the session's group
    api.app.state.engine.settings = app_settings.model_copy(
        update={"control_share": 0.0 if first["variant"] == "control" else 0.5}
    )
    again = api.post(
        "/v1/suggest", json={"description": "reset password", "session_id": "s1", "token": first["token"]}
    ).json()
    assert again["variant"] == first["variant"]
    forged = api.post(
        "/v1/suggest", json={"description": "reset password", "session_id": "s2", "token": first["token"]}
    ).json()
    assert forged["token"] != first["token"]  # a token of another session fixes nothing


def test_forged_events_are_kept_apart_with_their_reason(api, app_settings):
    r = api.post("/v1/suggest", json={"description": "reset password", "session_id": "s1"}).json()
    ts = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    good = {"event_id": "g1", "session_id": "s1", "type": "form_submitted", "ts": ts, "token": r["token"]}
    batch = [
        good,
        {**good, "event_id": "f1", "token": None},
        {**good, "event_id": "f2", "session_id": "someone-else"},
        {**good, "event_id": "f3", "type": "suggestions_shown", "request_id": "made-up"},
        {**good, "event_id": "f4", "ts": "2026-01-05T10:00:00Z"},
    ]
    out = api.post("/v1/events", json={"events": batch}, headers={"origin": "https://shop.example"}).json()
    assert out == {"accepted": 1, "duplicates": 0, "rejected": 4}
    store = open_store("", app_settings.home)
    try:
        assert [e.event_id for e in store.events()] == ["g1"]
        reasons = {r.event.event_id: r.reason for r in store.rejected()}
    finally:
        store.close()
    assert reasons == {"f1": "no_token", "f2": "bad_token", "f3": "wrong_request", "f4": "before_token"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"origin": "https://shop.example"}, 200),
        ({"origin": "https://evil.example"}, 403),
        ({"referer": "https://evil.example/page"}, 403),
        ({"referer": "https://shop.example/contact?x=1"}, 200),
        ({"origin": "null", "referer": "https://evil.example/"}, 403),
        ({"origin": "http://testserver"}, 200),  # the server's own page (the demo)
        ({}, 200),  # not a browser
    ],
)
def test_events_from_another_web_page_are_refused(api, app_settings, headers, status):
    e = {"event_id": "o1", "session_id": "s1", "type": "form_abandoned", "ts": datetime.now(UTC).isoformat()}
    r = api.post("/v1/events", json={"events": [e]}, headers=headers)
    assert r.status_code == status, r.text
    if status == 403:
        assert r.json()["error"] == "forbidden_origin" and "DEFLECT_CORS_ORIGINS" in r.json()["message"]


def test_rate_limits_answer_429_with_retry_after(api):
    codes = [
        api.post("/v1/suggest", json={"description": "reset password", "session_id": "same"}).status_code
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]  # 3 per session
    r = api.post("/v1/suggest", json={"description": "reset password", "session_id": "same"})
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    assert "session_id" in r.json()["message"]
    codes = [api.post("/v1/suggest", json={"description": "reset password"}).status_code for _ in range(3)]
    assert 429 in codes and "address" in api.post("/v1/suggest", json={"description": "x"}).json()["message"]


def test_a_bad_rate_limit_setting_is_a_clear_error(home):
    with pytest.raises(ConfigError, match="rate_limit_suggest: 'lots'"):
        create_app(Settings(home=home, rate_limit_suggest="lots"))
    with pytest.raises(ConfigError, match="rate_limit_storage"):
        create_app(Settings(home=home, rate_limit_storage="mongodb://x"))


REDIS_URL = os.environ.get("DEFLECT_TEST_REDIS_URL", "")


@pytest.mark.redis
def test_replicas_share_rate_limits_through_redis(home):
    """Two servers' limiters on one Redis (a real server): calls to either count against one
    limit. Needs DEFLECT_TEST_REDIS_URL (.ci/run sets it for the server on this machine)."""
    import asyncio
    import uuid

    from deflect.api.guards import RateLimits

    if not REDIS_URL:
        pytest.skip("the shared rate-limit test needs DEFLECT_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/15)")
    s = Settings(home=home, rate_limit_storage=REDIS_URL, rate_limit_suggest="4/minute")
    a, b = RateLimits(s), RateLimits(s)
    address = f"203.0.113.{uuid.uuid4().int % 250}-{uuid.uuid4().hex[:8]}"

    async def calls():
        out = []
        for limiter in (a, b, a, b, a, b):
            out.append(await limiter.check("suggest", address, []))
        return out

    results = asyncio.run(calls())
    assert [r is None for r in results] == [True, True, True, True, False, False]
    assert results[4].status_code == 429 and int(results[4].headers["retry-after"]) >= 1


def test_an_unreachable_redis_lets_calls_through(home, caplog):
    import asyncio

    from deflect.api.guards import RateLimits

    limiter = RateLimits(Settings(home=home, rate_limit_storage="redis://127.0.0.1:1", rate_limit_suggest="1/minute"))
    assert asyncio.run(limiter.check("suggest", "198.51.100.7", [])) is None
    assert "rate limits not applied" in caplog.text
