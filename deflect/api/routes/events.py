"""POST /v1/events: what the customer did, from the widget.

An event is counted only with a valid token for its own session (:mod:`deflect.provenance`);
the others are stored apart as rejected, with why, and the response says how many.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from deflect.api.deps import EngineDep
from deflect.api.guards import forbidden_origin
from deflect.api.schemas import ErrorResponse, EventsRequest, EventsResponse
from deflect.core.errors import StoreError
from deflect.redact import redact
from deflect.store.base import Event, RejectedEvent, utcnow

log = logging.getLogger("deflect.api")
router = APIRouter(prefix="/v1", tags=["events"])
#: what a 503 tells the widget to wait before sending its kept events again
RETRY_AFTER_SECONDS = 5


@router.post(
    "/events",
    response_model=EventsResponse,
    responses={
        403: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
        429: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
    summary="Report what the customer did (batched; retries with the same event_id count once)",
)
async def post_events(body: EventsRequest, request: Request, engine: EngineDep):
    settings = request.app.state.settings
    if (denied := forbidden_origin(request, settings.cors_origins)) is not None:
        return denied
    limits = getattr(request.app.state, "rate_limits", None)
    if limits is not None:
        address = request.client.host if request.client else None
        if (over := await limits.check("events", address, [e.session_id for e in body.events])) is not None:
            return over
    recorder = getattr(request.app.state, "recorder", None)
    if recorder is None:
        return store_unavailable()
    now = utcnow()
    provenance = engine.provenance
    events: list[Event] = []
    rejected: list[RejectedEvent] = []
    for e in body.events:
        event = Event(
            event_id=e.event_id,
            session_id=e.session_id,
            type=e.type,
            ts=e.ts,
            received_at=now,
            request_id=e.request_id,
            article_id=redact(e.article_id) if e.article_id else e.article_id,  # ids we served: unchanged
            helpful=e.helpful,
        )
        reason = provenance.check(e.token, e.session_id, e.request_id, e.ts, now)
        if reason is None:
            events.append(event)
        else:
            rejected.append(RejectedEvent(event, reason))
    # acknowledged only once committed: the recorder resolves the future after its transaction
    try:
        res = await asyncio.wrap_future(recorder.submit_events(events, rejected))
    except StoreError as exc:  # not committed, so not acknowledged: the widget sends the batch again
        log.warning("events not stored (%d): %s", len(events) + len(rejected), exc)
        return store_unavailable()
    counted = request.app.state.metrics.events
    for outcome, n in (("accepted", res.accepted), ("duplicate", res.duplicates), ("rejected", res.rejected)):
        if n:
            counted.labels(outcome).inc(n)
    return EventsResponse(accepted=res.accepted, duplicates=res.duplicates, rejected=res.rejected)


def store_unavailable(
    message: str = "the event store is unavailable: nothing of this batch was stored; send it again later",
    retry_after: int = RETRY_AFTER_SECONDS,
) -> JSONResponse:
    """503 with ``Retry-After``: nothing was stored, the caller sends it again. The reason
    (which names the store) is in the server log only."""
    return JSONResponse(
        status_code=503,
        content={"error": "store_unavailable", "message": message},
        headers={"Retry-After": str(retry_after)},
    )
