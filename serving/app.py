"""The ASGI application of one worker: MLflow's scoring, loaded in the background.

Routes (``GET`` also answers ``HEAD``):

==================  ======================================================================
``POST /invocations``  ``serving.invocations``: MLflow's ``scoring_server.invocations`` (every
                    input format, MLflow's messages) with honest status codes, limits, a
                    timeout (504, MLflow's answer) and ``X-Request-Id``. A request that arrives
                    while the model loads waits for it (up to the timeout, then 503).
``GET /ping``,      readiness: 503 while the model loads and from the moment the server starts
``GET /health``     draining (SIGTERM); then MLflow's answer (200, ``"\\n"``).
``GET /version``    liveness: 200 whenever the process answers, JSON with the model's name and
                    version and whether it is loaded - nothing about the software.
``/docs``, ``/redoc``, ``/openapi.json``  MLflow's FastAPI pages, only with ``--docs``.
anything else       404 ``{"detail": "Not Found"}`` (FastAPI's answer). ``/metrics`` is served
                    on the metrics port by the supervisor, never here.
==================  ======================================================================

A model that fails to load (or a download that runs out of its budget) stops the worker
(exit code 3) after writing the reason to the runtime directory, so the supervisor exits 1
with that reason instead of keeping a pod that never turns ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from serving.capture import Capture
from serving.config import Settings
from serving.download import DownloadError, download_with_budget, one_line
from serving.invocations import Invocations, count_rows
from serving.metrics import ASGIApp, Metrics, MetricsMiddleware, Receive, Scope, Send
from serving.protocol import WorkerState

logger = logging.getLogger("serving")

__all__ = ["ServingApp", "build_app", "count_rows", "load_pyfunc", "local_model_path"]

TIMEOUT_ENV = "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"
RUNTIME_DIR_ENV = "SERVING_RUNTIME_DIR"
LOAD_FAILURE_FILE = "load-failure"  # in the runtime directory: why the model could not load
PROBE_PATHS = frozenset({"/ping", "/health"})
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def _is_local(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_model_path(model_uri: str, runtime_dir: str | None, budget_seconds: float = 60.0) -> str:
    """A local directory holding the model: the URI itself, or a download shared by workers.

    A ``models:/`` (or ``runs:/``, ``s3://``...) URI is downloaded once per server start into the
    supervisor's runtime directory, under a file lock, and every worker loads that copy. The
    download retries within ``budget_seconds`` (``serving.download``); once one worker has given
    up, the others do not try again.
    """
    if _is_local(model_uri):
        return model_uri[len("file://") :] if model_uri.startswith("file://") else model_uri
    if not runtime_dir:
        return download_with_budget(model_uri, None, budget_seconds)
    cache = Path(runtime_dir) / "model"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done, failed = cache / ".path", cache / ".failed"
        if done.exists():
            return done.read_text()
        if failed.exists():
            raise DownloadError(failed.read_text())
        try:
            path = download_with_budget(model_uri, str(cache / "download"), budget_seconds)
        except DownloadError as exc:
            failed.write_text(str(exc))
            raise
        done.write_text(path)
        return path


def load_pyfunc(model_uri: str, runtime_dir: str | None, budget_seconds: float = 60.0) -> Any:
    from mlflow.pyfunc import scoring_server

    # Honours SERVING_MODEL_CONFIG exactly as `mlflow models serve` does.
    load: Callable[[str], Any] = scoring_server.load_model_with_mlflow_config
    return load(local_model_path(model_uri, runtime_dir, budget_seconds))


def record_load_failure(runtime_dir: str | None, reason: str) -> None:
    """Leave the reason for the supervisor (the first worker to fail writes it)."""
    if not runtime_dir:
        return
    path = Path(runtime_dir) / LOAD_FAILURE_FILE
    with contextlib.suppress(OSError), open(path, "x") as f:
        f.write(reason)


Response = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body


def _json_response(status: int, payload: dict[str, Any], close: bool = False) -> Response:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    if close:
        headers.append((b"connection", b"close"))
    return status, headers, body


async def _respond(send: Send, response: Response, head: bool = False) -> None:
    status, headers, body = response
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


_PING_OK = b"\n"  # MLflow's /ping body (content type application/json, as MLflow sends it)


class ServingApp:
    """ASGI app: ``/version`` always; ``/ping`` and ``/invocations`` once the model is loaded."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        on_fatal: Callable[[BaseException], None] | None = None,
        loader: Callable[[str, str | None, float], Any] = load_pyfunc,
        state: WorkerState | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = state or WorkerState()
        self._on_fatal = on_fatal
        self._loader = loader
        self._invocations: Invocations | None = None
        self._docs_app: ASGIApp | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.loaded = threading.Event()
        # Set (from the loader thread, through the loop) when loading ends, either way.
        self._settled: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        metrics.info.labels(name=settings.model_name, version=settings.model_version).set(1)
        self.capture: Capture | None = None
        if settings.capture_url and settings.capture_sample > 0:
            self.capture = Capture(
                settings.capture_url,
                settings.capture_sample,
                settings.capture_queue,
                settings.model_name,
                settings.model_version,
                metrics,
            )
        self._model_identity = {"name": settings.model_name, "version": settings.model_version}

    # -- loading -----------------------------------------------------------------------------

    def start_loading(self) -> None:
        """Start loading the model in a daemon thread (idempotent)."""
        with self._lock:
            if self._thread is None and not self.loaded.is_set():
                self._thread = threading.Thread(target=self._load, name="model-loader", daemon=True)
                self._thread.start()

    def load_now(self) -> bool:
        """Load the model in this thread (before serving); True if it loaded."""
        with self._lock:
            if not self.loaded.is_set():
                self._load()
        return self.ready

    def _settle(self) -> None:
        loop, settled = self._loop, self._settled
        if loop is not None and settled is not None:
            # RuntimeError: the loop is already closed, so nobody is waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settled.set)

    def _load(self) -> None:
        try:
            self._load_model()
        finally:
            self._settle()

    def _load_model(self) -> None:
        begin = time.perf_counter()
        settings = self.settings
        runtime_dir = os.environ.get(RUNTIME_DIR_ENV)
        try:
            # MLflow's own app (built for the docs pages) reads this when it is built.
            os.environ[TIMEOUT_ENV] = str(settings.timeout)
            model = self._loader(settings.model_uri, runtime_dir, settings.download_timeout)
            from mlflow.pyfunc import scoring_server

            # init() also marks the process as a serving environment, as `mlflow models serve` does.
            init: Callable[[Any], ASGIApp] = scoring_server.init
            docs_app = init(model)
            invocations = Invocations(
                model,
                self.metrics,
                timeout=float(settings.timeout),
                max_body=settings.max_body_bytes,
                max_depth=settings.max_json_depth,
                debug=settings.debug,
                closing=self.state.closing,
                capture=self.capture,
                batch_max_size=settings.batch_max_size,
                batch_max_wait_ms=settings.batch_max_wait_ms,
            )
        except DownloadError as exc:
            self._fail(exc, str(exc), runtime_dir, trace=False)
            return
        except BaseException as exc:  # noqa: BLE001 - any failure to load is fatal for the worker (logged)
            self._fail(exc, f"cannot load {settings.model_uri}: {one_line(exc)}", runtime_dir, trace=True)
            return
        seconds = time.perf_counter() - begin
        self.metrics.load_seconds.set(seconds)
        self._docs_app = docs_app if settings.docs else None
        self._invocations = invocations
        # Everything loaded so far (MLflow, pandas, the model: ~160k objects) lives as long as
        # the process: out of the collector's way, so a full collection walks only what requests
        # allocate (~90 ms -> well under 1 ms here). Without it, objects that outlive a few
        # collections (captured requests waiting in serving.capture's queue) trigger full
        # collections that stall the event loop for the whole walk.
        gc.freeze()
        self.loaded.set()
        logger.info("model %s loaded in %.2f s", settings.model_uri, seconds)

    def _fail(self, exc: BaseException, reason: str, runtime_dir: str | None, trace: bool) -> None:
        self._error = exc
        if trace:
            logger.error("%s", reason, exc_info=exc)
        else:
            logger.error("%s", reason)
        record_load_failure(runtime_dir, reason)
        if self._on_fatal is not None:
            self._on_fatal(exc)

    @property
    def ready(self) -> bool:
        return self._invocations is not None

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        path = scope["path"]
        method = scope["method"]
        if path == "/invocations":
            if method != "POST":
                await _respond(send, self._not_allowed(b"POST"), head=method == "HEAD")
                return
            invocations = self._invocations
            started = None
            if invocations is None:
                # Scoring traffic that reaches a worker still loading its model (a connection
                # accepted just before the pod turned ready elsewhere) waits for the model
                # instead of failing, up to the request timeout.
                started = time.monotonic()
                await self._wait_loaded(float(self.settings.timeout))
                invocations = self._invocations
            if invocations is None:
                await _respond(send, self._unavailable())
                return
            await invocations(scope, receive, send, started)
            return
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            if path in PROBE_PATHS or path == "/version":
                await _respond(send, self._not_allowed(b"GET"))
                return
        elif path in PROBE_PATHS:
            closing = self.state.closing()
            if self._invocations is None or closing:
                await _respond(send, self._unavailable(), head=head)
                return
            headers = [(b"content-type", b"application/json"), (b"content-length", b"1")]
            await _respond(send, (200, headers, _PING_OK), head=head)
            return
        elif path == "/version":
            payload = {"model": self._model_identity, "ready": self._invocations is not None}
            await _respond(send, _json_response(200, payload, self.state.closing()), head=head)
            return
        if path in DOCS_PATHS and self._docs_app is not None:
            await self._docs_app(scope, receive, send)
            return
        await _respond(send, _json_response(404, {"detail": "Not Found"}, self.state.closing()), head=head)

    def _unavailable(self) -> Response:
        if self.state.closing():
            message = "server is shutting down"
        elif self._error is not None:
            message = "model failed to load"
        else:
            message = "model is loading"
        return _json_response(
            503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": message}, self.state.closing()
        )

    def _not_allowed(self, allow: bytes) -> Response:
        status, headers, body = _json_response(405, {"detail": "Method Not Allowed"}, self.state.closing())
        headers.append((b"allow", allow))
        return status, headers, body

    async def _wait_loaded(self, timeout: float) -> None:
        settled = self._settled
        if settled is None or self._error is not None:
            return
        # asyncio.TimeoutError is TimeoutError from Python 3.11 on; the image may run 3.10.
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(settled.wait(), timeout)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loop = asyncio.get_running_loop()
                self._settled = asyncio.Event()
                if self.loaded.is_set() or self._error is not None:
                    self._settled.set()
                self.start_loading()
                if self.capture is not None:
                    self.capture.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.capture is not None:
                    await self.capture.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_app(
    settings: Settings,
    metrics: Metrics | None = None,
    on_fatal: Callable[[BaseException], None] | None = None,
    loader: Callable[[str, str | None, float], Any] = load_pyfunc,
    state: WorkerState | None = None,
) -> tuple[ASGIApp, ServingApp]:
    """(the ASGI app to serve, the ServingApp inside it)."""
    serving_app = ServingApp(settings, metrics or Metrics(), on_fatal=on_fatal, loader=loader, state=state)
    app: ASGIApp = MetricsMiddleware(serving_app, serving_app.metrics)
    if settings.access_log == "json":
        from serving.accesslog import JsonAccessLog

        app = JsonAccessLog(app, settings.model_name, settings.model_version)
    return app, serving_app
