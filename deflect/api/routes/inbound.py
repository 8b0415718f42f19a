"""POST /v1/inbound: one e-mail, as a help desk's webhook or a mail server's pipe sends it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import json
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deflect.api.deps import EngineDep
from deflect.api.routes.events import store_unavailable
from deflect.api.routes.suggest import encoder_pool
from deflect.api.schemas import ID_PATTERN
from deflect.core.errors import InvalidInputError, StoreError

log = logging.getLogger("deflect.api")

router = APIRouter(prefix="/v1", tags=["mail"])

RAW_TYPES = ("message/rfc822", "text/plain", "application/octet-stream")


class InboundJSON(BaseModel):
    """A message as JSON (the fields help desks' webhooks send)."""

    model_config = ConfigDict(extra="forbid")

    subject: str = Field("", max_length=2000)
    body: str = Field("", max_length=2_000_000, description="Plain text or HTML.")
    sender: str = Field(min_length=3, max_length=320)
    headers: dict[str, str] = Field(default_factory=dict, description="Message-ID, In-Reply-To, Auto-Submitted, ...")


@router.post(
    "/inbound",
    summary="Triage one inbound e-mail: intent, queue, priority, and the articles that answer it",
    responses={401: {}, 413: {}, 415: {}, 422: {}},
)
async def inbound(request: Request, engine: EngineDep):
    """A raw RFC 822 message (``message/rfc822``, or ``text/plain`` from a pipe) or JSON
    (``subject``, ``body``, ``sender``, ``headers``). The answer is JSON, and the same as
    ``X-Deflect-*`` headers for a help desk's rules. Automatic mail (auto-replies, lists,
    no-reply senders) is triaged as ``low`` and flagged, so that nothing answers it."""
    from deflect.mail import from_fields

    settings = engine.settings
    secret = settings.inbound_token.get_secret_value() if settings.inbound_token else ""
    if secret:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), secret.encode()):
            return JSONResponse(
                status_code=401,
                content={"error": "unauthorized", "message": "authorization: Bearer DEFLECT_INBOUND_TOKEN expected"},
            )
    address = request.client.host if request.client else None
    limits = getattr(request.app.state, "rate_limits", None)
    if limits is not None and (over := await limits.check("suggest", address, [])) is not None:
        return over
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if ctype == "application/json":
        try:
            data = InboundJSON.model_validate(json.loads(raw or b"null"))
        except (ValueError, ValidationError) as exc:
            field = exc.errors()[0]["loc"][0] if isinstance(exc, ValidationError) and exc.errors() else "body"
            raise InvalidInputError(f"{field}: {exc.errors()[0]['msg'] if isinstance(exc, ValidationError) else exc}",
                                    field=str(field)) from None  # fmt: skip
        mail = from_fields(data.subject, data.body, data.sender, data.headers)
    elif ctype in RAW_TYPES or not ctype:
        mail = None  # read by the desk, which records a message it cannot read
    else:
        return JSONResponse(
            status_code=415,
            content={
                "error": "unsupported_media_type",
                "message": f"content-type: {ctype!r}; send message/rfc822 (a raw message) or application/json",
            },  # fmt: skip
        )
    desk = _desk(request, engine)
    if desk is None:
        return _store_unavailable()

    def handle():  # record and triage in one trip to the encoder pool, as /v1/suggest does
        if mail is None:
            return desk.handle_raw(raw, "inbound", deliver=False)
        return desk.handle(mail, "inbound", deliver=False)

    loop = asyncio.get_running_loop()
    try:
        handled = await loop.run_in_executor(encoder_pool(), handle)
    except StoreError as exc:  # nothing recorded, nothing sent: the sender tries again
        log.warning("inbound mail not handled: %s", exc)
        return _store_unavailable()
    if handled.record.reply_state == "pending":
        # sent off the encoder threads; answered within SEND_WAIT seconds, else "pending" (it
        # is recorded: it goes on in the background, and reconcile finishes what a crash stops)
        sending = loop.run_in_executor(_send_pool(), desk.deliver, handled)
        sending.add_done_callback(_log_send_failure)
        with contextlib.suppress(TimeoutError, StoreError):  # a store error: logged, retried by reconcile
            handled = await asyncio.wait_for(asyncio.shield(sending), SEND_WAIT)
    body = handled.to_json()
    request.app.state.metrics.mail.labels(body["outcome"]).inc()
    headers = handled.triage.headers() if handled.triage is not None else {}
    return JSONResponse(content=body, headers=headers)


