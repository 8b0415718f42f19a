"""What the public endpoints check before doing any work: where a browser request comes from,
and how often a caller may call.

**Origin.** ``POST /v1/events`` accepts a browser's request only from the configured origins
(``DEFLECT_CORS_ORIGINS``) or the server's own: its ``Origin`` header, else the origin of its
``Referer``. CORS alone does not stop another web page from writing events, because a
``text/plain`` beacon needs no preflight. A request with neither header is not a browser's
(a server-side integration) and passes: a script can send any header it likes, which is why
events also need a token (:mod:`deflect.provenance`).

**Rate limits** (the ``limits`` library, moving window): per client address and per
session, for suggest calls and for event batches, each configurable (``DEFLECT_RATE_LIMIT_*``,
e.g. ``120/minute``; empty turns one off). Counters live in memory (one process) or in Redis
(``DEFLECT_RATE_LIMIT_STORAGE=redis://HOST:PORT``) when several replicas must share them. A
caller over a limit gets 429 with ``Retry-After``. If Redis cannot be reached, requests are
let through and the failure is logged: suggestions matter more than limits.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse

from deflect.core.errors import ConfigError

log = logging.getLogger("deflect.api")


def _origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def own_origin(request: Request) -> str:
    """The origin this request was addressed to (scheme and Host header)."""
    host = request.headers.get("host") or (request.url.netloc or "")
    return f"{request.url.scheme}://{host.lower()}"


def forbidden_origin(request: Request, allowed: Iterable[str]) -> JSONResponse | None:
    """A 403 response when a browser sent this request from an origin not in ``allowed``
    (nor the server's own), else None."""
    allowed = {o.rstrip("/").lower() for o in allowed}
    if "*" in allowed:
        return None
    origin = request.headers.get("origin")
    header = "origin"
    if origin is None or origin == "null":
        referer = request.headers.get("referer")
        if referer is None and origin is None:
            return None  # not a browser
        origin, header = (_origin_of(referer) if referer else None), "referer"
    origin = (origin or "").rstrip("/").lower()
    if origin and (origin in allowed or origin == own_origin(request)):
        return None
    shown = origin or "(none)"
    return JSONResponse(
        status_code=403,
        content={
            "error": "forbidden_origin",
            "message": f"{header}: {shown} may not send events here; add it to DEFLECT_CORS_ORIGINS",
            "details": [{"field": header, "message": "origin not allowed"}],
        },
    )


class RateLimits:
    """The configured limits of each route, checked with one moving-window limiter."""

    def __init__(self, settings) -> None:
        from limits import parse
        from limits.aio.strategies import MovingWindowRateLimiter
        from limits.storage import storage_from_string

        uri = settings.rate_limit_storage.strip()
        try:
            if uri.startswith("memory://"):
                storage = storage_from_string("async+memory://")
            elif uri.startswith(("redis://", "rediss://")):
                storage = storage_from_string(f"async+{uri}", implementation="redispy")
            else:
                raise ConfigError(f"rate_limit_storage: {uri!r}: use memory:// or redis://HOST:PORT")
        except ConfigError:
            raise
        except Exception as exc:  # a bad URL, or the redis client not installed
            raise ConfigError(f"rate_limit_storage: {uri!r}: {exc}") from exc
        self.storage_uri = uri.split("@")[-1]  # no password in messages
        self._limiter = MovingWindowRateLimiter(storage)

        def rule(text: str, name: str):
            if not text.strip():
                return None
            try:
                return parse(text)
            except ValueError as exc:
                raise ConfigError(f"{name}: {text!r} is not a rate such as 120/minute") from exc

        self.rules = {
            "suggest": (
                rule(settings.rate_limit_suggest, "rate_limit_suggest"),
                rule(settings.rate_limit_suggest_session, "rate_limit_suggest_session"),
            ),
            "events": (
                rule(settings.rate_limit_events, "rate_limit_events"),
                rule(settings.rate_limit_events_session, "rate_limit_events_session"),
            ),
        }
        self._warned = 0.0

    async def _over(self, item, *key: str) -> int | None:
        try:
            if await self._limiter.hit(item, *key):
                return None
            stats = await self._limiter.get_window_stats(item, *key)
        except Exception as exc:  # the shared store is down: let the call through
            if time.monotonic() - self._warned > 60:
                self._warned = time.monotonic()
                log.error("rate limits not applied: %s unavailable (%s)", self.storage_uri, exc)
            return None
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def check(self, route: str, address: str | None, sessions: Iterable[str]) -> JSONResponse | None:
        """A 429 response when this call goes over one of ``route``'s limits, else None (the
        call is counted)."""
        per_address, per_session = self.rules[route]
        what = "suggest calls" if route == "suggest" else "event batches"
        if per_address is not None and address:
            wait = await self._over(per_address, route, "address", address)
            if wait is not None:
                return _too_many(f"too many {what} from this address (limit {per_address}); retry in {wait} s", wait)
        if per_session is not None:
            for sid in dict.fromkeys(s for s in sessions if s):
                wait = await self._over(per_session, route, "session", sid)
                if wait is not None:
                    return _too_many(
                        f"session_id: too many {what} for this session (limit {per_session}); retry in {wait} s", wait
                    )
        return None


def _too_many(message: str, wait: int) -> JSONResponse:
    return JSONResponse(
        status_code=429,
        headers={"Retry-After": str(wait)},
        content={"error": "rate_limited", "message": message},
    )
