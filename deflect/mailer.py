"""Inbound e-mail end to end: each message recorded, triaged, acknowledged and measured once.

:class:`MailDesk` is what ``POST /v1/inbound``, ``deflect mail poll`` and ``deflect mail
triage --deliver`` share. For one message it:

1. **Records it first.** The message's key (its ``Message-ID``, else a hash of its bytes) is
   claimed in the store's ``mail_messages`` table; a key already there is a duplicate (a
   retried webhook, a message polled twice, a restart) and nothing more happens, except that
   an acknowledgement recorded but never handed over is sent now.
2. **Triages it** (:func:`deflect.mail.triage`): intent, queue, priority, articles or an
   abstention; the suggestion record is stored like the form's (channel ``email``, the
   thread as the session, the sender's keyed hash as the caller), so the control group and
   the report treat e-mail the way they treat the form.
3. **Decides the acknowledgement.** None for mail a machine sent (``automatic``), for a
   further message on a thread (a person answers there: it is recorded as a
   ``mail_followup`` event, which the report counts as the ticket the customer still
   needed), for a sender who already got ``mail_max_replies_per_day`` acknowledgements in
   24 hours (``loop``), or when ``mail_reply`` is off. Otherwise the acknowledgement, in the
   customer's language, with the articles when the engine answered (never for never-deflect
   intents or the control group), and a "this solved it" link per article carrying the
   session's signed token.
4. **Sends it at most once.** The composed message is stored with state ``pending`` before
   anything is sent, then set to ``sending`` by a compare-and-set, handed to the mail server,
   and set to ``sent`` (its text is then deleted from the store). A refusal before the server
   took it is ``failed`` and is sent again by :meth:`MailDesk.reconcile` (at most
   ``MAX_ATTEMPTS`` times in all); a crash or an
   unclear error while sending leaves ``sending``, which ``reconcile`` turns into
   ``unconfirmed`` and never sends again: a customer may miss an acknowledgement, but never
   gets two.

Acknowledgements go through SMTP (``smtp_host``: STARTTLS, TLS or none, with a login when
``smtp_user`` is set), or, when no SMTP server is configured, into the data home's
``mail/outbox`` Maildir, so that a demo or a test sees exactly what would have been sent.
"""

from __future__ import annotations

import hashlib
import logging
import mailbox
import re
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlencode

from deflect.core.errors import InvalidInputError
from deflect.mail import InboundMail, Reply, Triage, compose_reply, load_templates, parse_message, thread_id, triage
from deflect.store.base import Event, MailRecord, SuggestRecord, utcnow

log = logging.getLogger("deflect.mail")

#: what happened to a message (the ``outcome`` column)
OUTCOMES = {
    "triaged": "read and triaged",
    "no_text": "no text to read (triaged to the default queue)",
    "automatic": "sent by a machine: triaged, never answered",
    "loop": "the sender already got the most acknowledgements a day allows: not answered",
    "malformed": "not a readable message: recorded, nothing else done",
    "too_large": "larger than mail_max_bytes: recorded, not read",
}
#: a refused acknowledgement is tried this many times, then left for a person
MAX_ATTEMPTS = 5
#: seconds between retries of refused acknowledgements in a long-running process
RECONCILE_EVERY = 300.0
#: the ``reply_state`` values that count against a sender's daily acknowledgements
_COUNTED = ("pending", "sending", "sent", "unconfirmed")


class SendRefused(Exception):
    """The mail server refused the message before taking it: it was not sent."""


class Outbox(Protocol):
    """Where acknowledgements go: ``raw``, a whole message as text, from ``sender`` to ``recipients``."""

    def send(self, raw: str, sender: str, recipients: list[str]) -> None: ...


