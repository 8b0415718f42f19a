"""Inbound e-mail end to end: recorded first, acknowledged at most once through a real SMTP
server (aiosmtpd, started here), loops and machines never answered, follow-ups and "this
solved it" links recorded as events, and a crash at any point never sends twice."""

from __future__ import annotations

import email
import socket
import ssl
import subprocess
from email import policy
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deflect.api.main import create_app
from deflect.config import Settings
from deflect.engine import Engine
from deflect.kb_ingest.pipeline import ingest
from deflect.mail import parse_message
from deflect.mailer import MailDesk, MaildirOutbox, SendRefused, SMTPOutbox
from deflect.store import open_store
from tests.conftest import small_kb
from tests.test_mail import message

aiosmtpd = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd is a test dependency (pip install -e .[test])")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.received: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.received.append(email.message_from_bytes(envelope.content, policy=policy.default))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


@pytest.fixture
def smtp():
    """A real SMTP server on a free local port, no TLS."""
    sink = Sink()
    c = aiosmtpd.Controller(sink, hostname="127.0.0.1", port=free_port())
    c.start()
    try:
        yield sink, c.port
    finally:
        c.stop()


@pytest.fixture
def engine(tmp_path, home, fake_embedder):
    ingest(small_kb(tmp_path), home, fake_embedder)
    s = Settings(home=home, min_score=0.1, reload_interval=0.0, control_share=0.0, mail_from="help@tidewell.app",
                 public_url="https://help.tidewell.app", mail_max_replies_per_day=2)  # fmt: skip
    return Engine(s, fake_embedder)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, home):
    """The event store: SQLite in the data home, and PostgreSQL when DEFLECT_TEST_DATABASE_URL is set."""
    st = open_store("" if request.param == "sqlite" else request.getfixturevalue("pg_url"), home)
    yield st
    st.close()


def desk_for(engine, store, port) -> MailDesk:
    return MailDesk(engine, store, SMTPOutbox("127.0.0.1", port, security="none", timeout=5))


def test_an_acknowledgement_with_articles_and_solved_links_goes_through_smtp_once(engine, store, smtp):
    sink, port = smtp
    desk = desk_for(engine, store, port)
    raw = message("I need to reset my password, the link does not work.", subject="password", message_id="<a1@c>")
    h = desk.handle_raw(raw, "test")
    assert h.record.outcome == "triaged" and h.record.reply_state == "sent"
    (ack,) = sink.received
    assert sink.envelopes == [("help@tidewell.app", ["budi@example.id"])]
    assert ack["Subject"] == "Re: password" and ack["In-Reply-To"] == "<a1@c>"
    assert ack["Auto-Submitted"] == "auto-replied"
    body = ack.get_content()
    assert "Reset your password" in body and "within 24 hours" in body
    assert "https://help.tidewell.app/v1/mail/solved?s=mail-" in body
    # the same message again (a retried webhook, a second poll): nothing more is sent
    again = desk.handle_raw(raw, "test")
    assert again.duplicate and again.to_json()["outcome"] == "duplicate" and len(sink.received) == 1
    (row,) = store.mail_messages()
    assert row.reply_message is None and row.replied_at is not None and row.sender != "budi@example.id"
    (sug,) = store.suggestions()
    assert sug.channel == "email" and sug.session_id == row.thread and sug.client == row.sender
    assert [e.type for e in store.events()] == ["suggestions_shown"]
    # a customer writing in Traditional Chinese (Big5) gets the acknowledgement in it, over the wire
    desk.handle_raw(message("我的密碼 password 忘記了，要怎麼重設？", charset="big5", sender="mei@example.tw",
                            message_id="<a2@c>"), "test")  # fmt: skip
    assert "小時內回覆" in sink.received[1].get_content() and sink.envelopes[1][1] == ["mei@example.tw"]


