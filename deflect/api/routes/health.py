"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
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


@router.get("/readyz", summary="An index is loaded and suggestions can be served")
def readyz(engine: EngineDep):
    if engine.index.ready:
        b = engine.index.get()
        return {"status": "ready", "index_version": b.version, "articles": len(b.articles), "chunks": len(b.chunks)}
    return JSONResponse(
        status_code=503,
        content={
            "status": "not_ready",
            "message": engine.index.last_error or "no index loaded: run `deflect ingest SOURCE`",
        },
    )