def _log_send_failure(fut: asyncio.Future) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("inbound mail: acknowledgement not handed over yet (tried again later): %s", fut.exception())


_DESK_LOCK = threading.Lock()
#: seconds an inbound request waits for its acknowledgement to be handed over
SEND_WAIT = 5.0
_SEND_POOL: ThreadPoolExecutor | None = None


def _send_pool() -> ThreadPoolExecutor:
    """The threads that talk to the mail server (two: SMTP waits on the network, not the CPU)."""
    global _SEND_POOL
    with _DESK_LOCK:
        if _SEND_POOL is None:
            _SEND_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mail-send")
        return _SEND_POOL


def _desk(request: Request, engine):
    """The app's :class:`~deflect.mailer.MailDesk`; refused acknowledgements are retried in
    the background every few minutes (``MailDesk.maybe_reconcile``)."""
    desk = open_desk(request.app, engine, reconcile=False)
    if desk is not None:
        asyncio.get_running_loop().run_in_executor(_send_pool(), desk.maybe_reconcile)
    return desk


def open_desk(app, engine, *, reconcile: bool = True):
    """The app's :class:`~deflect.mailer.MailDesk`, with its own connection to the event store,
    made once (at start, by the lifespan, or on first use) and reconciled then: what a crash
    left unsent is sent, what it left half-sent is marked. None while the store cannot be opened."""
    from deflect.mailer import MailDesk

    with _DESK_LOCK:
        desk = getattr(app.state, "mail_desk", None)
        if desk is None:
            try:
                desk = MailDesk.open(engine)
            except StoreError as exc:
                log.warning("inbound mail: the event store cannot be opened: %s", exc)
                return None
            app.state.mail_desk = desk
    if reconcile:
        desk.maybe_reconcile()
    return desk


def _store_unavailable() -> JSONResponse:
    return store_unavailable("the event store is unavailable; send the message again", 30)


