"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
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
    the server reconnects by itself). 503 ``not_ready``: no index loaded.

    Anyone may ask, so the answer says what a load balancer or an operator's probe needs, in
    words, and nothing internal: no paths, hosts, users or error texts (the server log has
    them). ``fallback`` names the versions when the current one failed at start."""
    recorder = getattr(request.app.state, "recorder", None)
    if recorder is not None:
        events = {
            "available": recorder.available,
            "reconnects": recorder.reconnects,
            "suggestion_records_written": recorder.written_suggestions,
            "suggestion_records_waiting": recorder.pending,
            "dropped_suggestion_records": recorder.dropped,
        }
        if not recorder.available:
            events["reason"] = "the event store is unreachable: reconnecting (the server log says why)"
    else:
        events = {"available": False, "reason": "no event store could be opened (the server log says why)"}
    if engine.index.ready:
        b = engine.index.get()
        model = engine.model.get_optional()
        out = {
            "status": "ready" if events["available"] else "degraded",
            "index_version": b.version,
            "articles": len(b.articles),
            "chunks": len(b.chunks),
            "model_version": model.version if model is not None else None,
            "events": events,
        }
        fallback = {k: h.fallback for k, h in (("index", engine.index), ("model", engine.model)) if h.fallback}
        if fallback:
            out["fallback"] = {
                k: {**v, "reason": f"the current {k} version could not be loaded; an older one is served"}
                for k, v in fallback.items()
            }
        return out
    reason = (
        "the index could not be loaded (the server log says why)"
        if engine.index.last_error
        else "no index yet: run `deflect ingest SOURCE`"
    )
    return JSONResponse(status_code=503, content={"status": "not_ready", "reason": reason})


@router.get("/metrics", summary="Prometheus metrics: requests, latency, answers, events, versions served")
def metrics(engine: EngineDep, request: Request) -> Response:
    """The text exposition format (``deflect.api.observe`` lists the metrics)."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(request.app.state.metrics.exposition(engine), media_type=CONTENT_TYPE_LATEST)
