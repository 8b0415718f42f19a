"""Inbound e-mail: a message as help desks deliver it, reduced to what the customer wrote.

:func:`parse_message` reads a raw RFC 822 message with the standard library's ``email``
package (``policy.default``: MIME multipart, transfer and charset decoding such as GB2312,
Big5 or ISO-8859-1, broken headers tolerated); :func:`from_fields` takes the JSON a help
desk's webhook sends. The text part is preferred, an HTML-only message is reduced to text
(selectolax), attachments are ignored (never decoded). Quoted replies and signatures are
stripped with ``mail-parser-reply`` (which knows English, Chinese and a dozen other
languages), plus the Indonesian reply header it lacks (``Pada ... menulis:``), before
anything else sees the text.

:func:`automatic` says why a message was sent by a machine (``Auto-Submitted``,
``Precedence: bulk``, a mailing list, a no-reply sender): such mail is triaged but never
answered.
"""

from __future__ import annotations

import email
import hashlib
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path

from deflect.core.errors import ConfigError, InvalidInputError

#: headers kept from a message (the rest is never stored)
KEPT_HEADERS = ("message-id", "in-reply-to", "references", "date", "auto-submitted", "precedence", "list-id")
MAX_TEXT = 20_000  # characters of body kept before cleaning; the engine reads the first 2,000
_NO_REPLY = re.compile(r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|mailer-daemon|postmaster|bounces?)\b", re.I)
# reply headers mail-parser-reply does not know: Indonesian ("Pada Sel, 1 Des 2026 pukul
# 10.00, Budi <budi@x.id> menulis:") and Gmail's Chinese ("在 2026年12月1日 10:00，X 写道：")
_EXTRA_QUOTE_HEADERS = re.compile(r"^\s*(?:Pada .{0,200}menulis|在.{0,200}(?:写道|寫道))\s*[:：]\s*$", re.M | re.I)
_REPLY_LANGUAGES = ["en", "zh", "de", "fr", "es", "it", "nl"]


@dataclass
class InboundMail:
    """What the customer wrote, and the headers that say what the message is."""

    subject: str
    body: str  # cleaned: no quoted history, no signature
    sender: str  # the address only
    message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    #: why a machine sent it (None: a person did)
    automatic: str | None = None
    #: the parts that were not read: attachments, by content type
    skipped_parts: list[str] = field(default_factory=list)
    #: what was wrong with its MIME structure (read leniently all the same)
    defects: list[str] = field(default_factory=list)
    #: the thread, when it is known otherwise (a reply to one of our acknowledgements)
    thread_id: str | None = None

    @property
    def thread(self) -> str:
        """An id for the conversation: the first message it replies to, else its own id (a
        message without one: its sender and subject)."""
        if self.thread_id:
            return self.thread_id
        root = self.references[0] if self.references else self.in_reply_to
        return thread_id(root or self.message_id or f"{self.sender}\n{self.subject}")


def thread_id(key: str) -> str:
    """The session id of the conversation whose first message is named ``key``."""
    return "mail-" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:24]


def parse_message(raw: bytes) -> InboundMail:
    """A raw RFC 822 message (bytes as received) as an :class:`InboundMail`;
    :class:`InvalidInputError` when it is not a message at all (no headers, no text)."""
    if not raw or not raw.strip():
        raise InvalidInputError("message: empty", field="message")
    try:
        msg = email.message_from_bytes(raw, policy=policy.default)
    except Exception as exc:  # the parser is lenient; this is truly unreadable input
        raise InvalidInputError(f"message: not an RFC 822 message ({exc})", field="message") from exc
    if not isinstance(msg, EmailMessage) or len(msg) == 0:
        raise InvalidInputError("message: no headers (expected a raw RFC 822 message)", field="message")
    text, skipped = _text_of(msg)
    headers = {k: str(msg.get(k, "")).strip() for k in KEPT_HEADERS if msg.get(k) is not None}
    refs = headers.get("references", "").split()
    sender = parseaddr(str(msg.get("from", "")))[1]
    mail = InboundMail(
        subject=_header(msg, "subject"),
        body=clean_body(text),
        sender=sender,
        message_id=headers.get("message-id", ""),
        in_reply_to=headers.get("in-reply-to", ""),
        references=refs,
        headers=headers,
        skipped_parts=skipped,
        defects=defects_of(msg),
    )
    mail.automatic = automatic(headers, sender, list_headers=[k for k in msg if k.lower().startswith("list-")])
    return mail


