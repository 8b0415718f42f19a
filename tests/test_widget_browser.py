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


# --- languages -------------------------------------------------------------------------------

#: the widget's texts, written out here so that a changed translation is a deliberate change
WIDGET_TEXTS = {
    "en": {
        "heading": "These articles might answer your question",
        "ask": "Did this answer your question?",
        "yes": "Yes",
        "no": "No",
        "thanks": "Great, glad it helped. You don't need to send this form.",
        "leave": "Leave without sending",
        "announce": "{n} suggested articles below the message field",
        "opensNewTab": "(opens in a new tab)",
    },
    "zh-TW": {
        "heading": "這些文章或許能解答您的問題",
        "ask": "這有解答您的問題嗎？",
        "yes": "是",
        "no": "否",
        "thanks": "太好了，很高興能幫上忙。您不需要送出這份表單。",
        "leave": "不送出，直接離開",
        "announce": "訊息欄位下方有 {n} 篇建議文章",
        "opensNewTab": "（在新分頁中開啟）",
    },
    "zh-CN": {
        "heading": "这些文章或许能解答您的问题",
        "ask": "这解答了您的问题吗？",
        "yes": "是",
        "no": "否",
        "thanks": "太好了，很高兴能帮到您。您无需再提交此表单。",
        "leave": "不提交，直接离开",
        "announce": "消息输入框下方有 {n} 篇推荐文章",
        "opensNewTab": "（在新标签页中打开）",
    },
    "id": {
        "heading": "Artikel berikut mungkin menjawab pertanyaan Anda",
        "ask": "Apakah ini menjawab pertanyaan Anda?",
        "yes": "Ya",
        "no": "Tidak",
        "thanks": "Bagus, senang bisa membantu. Anda tidak perlu mengirim formulir ini.",
        "leave": "Keluar tanpa mengirim",
        "announce": "{n} artikel yang disarankan di bawah kolom pesan",
        "opensNewTab": "(terbuka di tab baru)",
    },
}

# what the widget shows: its texts as rendered, the panel's lang, and the live region's
SHOWN = """() => {
  const root = document.querySelector('.deflect-widget').shadowRoot, box = root.querySelector('.box');
  const text = (sel) => root.querySelector(sel).textContent.trim();
  return {
    lang: box.getAttribute('lang'), liveLang: root.querySelector('[role=status]').getAttribute('lang'),
    label: box.getAttribute('aria-label'), links: root.querySelectorAll('a[part=suggestion]').length,
    texts: {heading: text('h2'), ask: text('.q'), yes: text('.yes'), no: text('.no'), thanks: text('.thanks'),
            leave: text('.leave'), announce: text('[role=status]'), opensNewTab: text('a[part=suggestion] .sr')},
  };
}"""


def host_page(page, url: str, html_lang: str | None, attrs: str = "") -> None:
    """A contact form at ``url`` on the API's origin, with ``<html lang>`` (None: no lang)
    and the widget's script tag with ``attrs``."""
    lang = "" if html_lang is None else f" lang='{html_lang}'"
    body = (
        f"<!doctype html><html{lang}><head><meta charset='utf-8'><title>Contact</title></head><body>"
        "<form id='f' action='/demo/sent' method='post'><input id='subject' name='subject'>"
        "<textarea id='message' name='message'></textarea><button type='submit'>Send</button></form>"
        "<script src='/widget/deflect-widget.js' data-subject='#subject' data-description='#message' "
        f"data-form='#f' {attrs}></script></body></html>"
    )
    page.route(url, lambda route: route.fulfill(status=200, content_type="text/html; charset=utf-8", body=body))
    page.goto(url)
    page.wait_for_function("window.DeflectWidget && window.DeflectWidget.instances.length === 1")


def suggest_bodies(page) -> list[dict]:
    """The JSON bodies of the page's /v1/suggest calls, as they are made."""
    bodies: list[dict] = []
    page.on("request", lambda r: bodies.append(r.post_data_json) if r.url.endswith("/v1/suggest") else None)
    return bodies