def test_machines_loops_and_follow_ups_are_never_acknowledged(engine, store, smtp):
    sink, port = smtp
    desk = desk_for(engine, store, port)
    auto = desk.handle_raw(message("I am out of the office", message_id="<o1@c>", Auto_Submitted="auto-replied"), "t")
    assert auto.record.outcome == "automatic" and auto.record.reply_state == "none" and not sink.received
    # an auto-responder that says nothing of itself answers each acknowledgement with a new thread
    outcomes = []
    for i in range(4):
        raw = message("Thank you for your message. I will reply soon.", sender="bot@partner.example",
                      message_id=f"<loop{i}@partner>", subject=f"Auto: {i}")  # fmt: skip
        outcomes.append(desk.handle_raw(raw, "t").record)
    assert [r.reply_state for r in outcomes] == ["sent", "sent", "none", "none"]
    assert [r.outcome for r in outcomes][2:] == ["loop", "loop"] and len(sink.received) == 2
    # the customer writes again on the thread: no second acknowledgement, a follow-up event
    first = desk.handle_raw(message("reset my password please", message_id="<f1@c>"), "t")
    follow = desk.handle_raw(message("still cannot reset it", message_id="<f2@c>", In_Reply_To="<f1@c>"), "t")
    assert follow.record.thread == first.record.thread and follow.record.followup
    assert follow.record.reply_state == "none" and follow.record.reply_reason == "followup"
    assert len(sink.received) == 3
    # the customer's out-of-office answers on the thread: not the customer writing again
    ooo = desk.handle_raw(message("I am away until Monday", message_id="<f3@c>", In_Reply_To="<f1@c>",
                                  Auto_Submitted="auto-replied"), "t")  # fmt: skip
    assert ooo.record.thread == first.record.thread and not ooo.record.followup and ooo.record.outcome == "automatic"
    assert [e.type for e in store.events() if e.session_id == first.record.thread] == [
        "suggestions_shown",
        "mail_followup",
    ]


def test_bad_input_is_recorded_with_a_clear_outcome(engine, store, smtp, caplog):
    from deflect.core.errors import InvalidInputError

    sink, port = smtp
    desk = desk_for(engine, store, port)
    with pytest.raises(InvalidInputError):
        desk.handle_raw(b"this is not a message", "t")
    empty = desk.handle_raw(message("", subject="", message_id="<e1@c>"), "t")
    engine.settings.mail_max_bytes = 64 * 1024
    big = desk.handle_raw(message("x" * 100_000, message_id="<big@c>"), "t")
    by_key = {r.message_key: r for r in store.mail_messages()}
    outcomes = sorted(r.outcome for r in by_key.values())
    assert outcomes == ["malformed", "no_text", "too_large"]
    assert empty.record.outcome == "no_text" and empty.record.reply_state == "sent"  # a person still answers
    assert big.record.reply_state == "none" and "bytes" in big.record.error
    assert "malformed" in caplog.text and "too_large" in caplog.text


