"""The widget in a real browser (Debian's headless Chromium, driven by Playwright) against the
real API on loopback, with the real model; every check also looks in the event store."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from deflect.experiment import assign_variant
from tests.conftest import ARTIFACTS

CHROMIUM = os.environ.get("DEFLECT_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM and os.environ.get("DEFLECT_REQUIRE_BROWSER"):  # .ci/run sets it: never skip there
    raise RuntimeError("DEFLECT_REQUIRE_BROWSER is set but no chromium was found (apt-get install chromium)")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)"),
]
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SALT = "widget-test"
QUERY = ("2fa", "I lost my phone and cannot get the login code anymore")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The real app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings, engine) -> None:
        import uvicorn

        from deflect.api.main import create_app

        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, engine=engine)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _settings(home: Path, db: Path, **kw):
    from deflect.config import Settings

    return Settings(
        home=home, database_url=f"sqlite:///{db}", control_share=0.5, control_salt=SALT, reload_interval=3600, **kw
    )


@pytest.fixture(scope="module")
def api(demo_home, real_embedder, tmp_path_factory):
    from deflect.engine import Engine

    db = tmp_path_factory.mktemp("widget") / "events.db"
    s = _settings(demo_home, db)
    srv = Server(s, Engine(s, real_embedder))
    srv.db = db
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def session_in(variant: str, prefix: str) -> str:
    for i in range(1000):
        sid = f"{prefix}-{i}"
        if assign_variant(sid, 0.5, SALT) == variant:
            return sid
    raise AssertionError("no session id found")


def new_page(browser, session: str):
    ctx = browser.new_context(viewport={"width": 1000, "height": 1100})
    ctx.add_init_script(f"sessionStorage.setItem('deflect.session', {session!r})")
    page = ctx.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return ctx, page


def events_of(db: Path, session: str, want: set[str], timeout: float = 8.0) -> list:
    """The session's events in the store, once every type in ``want`` is there (or the timeout)."""
    from deflect.store import open_store

    deadline = time.time() + timeout
    while True:
        store = open_store(f"sqlite:///{db}")
        try:
            evs = [e for e in store.events() if e.session_id == session]
        finally:
            store.close()
        if want <= {e.type for e in evs} or time.time() > deadline:
            return evs
        time.sleep(0.2)


def suggestions_of(db: Path, session: str) -> list:
    from deflect.store import open_store

    time.sleep(0.2)  # suggestion records are written behind the response (group commit, 50 ms)
    store = open_store(f"sqlite:///{db}")
    try:
        return [r for r in store.suggestions() if r.session_id == session]
    finally:
        store.close()


LINKS = ".deflect-widget >> a[part=suggestion]"


def type_query(page) -> None:
    page.fill("#subject", QUERY[0])
    page.type("#message", QUERY[1], delay=15)


def test_suggestions_open_feedback_and_submit_are_all_recorded(api, browser):
    sid = session_in("treatment", "t")
    ctx, page = new_page(browser, sid)
    page.goto(api.url + "/demo")
    type_query(page)
    page.wait_for_selector(LINKS, timeout=10_000)
    ids = [a.get_attribute("data-article-id") for a in page.query_selector_all(LINKS)]
    assert ids[0] == "sec-001" and len(ids) == 3
    assert "suggested articles" in page.inner_text(".deflect-widget >> [role=status]")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "widget-demo-suggestions.png"), full_page=True)

    with ctx.expect_page() as new_tab:
        page.click(f"{LINKS} >> nth=0")
    article = new_tab.value
    article.wait_for_load_state()
    assert "Two-factor" in article.inner_text("h1")  # opened in a new tab
    article.close()

    page.click(".deflect-widget >> button.yes")
    assert page.is_visible(".deflect-widget >> button.leave")
    page.screenshot(path=str(ARTIFACTS / "widget-demo-helpful.png"), full_page=True)
    page.click("button.submit")
    page.wait_for_url("**/demo/sent")
    assert "we got your message" in page.inner_text("h1")

    evs = events_of(api.db, sid, {"suggestions_shown", "article_opened", "feedback", "form_submitted"})
    by = {e.type: e for e in evs}
    assert set(by) >= {"suggestions_shown", "article_opened", "feedback", "form_submitted"}
    assert by["article_opened"].article_id == "sec-001"
    assert by["feedback"].helpful is True and by["feedback"].article_id == "sec-001"
    recs = suggestions_of(api.db, sid)
    assert by["suggestions_shown"].request_id in {r.request_id for r in recs}
    assert all(r.variant == "treatment" for r in recs)
    assert len({e.event_id for e in evs}) == len(evs)  # nothing counted twice
    assert page.errors == []
    ctx.close()