def assert_speaks(shown: dict, lang: str) -> None:
    want = dict(WIDGET_TEXTS[lang])
    want["announce"] = want["announce"].replace("{n}", str(shown["links"]))
    assert shown["texts"] == want
    assert shown["label"] == want["heading"]
    assert shown["lang"] == lang and shown["liveLang"] == lang


LANG_CASES = [
    # <html lang>, script tag attributes, the texts shown, the request's locale
    ("zh-TW", "", "zh-TW", "zh-TW"),
    ("zh-Hant-HK", "", "zh-TW", "zh-Hant-HK"),
    ("zh_mo", "", "zh-TW", "zh-mo"),
    ("zh-CN", "", "zh-CN", "zh-CN"),
    ("zh-Hans", "", "zh-CN", "zh-Hans"),
    ("ZH", "", "zh-CN", "ZH"),
    ("id", "", "id", "id"),
    ("in", "", "id", "in"),
    ("xx", "", "en", "xx"),
    (None, "", "en", None),
    ("en-US-x-twain", "", "en", "en"),  # not a locale the API accepts: its language alone
    ("zh-TW", "data-lang='id'", "id", "id"),
    ("en", "data-lang='zh-Hant'", "zh-TW", "zh-Hant"),
    ("zh-TW", "data-lang='xx'", "en", "xx"),
    ("id", "data-locale='zh-SG'", "zh-CN", "zh-SG"),
    ("zh-TW", "data-lang='id' data-locale='en-GB'", "id", "en-GB"),
]


@pytest.mark.parametrize(("html_lang", "attrs", "texts", "locale"), LANG_CASES)
def test_widget_speaks_the_page_language_and_sends_it_as_locale(api, browser, html_lang, attrs, texts, locale):
    ctx, page = new_page(browser, session_in("treatment", "lang"))
    bodies = suggest_bodies(page)
    host_page(page, api.url + "/contact.html", html_lang, attrs)
    page.fill("#subject", QUERY[0])
    page.fill("#message", QUERY[1])
    page.wait_for_selector(LINKS, timeout=10_000)
    assert_speaks(page.evaluate(SHOWN), texts)
    assert bodies and all(b.get("locale") == locale for b in bodies)
    assert page.errors == []
    ctx.close()


def test_chinese_text_on_a_page_left_in_english_sends_no_locale(api, browser):
    """Han characters in the text and a page language that is not Chinese: the engine
    detects the language rather than being told a wrong one. An explicit locale is sent."""
    for html_lang, attrs, locale in [
        ("en", "", None),
        ("id", "", None),
        ("zh-TW", "", "zh-TW"),
        ("en", "data-locale='en'", "en"),
    ]:
        ctx, page = new_page(browser, session_in("treatment", "han"))
        host_page(page, api.url + "/contact.html", html_lang, attrs)
        with page.expect_request(lambda r: r.url.endswith("/v1/suggest")) as req:
            page.fill("#subject", "登入")
            page.fill("#message", "我的手機不見了，收不到登入驗證碼")
        assert req.value.post_data_json.get("locale") == locale, (html_lang, attrs)
        ctx.close()


def test_every_language_has_every_text(api, browser):
    ctx, page = new_page(browser, "texts-1")
    page.goto(api.url + "/demo")
    page.wait_for_function("window.DeflectWidget && window.DeflectWidget.instances.length === 1")
    table = page.evaluate("DeflectWidget.texts")
    assert set(table) == {"en", "de", "fr", "es", "zh-CN", "zh-TW", "id"}
    for lang, texts in table.items():
        assert set(texts) == set(table["en"]), lang
        assert all(isinstance(v, str) and v.strip() for v in texts.values()), lang
        assert "{n}" in texts["announce"], lang
    for lang, texts in WIDGET_TEXTS.items():
        assert table[lang] == texts
    ctx.close()


