import time

import pytest
from fastapi.testclient import TestClient

from deflect.api.main import create_app
from deflect.config import Settings
from deflect.engine import Engine
from deflect.kb_ingest.pipeline import ingest
from tests.conftest import NO_LIMITS, Hammer, small_kb


@pytest.fixture
def settings(home):
    return Settings(
        home=home, min_score=0.1, reload_interval=0.0, cors_origins=["https://shop.example"], control_share=0.0
    )


def test_suggest_returns_contract(client):
    r = client.post(
        "/v1/suggest",
        json={"subject": "password", "description": "I need to reset my password", "session_id": "s1", "k": 2},
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "request_id",
        "variant",
        "abstained",
        "reason",
        "intent",
        "suggestions",
        "index_version",
        "model_version",
        "token",
    }
    assert body["variant"] == "treatment" and body["abstained"] is False and body["intent"] is None
    assert body["token"].startswith("1." + body["request_id"] + ".t.")
    assert body["suggestions"][0]["article_id"] == "pw"
    assert body["suggestions"][0]["url"] == "https://help/pw" and body["suggestions"][0]["snippet"]
    assert len(body["suggestions"]) <= 2


def test_low_confidence_abstains_with_reason(tmp_path, home, fake_embedder):
    s = Settings(home=home, min_score=0.99, reload_interval=0.0)
    ingest(small_kb(tmp_path), home, fake_embedder)
    with TestClient(create_app(s, engine=Engine(s, fake_embedder))) as c:
        body = c.post("/v1/suggest", json={"description": "something about weather"}).json()
    assert body["abstained"] is True and body["reason"] == "low_confidence" and body["suggestions"] == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"subject": "  ", "description": ""}, "subject, description"),
        ({}, "subject, description"),
        ({"subject": "x" * 501}, "subject"),
        ({"description": "x" * 10_001}, "description"),
        ({"subject": 123}, "subject"),
        ({"description": ["a"]}, "description"),
        ({"subject": "hi", "k": 0}, "k"),
        ({"subject": "hi", "k": 11}, "k"),
        ({"subject": "hi", "k": "3"}, "k"),
        ({"subject": "hi", "k": 2.5}, "k"),
        ({"subject": "hi", "fields": "product"}, "fields"),
        ({"subject": "hi", "fields": {"product": 5}}, "fields.product"),
        ({"subject": "hi", "locale": "not a locale!"}, "locale"),
        ({"subject": "hi", "session_id": "s" * 200}, "session_id"),
    ],
)
def test_bad_input_gets_4xx_naming_the_field(client, payload, field):
    r = client.post("/v1/suggest", json=payload)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid_request"
    assert field in [d["field"] for d in body["details"]], body
    assert field in body["message"]


def test_invalid_json_and_wrong_shapes(client):
    r = client.post("/v1/suggest", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["details"][0]["field"] == "body"
    r = client.post("/v1/suggest", json=["a", "list"])
    assert r.status_code == 422
    r = client.post("/v1/suggest", content=b"subject=hi", headers={"content-type": "application/x-www-form-urlencoded"})
    assert 400 <= r.status_code < 500


def test_oversized_body_is_413(client):
    r = client.post(
        "/v1/suggest", content=b'{"subject": "' + b"x" * 70_000 + b'"}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and "body" in r.json()["message"]


GARBAGE = [
    b"",
    b"null",
    b"0",
    b'"str"',
    b"[]",
    b"{}",
    b'{"subject": null}',
    b'{"subject": {"a": 1}}',
    b'{"subject": "\\ud800"}',
    b'{"subject": "hi", "k": null}',
    b'{"subject": "hi", "k": 1e309}',
    b'{"subject": "hi", "fields": {"a": null}}',
    b"\xff\xfe\x00",
    b'{"subject": "hi"' + b"}" * 5,
    b'{"subject": "' + "\u00e9".encode() * 400 + b'"}',
    b'{"description": "\x00\x01"}',
]


@pytest.mark.parametrize("raw", GARBAGE)
def test_no_request_produces_a_500(client, raw):
    r = client.post("/v1/suggest", content=raw, headers={"content-type": "application/json"})
    assert r.status_code < 500, (raw, r.status_code, r.text)


def test_health_and_readiness(tmp_path, home, fake_embedder):
    s = Settings(home=home, reload_interval=0.0)
    with TestClient(create_app(s, engine=Engine(s, fake_embedder))) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 503
        r = c.post("/v1/suggest", json={"subject": "password"})
        assert r.status_code == 503 and "deflect ingest" in r.json()["message"]
        ingest(small_kb(tmp_path), home, fake_embedder)
        deadline = time.time() + 5
        while c.get("/readyz").status_code != 200 and time.time() < deadline:
            time.sleep(0.05)
        assert c.get("/readyz").json()["status"] == "ready"
        assert c.get("/docs").status_code == 200 and c.get("/openapi.json").status_code == 200


def test_cors_allow_list(client):
    ok = client.options(
        "/v1/suggest", headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    )
    assert ok.headers.get("access-control-allow-origin") == "https://shop.example"
    bad = client.options(
        "/v1/suggest", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in bad.headers


def test_new_index_is_picked_up_without_restart_and_without_failing_requests(tmp_path, settings, fake_embedder):
    settings = settings.model_copy(update=NO_LIMITS)
    v1 = ingest(small_kb(tmp_path), settings.home, fake_embedder).version
    engine = Engine(settings, fake_embedder)
    app = create_app(settings, engine=engine)
    with TestClient(app) as c:
        with Hammer(c, {"description": "webhook api key"}, "index_version") as h:
            versions = [v1]
            for i in range(3):
                kb = small_kb(tmp_path, {f"new{i}": (f"Webhook api key {i}", "Create a webhook and api key.")})
                versions.append(ingest(kb, settings.home, fake_embedder).version)
                time.sleep(0.3)
            h.wait_for(versions[-1])
        errors, seen = h.errors, h.seen
        last = c.post("/v1/suggest", json={"description": "webhook api key"}).json()
    assert errors == []
    assert versions[-1] in seen and last["index_version"] == versions[-1]
    assert last["suggestions"][0]["article_id"].startswith("new")


def test_settings_refuse_unsafe_values():
    with pytest.raises(ValueError):
        Settings(cors_origins=["*", "https://a"])
    with pytest.raises(ValueError):
        Settings(min_score=2)
    assert Settings(_env_file=None, cors_origins="https://a, https://b").cors_origins == ["https://a", "https://b"]


def test_a_bundle_link_that_is_not_http_is_never_served(tmp_path, settings, fake_embedder):
    """Ingest refuses such links; a bundle made before it did is served without them."""
    from dataclasses import replace

    ingest(small_kb(tmp_path), settings.home, fake_embedder)
    engine = Engine(settings, fake_embedder)
    with TestClient(create_app(settings, engine=engine)) as c:
        arts = engine.index.get().articles
        arts["pw"] = replace(arts["pw"], url="javascript:alert(document.domain)")
        body = c.post("/v1/suggest", json={"subject": "password", "description": "reset my password"}).json()
    assert body["suggestions"][0]["article_id"] == "pw" and body["suggestions"][0]["url"] == ""