def test_no_request_when_the_text_did_not_change_and_stale_answers_are_dropped(api, browser):
    sid = session_in("treatment", "s")
    ctx, page = new_page(browser, sid)
    calls = []
    page.on("request", lambda r: calls.append(r.url) if r.url.endswith("/v1/suggest") else None)
    page.goto(api.url + "/demo")
    type_query(page)
    page.wait_for_selector(LINKS, timeout=10_000)
    n = len(calls)
    page.press("#message", "End")  # focus and keys that change nothing
    page.fill("#message", QUERY[1])  # same text again
    page.wait_for_timeout(900)
    assert len(calls) == n
    assert n <= 3  # debounced: not one request per keystroke
    ctx.close()


def test_control_group_sees_nothing_and_its_events_are_recorded(api, browser):
    sid = session_in("control", "c")
    ctx, page = new_page(browser, sid)
    page.goto(api.url + "/demo")
    type_query(page)
    page.wait_for_timeout(1500)
    assert page.query_selector_all(LINKS) == [] or not page.is_visible(LINKS)
    page.click("button.submit")
    page.wait_for_url("**/demo/sent")
    evs = events_of(api.db, sid, {"form_submitted"})
    assert [e.type for e in evs] == ["form_submitted"]
    recs = suggestions_of(api.db, sid)
    assert recs and all(r.variant == "control" and r.shown == [] for r in recs)
    assert recs[-1].would_show[0] == "sec-001"  # what it would have seen is kept
    assert page.errors == []
    ctx.close()


def test_form_works_with_the_api_stopped(demo_home, real_embedder, tmp_path, browser):
    """A host page on another origin; the API serves the script, then stops."""
    from deflect.engine import Engine

    site = tmp_path / "site"
    site.mkdir()
    s = _settings(demo_home, tmp_path / "events.db")
    api = Server(s, Engine(s, real_embedder))
    (site / "sent.html").write_text("<!doctype html><h1>Message sent</h1>")
    (site / "index.html").write_text(
        "<!doctype html><html lang='en'><body><form id='f' action='/sent.html' method='get'>"
        "<input id='subject' name='subject'><textarea id='message' name='message'></textarea>"
        "<button type='submit' id='send'>Send</button></form>"
        f"<script src='{api.url}/widget/deflect-widget.js' data-api='{api.url}' data-subject='#subject' "
        "data-description='#message' data-form='#f' data-timeout='1500'></script></body></html>"
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        ctx, page = new_page(browser, "down-1")
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/index.html")
        page.wait_for_function("window.DeflectWidget && window.DeflectWidget.instances.length === 1")
        api.stop()
        type_query(page)
        page.wait_for_timeout(1200)
        assert page.query_selector_all(LINKS) == [] or not page.is_visible(LINKS)
        page.click("#send")
        page.wait_for_url("**/sent.html?**")
        assert page.inner_text("h1") == "Message sent"
        assert page.errors == []  # nothing thrown into the page
        ctx.close()
    finally:
        httpd.shutdown()
        api.stop()


def test_keyboard_alone_reaches_and_opens_a_suggestion(api, browser):
    sid = session_in("treatment", "k")
    ctx, page = new_page(browser, sid)
    page.goto(api.url + "/demo")
    for _ in range(10):  # Tab from the top of the page to the subject field
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "subject":
            break
    assert page.evaluate("document.activeElement.id") == "subject"
    page.keyboard.type(QUERY[0])
    page.keyboard.press("Tab")
    page.keyboard.type(QUERY[1], delay=15)
    page.wait_for_selector(LINKS, timeout=10_000)
    page.keyboard.press("Tab")  # the suggestions come right after the message field
    focused = page.evaluate(
        "(() => { const a = document.activeElement.shadowRoot && document.activeElement.shadowRoot.activeElement;"
        " return a ? [a.dataset.articleId, getComputedStyle(a).outlineStyle] : null })()"
    )
    assert focused is not None and focused[0] == "sec-001"
    assert focused[1] != "none"  # visible focus
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "widget-demo-keyboard-focus.png"), full_page=True)
    with ctx.expect_page() as new_tab:
        page.keyboard.press("Enter")
    new_tab.value.close()
    evs = events_of(api.db, sid, {"article_opened"})
    assert any(e.type == "article_opened" and e.article_id == "sec-001" for e in evs)
    ctx.close()


def test_leaving_without_sending_reports_abandonment_by_beacon(api, browser):
    sid = session_in("treatment", "a")
    ctx, page = new_page(browser, sid)
    page.goto(api.url + "/demo")
    type_query(page)
    page.wait_for_selector(LINKS, timeout=10_000)
    page.goto("about:blank")  # the customer leaves
    evs = events_of(api.db, sid, {"form_abandoned", "suggestions_shown"})
    assert {"form_abandoned", "suggestions_shown"} <= {e.type for e in evs}
    ctx.close()


def test_widget_script_is_served_with_caching_headers(api):
    import httpx

    r = httpx.get(api.url + "/widget/deflect-widget.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert (
        httpx.get(api.url + "/widget/deflect-widget.js", headers={"If-None-Match": r.headers["etag"]}).status_code
        == 304
    )