def from_fields(subject: str, body: str, sender: str, headers: dict[str, str] | None = None) -> InboundMail:
    """A message as a help desk's webhook sends it (JSON fields); the body may be HTML."""
    headers = {k.lower(): str(v) for k, v in (headers or {}).items()}
    text = html_to_text(body) if _looks_html(body) else body
    kept = {k: v for k, v in headers.items() if k in KEPT_HEADERS}
    sender = parseaddr(sender)[1] or sender
    mail = InboundMail(
        subject=subject.strip(),
        body=clean_body(text),
        sender=sender,
        message_id=kept.get("message-id", ""),
        in_reply_to=kept.get("in-reply-to", ""),
        references=kept.get("references", "").split(),
        headers=kept,
    )
    mail.automatic = automatic(kept, sender, list_headers=[k for k in headers if k.startswith("list-")])
    return mail


def automatic(headers: dict[str, str], sender: str, *, list_headers: list[str] = ()) -> str | None:
    """Why a machine sent the message (RFC 3834 ``Auto-Submitted``, ``Precedence``, a
    mailing list, a no-reply or bounce sender), or None."""
    auto = headers.get("auto-submitted", "").strip().lower()
    if auto and auto != "no":
        return f"auto-submitted: {auto}"
    precedence = headers.get("precedence", "").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"precedence: {precedence}"
    if headers.get("list-id") or list_headers:
        return "mailing list"
    local = sender.split("@")[0] if sender else ""
    if not sender or _NO_REPLY.match(local):
        return "no-reply sender" if sender else "no sender"
    return None


def clean_body(text: str) -> str:
    """The text the customer wrote: quoted history and signature removed."""
    from mailparser_reply import EmailReplyParser

    text = (text or "")[:MAX_TEXT].replace("\r\n", "\n")
    m = _EXTRA_QUOTE_HEADERS.search(text)
    if m:
        text = text[: m.start()]
    text = "\n".join(line for line in text.split("\n") if not line.lstrip().startswith(">"))
    try:
        replies = EmailReplyParser(languages=_REPLY_LANGUAGES).read(text=text).replies
    except Exception:  # the library's patterns on odd text: keep what we have
        replies = []
    body = replies[0].body if replies and replies[0].body.strip() else text
    return re.sub(r"\n{3,}", "\n\n", body).strip()


def html_to_text(html: str) -> str:
    """An HTML body as plain text (scripts and styles dropped, blocks on their own lines)."""
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    tree = HTMLParser(html)
    for node in tree.css("script, style, head"):
        node.decompose()
    for node in tree.css("br"):
        node.replace_with("\n")
    for node in tree.css("p, div, li, tr, h1, h2, h3, h4, blockquote"):
        node.insert_after("\n")
    root = tree.body or tree.root
    text = root.text(separator="") if root is not None else ""
    return re.sub(r"[ \t]+\n", "\n", re.sub(r"\n{3,}", "\n\n", text)).strip()


def _looks_html(text: str) -> bool:
    return bool(re.search(r"<(?:html|body|div|p|br|table)\b", text[:2000], re.I))


def _header(msg: EmailMessage, name: str) -> str:
    try:
        return str(msg.get(name, "") or "").strip()
    except Exception:  # an undecodable header: what is left of it
        return ""


def _text_of(msg: EmailMessage) -> tuple[str, list[str]]:
    """The message's text (its text/plain part, else its HTML part as text) and the content
    types of the parts not read (attachments are never decoded)."""
    skipped: list[str] = []
    plain: list[tuple[bool, str]] = []  # (read without a defect, text), in order
    html: list[tuple[bool, str]] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if part.get_content_maintype() == "multipart":  # a multipart without its boundary: its body is text
            raw = part.get_payload(decode=True) or b""
            plain.append((False, raw.decode("utf-8", "replace")))
            continue
        if part.get_content_disposition() == "attachment" or not ctype.startswith("text/"):
            skipped.append(ctype)
            continue
        clean = True
        try:
            content = part.get_content()
        except (LookupError, UnicodeError, ValueError):  # an unknown or wrong charset
            payload = part.get_payload(decode=True) or b""
            content, clean = payload.decode("utf-8", "replace"), False
        clean = clean and not part.defects
        (plain if ctype == "text/plain" else html if ctype == "text/html" else []).append((clean, content))
    # a part that decoded cleanly before one that did not (a broken part is read only if it is all there is)
    for _, content in sorted(plain, key=lambda x: not x[0]):
        if content.strip():
            return content, skipped
    for _, content in sorted(html, key=lambda x: not x[0]):
        if content.strip():
            return html_to_text(content), skipped
    return "", skipped


