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
model_connections_dropped_total    counter    reason            connections the server closed
                                                                unanswered: ``header_timeout``
                                                                (no complete request head in time),
                                                                ``over_limit`` (503 at the
                                                                connection cap)
model_capture_records_total        counter                      captured requests the receiver
                                                                accepted (``serving.capture``)
model_capture_dropped_total        counter    reason            captured requests dropped:
                                                                ``queue_full``, ``unreachable``,
                                                                ``timeout``, ``rejected``,
                                                                ``unserializable``, ``shutdown``
=================================  =========  ================  =====================================

``route`` is the path of one of the server's routes (``/invocations``, ``/ping``, ``/health``,
``/version``, ...), or ``other`` for any path the server does not serve, so a scanner cannot blow
up the label set. ``status`` is the HTTP status code as a string (``"200"``, ``"400"``, ``"504"``),
or ``"499"`` for a request whose client went away before the answer (nothing was sent; not a
server error). ``/metrics`` is served on the metrics port (``serving.exporter``), never on the
serving port, and its scrapes are not counted.

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
# The scope key under which a handler leaves the status of a request it ended without an answer
# (serving.invocations sets 499 when the client went away).
STATUS_KEY = "mlflow_deploy.status"
DROP_REASONS = ("header_timeout", "over_limit")


BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


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
        self.dropped = Counter(
            "model_connections_dropped",
            "Connections the server closed without an answer, by reason.",
            ["reason"],
            registry=self.registry,
        )
        for reason in DROP_REASONS:
            self.dropped.labels(reason=reason)  # exported as 0 from the start
        # Payload capture (serving.capture); its reasons are exported once capture is on.
        self.capture_records = Counter(
            "model_capture_records",
            "Captured requests accepted by the capture receiver.",
            registry=self.registry,
        )
        self.capture_dropped = Counter(
            "model_capture_dropped",
            "Captured requests dropped, by reason.",
            ["reason"],
            registry=self.registry,
        )
        # Adaptive batching (serving.batching): requests per predict call, with batching on.
        self.batch_size = Histogram(
            "model_batch_size",
            "Requests predicted together in one call to the model (adaptive batching).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
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
            return render_multiprocess(path)
        return generate_latest(self.registry)


def render_multiprocess(path: str) -> bytes:
    """The exposition text of every worker's samples in a multiprocess directory."""
    registry = CollectorRegistry()
    collector: Callable[..., object] = MultiProcessCollector
    collector(registry, path=path)
    return generate_latest(registry)


def route_of(path: str) -> str:
    return path if path in KNOWN_ROUTES else OTHER_ROUTE


class MetricsMiddleware:
    """Pure ASGI middleware: counts, times and tracks in-flight HTTP requests.

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
        metrics = self.metrics
        route = route_of(scope["path"])
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
                # Recorded when the response is complete, as the client sees it.
                record()

        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # No complete response: the handler's own verdict (499: the client went away), else
            # 500, which is what uvicorn answers when an exception escapes.
            if not recorded:
                status = scope.get(STATUS_KEY, status)
            record()
