"""POST /v1/inbound: one e-mail, as a help desk's webhook or a mail server's pipe sends it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import logging
import re
import threading

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deflect.api.deps import EngineDep
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

    def handle():  # record, triage and acknowledge in one trip to the pool, as /v1/suggest does
        desk.maybe_reconcile()
        if mail is None:
            return desk.handle_raw(raw, "inbound")
        return desk.handle(mail, "inbound")

    try:
        handled = await asyncio.get_running_loop().run_in_executor(encoder_pool(), handle)
    except StoreError as exc:  # nothing recorded, nothing sent: the sender tries again
        log.warning("inbound mail not handled: %s", exc)
        return _store_unavailable()
    request.app.state.metrics.mail.labels(handled.to_json()["outcome"]).inc()
    body = handled.to_json()
    headers = handled.triage.headers() if handled.triage is not None else {}
    return JSONResponse(content=body, headers=headers)


_DESK_LOCK = threading.Lock()


def _desk(request: Request, engine):
    """The app's :class:`~deflect.mailer.MailDesk`."""
    return open_desk(request.app, engine)


def open_desk(app, engine):
    """The app's :class:`~deflect.mailer.MailDesk`, with its own connection to the event store,
    made once (at start, by the lifespan, or on first use) and reconciled then: what a crash
    left unsent is sent, what it left half-sent is marked. None while the store cannot be opened."""
    from deflect.mailer import MailDesk
    from deflect.store import open_store

    with _DESK_LOCK:
        desk = getattr(app.state, "mail_desk", None)
        if desk is None:
            settings = engine.settings
            try:
                desk = MailDesk(engine, open_store(settings.database_url, settings.home))
            except StoreError as exc:
                log.warning("inbound mail: the event store cannot be opened: %s", exc)
                return None
            app.state.mail_desk = desk
    desk.maybe_reconcile()
    return desk


def _store_unavailable() -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"error": "store_unavailable", "message": "the event store is unavailable; send the message again"},
        headers={"Retry-After": "30"},
    )


# ---- "this solved it": the links in acknowledgements ---------------------------------------
_PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">
<title>{title}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;
padding:0 1rem}}button{{font:inherit;padding:.5rem 1.2rem}}</style></head><body>{content}</body></html>"""


def _page(title: str, content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(lang="en", title=html.escape(title), content=content), status_code=status,
                        headers={"cache-control": "no-store", "x-robots-tag": "noindex"})  # fmt: skip


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
async def solved_page(s: str = "", t: str = "", a: str = ""):
    """A page with one button: opening the link records nothing, so that mail scanners that
    open every link (Outlook's Safe Links, antivirus) do not count as customers."""
    if (bad := _solved_params(s, t, a)) is not None:
        return _page("Link not valid", f"<p>This link is not complete (<code>{bad}</code>).</p>", 400)
    fields = (("s", s), ("t", t), ("a", a))
    hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v, quote=True)}">' for k, v in fields)
    return _page(
        "Did this solve it?",
        f'<h1>Did the article solve it?</h1><form method="post">{hidden}'
        '<button type="submit">Yes, this solved it</button></form>'
        "<p>If not, reply to our e-mail and a person will answer.</p>",
    )


@router.post("/mail/solved", summary="Record that an article from an acknowledgement solved it",
             response_class=HTMLResponse, responses={400: {}, 503: {}})  # fmt: skip
async def solved(request: Request, engine: EngineDep):
    """The button of :func:`solved_page`: a ``feedback`` event (``helpful: true``) of the
    thread's session, counted only with the link's valid token, like the widget's events."""
    from urllib.parse import parse_qs

    from deflect.store.base import Event, RejectedEvent, utcnow

    form = {k: v[0] for k, v in parse_qs((await request.body())[:4096].decode("utf-8", "replace")).items()}
    s, t, a = form.get("s", ""), form.get("t", ""), form.get("a", "")
    if (bad := _solved_params(s, t, a)) is not None:
        return _page("Link not valid", f"<p>This link is not complete (<code>{bad}</code>).</p>", 400)
    recorder = request.app.state.recorder
    if recorder is None:
        return _page("Try again later", "<p>We could not record this now. Please try again later.</p>", 503)
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
        return _page("Try again later", "<p>We could not record this now. Please try again later.</p>", 503)
    if reason:
        return _page("Link expired", "<p>This link is no longer valid. Reply to our e-mail if you still need help.</p>",
                     400)  # fmt: skip
    return _page("Thank you", "<h1>Thank you</h1><p>Glad it is solved. There is nothing more to do.</p>")
