"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from deflect.api.deps import EngineDep

router = APIRouter(tags=["health"])


@router.get("/", summary="What this server is, and where to look next")
def root() -> dict:
    import deflect

    return {
        "service": "deflect",
        "version": deflect.__version__,
        "docs": "/docs",
        "ready": "/readyz",
        "suggest": "POST /v1/suggest",
        "events": "POST /v1/events",
        "widget": "/widget/deflect-widget.js",
        "demo": "/demo",
    }


@router.get("/healthz", summary="The process is up")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="An index is loaded and suggestions can be served; is the event store up?")
def readyz(engine: EngineDep, request: Request):
    """200 ``ready``: suggestions are served and events recorded. 200 ``degraded``: suggestions
    are served but the event store is unavailable (events get 503 and the widget keeps them;
    the server reconnects by itself). 503 ``not_ready``: no index loaded."""
    recorder = getattr(request.app.state, "recorder", None)
    events = (
        {
            "store": recorder.url,
            "available": recorder.available,
            "error": recorder.last_error,
            "reconnects": recorder.reconnects,
            "suggestion_records_written": recorder.written_suggestions,
            "suggestion_records_waiting": recorder.pending,
            "dropped_suggestion_records": recorder.dropped,
        }
        if recorder is not None
        else {"store": None, "available": False, "error": getattr(request.app.state, "store_error", None)}
    )
    if engine.index.ready:
        b = engine.index.get()
        model = engine.model.get_optional()
        return {
            "status": "ready" if events["available"] else "degraded",
            "index_version": b.version,
            "articles": len(b.articles),
            "chunks": len(b.chunks),
            "model_version": model.version if model is not None else None,
            "events": events,
        }
    return JSONResponse(
        status_code=503,
        content={
            "status": "not_ready",
            "message": engine.index.last_error or "no index loaded: run `deflect ingest SOURCE`",
        },
    )
