"""The server against a real PostgreSQL that is down at start and drops its connections
mid-run: a TCP relay between them plays the network. /readyz says what happens, no event
is acknowledged before it is committed, and the server reconnects by itself."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from deflect.api.main import create_app
from deflect.config import Settings
from deflect.engine import Engine
from deflect.kb_ingest.pipeline import ingest
from deflect.store import open_store
from tests.conftest import small_kb, token

pytestmark = pytest.mark.postgres


class Relay:
    """Forwards a local port to PostgreSQL; ``start``/``stop`` open and close the port,
    ``cut`` drops every connection through it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen()
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.cut()


def _through(url: str, port: int) -> str:
    u = urlsplit(url)
    netloc = u.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return u._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()


def _wait(cond, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_the_server_survives_a_store_that_is_down_then_drops_its_connections(tmp_path, home, fake_embedder, pg_url):
    u = urlsplit(pg_url)
    relay = Relay((u.hostname or "127.0.0.1", u.port or 5432))
    open_store(pg_url).close()  # the schema exists; the server will reach it only through the relay
    s = Settings(home=home, reload_interval=0.0, min_score=0.1, database_url=_through(pg_url, relay.port))
    ingest(small_kb(tmp_path), home, fake_embedder)
    ts = datetime.now(UTC).isoformat()

    def batch(*ids):
        return {
            "events": [
                {"event_id": i, "session_id": "s1", "type": "form_submitted", "ts": ts, "token": token(s, "s1")}
                for i in ids
            ]
        }

    try:
        with TestClient(create_app(s, engine=Engine(s, fake_embedder))) as c:
            # down at start: suggestions work, events are refused (not lost: the widget keeps them)
            ready = c.get("/readyz").json()
            assert ready["status"] == "degraded" and ready["events"]["available"] is False
            assert c.post("/v1/suggest", json={"description": "reset password"}).status_code == 200
            r = c.post("/v1/events", json=batch("e1"))
            assert r.status_code == 503 and r.headers["retry-after"]

            relay.start()  # the database comes up: the server reconnects with no restart
            _wait(lambda: c.get("/readyz").json()["status"] == "ready")
            assert c.post("/v1/events", json=batch("e1", "e2")).json()["accepted"] == 2

            relay.cut()  # the connection breaks mid-run
            r = c.post("/v1/events", json=batch("e3"))
            assert r.status_code == 503  # not committed, so not acknowledged
            _wait(lambda: c.get("/readyz").json()["status"] == "ready")
            assert c.post("/v1/events", json=batch("e3")).json() == {"accepted": 1, "duplicates": 0, "rejected": 0}
            assert c.get("/readyz").json()["events"]["reconnects"] == 2
            c.app.state.recorder.flush()
    finally:
        relay.stop()
    store = open_store(pg_url)
    try:
        assert sorted(e.event_id for e in store.events()) == ["e1", "e2", "e3"]
        assert len(store.suggestions()) == 1  # the suggest call made while the store was down waited
    finally:
        store.close()
