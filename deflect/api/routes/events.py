"""POST /v1/events: what the customer did, from the widget."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from deflect.api.schemas import ErrorResponse, EventsRequest, EventsResponse
from deflect.store.base import Event, utcnow

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events",
    response_model=EventsResponse,
    responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    summary="Report what the customer did (batched; retries with the same event_id count once)",
)
async def post_events(body: EventsRequest, request: Request):
    recorder = getattr(request.app.state, "recorder", None)
    if recorder is None:
        problem = getattr(request.app.state, "store_error", None) or "no event store configured"
        return JSONResponse(status_code=503, content={"error": "store_unavailable", "message": problem})
    now = utcnow()
    events = [
        Event(
            event_id=e.event_id,
            session_id=e.session_id,
            type=e.type,
            ts=e.ts,
            received_at=now,
            request_id=e.request_id,
            article_id=e.article_id,
            helpful=e.helpful,
        )
        for e in body.events
    ]
    # acknowledged only once committed: the recorder resolves the future after its transaction
    res = await asyncio.wrap_future(recorder.submit_events(events))
    return EventsResponse(accepted=res.accepted, duplicates=res.duplicates)
