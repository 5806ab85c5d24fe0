"""The JSON access log (``--access-log json``): one JSON line per HTTP request on stderr.

::

    {"ts": "2026-12-02T08:01:02.345Z", "request_id": "9f1c...", "model": "iris", "version": "3",
     "method": "POST", "route": "/invocations", "status": 200, "duration_ms": 2.41, "bytes": 36}

``request_id`` is the ``X-Request-Id`` of the answer (``/invocations`` always sets one), else the
one the client sent, else null. ``route`` is the metrics' route label (a served path or
``other``); ``status`` 499 means the client went away before the answer; ``bytes`` is the size of
the response body sent. Lines go to stderr through the ``serving.access`` logger (its own handler,
bare message, not propagated), at INFO whatever ``--log-level`` says: the access log is its own
switch. ``--access-log text`` is uvicorn's access log, as before.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from serving.metrics import STATUS_KEY, ASGIApp, Message, Receive, Scope, Send, route_of

LOGGER_NAME = "serving.access"


def access_logger() -> logging.Logger:
    log = logging.getLogger(LOGGER_NAME)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class JsonAccessLog:
    """Pure ASGI middleware writing one JSON line per HTTP request once its answer is sent."""

    def __init__(self, app: ASGIApp, model: str, version: str) -> None:
        self.app = app
        self.model = model
        self.version = version
        self.log = access_logger()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.time()
        start = time.perf_counter()
        status = 500
        sent = 0
        request_id: str | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent, request_id
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", ()):
                    if name == b"x-request-id":
                        request_id = value.decode("latin-1")
            elif kind == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        answered = False
        try:
            await self.app(scope, receive, send_wrapper)
            answered = True
        finally:
            if not answered or status == 500:
                status = scope.get(STATUS_KEY, status)
            if request_id is None:
                for name, value in scope.get("headers", ()):
                    if name == b"x-request-id":
                        request_id = value.decode("latin-1")[:128]
                        break
            self.log.info(
                "%s",
                json.dumps(
                    {
                        "ts": _utc(began),
                        "request_id": request_id,
                        "model": self.model,
                        "version": self.version,
                        "method": scope.get("method"),
                        "route": route_of(scope["path"]),
                        "status": status,
                        "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                        "bytes": sent,
                    },
                    separators=(",", ":"),
                ),
            )
