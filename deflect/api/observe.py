"""What an operator sees: an access log line per request and Prometheus metrics at ``/metrics``.

The access log (logger ``deflect.access``, level INFO) has the method, the path (no query
string), the status and the latency of each request: never a body, a header or an address.
The metrics (``prometheus_client``, the Prometheus project's own client library) are, per
server process:

- ``deflect_http_requests_total{route, method, status}`` and
  ``deflect_http_request_duration_seconds{route, method, status}`` (a histogram), by route template
  (``/v1/suggest``), so that ids in paths do not make new series;
- ``deflect_suggest_answers_total{outcome}``: ``shown``, ``control`` or the abstention reason;
- ``deflect_events_total{outcome}``: ``accepted``, ``duplicate`` or ``rejected``;
- ``deflect_index_info{version}`` and ``deflect_model_info{version}`` (1 for the version served).

Each app has its own registry (tests make several apps in one process). With ``--workers``
above 1, each worker counts its own requests and a scrape reaches one of them: run one worker
per replica behind the load balancer when the figures matter (docs/configuration.md).
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

access = logging.getLogger("deflect.access")

#: seconds; the suggest path is a few milliseconds, the events path a commit
BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The metrics of one app (its own registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "deflect_http_requests", "HTTP requests answered.", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "deflect_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["route", "method", "status"],
            buckets=BUCKETS,
            registry=r,
        )
        self.answers = Counter(
            "deflect_suggest_answers",
            "Suggest answers: shown, control, or the abstention reason.",
            ["outcome"],
            registry=r,
        )
        self.events = Counter(
            "deflect_events", "Widget events: accepted, duplicate, rejected.", ["outcome"], registry=r
        )
        self.mail = Counter(
            "deflect_mail_messages",
            "Inbound e-mail: triaged, no_text, automatic, loop, malformed, too_large, duplicate.",
            ["outcome"],
            registry=r,
        )
        self.index = Gauge("deflect_index_info", "The index version served (1).", ["version"], registry=r)
        self.model = Gauge("deflect_model_info", "The intent-model version served (1).", ["version"], registry=r)

    def answered(self, res) -> None:
        """Count one suggest answer."""
        shown = "control" if res.variant == "control" else "shown"
        self.answers.labels((res.reason or "unknown") if res.abstained else shown).inc()

    def exposition(self, engine) -> bytes:
        """The text format, with the versions served now."""
        for gauge, holder in ((self.index, engine.index), (self.model, engine.model)):
            gauge.clear()
            current = holder.get_optional()
            if current is not None:
                gauge.labels(current.version).set(1)
        return generate_latest(self.registry)


class Observe:
    """Pure ASGI middleware: the access log line and the request metrics of every request."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - t0
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(route, method, str(status[0])).inc()
            self.metrics.latency.labels(route, method, str(status[0])).observe(seconds)
            access.info("%s %s %d %.1f ms", method, scope.get("path", ""), status[0], seconds * 1000)