@pytest.mark.parametrize("lang", ["id", "zh-TW", "zh-CN"])
def test_demo_page_in_the_chosen_language_and_the_widget_follows(api, browser, lang):
    from deflect.api.routes.widget import DEMO_PRODUCTS, DEMO_TEXTS

    t = DEMO_TEXTS[lang]
    ctx, page = new_page(browser, session_in("treatment", "demo-" + lang))
    bodies = suggest_bodies(page)
    resp = page.goto(f"{api.url}/demo?lang={lang}")
    assert resp.status == 200
    assert page.evaluate("document.documentElement.lang") == lang
    assert page.title() == t["title"] + " · Tidewell"
    assert page.inner_text("h1") == t["title"]
    assert page.inner_text(".hint") == t["hint"]
    labels = {k: page.inner_text(f"label[for={k}]") for k in ("name", "email", "product", "subject", "message")}
    assert labels == {k: t[k] for k in labels}
    assert page.inner_text("button.submit") == t["send"]
    assert page.get_attribute("#message", "placeholder") == t["placeholder"]
    assert page.eval_on_selector_all("#product option", "os => os.map(o => o.textContent)") == list(DEMO_PRODUCTS[lang])
    assert page.inner_text("[aria-current]") == t["language_name"]
    assert page.get_attribute(".langs", "aria-label") == t["language"]

    type_query(page)
    page.wait_for_selector(LINKS, timeout=10_000)
    assert_speaks(page.evaluate(SHOWN), lang)  # English articles (the test index), the page's language around them
    assert bodies and all(b.get("locale") == lang for b in bodies)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"widget-demo-{lang.lower()}.png"), full_page=True)
    with ctx.expect_page() as new_tab:
        page.click(f"{LINKS} >> nth=0")
    article = new_tab.value
    article.wait_for_load_state()
    assert article.url.endswith(f"?lang={lang}")
    assert article.evaluate("document.documentElement.lang") == lang
    assert article.inner_text("p >> a") == t["back"]
    article.close()
    page.click("button.submit")
    page.wait_for_url(f"**/demo/sent?lang={lang}")
    assert page.inner_text("h1") == t["sent_heading"]
    assert page.errors == []
    ctx.close()


def test_demo_language_switch_needs_no_javascript(api, browser):
    ctx = browser.new_context(java_script_enabled=False)
    page = ctx.new_page()
    page.goto(api.url + "/demo")
    names = page.eval_on_selector_all(".langs a, .langs span", "es => es.map(e => e.textContent)")
    assert names == ["English", "繁體中文", "简体中文", "Bahasa Indonesia"]
    page.click(".langs >> text=Bahasa Indonesia")
    page.wait_for_url("**/demo?lang=id")
    assert page.inner_text("h1") == "Hubungi tim dukungan"
    page.click(".langs >> text=繁體中文")
    page.wait_for_url("**/demo?lang=zh-TW")
    assert page.inner_text("h1") == "聯絡客服"
    page.click(".langs >> text=简体中文")
    page.wait_for_url("**/demo?lang=zh-CN")
    assert page.inner_text("h1") == "联系客服"
    page.click(".langs >> text=English")
    page.wait_for_url("**/demo")
    assert page.inner_text("h1") == "Contact support"
    ctx.close()


