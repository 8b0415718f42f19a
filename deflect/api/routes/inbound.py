"""POST /v1/inbound: one e-mail, as a help desk's webhook or a mail server's pipe sends it."""

from __future__ import annotations

import asyncio
import hmac
import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deflect.api.deps import EngineDep
from deflect.api.routes.suggest import encoder_pool
from deflect.core.errors import InvalidInputError

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
    from deflect.events import suggest_record
    from deflect.mail import from_fields, parse_message, triage

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
        mail = parse_message(raw)
    else:
        return JSONResponse(
            status_code=415,
            content={
                "error": "unsupported_media_type",
                "message": f"content-type: {ctype!r}; send message/rfc822 (a raw message) or application/json",
            },  # fmt: skip
        )
    recorder = request.app.state.recorder
    record = recorder is not None and settings.record_suggestions

    def answer():  # triage and its record in one trip to the pool, as /v1/suggest does
        result, q, res = triage(engine, mail)
        rec = suggest_record(q, res, engine.provenance.client_key(address)) if record and res is not None else None
        return result, res, rec

    result, res, rec = await asyncio.get_running_loop().run_in_executor(encoder_pool(), answer)
    if rec is not None:
        recorder.record_suggestion(rec)
    if res is not None:
        request.app.state.metrics.answered(res)
    outcome = "triaged" if res is not None else "no_text"
    body = {**result.to_json(), "outcome": outcome, "skipped_parts": mail.skipped_parts}
    return JSONResponse(content=body, headers=result.headers())
