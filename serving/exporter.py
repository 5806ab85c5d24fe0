"""``/metrics`` on its own port, served by the supervisor.

The metrics port (``--metrics-port``, 9090) is for Prometheus only: the Kubernetes Services,
Ingress and HTTPRoute route the serving port, never this one, so the request counts, latencies
and model identity are not public. Only ``GET``/``HEAD /metrics`` is answered; anything else is
404 (405 for another method on ``/metrics``).

The supervisor answers it (a small threaded ``http.server`` on the listening socket it bound),
merging every worker's samples from the multiprocess directory. A scrape therefore never waits
behind model requests in a worker's event loop, and it still answers while workers restart,
load the model or drain.
"""

from __future__ import annotations

import http.server
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from serving.metrics import METRICS_PATH

logger = logging.getLogger("serving.exporter")

SOCKET_TIMEOUT_SECONDS = 10.0  # a scrape connection idle (or slow) for this long is closed
MAX_CONCURRENT = 8  # connections served at once; more are closed at once


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Prometheus reuses its scrape connection
    server_version = "serving"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_SECONDS
    render: Callable[[], bytes]  # set on the subclass made by MetricsExporter

    def _answer(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path != METRICS_PATH:
            self._send(404, b"Not Found\n", b"text/plain; charset=utf-8", head)
            return
        try:
            body = type(self).render()
        except Exception:
            logger.exception("rendering the metrics failed")
            self._send(500, b"rendering the metrics failed\n", b"text/plain; charset=utf-8", head)
            return
        self._send(200, body, CONTENT_TYPE_LATEST.encode(), head)

    def _send(
        self, status: int, body: bytes, content_type: bytes, head: bool, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type.decode())
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _not_allowed(self) -> None:
        if self.path.split("?", 1)[0] == METRICS_PATH:
            self._send(405, b"Method Not Allowed\n", b"text/plain; charset=utf-8", False, {"Allow": "GET, HEAD"})
        else:
            self._send(404, b"Not Found\n", b"text/plain; charset=utf-8", False)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, sock: socket.socket, handler: type[_Handler]) -> None:
        super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class MetricsExporter:
    """Serves ``render()`` as ``/metrics`` on ``sock`` (already bound and listening) in a
    daemon thread until ``stop()``."""

    def __init__(self, sock: socket.socket, render: Callable[[], bytes]) -> None:
        handler = type("MetricsHandler", (_Handler,), {"render": staticmethod(render)})
        self._server = _Server(sock, handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.socket.getsockname()[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