@pytest.mark.parametrize(
    ("asked", "lang"),
    [
        ("en", "en"),
        ("zh-TW", "zh-TW"),
        ("zh_tw", "zh-TW"),
        ("ZH-CN", "zh-CN"),
        ("id", "id"),
        ("xx", "en"),
        ("", "en"),
        ("zh", "en"),
        ("<b>x</b>", "en"),
        ("x" * 5000, "en"),
    ],
)
def test_demo_lang_parameter_is_validated(api, asked, lang):
    import html

    import httpx

    from deflect.api.routes.widget import DEMO_PRODUCTS, DEMO_TEXTS

    r = httpx.get(api.url + "/demo", params={"lang": asked})
    assert r.status_code == 200
    assert f'<html lang="{lang}">' in r.text and r.headers["content-language"] == lang
    assert "{{" not in r.text and "<b>x</b>" not in r.text
    for key, text in DEMO_TEXTS[lang].items():
        if key.startswith(("sent_", "resolved_", "no_", "back")):
            continue
        assert html.escape(text) in r.text, key
    assert all(html.escape(p) in r.text for p in DEMO_PRODUCTS[lang])
    for path in ("/demo/sent", "/demo/resolved"):
        r = httpx.get(api.url + path, params={"lang": asked})
        assert r.status_code == 200 and f"<html lang='{lang}'>" in r.text
    r = httpx.get(api.url + "/demo/articles/no-such-article", params={"lang": asked})
    assert r.status_code == 404 and html.escape(DEMO_TEXTS[lang]["no_article"]) in r.text


def test_events_the_api_could_not_take_are_kept_and_sent_on_a_later_page(api, browser):
    """The events endpoint fails while the customer submits; the events wait in the page's
    localStorage and are delivered, once, when a page with the widget opens again."""
    sid = session_in("treatment", "p")
    ctx, page = new_page(browser, sid)
    page.route("**/v1/events", lambda route: route.fulfill(status=503, body="down"))
    page.goto(api.url + "/demo")
    type_query(page)
    page.wait_for_selector(LINKS, timeout=10_000)
    page.click("button.submit")
    page.wait_for_url("**/demo/sent")
    assert events_of(api.db, sid, {"form_submitted"}, timeout=1.5) == []
    page.goto(api.url + "/demo")  # the same origin's storage, still failing
    page.wait_for_timeout(800)
    pending = page.evaluate("JSON.parse(localStorage.getItem('deflect.pending') || '[]')")
    assert {"suggestions_shown", "form_submitted"} <= {e["type"] for e in pending}
    assert all(e["token"] and e["session_id"] == sid for e in pending)
    page.unroute("**/v1/events")
    page.goto(api.url + "/demo")
    evs = events_of(api.db, sid, {"suggestions_shown", "form_submitted"})
    assert {"suggestions_shown", "form_submitted"} <= {e.type for e in evs}
    assert len({e.event_id for e in evs}) == len(evs)
    page.wait_for_timeout(500)
    assert page.evaluate("localStorage.getItem('deflect.pending')") is None
    assert page.errors == []
    ctx.close()


def test_a_session_without_a_suggest_answer_sends_no_events(api, browser):
    sid = session_in("treatment", "n")
    ctx, page = new_page(browser, sid)
    posted = []
    page.on("request", lambda r: posted.append(r) if r.url.endswith("/v1/events") else None)
    page.goto(api.url + "/demo")
    page.fill("#subject", "hi")  # typed, but no suggest call answered yet
    page.click("button.submit")
    page.wait_for_url("**/demo/sent")
    assert posted == [] and events_of(api.db, sid, {"form_submitted"}, timeout=1.0) == []
    ctx.close()


HOSTILE = [
    "javascript:window.__pwned=1",
    " JaVaScRiPt:window.__pwned=2",
    "java\tscript:window.__pwned=3",
    "data:text/html,<script>parent.__pwned=4</script>",
    "vbscript:msgbox(5)",
]