def defects_of(msg: EmailMessage) -> list[str]:
    """The MIME defects the parser found (missing boundary, bad base64, ...), by name."""
    out = []
    for part in msg.walk():
        out += [type(d).__name__ for d in part.defects]
    return sorted(set(out))


@dataclass
class Triage:
    """What to do with one message: its intent, queue and priority, and the articles that
    answer it (or why the engine abstained)."""

    thread: str
    intent: str | None
    confidence: float | None
    queue: str
    priority: str  # urgent, normal, low
    abstained: bool
    reason: str | None
    suggestions: list[dict]
    automatic: str | None
    request_id: str
    index_version: str
    model_version: str | None

    def to_json(self) -> dict:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__}, "tags": self.tags}

    @property
    def tags(self) -> list[str]:
        """The result as tags (Zendesk's and Freshdesk's triggers act on tags)."""
        out = [f"deflect_queue_{self.queue}", f"deflect_priority_{self.priority}"]
        if self.intent:
            out.append(f"deflect_intent_{self.intent}")
        out.append("deflect_answered" if not self.abstained and self.suggestions else "deflect_not_answered")
        if self.automatic:
            out.append("deflect_automatic")
        return out

    def headers(self) -> dict[str, str]:
        """The result as headers a help desk's rule can act on."""
        out = {"X-Deflect-Queue": self.queue, "X-Deflect-Priority": self.priority}
        if self.intent:
            out["X-Deflect-Intent"] = self.intent
        out["X-Deflect-Answer"] = "none" if self.abstained else "articles"
        return out


def triage(engine, mail: InboundMail):
    """Run the engine on the cleaned subject and body (channel ``email``; the thread is the
    session) and route the result by the deployment's policy: ``mail_queues`` maps intents to
    queues (else ``mail_default_queue``); never-deflect and ``mail_urgent_intents`` are
    urgent, automatic mail is low. Returns the :class:`Triage`, the query and the engine's
    result (both None for a message without text: ``reason`` ``no_text``)."""
    from deflect.engine import SuggestQuery

    s = engine.settings
    if not (mail.subject.strip() or mail.body.strip()):  # nothing to read: nothing asked of the engine
        empty = Triage(mail.thread, None, None, s.mail_default_queue, "low" if mail.automatic else "normal", True,
                       "no_text", [], mail.automatic, "", "", None)  # fmt: skip
        return empty, None, None
    q = SuggestQuery(subject=mail.subject[:500], description=mail.body, session_id=mail.thread, channel="email")
    res = engine.suggest(q)
    intent = res.intent.label if res.intent is not None and not res.intent.out_of_scope else None
    queue = s.mail_queues.get(intent or "", s.mail_default_queue)
    if mail.automatic:
        priority = "low"
    elif intent and (intent in s.never_deflect or intent in s.mail_urgent_intents):
        priority = "urgent"
    else:
        priority = "normal"
    t = Triage(
        thread=mail.thread,
        intent=intent,
        confidence=round(res.intent.confidence, 4) if res.intent is not None else None,
        queue=queue,
        priority=priority,
        abstained=res.abstained,
        reason=res.reason,
        suggestions=[
            {"article_id": x.article_id, "title": x.title, "url": x.url, "score": x.score} for x in res.suggestions
        ],  # fmt: skip
        automatic=mail.automatic,
        request_id=res.request_id,
        index_version=res.index_version,
        model_version=res.model_version,
    )
    return t, q, res


#: the acknowledgement's words, per language of the customer's message
REPLY_TEXTS = {
    "en": {
        "hello": "Hello,",
        "ack": "Thank you for writing to us. Your message has reached our support team, and we will reply "
        "within {hours} hours.",
        "articles": "While you wait, these articles may already answer your question:",
        "solved": "If one of them solves it, there is nothing more to do.",
        "solved_link": "This solved it",
        "bye": "Kind regards,\nThe support team",
    },
    "zh-TW": {
        "hello": "您好：",
        "ack": "感謝您的來信。我們的客服團隊已收到您的訊息，將在 {hours} 小時內回覆。",
        "articles": "在等待的同時，以下文章或許已能解答您的問題：",
        "solved": "如果問題已經解決，您不需要再做任何事。",
        "solved_link": "這解決了我的問題",
        "bye": "客服團隊 敬上",
    },
    "zh-CN": {
        "hello": "您好：",
        "ack": "感谢您的来信。我们的客服团队已收到您的消息，将在 {hours} 小时内回复。",
        "articles": "在等待的同时，以下文章或许已经能解答您的问题：",
        "solved": "如果问题已经解决，您无需再做任何操作。",
        "solved_link": "这解决了我的问题",
        "bye": "客服团队",
    },
    "id": {
        "hello": "Halo,",
        "ack": "Terima kasih sudah menghubungi kami. Pesan Anda sudah diterima tim dukungan kami, dan kami akan "
        "membalas dalam {hours} jam.",
        "articles": "Sambil menunggu, artikel berikut mungkin sudah menjawab pertanyaan Anda:",
        "solved": "Jika salah satunya menyelesaikan masalah Anda, tidak perlu melakukan apa-apa lagi.",
        "solved_link": "Ini menyelesaikannya",
        "bye": "Salam,\nTim dukungan",
    },
}


