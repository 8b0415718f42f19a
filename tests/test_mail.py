"""Inbound e-mail: MIME parsing (charsets, HTML-only, attachments), quoted replies and
signatures stripped, automatic mail recognised, and POST /v1/inbound's triage."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from fastapi.testclient import TestClient

from deflect.api.main import create_app
from deflect.config import Settings
from deflect.engine import Engine
from deflect.kb_ingest.pipeline import ingest
from deflect.mail import clean_body, from_fields, parse_message
from tests.conftest import small_kb


def message(body: str, *, charset: str = "utf-8", subject: str = "Help", html: str | None = None, **headers) -> bytes:
    m = EmailMessage()
    m["From"] = headers.pop("sender", "Budi Santoso <budi@example.id>")
    m["To"] = "support@tidewell.app"
    m["Subject"] = subject
    m["Message-ID"] = headers.pop("message_id", "<m1@example.id>")
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    m.set_content(body, charset=charset)
    if html is not None:
        m.add_alternative(html, subtype="html")
    return m.as_bytes()


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("gb2312", "我的日历不同步了，请帮忙"),
        ("big5", "我的行事曆無法同步，請協助"),
        ("iso-8859-1", "Mon calendrier ne se synchronise plus, aidez-moi"),
    ],
)
def test_charsets_are_decoded(charset, text):
    mail = parse_message(message(text, charset=charset))
    assert mail.body == text and mail.sender == "budi@example.id" and mail.message_id == "<m1@example.id>"


def test_html_only_mail_is_read_as_text_and_attachments_are_not_read():
    m = EmailMessage()
    m["From"], m["Subject"] = "ana@example.com", "Invoice"
    m.set_content("<html><body><p>Where is my <b>invoice</b>?</p><script>x()</script></body></html>", subtype="html")
    m.add_attachment(b"\x00" * 1000, maintype="application", subtype="pdf", filename="scan.pdf")
    mail = parse_message(m.as_bytes())
    assert mail.body == "Where is my invoice?" and mail.skipped_parts == ["application/pdf"]


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("My calendar stopped syncing.\n\nThanks,\nAna\n--\nAna Lima | Acme\n\nOn Tue, 1 Dec 2026 at 10:00, "
         "Tidewell <support@tidewell.app> wrote:\n> Hello Ana\n> Regards", "My calendar stopped syncing."),
        ("日历还是不同步。\n\n在 2026年12月1日 10:00，Tidewell <support@tidewell.app> 写道：\n> 您好",
         "日历还是不同步。"),
        ("Kalender saya masih tidak sinkron.\n\nPada Sel, 1 Des 2026 pukul 10.00, Tidewell <support@tidewell.app> "
         "menulis:\n> Halo Budi", "Kalender saya masih tidak sinkron."),
    ],
)  # fmt: skip
def test_quoted_replies_and_signatures_are_stripped(text, kept):
    assert clean_body(text) == kept


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"Auto_Submitted": "auto-replied"}, "auto-submitted: auto-replied"),
        ({"Precedence": "bulk"}, "precedence: bulk"),
        ({"List_Id": "<news.example.com>"}, "mailing list"),
        ({"sender": "no-reply@shop.example"}, "no-reply sender"),
        ({"sender": "MAILER-DAEMON@mx.example"}, "no-reply sender"),
        ({}, None),
    ],
)
def test_automatic_mail_is_recognised(headers, why):
    assert parse_message(message("Out of office until Monday.", **headers)).automatic == why


def test_a_thread_is_named_by_its_first_message():
    first = parse_message(message("Hello", message_id="<a@x>"))
    reply = parse_message(message("Again", message_id="<b@x>", In_Reply_To="<a@x>", References="<a@x>"))
    assert first.thread == reply.thread and first.thread.startswith("mail-")
    assert from_fields("Hi", "x", "c@y", {"Message-ID": "<a@x>"}).thread == first.thread


def test_not_a_message_is_refused():
    from deflect.core.errors import InvalidInputError

    for raw in (b"", b"   ", b"just some words without headers"):
        with pytest.raises(InvalidInputError):
            parse_message(raw)


@pytest.fixture
def api(tmp_path, home, fake_embedder):
    ingest(small_kb(tmp_path), home, fake_embedder)
    s = Settings(home=home, min_score=0.1, reload_interval=0.0, control_share=0.0, mail_default_queue="tier1")
    with TestClient(create_app(s, engine=Engine(s, fake_embedder))) as c:
        yield c


def test_inbound_raw_and_json_are_triaged_with_headers_for_rules(api):
    raw = message("I need to reset my password, the link does not work.\n\n--\nBudi", subject="password")
    r = api.post("/v1/inbound", content=raw, headers={"content-type": "message/rfc822"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outcome"] == "triaged" and body["suggestions"][0]["article_id"] == "pw"
    assert body["queue"] == "tier1" and body["priority"] == "normal" and body["automatic"] is None
    assert r.headers["x-deflect-queue"] == "tier1" and r.headers["x-deflect-answer"] == "articles"
    mail = {"subject": "refund", "body": "<p>refund my card payment</p>", "sender": "Ana <ana@example.com>"}
    j = api.post("/v1/inbound", json={**mail, "headers": {"Precedence": "bulk"}})
    assert j.status_code == 200 and j.json()["suggestions"][0]["article_id"] == "refund"
    assert j.json()["priority"] == "low" and j.json()["automatic"] == "precedence: bulk"


def test_inbound_bad_input_gets_a_clear_answer(api):
    r = api.post("/v1/inbound", content=b"no headers here", headers={"content-type": "message/rfc822"})
    assert r.status_code == 422 and "message" in r.json()["message"]
    r = api.post("/v1/inbound", content=b"x", headers={"content-type": "image/png"})
    assert r.status_code == 415
    r = api.post("/v1/inbound", json={"subject": "x", "body": "y"})
    assert r.status_code == 422 and "sender" in r.json()["message"]
    empty = message("", subject="")
    r = api.post("/v1/inbound", content=empty, headers={"content-type": "message/rfc822"})
    assert r.status_code == 200 and r.json()["outcome"] == "no_text"
    m = EmailMessage()
    m["From"], m["Subject"] = "ana@example.com", "my password"
    m.set_content("reset my password please")
    m.add_attachment(b"\x01" * (30 * 1024 * 1024), maintype="application", subtype="zip", filename="logs.zip")
    r = api.post("/v1/inbound", content=m.as_bytes(), headers={"content-type": "message/rfc822"})
    assert r.status_code == 200 and r.json()["skipped_parts"] == ["application/zip"]
    assert api.post("/v1/suggest", json={"description": "reset my password"}).status_code == 200  # still serving


def test_inbound_token(tmp_path, home, fake_embedder):
    ingest(small_kb(tmp_path), home, fake_embedder)
    s = Settings(home=home, reload_interval=0.0, inbound_token="s3cret")
    with TestClient(create_app(s, engine=Engine(s, fake_embedder))) as c:
        raw = message("reset my password")
        assert c.post("/v1/inbound", content=raw).status_code == 401
        ok = c.post("/v1/inbound", content=raw, headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200


@pytest.mark.slow
def test_the_demo_mailbox_is_triaged_from_the_command_line(demo_home):
    """`deflect mail triage` over the demo mailbox (67 messages in four languages) against the
    real engine on the demo: every message gets a line, the automatic ones are flagged and
    are low priority, and the English customers' messages mostly get the article written for
    them in the top 3 (the figure itself belongs to `make bench`)."""
    import json

    from typer.testing import CliRunner

    from deflect.cli.main import app
    from tests.conftest import ROOT

    box = ROOT / "examples" / "mail" / "demo.mbox"
    r = CliRunner().invoke(app, ["mail", "triage", str(box), "--json", "--home", str(demo_home)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 67
    auto = [x for x in rows if x["automatic"]]
    assert len(auto) == 3 and all(x["priority"] == "low" for x in auto)
    import mailbox

    meta = [(m.get("X-Demo-Article"), m.get("X-Demo-Language")) for m in mailbox.mbox(box)]
    assert sum(1 for a, _ in meta if a) == 60 and {lang for _, lang in meta if lang} == {"en", "zh-tw", "zh-cn", "id"}
    # this index holds the English help center only: its customers' articles come back
    hits = [
        a in [s["article_id"] for s in x["suggestions"]]
        for (a, lang), x in zip(meta, rows, strict=True)
        if lang == "en"
    ]
    assert len(hits) == 15 and sum(hits) >= 8


def _triaged(**kw):
    from deflect.mail import Triage

    shown = [{"article_id": "pw", "title": "Reset your password", "url": "https://help/pw", "score": 0.8}]
    base = dict(thread="mail-x", intent="password", confidence=0.9, queue="support", priority="normal",
                abstained=False, reason=None, automatic=None, request_id="r1", index_version="v", model_version=None,
                suggestions=shown)  # fmt: skip
    return Triage(**{**base, **kw})


@pytest.mark.parametrize(
    ("text", "lang", "words"),
    [
        ("I cannot log in to my account, please help", "en", "within 24 hours"),
        ("我的帳號無法登入，請協助處理，謝謝", "zh-TW", "24 小時內回覆"),
        ("我的账号无法登录，请帮忙处理，谢谢", "zh-CN", "24 小时内回复"),
        ("saya tidak bisa masuk ke akun saya, mohon bantuannya", "id", "dalam 24 jam"),
    ],
)
def test_the_acknowledgement_speaks_the_customers_language(text, lang, words):
    from deflect.mail import compose_reply

    mail = parse_message(message(text, subject="login", message_id="<q1@c>", References="<q0@c>"))
    reply = compose_reply(mail, _triaged())
    assert reply.language == lang and words in reply.body and "https://help/pw" in reply.body
    assert reply.to == "budi@example.id" and reply.subject == "Re: login" and reply.with_articles
    assert reply.headers["Auto-Submitted"] == "auto-replied" and reply.headers["In-Reply-To"] == "<q1@c>"
    assert reply.headers["References"] == "<q0@c> <q1@c>"


def test_no_articles_when_the_engine_abstained_or_the_session_is_control_and_no_reply_to_machines():
    from deflect.mail import compose_reply

    mail = parse_message(message("someone hacked my account", subject="Re: help"))
    for t in (_triaged(abstained=True, reason="never_deflect", suggestions=[]), _triaged(suggestions=[])):
        reply = compose_reply(mail, t)
        assert not reply.with_articles and "https://" not in reply.body and reply.subject == "Re: help"
    auto = parse_message(message("Out of office", Auto_Submitted="auto-replied"))
    assert compose_reply(auto, _triaged()) is None