@pytest.mark.parametrize("target", [None, "_self", "_blank", "_top", "_parent", "frame"])
def test_only_http_links_are_rendered_and_a_hostile_link_runs_nothing(api, browser, target):
    """An answer whose suggestions link to ``javascript:`` and other schemes (a bundle from
    before ingest refused them, a tampered response): the widget renders and follows only the
    http(s) one, under every ``data-target``: clicking the first link (the hostile one before
    links were checked) goes to the http(s) page and runs no script."""
    import json

    ctx, page = new_page(browser, session_in("treatment", f"x{target}"))
    items = [{"article_id": f"h{i}", "title": f"hostile {i}", "url": u, "snippet": "s", "score": 0.9}
             for i, u in enumerate(HOSTILE)]  # fmt: skip
    safe = api.url + "/demo/articles/ok"
    items.append({"article_id": "ok", "title": "safe", "url": safe, "snippet": "s", "score": 0.8})
    answer = {"request_id": "r1", "variant": "treatment", "abstained": False, "reason": None, "intent": None,
              "suggestions": items, "index_version": "v", "model_version": None, "token": "t"}  # fmt: skip
    page.route("**/v1/suggest", lambda route: route.fulfill(status=200, content_type="application/json",
                                                           body=json.dumps(answer)))  # fmt: skip
    attrs = f"data-target='{target}'" if target else ""
    host_page(page, api.url + "/contact", "en", attrs)
    type_query(page)
    page.wait_for_selector(LINKS)
    hrefs = page.eval_on_selector_all(LINKS, "els => els.map(e => e.getAttribute('href'))")
    assert hrefs == [safe]
    first = page.locator(LINKS).first  # before links were checked: the javascript: one
    if target in (None, "_blank", "frame"):  # a new tab
        with ctx.expect_page() as opened:
            first.click()
        opened.value.wait_for_load_state()
        assert opened.value.url == safe
        assert page.evaluate("window.__pwned === undefined")
    else:
        first.click()
        page.wait_for_url(safe)
    assert page.errors == []
    ctx.close()


def test_a_hostile_article_url_template_or_leave_url_is_never_followed(api, browser):
    ctx, page = new_page(browser, session_in("treatment", "tpl"))
    hostile = "data-article-url='javascript:window.__pwned={id}' data-leave-url='javascript:window.__pwned=9'"
    host_page(page, api.url + "/contact", "en", hostile)
    type_query(page)
    page.wait_for_timeout(1500)  # the answer arrives; nothing may be rendered from it
    assert page.eval_on_selector_all(LINKS, "els => els.length") == 0
    assert page.evaluate("window.__pwned === undefined") and page.errors == []
    ctx.close()


def test_configured_form_fields_are_sent_and_a_change_asks_again(api, browser):
    ctx, page = new_page(browser, session_in("treatment", "fields"))
    bodies = suggest_bodies(page)
    page.route(
        api.url + "/contact",
        lambda route: route.fulfill(
            status=200,
            content_type="text/html; charset=utf-8",
            body="<!doctype html><html lang='en'><head><meta charset='utf-8'></head><body>"
            "<form id='f' action='/demo/sent' method='post'><input id='subject' name='subject'>"
            "<select name='product'><option>iOS app</option><option>Web</option></select>"
            "<input name='plan' value='Pro'><textarea id='message' name='message'></textarea></form>"
            "<script src='/widget/deflect-widget.js' data-subject='#subject' data-description='#message' "
            "data-form='#f' data-fields='product, plan, missing'></script></body></html>",
        ),
    )
    page.goto(api.url + "/contact")
    page.wait_for_function("window.DeflectWidget && window.DeflectWidget.instances.length === 1")
    type_query(page)
    page.wait_for_selector(LINKS)
    assert bodies[-1]["fields"] == {"product": "iOS app", "plan": "Pro"}
    n = len(bodies)
    page.select_option("select[name=product]", "Web")
    deadline = time.time() + 5
    while len(bodies) == n and time.time() < deadline:
        page.wait_for_timeout(100)
    assert len(bodies) == n + 1 and bodies[-1]["fields"] == {"product": "Web", "plan": "Pro"}
    assert page.errors == []
    ctx.close()


def test_api_docs_render_without_network(api, browser):
    """/docs draws Swagger UI from assets installed with the package: with every request off
    the server's origin refused (no internet), the page still renders the API."""
    ctx = browser.new_context()
    page = ctx.new_page()
    outside: list[str] = []

    def only_local(route):
        if route.request.url.startswith(api.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(api.url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
    assert "deflect" in page.inner_text(".swagger-ui .info .title")
    assert page.locator(".opblock-summary-path", has_text="/v1/suggest").count() >= 1
    assert outside == []
    ctx.close()