class SMTPOutbox:
    """Acknowledgements through an SMTP server (``smtp_*`` settings), one connection per message."""

    def __init__(self, host: str, port: int, *, security: str = "starttls", user: str = "", password: str = "",
                 timeout: float = 30.0, context: ssl.SSLContext | None = None) -> None:  # fmt: skip
        self.host, self.port, self.security = host, port, security
        self.user, self.password, self.timeout = user, password, timeout
        self.context = context or ssl.create_default_context()

    def send(self, raw: str, sender: str, recipients: list[str]) -> None:
        """Hand the message over. :class:`SendRefused` when it was certainly not taken (no
        connection, login or addresses refused); any other error leaves it unknown."""
        try:
            if self.security == "tls":
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except (OSError, smtplib.SMTPConnectError) as exc:
            raise SendRefused(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        with smtp:
            try:
                if self.security == "starttls":
                    smtp.starttls(context=self.context)
                if self.user:
                    smtp.login(self.user, self.password)
            except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
                raise SendRefused(f"{self.host}: {exc}") from exc
            try:
                smtp.sendmail(sender, recipients, re.sub(r"\r?\n", "\r\n", raw).encode("utf-8"))  # CRLF on the wire
            except (smtplib.SMTPSenderRefused, smtplib.SMTPRecipientsRefused) as exc:
                raise SendRefused(f"{self.host}: {exc}") from exc


class MaildirOutbox:
    """Acknowledgements written to a Maildir (the data home's ``mail/outbox`` when no SMTP
    server is configured): each one a file, written whole and then moved in place."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._box = mailbox.Maildir(self.path, create=True)

    def send(self, raw: str, sender: str, recipients: list[str]) -> None:
        self._box.add(raw.encode("utf-8"))


def outbox_for(settings) -> Outbox:
    """The outbox the settings name: SMTP when ``smtp_host`` is set, else ``mail/outbox``."""
    if settings.smtp_host:
        return SMTPOutbox(
            settings.smtp_host,
            settings.smtp_port,
            security=settings.smtp_security,
            user=settings.smtp_user,
            password=settings.smtp_password.get_secret_value(),
            timeout=settings.smtp_timeout,
        )
    return MaildirOutbox(Path(settings.home) / "mail" / "outbox")


def message_key(mail: InboundMail | None, raw: bytes | None = None, now: datetime | None = None) -> str:
    """The key a message is recorded under: its ``Message-ID``, else a hash of its bytes, else
    (JSON without one) of its sender, subject, text and the day (UTC) it came: the same
    message sent again that day is a retried webhook, the same words a day later a new one."""
    if mail is not None and mail.message_id.strip():
        return mail.message_id.strip()[:500]
    if raw is not None:
        basis = raw
    else:
        day = (now or utcnow()).strftime("%Y-%m-%d")
        basis = f"{mail.sender}\n{mail.subject}\n{mail.body}\n{day}".encode() if mail else day.encode()
    return "sha256:" + hashlib.sha256(basis).hexdigest()


def solved_link(base_url: str, thread: str, token: str, article_id: str, lang: str = "en") -> str:
    """The "this solved it" link of one article in an acknowledgement (``GET /v1/mail/solved``;
    ``lang``, the acknowledgement's language, chooses the page's words)."""
    q = urlencode({"s": thread, "t": token, "a": article_id, "l": lang}, quote_via=quote)
    return f"{base_url.rstrip('/')}/v1/mail/solved?{q}"


@dataclass
class Handled:
    """What :meth:`MailDesk.handle` did with one message."""

    record: MailRecord
    triage: Triage | None = None
    duplicate: bool = False
    skipped_parts: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        r = self.record
        out = self.triage.to_json() if self.triage is not None else {
            "thread": r.thread, "intent": r.intent, "queue": r.queue, "priority": r.priority,
        }  # fmt: skip
        out.update(
            outcome="duplicate" if self.duplicate else r.outcome,
            message_key=r.message_key,
            reply=r.reply_state,
            reply_reason=r.reply_reason,
            skipped_parts=self.skipped_parts,
        )
        return out


class MailDesk:
    """Handles inbound messages for one engine and one event store (see the module docstring)."""

    def __init__(self, engine, store, outbox: Outbox | None = None) -> None:
        self.engine = engine
        self.store = store
        self.settings = engine.settings
        self.outbox = outbox if outbox is not None else outbox_for(self.settings)
        self._next_reconcile = 0.0
        self.texts = load_templates(self.settings.mail_templates)  # a bad file stops here, not at a message

    @classmethod
    def open(cls, engine) -> MailDesk:
        """A desk on the event store the engine's settings name (its own connection)."""
        from deflect.store import open_store

        s = engine.settings
        return cls(engine, open_store(s.database_url, s.home))

    # ---- one message -------------------------------------------------------------------
    def handle_raw(self, raw: bytes, source: str, *, now: datetime | None = None, deliver: bool = True) -> Handled:
        """Read and handle a raw message; a message too large or unreadable is recorded with
        that outcome (and :class:`InvalidInputError` raised for the unreadable one, after).
        ``deliver=False``: the acknowledgement is recorded, not sent (see :meth:`deliver`)."""
        now = now or utcnow()
        if len(raw) > self.settings.mail_max_bytes:
            return self.record_too_large(raw, source, len(raw), now=now)
        try:
            mail = parse_message(raw)
        except InvalidInputError as exc:
            self._record_unread(raw, source, now, "malformed", str(exc))
            raise
        return self.handle(mail, source, raw=raw, now=now, deliver=deliver)

    def handle(self, mail: InboundMail, source: str, *, raw: bytes | None = None, now: datetime | None = None,
               simulated: bool = False, deliver: bool = True) -> Handled:  # fmt: skip
        """Record, triage and acknowledge one message (once: see the module docstring).
        ``deliver=False``: the acknowledgement is recorded, not sent (see :meth:`deliver`)."""
        now = now or utcnow()
        key = message_key(mail, raw, now)
        known = self.store.mail_messages(key=key)
        if known:
            return self._again(known[0], mail, deliver)
        sender = self.sender_key(mail.sender)
        ours = [m for m in (mail.in_reply_to, *mail.references) if m]
        if ours and (acked := self.store.mail_messages(reply_ids=ours)):
            mail.thread_id = acked[0].thread  # a reply to our acknowledgement: that thread, however it quotes
        earlier = self.store.mail_messages(thread=mail.thread)
        # the customer writing again (an out-of-office answer to our acknowledgement is not that)
        followup = not mail.automatic and any(r.sender == sender and r.received_at <= now for r in earlier if sender)
        t, q, res = triage(self.engine, mail)
        outcome = "no_text" if res is None else "triaged"
        reason = self._no_reply_reason(mail, sender, followup, earlier, now)
        if reason == "loop":
            outcome = "loop"
            log.warning("mail %s: not acknowledged, the sender got %d today (a loop?)", key,
                        self.settings.mail_max_replies_per_day)  # fmt: skip
        elif mail.automatic:
            outcome = "automatic"
        record = MailRecord(
            message_key=key, source=source, thread=mail.thread, sender=sender, received_at=now, outcome=outcome,
            request_id=res.request_id if res else None, variant=res.variant if res else None, intent=t.intent,
            queue=t.queue, priority=t.priority, followup=followup, reply_state="none" if reason else "pending",
            reply_reason=reason, simulated=simulated,
            error=("MIME defects, read leniently: " + ", ".join(mail.defects))[:500] if mail.defects else None,
        )  # fmt: skip
        hours = self.settings.mail_reply_hours
        if t.priority == "urgent" and self.settings.mail_reply_hours_urgent:
            hours = self.settings.mail_reply_hours_urgent

        def links(lang: str) -> dict[str, str]:  # the articles' "this solved it" links, with the session's token
            token = self.engine.provenance.issue(t.thread, res.request_id, res.variant, now)
            base = self.settings.public_url
            return {s["article_id"]: solved_link(base, t.thread, token, s["article_id"], lang) for s in t.suggestions}

        reply = None
        if not reason:
            reply = compose_reply(mail, t, hours=hours, texts=self.texts, solved_links=links if res else None)
        if reply is not None:
            msg = self._message(reply, now)
            record.reply_id, record.reply_articles = msg["Message-ID"], reply.with_articles
            record.reply_message = msg.as_string()
        if not self.store.mail_claim(record):  # another process took it between our read and now
            return self._again(self.store.mail_messages(key=key)[0], mail, deliver)
        self._store_triage(record, q, res, now)
        log.info("mail %s: %s, queue %s, %s, reply %s", key, outcome, t.queue, t.priority,
                 record.reply_state if not reason else f"none ({reason})")  # fmt: skip
        if mail.defects:
            log.warning("mail %s: malformed MIME (%s), read leniently", key, ", ".join(mail.defects))
        handled = Handled(record, t, skipped_parts=mail.skipped_parts)
        return self.deliver(handled) if deliver else handled

    def deliver(self, handled: Handled) -> Handled:
        """Send the acknowledgement of a message handled with ``deliver=False``, if it is still
        to be sent (the server does this off its encoder threads: SMTP may take seconds)."""
        if handled.record.reply_state in ("pending", "failed"):
            self.send(handled.record)
            handled.record = self.store.mail_messages(key=handled.record.message_key)[0]
        return handled

    def sender_key(self, address: str) -> str | None:
        """The sender as the store keeps it: a keyed hash of the address, never the address."""
        return self.engine.provenance.client_key("mail:" + address.strip().lower()) if address else None

    def _no_reply_reason(self, mail, sender, followup, earlier, now) -> str | None:
        if not self.settings.mail_reply:
            return "disabled"
        if mail.automatic:
            return "automatic"
        if not sender:
            return "no_sender"
        if followup or any(r.reply_state in _COUNTED for r in earlier):
            return "followup"
        if self.store.mail_replies_to(sender, now - timedelta(hours=24)) >= self.settings.mail_max_replies_per_day:
            return "loop"
        return None

    def _message(self, reply: Reply, now: datetime) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.mail_from
        msg["To"] = reply.to
        msg["Subject"] = reply.subject
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = make_msgid("deflect", domain=self.settings.mail_from.split("@")[-1])
        msg["Content-Language"] = reply.language
        for k, v in reply.headers.items():
            msg[k] = v
        msg.set_content(reply.body)
        return msg

    def _store_triage(self, record: MailRecord, q, res, now: datetime) -> None:
        """The suggestion record (like the form's) and, for a further message, the event that
        says the customer still needed a person."""
        from deflect.events import suggest_record

        sugs: list[SuggestRecord] = []
        if res is not None and self.settings.record_suggestions:
            rec = suggest_record(q, res, record.sender)
            rec.created_at = now
            sugs.append(rec)
        events = []
        if record.followup:
            events.append(Event("mail-followup-" + _short(record.message_key), record.thread, "mail_followup", now,
                                now, record.request_id))  # fmt: skip
        if sugs or events:
            self.store.write(sugs, [events] if events else [])

    def _again(self, record: MailRecord, mail: InboundMail | None, deliver: bool = True) -> Handled:
        """A message already recorded: nothing is done again; an acknowledgement recorded and
        never handed over (``pending``, ``failed``) is sent now."""
        log.info("mail %s: already recorded (%s), not handled again", record.message_key, record.outcome)
        handled = Handled(record, duplicate=True, skipped_parts=mail.skipped_parts if mail else [])
        return self.deliver(handled) if deliver else handled

    def record_too_large(self, raw: bytes, source: str, size: int, *, now: datetime | None = None) -> Handled:
        """Record a message over ``mail_max_bytes`` without reading it (``raw``: the message,
        or its headers only): a person finds it in the mailbox; nothing answers it."""
        from email.parser import BytesHeaderParser

        try:
            mid = str(BytesHeaderParser().parsebytes(raw[:65536]).get("message-id", "") or "").strip()
        except Exception:  # headers too broken to read: the bytes name it
            mid = ""
        limit = self.settings.mail_max_bytes
        return self._record_unread(raw, source, now or utcnow(), "too_large", f"{size} bytes (limit {limit})",
                                   key=mid[:500] or None)  # fmt: skip

    def _record_unread(self, raw: bytes, source: str, now: datetime, outcome: str, error: str, *,
                       key: str | None = None) -> Handled:  # fmt: skip
        key = key or "sha256:" + hashlib.sha256(raw).hexdigest()
        record = MailRecord(key, source, thread_id(key), None, now, outcome, reply_state="none", reply_reason=outcome,
                            error=error[:500])  # fmt: skip
        if self.store.mail_claim(record):
            log.warning("mail %s from %s: %s (%s)", key, source, outcome, error)
            return Handled(record)
        return Handled(self.store.mail_messages(key=key)[0], duplicate=True)

    # ---- sending -----------------------------------------------------------------------
    def send(self, record: MailRecord) -> str:
        """Hand one recorded acknowledgement to the outbox, at most once; returns its new state."""
        stored = self.store.mail_messages(key=record.message_key)
        if not stored or stored[0].reply_message is None:
            return stored[0].reply_state if stored else "none"
        from email.parser import HeaderParser
        from email.utils import getaddresses

        raw = stored[0].reply_message
        head = HeaderParser().parsestr(raw, headersonly=True)  # the envelope, from the headers
        sender = getaddresses([head.get("From", "")])[0][1]
        recipients = [a for _, a in getaddresses(head.get_all("To", []))]
        attempts = stored[0].attempts + 1
        if not self.store.mail_update(
            record.message_key, expect_state=stored[0].reply_state, reply_state="sending", attempts=attempts
        ):
            return "sending"  # another process is sending it
        try:
            self.outbox.send(raw, sender, recipients)
        except SendRefused as exc:
            self.store.mail_update(record.message_key, reply_state="failed", error=str(exc)[:500])
            log.warning("mail %s: acknowledgement not sent, will be tried again: %s", record.message_key, exc)
            return "failed"
        except Exception as exc:  # taken or not, nobody knows: never sent again
            self.store.mail_update(record.message_key, reply_state="unconfirmed", error=str(exc)[:500],
                                   reply_message=None)  # fmt: skip
            log.error("mail %s: acknowledgement may or may not have been sent (%s); not sent again",
                      record.message_key, exc)  # fmt: skip
            return "unconfirmed"
        sent_at = utcnow()
        self.store.mail_update(record.message_key, reply_state="sent", replied_at=sent_at, reply_message=None)
        if stored[0].reply_articles and stored[0].request_id:  # the articles were shown, as the widget reports it
            self.store.write([], [[Event("mail-shown-" + _short(record.message_key), record.thread,
                                         "suggestions_shown", sent_at, sent_at, stored[0].request_id)]])  # fmt: skip
        return "sent"

    def reconcile(self, *, older_than: timedelta | None = None) -> dict[str, int]:
        """After a crash or at start: acknowledgements left ``sending`` (for longer than the
        SMTP timeout, twice) become ``unconfirmed`` and are never sent; ``pending`` and
        ``failed`` ones are sent. Returns how many of each."""
        older_than = older_than if older_than is not None else timedelta(seconds=2 * self.settings.smtp_timeout)
        cutoff = utcnow() - older_than
        out = {"unconfirmed": 0, "sent": 0, "failed": 0}
        for r in self.store.mail_messages(states=("sending",)):
            if r.received_at <= cutoff and self.store.mail_update(
                r.message_key, expect_state="sending", reply_state="unconfirmed", reply_message=None,
                error="interrupted while sending: not sent again",
            ):  # fmt: skip
                out["unconfirmed"] += 1
                log.warning("mail %s: acknowledgement interrupted while sending; not sent again", r.message_key)
        for r in self.store.mail_messages(states=("pending", "failed")):
            if r.reply_state == "failed" and r.attempts >= MAX_ATTEMPTS:
                continue  # refused this often: left for a person (deflect mail status)
            state = self.send(r)
            if state in out:
                out[state] += 1
        self._next_reconcile = time.monotonic() + RECONCILE_EVERY
        return out

    def maybe_reconcile(self) -> None:
        """:meth:`reconcile` when the last one is more than ``RECONCILE_EVERY`` seconds old
        (a long-running server retries refused acknowledgements this way)."""
        if time.monotonic() >= self._next_reconcile:
            try:
                self.reconcile()
            except Exception as exc:  # the store or the mail server is down: next time
                log.warning("mail: reconcile failed: %s", exc)
                self._next_reconcile = time.monotonic() + RECONCILE_EVERY


def _short(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]