# ---- "this solved it": the links in acknowledgements ---------------------------------------
_PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">
<title>{title}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;
padding:0 1rem}}button{{font:inherit;padding:.5rem 1.2rem}}</style></head><body>{content}</body></html>"""


#: the solved pages' words, in the acknowledgement's language (the link's ``l``)
_WORDS = {
    "en": {
        "ask_title": "Did this solve it?", "ask": "Did the article solve it?", "button": "Yes, this solved it",
        "if_not": "If not, reply to our e-mail and a person will answer.", "thanks_title": "Thank you",
        "thanks": "Glad it is solved. There is nothing more to do.", "bad_title": "Link not valid",
        "bad": "This link is not complete.", "expired_title": "Link expired",
        "expired": "This link is no longer valid. Reply to our e-mail if you still need help.",
        "later_title": "Try again later", "later": "We could not record this now. Please try again later.",
    },
    "zh-TW": {
        "ask_title": "問題解決了嗎？", "ask": "這篇文章解決您的問題了嗎？", "button": "是的，問題已解決",
        "if_not": "如果還沒有，請直接回覆我們的郵件，客服人員會為您處理。", "thanks_title": "謝謝您",
        "thanks": "很高興問題已經解決，您不需要再做任何事。", "bad_title": "連結無效", "bad": "這個連結不完整。",
        "expired_title": "連結已過期", "expired": "這個連結已失效。如果仍需協助，請回覆我們的郵件。",
        "later_title": "請稍後再試", "later": "目前無法記錄，請稍後再試。",
    },
    "zh-CN": {
        "ask_title": "问题解决了吗？", "ask": "这篇文章解决您的问题了吗？", "button": "是的，问题已解决",
        "if_not": "如果还没有，请直接回复我们的邮件，客服人员会为您处理。", "thanks_title": "谢谢您",
        "thanks": "很高兴问题已经解决，您无需再做任何操作。", "bad_title": "链接无效", "bad": "这个链接不完整。",
        "expired_title": "链接已过期", "expired": "这个链接已失效。如果仍需帮助，请回复我们的邮件。",
        "later_title": "请稍后再试", "later": "目前无法记录，请稍后再试。",
    },
    "id": {
        "ask_title": "Sudah terselesaikan?", "ask": "Apakah artikel ini menyelesaikan masalah Anda?",
        "button": "Ya, ini menyelesaikannya", "if_not": "Jika belum, balas email kami dan tim kami akan membantu.",
        "thanks_title": "Terima kasih",
        "thanks": "Senang masalahnya sudah selesai. Tidak perlu melakukan apa-apa lagi.",
        "bad_title": "Tautan tidak valid", "bad": "Tautan ini tidak lengkap.", "expired_title": "Tautan kedaluwarsa",
        "expired": "Tautan ini sudah tidak berlaku. Balas email kami jika Anda masih butuh bantuan.",
        "later_title": "Coba lagi nanti", "later": "Kami tidak dapat mencatatnya sekarang. Silakan coba lagi nanti.",
    },
}  # fmt: skip


def _page(lang: str, title: str, content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(lang=lang, title=html.escape(title), content=content), status_code=status,
                        headers={"cache-control": "no-store", "x-robots-tag": "noindex"})  # fmt: skip


def _say(lang: str, key: str, status: int = 200) -> HTMLResponse:
    """A page of one message (``key``'s title and text) in ``lang``."""
    w = _WORDS.get(lang, _WORDS["en"])
    return _page(lang if lang in _WORDS else "en", w[f"{key}_title"], f"<h1>{html.escape(w[f'{key}_title'])}</h1>"
                 f"<p>{html.escape(w[key])}</p>", status)  # fmt: skip


def _solved_params(s: str, t: str, a: str) -> str | None:
    """What is wrong with a solved link's parameters, or None."""
    if not (0 < len(s) <= 128 and re.fullmatch(ID_PATTERN, s)):
        return "s"
    if not (0 < len(t) <= 200):
        return "t"
    if not (0 < len(a) <= 128 and re.fullmatch(ID_PATTERN, a)):
        return "a"
    return None


@router.get("/mail/solved", summary="The page an acknowledgement's \"this solved it\" link opens",
            response_class=HTMLResponse, responses={400: {}})  # fmt: skip
async def solved_page(s: str = "", t: str = "", a: str = "", l: str = "en"):  # noqa: E741 (the link's name)
    """A page with one button: opening the link records nothing, so that mail scanners that
    open every link (Outlook's Safe Links, antivirus) do not count as customers. ``l``: the
    language of the acknowledgement (en, zh-TW, zh-CN, id), for the page's words only."""
    if _solved_params(s, t, a) is not None:
        return _say(l, "bad", 400)
    w = _WORDS.get(l, _WORDS["en"])
    fields = (("s", s), ("t", t), ("a", a), ("l", l if l in _WORDS else "en"))
    hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v, quote=True)}">' for k, v in fields)
    return _page(
        l if l in _WORDS else "en",
        w["ask_title"],
        f'<h1>{html.escape(w["ask"])}</h1><form method="post">{hidden}'
        f'<button type="submit">{html.escape(w["button"])}</button></form><p>{html.escape(w["if_not"])}</p>',
    )


@router.post("/mail/solved", summary="Record that an article from an acknowledgement solved it",
             response_class=HTMLResponse, responses={400: {}, 503: {}})  # fmt: skip
async def solved(request: Request, engine: EngineDep):
    """The button of :func:`solved_page`: a ``feedback`` event (``helpful: true``) of the
    thread's session, counted only with the link's valid token, like the widget's events."""
    from urllib.parse import parse_qs

    from deflect.store.base import Event, RejectedEvent, utcnow

    form = {k: v[0] for k, v in parse_qs((await request.body())[:4096].decode("utf-8", "replace")).items()}
    s, t, a, lang = form.get("s", ""), form.get("t", ""), form.get("a", ""), form.get("l", "en")
    if _solved_params(s, t, a) is not None:
        return _say(lang, "bad", 400)
    limits = getattr(request.app.state, "rate_limits", None)  # the widget's events' limits
    address = request.client.host if request.client else None
    if limits is not None and (over := await limits.check("events", address, [s])) is not None:
        return over
    recorder = request.app.state.recorder
    if recorder is None:
        return _say(lang, "later", 503)
    now = utcnow()
    claims = engine.provenance.claims(t, s)
    digest = hashlib.sha256(f"{s}\x00{a}".encode()).hexdigest()[:32]
    event = Event(f"mail-solved-{digest}", s, "feedback", now, now, claims.request_id if claims else None, a, True)
    reason = engine.provenance.check(t, s, None, now, now)
    try:
        await asyncio.wrap_future(
            recorder.submit_events([] if reason else [event], [RejectedEvent(event, reason)] if reason else [])
        )
    except StoreError:
        return _say(lang, "later", 503)
    if reason:
        return _say(lang, "expired", 400)
    return _say(lang, "thanks")
