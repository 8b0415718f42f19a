"""How the API is served: uvicorn, with bounds on what one client's connections may hold.

uvicorn limits idle keep-alive connections (``timeout_keep_alive``) and, when asked, the
connections and requests in flight (``limit_concurrency``: more get 503), but it gives a
client all the time it wants to send its headers: 1,500 connections that sent half a
request line were all still open after 25 s. :class:`HeaderTimeoutProtocol` closes a
connection whose request headers are not complete ``DEFLECT_HEADER_TIMEOUT`` seconds after
it opened, or after its previous request was answered. Bodies are bounded by the app
(``BodyLimit``: 413 over 64 KiB, whether sent with a length or chunked). A reverse proxy in
front should still enforce its own limits (docs/configuration.md, "Behind a reverse proxy").
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from deflect.config import Settings


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that cuts off a client slow to send its headers."""

    #: seconds; set from the settings by :func:`uvicorn_options`
    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:  # between requests: headers are due
            self._arm()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict:
    """The keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` that bound connections."""
    HeaderTimeoutProtocol.header_timeout = settings.header_timeout
    return {
        "http": HeaderTimeoutProtocol,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": 16 * 1024,
    }