class DeliversThenFails:
    """An outbox whose server takes the message and then the connection breaks (no answer)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def send(self, raw, sender, recipients) -> None:
        self.inner.send(raw, sender, recipients)
        raise TimeoutError("connection lost after DATA")


def test_a_crash_while_sending_never_sends_twice_and_a_refusal_is_sent_later(engine, store, smtp):
    sink, port = smtp
    real = SMTPOutbox("127.0.0.1", port, security="none", timeout=5)
    # 1. the server took it, the answer was lost: unconfirmed, and never sent again
    desk = MailDesk(engine, store, DeliversThenFails(real))
    h = desk.handle_raw(message("refund my card payment", message_id="<c1@c>"), "t")
    assert h.record.reply_state == "unconfirmed" or store.mail_messages(key="<c1@c>")[0].reply_state == "unconfirmed"
    assert MailDesk(engine, store, real).reconcile() == {"unconfirmed": 0, "sent": 0, "failed": 0}
    assert len(sink.received) == 1
    # 2. the process died between "sending" and the answer: reconcile makes it unconfirmed
    store.mail_update("<c1@c>", reply_state="sending")
    from datetime import timedelta

    assert MailDesk(engine, store, real).reconcile(older_than=timedelta(0))["unconfirmed"] == 1
    assert len(sink.received) == 1
    # 3. no server at first (refused before it took anything): failed, then sent once by reconcile
    down = MailDesk(engine, store, SMTPOutbox("127.0.0.1", free_port(), security="none", timeout=2))
    d = down.handle_raw(message("my google calendar does not sync", message_id="<c2@c>", sender="x@y.example"), "t")
    assert store.mail_messages(key="<c2@c>")[0].reply_state == "failed" and d.record.thread
    assert MailDesk(engine, store, real).reconcile()["sent"] == 1
    assert MailDesk(engine, store, real).reconcile()["sent"] == 0
    assert len(sink.received) == 2 and sink.received[1]["To"] == "x@y.example"
    # 4. recorded, then the process died before sending: the re-delivered message sends it, once
    store.mail_update("<c2@c>", reply_state="pending", reply_message=sink.received[1].as_string())
    MailDesk(engine, store, real).handle_raw(message("my google calendar", message_id="<c2@c>"), "t")
    MailDesk(engine, store, real).handle_raw(message("my google calendar", message_id="<c2@c>"), "t")
    assert len(sink.received) == 3


def test_the_control_group_gets_the_plain_acknowledgement(tmp_path, home, fake_embedder, store, smtp):
    from deflect.experiment import CONTROL, assign_variant

    sink, port = smtp
    ingest(small_kb(tmp_path), home, fake_embedder)
    s = Settings(home=home, min_score=0.1, reload_interval=0.0, control_share=0.5, control_salt="pepper")
    engine = Engine(s, fake_embedder)
    desk = desk_for(engine, store, port)
    variants = {}
    for i in range(12):
        mail = parse_message(message("reset my password", message_id=f"<v{i}@c>", sender=f"c{i}@example.com"))
        variants[i] = assign_variant(mail.thread, 0.5, "pepper")
        desk.handle(mail, "t")
    assert CONTROL in variants.values() and "treatment" in variants.values()
    for i, ack in enumerate(sink.received):
        articles = "Reset your password" in ack.get_content()
        assert articles == (variants[i] != CONTROL), i
    rows = store.mail_messages()
    assert all(r.reply_articles == (r.variant != CONTROL) for r in rows)


def test_without_smtp_acknowledgements_go_to_the_outbox_maildir(engine, store):
    import mailbox

    desk = MailDesk(engine, store)  # smtp_host is empty
    assert isinstance(desk.outbox, MaildirOutbox)
    desk.handle_raw(message("refund my card payment", message_id="<m1@c>"), "t")
    (ack,) = list(mailbox.Maildir(Path(engine.settings.home) / "mail" / "outbox"))
    assert ack["To"] == "budi@example.id" and "Refund policy" in ack.get_payload(decode=True).decode()


def _certificate(tmp: Path) -> tuple[Path, Path]:
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def test_starttls_and_login_are_used_when_configured(tmp_path, engine, store):
    from aiosmtpd.smtp import AuthResult

    if subprocess.run(["which", "openssl"], capture_output=True).returncode != 0:
        pytest.skip("openssl is needed to make the test server's certificate")
    key, cert = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    logins = []

    def auth(server, session, envelope, mechanism, data):
        logins.append((mechanism, data.login, data.password))
        return AuthResult(success=data.login == b"desk" and data.password == b"pw")

    sink = Sink()
    c = aiosmtpd.Controller(sink, hostname="127.0.0.1", port=free_port(), tls_context=server_tls,
                            require_starttls=True, authenticator=auth, auth_require_tls=True)  # fmt: skip
    c.start()
    try:
        client_tls = ssl.create_default_context(cafile=str(cert))
        ok = SMTPOutbox("127.0.0.1", c.port, security="starttls", user="desk", password="pw", context=client_tls)
        MailDesk(engine, store, ok).handle_raw(message("reset my password", message_id="<t1@c>"), "t")
        assert len(sink.received) == 1 and logins[-1][1:] == (b"desk", b"pw")
        bad = SMTPOutbox("127.0.0.1", c.port, security="starttls", user="desk", password="no", context=client_tls,
                         timeout=1)  # fmt: skip
        ack = sink.received[0]
        with pytest.raises(SendRefused):
            bad.send(ack.as_string(), "help@tidewell.app", ["budi@example.id"])
        untrusted = SMTPOutbox("127.0.0.1", c.port, security="starttls", user="desk", password="pw", timeout=5)
        with pytest.raises(SendRefused):  # a certificate nobody vouches for is refused
            untrusted.send(ack.as_string(), "help@tidewell.app", ["budi@example.id"])
    finally:
        c.stop()
    assert len(sink.received) == 1


def test_the_solved_link_records_feedback_with_the_sessions_token(engine, store, smtp):
    import re
    from urllib.parse import parse_qs, urlsplit

    sink, port = smtp
    desk = desk_for(engine, store, port)
    desk.handle_raw(message("reset my password", message_id="<s1@c>"), "t")
    link = re.search(r"https://help\.tidewell\.app(/v1/mail/solved\?\S+)", sink.received[0].get_content()).group(1)
    engine.settings.database_url = store.url  # the app's recorder writes where the test reads
    with TestClient(create_app(engine.settings, engine=engine)) as c:
        page = c.get(link)
        assert page.status_code == 200 and "Yes, this solved it" in page.text
        form = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
        assert c.post("/v1/mail/solved", data=form).status_code == 200
        assert c.post("/v1/mail/solved", data=form).status_code == 200  # twice: counted once
        forged = {**form, "t": form["t"][:-3] + "AAA"}
        assert c.post("/v1/mail/solved", data=forged).status_code == 400
        assert c.get("/v1/mail/solved?s=x").status_code == 400
        assert "是的，問題已解決" in c.get(link.replace("l=en", "l=zh-TW")).text  # the page speaks the language
    feedback = [e for e in store.events() if e.type == "feedback"]
    assert len(feedback) == 1 and feedback[0].helpful and feedback[0].article_id == "pw"
    assert feedback[0].session_id == form["s"] and [r.reason for r in store.rejected()] == ["bad_token"]


BROKEN_MIME = [
    # a part with an unknown charset and broken base64, then a good part; no closing boundary
    b"From: ana@example.com\r\nSubject: my password\r\nMessage-ID: <b1@c>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\n--XYZ\r\nContent-Type: text/plain; charset=klingon\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64@@@\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\n"
    b"reset my password please\r\n",
    # multipart without a boundary at all
    b"From: ana@example.com\r\nSubject: help\r\nMessage-ID: <b2@c>\r\nContent-Type: multipart/alternative\r\n\r\n"
    b"no boundary at all, reset my password\r\n",
]


@pytest.mark.parametrize("raw", BROKEN_MIME)
def test_malformed_mime_is_read_leniently_and_says_so(engine, store, smtp, raw, caplog):
    sink, port = smtp
    h = desk_for(engine, store, port).handle_raw(raw, "t")
    assert h.record.outcome == "triaged" and h.triage.suggestions[0]["article_id"] == "pw"
    assert h.record.error.startswith("MIME defects, read leniently:") and "malformed MIME" in caplog.text
    assert len(sink.received) == 1


def test_a_refused_acknowledgement_is_tried_a_bounded_number_of_times(engine, store):
    from deflect import mailer

    class Refusing:
        def __init__(self):
            self.tries = 0

        def send(self, raw, sender, recipients):
            self.tries += 1
            raise SendRefused("550 mailbox unavailable")

    box = Refusing()
    desk = MailDesk(engine, store, box)
    desk.handle_raw(message("refund my card payment", message_id="<r1@c>"), "t")
    for _ in range(mailer.MAX_ATTEMPTS + 3):
        desk.reconcile()
    (row,) = store.mail_messages(key="<r1@c>")
    assert row.reply_state == "failed" and row.attempts == mailer.MAX_ATTEMPTS == box.tries
    assert "550" in row.error


def test_a_restarted_server_sends_what_a_crash_left_pending(engine, store, smtp):
    from deflect.store.base import MailRecord, utcnow

    sink, port = smtp
    engine.settings.smtp_host, engine.settings.smtp_port, engine.settings.smtp_security = "127.0.0.1", port, "none"
    engine.settings.database_url = store.url
    ack = "From: help@tidewell.app\nTo: ana@example.com\nSubject: Re: x\nMessage-ID: <ack1@tidewell.app>\n\nThanks\n"
    store.mail_claim(MailRecord("<p1@c>", "inbound", "mail-p1", "h", utcnow(), "triaged", reply_state="pending",
                                reply_message=ack))  # fmt: skip
    with TestClient(create_app(engine.settings, engine=engine)):
        pass  # the start reconciles, off the request path; the shutdown waits for it
    assert [m["Message-ID"] for m in sink.received] == ["<ack1@tidewell.app>"]
    assert store.mail_messages(key="<p1@c>")[0].reply_state == "sent"


def test_a_reply_to_the_acknowledgement_joins_the_thread_however_it_quotes(engine, store, smtp):
    sink, port = smtp
    desk = desk_for(engine, store, port)
    first = desk.handle_raw(message("reset my password", message_id="<q1@c>"), "t")
    ack_id = sink.received[0]["Message-ID"]
    # the customer's client quotes only our acknowledgement (no References to their own message)
    again = desk.handle_raw(message("it still fails", message_id="<q2@c>", In_Reply_To=ack_id), "t")
    assert again.record.thread == first.record.thread and again.record.followup
    assert again.record.reply_reason == "followup" and len(sink.received) == 1
    (sug,) = [r for r in store.suggestions() if r.request_id == again.record.request_id]
    assert sug.session_id == first.record.thread


def test_a_slow_mail_server_does_not_hold_the_request_or_the_encoder(engine, store, monkeypatch):
    """The webhook is answered while the acknowledgement is still being handed over (state
    `pending`, then `sent` in the background); suggestions are served meanwhile."""
    import asyncio
    import time

    from deflect.api.routes import inbound

    class SlowSink(Sink):
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            await asyncio.sleep(3)
            return await super().handle_DATA(server, session, envelope)

    sink = SlowSink()
    c = aiosmtpd.Controller(sink, hostname="127.0.0.1", port=free_port())
    c.start()
    monkeypatch.setattr(inbound, "SEND_WAIT", 0.2)
    s = engine.settings
    s.smtp_host, s.smtp_port, s.smtp_security, s.database_url = "127.0.0.1", c.port, "none", store.url
    try:
        with TestClient(create_app(s, engine=engine)) as api:
            r = api.post("/v1/inbound", content=message("reset my password", message_id="<slow@c>"),
                         headers={"content-type": "message/rfc822"})  # fmt: skip
            # "pending": answered before the server (3 s) took the message
            assert r.status_code == 200 and r.json()["reply"] == "pending"
            assert api.post("/v1/suggest", json={"description": "refund my card payment"}).status_code == 200
            for _ in range(150):
                if store.mail_messages(key="<slow@c>")[0].reply_state == "sent":
                    break
                time.sleep(0.1)
        assert store.mail_messages(key="<slow@c>")[0].reply_state == "sent" and len(sink.received) == 1
    finally:
        c.stop()


def test_the_operators_templates_and_urgent_response_time_are_used(tmp_path, engine, store, smtp):
    from deflect.core.errors import ConfigError
    from deflect.mail import load_templates

    sink, port = smtp
    words = tmp_path / "words.toml"
    words.write_text('[en]\nack = "Tidewell here: a person answers within {hours} hours."\nbye = "Mia, Tidewell"\n'
                     '[id]\nhello = "Hai,"\n')  # fmt: skip
    engine.settings.mail_templates = str(words)
    engine.settings.mail_reply_hours_urgent = 4
    engine.settings.mail_urgent_intents = []
    desk = desk_for(engine, store, port)
    h = desk.handle_raw(message("reset my password", message_id="<w1@c>"), "t")
    body = sink.received[0].get_content()
    assert "Tidewell here: a person answers within 24 hours." in body and body.rstrip().endswith("Mia, Tidewell")
    assert "deflect_queue_support" in h.triage.tags and "deflect_answered" in h.triage.tags
    for bad, why in (('[fr]\nhello = "Bonjour"\n', "fr"), ('[en]\ngreeting = "x"\n', "greeting"),
                     ('[en]\nack = "soon"\n', "{hours}")):  # fmt: skip
        words.write_text(bad)
        with pytest.raises(ConfigError, match=why):
            load_templates(words)
    # urgent messages (never-deflect or mail_urgent_intents) are promised the urgent response time
    from deflect import mailer

    engine.settings.mail_templates = ""
    real = mailer.triage

    def urgent(engine_, mail):
        t, q, res = real(engine_, mail)
        t.priority = "urgent"
        return t, q, res

    mailer.triage = urgent
    try:
        u = mailer.MailDesk(engine, store, SMTPOutbox("127.0.0.1", port, security="none"))
        h = u.handle_raw(message("someone logged into my account", message_id="<w2@c>", sender="z@x.example"), "t")
    finally:
        mailer.triage = real
    assert "within 4 hours" in sink.received[-1].get_content() and "deflect_priority_urgent" in h.triage.tags


def test_json_without_a_message_id_is_one_message_per_day(engine, store, smtp):
    from datetime import timedelta

    from deflect.mail import from_fields
    from deflect.store.base import utcnow

    sink, port = smtp
    desk = desk_for(engine, store, port)
    now = utcnow()

    def mail():
        return from_fields("refund", "refund my card payment", "ana@example.com")

    assert not desk.handle(mail(), "t", now=now).duplicate
    assert desk.handle(mail(), "t", now=now + timedelta(minutes=5)).duplicate  # a retried webhook
    again = desk.handle(mail(), "t", now=now + timedelta(days=1))
    assert not again.duplicate and len(store.mail_messages()) == 2


def test_the_poller_logs_an_unreachable_server_and_tries_again(engine, store, caplog):
    from deflect.core.errors import DeflectError
    from deflect.imap import poll

    calls = []

    def down():
        calls.append(1)
        raise DeflectError("imap: cannot reach mail.example:993: refused")

    out = poll(MailDesk(engine, store), engine.settings, interval=0.01, connect_fn=down, stop=lambda: len(calls) >= 3)
    assert out == [] and len(calls) == 3 and caplog.text.count("poll failed, trying again") == 3
