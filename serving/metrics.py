"""Prometheus metrics of the serving runtime.

The names below are a contract with the monitoring component (dashboards, alert rules): change
them only together.

=================================  =========  ================  =====================================
name                               type       labels            meaning
=================================  =========  ================  =====================================
model_requests_total               counter    route, status     HTTP requests answered
model_request_duration_seconds     histogram  route, status     time from request to response end
model_requests_in_flight           gauge                        requests being processed now
model_prediction_rows_total        counter                      input rows the model scored
model_load_seconds                 gauge                        time the model took to load
model_info                         gauge      name, version     1, identifies the model served
=================================  =========  ================  =====================================

``route`` is the path of one of the server's routes (``/invocations``, ``/ping``, ``/health``,
``/version``, ...), or ``other`` for any path the server does not serve, so a scanner cannot blow
up the label set. ``status`` is the HTTP status code as a string (``"200"``, ``"400"``, ``"504"``).
Scrapes of ``/metrics`` itself are not counted in any of the request metrics.

Several worker processes: the supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
before it starts the workers; every worker writes its samples there and any worker answering
``/metrics`` merges all of them (``MultiProcessCollector``). Counters and the histogram are summed
across workers, dead ones included (a restart does not reset a counter). ``model_requests_in_flight``
is summed over live workers; ``model_load_seconds`` and ``model_info`` take the maximum over live
workers. The supervisor calls ``mark_process_dead`` for every worker that exits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# 1 ms .. 30 s: a small model answers in a few ms, a batch or a cold path in seconds, and the
# default request timeout is 60 s (those end up in +Inf with status 504).
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

# Paths served by MLflow's scoring app and by this runtime. Anything else is labelled "other".
KNOWN_ROUTES = frozenset({"/invocations", "/ping", "/health", "/version", "/docs", "/redoc", "/openapi.json"})
METRICS_PATH = "/metrics"
OTHER_ROUTE = "other"


class Metrics:
    """The metric objects, registered on a private registry (not prometheus_client's global)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "model_requests_total",
            "HTTP requests answered by the model server.",
            ["route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "model_request_duration_seconds",
            "Time from receiving a request to the end of its response.",
            ["route", "status"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "model_requests_in_flight",
            "Requests being processed.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.rows = Counter(
            "model_prediction_rows",
            "Input rows scored by the model.",
            registry=self.registry,
        )
        self.load_seconds = Gauge(
            "model_load_seconds",
            "Seconds the model took to load (slowest live worker).",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.info = Gauge(
            "model_info",
            "The model this server serves (value is always 1).",
            ["name", "version"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        # (route, status) -> (counter child, histogram child): .labels() costs a lock and a dict
        # lookup with a tuple build each call; the label set is small and bounded.
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def observe_request(self, route: str, status: str, seconds: float) -> None:
        children = self._children.get((route, status))
        if children is None:
            children = (
                self.requests.labels(route=route, status=status),
                self.duration.labels(route=route, status=status),
            )
            self._children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        """The exposition text: merged over all workers in multiprocess mode."""
        path = os.environ.get(MULTIPROC_ENV)
        if path:
            registry = CollectorRegistry()
            collector: Callable[..., object] = MultiProcessCollector
            collector(registry, path=path)
            return generate_latest(registry)
        return generate_latest(self.registry)


def route_of(path: str) -> str:
    return path if path in KNOWN_ROUTES else OTHER_ROUTE


class MetricsMiddleware:
    """Pure ASGI middleware: counts, times and tracks in-flight HTTP requests; serves /metrics.

    Pure ASGI (not Starlette's BaseHTTPMiddleware) because it is on every request's path and
    must not add a task and a memory stream per request.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == METRICS_PATH:
            await self._serve_metrics(scope, send)
            return

        metrics = self.metrics
        route = route_of(path)
        status = 500
        recorded = False
        begin = time.perf_counter()

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                metrics.observe_request(route, str(status), time.perf_counter() - begin)
                metrics.in_flight.dec()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
            await send(message)
            if kind == "http.response.body" and not message.get("more_body", False):
                # Recorded when the response is complete, as the client sees it: after a 504
                # MLflow's timeout middleware may still wait for the abandoned predict thread.
                record()

        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # No complete response (an exception escaped, the client went away): status stays
            # 500 unless a start was sent, which is what uvicorn answers in that case.
            record()

    async def _serve_metrics(self, scope: Scope, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await _plain(send, 405, b"Method Not Allowed\n", [(b"allow", b"GET, HEAD")])
            return
        body = self.metrics.render()
        headers = [
            (b"content-type", CONTENT_TYPE_LATEST.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


async def _plain(send: Send, status: int, body: bytes, extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