def reply_language(mail: InboundMail) -> str:
    """The key of :data:`REPLY_TEXTS` for the language the customer wrote in (English when it
    cannot be told)."""
    from deflect.models.language import chinese_script, detect

    text = f"{mail.subject}\n{mail.body}"
    lang = detect(text)
    if lang == "zh":
        return "zh-TW" if chinese_script(text) == "Hant" else "zh-CN"
    return lang if lang in REPLY_TEXTS else "en"


@dataclass
class Reply:
    """The acknowledgement of one message: who to, the subject, the text and the headers
    that keep it from starting a loop (RFC 3834)."""

    to: str
    subject: str
    body: str
    language: str
    with_articles: bool
    headers: dict[str, str]


def load_templates(path: str | Path | None) -> dict[str, dict[str, str]]:
    """:data:`REPLY_TEXTS` with the deployment's own words over them (``mail_templates``: a
    TOML or JSON file of ``{language: {key: text}}``; any key may be left out). A language or
    key deflect does not know, or an ``ack`` without ``{hours}``, is a :class:`ConfigError`."""
    texts = {lang: dict(words) for lang, words in REPLY_TEXTS.items()}
    if not path:
        return texts
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
        data = tomllib.loads(raw) if p.suffix.lower() == ".toml" else json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"mail_templates: cannot read {p}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"mail_templates: {p}: expected a table of languages")
    for lang, words in data.items():
        if lang not in texts or not isinstance(words, dict):
            raise ConfigError(f"mail_templates: {p}: {lang!r} is not one of {', '.join(texts)}")
        for key, text in words.items():
            if key not in texts[lang] or not isinstance(text, str):
                raise ConfigError(f"mail_templates: {p}: [{lang}] {key!r}: keys are {', '.join(texts[lang])}")
            if key == "ack" and "{hours}" not in text:
                raise ConfigError(f"mail_templates: {p}: [{lang}] ack must say {{hours}} (the promised response time)")
            texts[lang][key] = text
    return texts


def compose_reply(mail: InboundMail, result: Triage, *, hours: int = 24,
                  texts: dict[str, dict[str, str]] | None = None,
                  solved_links: Callable[[str], dict[str, str]] | None = None) -> Reply | None:  # fmt: skip
    """The acknowledgement for ``mail``, in its language (``texts``: the words, default
    :data:`REPLY_TEXTS`), with the expected response time and, when the engine answered
    (confident, not a never-deflect intent, not the control group), the articles, each with
    its "this solved it" link (``solved_links(language)``: article id -> URL). None for mail
    a machine sent: it is never answered."""
    if mail.automatic or not mail.sender:
        return None
    lang = reply_language(mail)
    t = (texts or REPLY_TEXTS)[lang]
    links = solved_links(lang) if solved_links is not None and result.suggestions else {}
    parts = [t["hello"], t["ack"].format(hours=hours)]
    with_articles = bool(result.suggestions) and not result.abstained
    if with_articles:
        lines = []
        for s in result.suggestions:
            lines.append(f"- {s['title']}: {s['url']}" if s.get("url") else f"- {s['title']}")
            if s["article_id"] in links:
                lines.append(f"  {t['solved_link']}: {links[s['article_id']]}")
        parts += [t["articles"] + "\n" + "\n".join(lines), t["solved"]]
    parts.append(t["bye"])
    subject = mail.subject if re.match(r"(?i)^(re|aw|回复|回覆|balas)\s*[:：]", mail.subject) else f"Re: {mail.subject}"
    headers = {"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All", "Precedence": "auto_reply"}
    if mail.message_id:
        headers["In-Reply-To"] = mail.message_id
        headers["References"] = " ".join([*mail.references, mail.message_id])
    return Reply(mail.sender, subject.strip(), "\n\n".join(parts), lang, with_articles, headers)
