"""The FastAPI application: ``create_app(settings)`` assembles routers, errors and CORS."""

from __future__ import annotations

import logging
import re
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import deflect
from deflect.api.routes import events, health, inbound, suggest, widget
from deflect.config import Settings, get_settings
from deflect.core.errors import DeflectError, InvalidInputError, NotReadyError

MAX_BODY_BYTES = 64 * 1024
log = logging.getLogger("deflect.api")
NOT_READY = (
    "suggestions are not available yet: no index is loaded "
    "(`deflect ingest SOURCE` makes one; the server log says more)"
)
UNAVAILABLE = "the service cannot answer this now (the server log says why)"
_NAMES = re.compile(r"[A-Za-z_]\w*(?:, [A-Za-z_]\w*)*")


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    details = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            return JSONResponse(
                status_code=400,
                content={
                    "error": "invalid_json",
                    "message": f"body: invalid JSON ({err.get('ctx', {}).get('error', msg)})",
                    "details": [{"field": "body", "message": "invalid JSON"}],
                },
            )
        field = _field(loc)
        if err.get("type") == "extra_forbidden":
            msg = "unknown field: the API does not read it (see /docs for the fields it takes)"
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        head, sep, rest = msg.partition(":")
        if sep and _NAMES.fullmatch(head.strip()):  # "name: message" from a model validator
            field = head.strip() if field == "body" else f"{field}.{head.strip()}"
            msg = rest.strip()
        details.append({"field": field, "message": msg})
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return JSONResponse(status_code=422, content={"error": "invalid_request", "message": message, "details": details})


class BodyLimit:
    """Reject bodies over ``max_bytes`` (or the limit of their path in ``per_path``) with 413
    (pure ASGI: no per-request task overhead)."""

    def __init__(self, app, max_bytes: int, per_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = max_bytes
        self.per_path = per_path or {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        max_bytes = self.per_path.get(scope.get("path", ""), self.default)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        problem = None
        if length is not None:
            try:
                if int(length) > max_bytes:
                    problem = (413, "too_large", f"body: larger than {max_bytes} bytes")
            except ValueError:
                problem = (400, "invalid_request", "content-length: not a number")
        if problem is None:
            seen = 0

            async def limited_receive():
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > max_bytes:
                        raise _TooLarge(max_bytes)
                return message

            try:
                return await self.app(scope, limited_receive, send)
            except _TooLarge:
                problem = (413, "too_large", f"body: larger than {max_bytes} bytes")
        status, error, message = problem
        response = JSONResponse(status_code=status, content={"error": error, "message": message})
        await response(scope, receive, send)


class _TooLarge(StarletteHTTPException):
    """A body over the limit, found while it is read (chunked, or longer than it said): an
    HTTP error, so that FastAPI's body parsing passes it on instead of calling it a 400."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"body: larger than {max_bytes} bytes")


class BeaconJson:
    """Read a ``text/plain`` body of ``POST /v1/events`` as JSON.

    ``navigator.sendBeacon`` (used by the widget when the page closes) can only send a
    cross-origin body without a CORS preflight as ``text/plain``; the payload is JSON all
    the same, and is validated exactly like any other batch.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/v1/events":
            headers = []
            for k, v in scope["headers"]:
                if k == b"content-type" and v.split(b";")[0].strip().lower() == b"text/plain":
                    v = b"application/json"
                headers.append((k, v))
            scope = {**scope, "headers": headers}
        return await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, *, engine=None) -> FastAPI:
    """Build the app. ``engine`` may be injected (tests); otherwise it is made in the lifespan."""
    settings = settings or get_settings()
    from deflect.api.server import HeaderTimeoutProtocol

    HeaderTimeoutProtocol.header_timeout = settings.header_timeout  # each worker process makes its app

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if engine is None:
            from deflect.engine import Engine

            app.state.engine = Engine(settings)
        else:
            app.state.engine = engine
        _ = app.state.engine.provenance  # the deployment secret: a bad one stops the start
        from deflect.mail import load_templates

        load_templates(settings.mail_templates)  # so do the acknowledgements' words
        _open_recorder(app, settings)
        # inbound e-mail: acknowledgements a crash left unsent are sent now, off the start's path
        from deflect.api.routes.inbound import open_desk

        desk_start = threading.Thread(target=open_desk, args=(app, app.state.engine), name="mail-desk", daemon=True)
        desk_start.start()
        try:
            yield
        finally:
            if app.state.recorder is not None:
                app.state.recorder.close()
            desk_start.join(timeout=10)
            if getattr(app.state, "mail_desk", None) is not None:
                app.state.mail_desk.store.close()

    from fastapi_offline import FastAPIOffline

    # /docs and /redoc from assets installed with the package: the product runs without network
    app = FastAPIOffline(
        title="deflect",
        version=deflect.__version__,
        lifespan=lifespan,
        description="Suggests help-center articles while a customer types into a contact form.",
    )
    app.state.settings = settings
    from deflect.api.guards import RateLimits

    app.state.rate_limits = RateLimits(settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
            max_age=600,
        )

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, per_path={"/v1/inbound": settings.mail_max_bytes})
    app.add_middleware(BeaconJson)
    from deflect.api.observe import Metrics, Observe

    app.state.metrics = Metrics()
    app.add_middleware(Observe, metrics=app.state.metrics)  # outermost: sees every answer, 413s too

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError):
        return _validation_response(exc)

    # 503 bodies go to anonymous clients: what happened, in words; paths, hosts and users
    # (which the exception's text may hold) only in the server log
    @app.exception_handler(NotReadyError)
    async def on_not_ready(request: Request, exc: NotReadyError):
        log.warning("%s %s: not ready: %s", request.method, request.url.path, exc)
        return JSONResponse(status_code=503, content={"error": "not_ready", "message": NOT_READY})

    @app.exception_handler(InvalidInputError)
    async def on_invalid(_: Request, exc: InvalidInputError):
        return JSONResponse(
            status_code=422,
            content={
                "error": "invalid_request",
                "message": str(exc),
                "details": [{"field": exc.field or "body", "message": str(exc)}],
            },
        )

    @app.exception_handler(DeflectError)
    async def on_deflect(request: Request, exc: DeflectError):
        log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return JSONResponse(status_code=503, content={"error": "unavailable", "message": UNAVAILABLE})

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException):
        error = "too_large" if exc.status_code == 413 else "http_error"
        return JSONResponse(status_code=exc.status_code, content={"error": error, "message": str(exc.detail)})

    app.include_router(health.router)
    app.include_router(suggest.router)
    app.include_router(events.router)
    app.include_router(inbound.router)
    app.include_router(widget.router)
    return app


def _open_recorder(app: FastAPI, settings: Settings) -> None:
    """The event store's writer. A store that is down is reconnected to in the background
    (suggestions work meanwhile, /v1/events says 503); a wrong URL leaves no recorder."""
    from deflect.recorder import Recorder
    from deflect.store import open_store, store_label

    app.state.recorder, app.state.store_error = None, None
    try:
        app.state.recorder = Recorder(
            lambda: open_store(settings.database_url, settings.home),
            url=store_label(settings.database_url, settings.home),
        )
    except DeflectError as exc:
        app.state.store_error = str(exc)
        log.error("events will not be recorded: %s", exc)
