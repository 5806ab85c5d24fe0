"""The ASGI application of one worker: MLflow's scoring app, loaded in the background.

Request handling is MLflow's own ``mlflow.pyfunc.scoring_server.init(model)``: the same input
formats (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, CSV, Parquet), the
same error bodies, the same 504 on timeout (MLflow's timeout middleware, fed with
``MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT``). This module adds what MLflow lacks around it:

* the server listens at once and loads the model in a thread: ``/version`` and ``/metrics``
  answer during the load (liveness), ``/ping`` and ``/health`` answer 503 until the model is
  loaded (readiness / startup probes), then MLflow's app takes them over; an ``/invocations``
  request that arrives during the load waits for it (up to the request timeout, then 503);
* ``/version`` reports the runtime, MLflow and model name/version as JSON;
* ``model_prediction_rows_total`` counts the rows handed to ``model.predict`` (the model is
  wrapped; MLflow's parsing is untouched);
* a model that fails to load stops the worker (exit code 3) so the supervisor, and then the
  orchestrator, see the failure instead of a pod that stays unready.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from serving import __version__
from serving.config import Settings
from serving.metrics import ASGIApp, Metrics, MetricsMiddleware, Receive, Scope, Send

logger = logging.getLogger("serving")

TIMEOUT_ENV = "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"
RUNTIME_DIR_ENV = "SERVING_RUNTIME_DIR"
# Health probes answer 503 at once while the model loads; other requests wait for it.
PROBE_PATHS = frozenset({"/ping", "/health"})


def _distribution_version(*names: str) -> str:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def count_rows(data: Any) -> int:
    """Rows in a parsed pyfunc input: DataFrame/array rows, list items, tensor-dict rows."""
    shape = getattr(data, "shape", None)
    if shape is not None:
        try:
            return int(shape[0]) if len(shape) else 1
        except (TypeError, IndexError):
            return 1
    if isinstance(data, dict):
        # {"input_name": tensor, ...} from "inputs"/"instances": rows of the first tensor.
        for value in data.values():
            if hasattr(value, "shape") or isinstance(value, list):
                return count_rows(value)
        return 1
    if isinstance(data, (list, tuple)):
        return len(data)
    return 1


class CountingModel:
    """Wraps a ``PyFuncModel``: same ``predict``/``metadata``; counts the rows it scores."""

    def __init__(self, model: Any, on_rows: Callable[[int], None]) -> None:
        self._model = model
        self._on_rows = on_rows

    @property
    def metadata(self) -> Any:
        return self._model.metadata

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        result = self._model.predict(data, params=params)
        self._on_rows(count_rows(data))
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def _is_local(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_model_path(model_uri: str, runtime_dir: str | None) -> str:
    """A local directory holding the model: the URI itself, or a download shared by workers.

    A ``models:/`` (or ``runs:/``, ``s3://``...) URI is downloaded once per server start into the
    supervisor's runtime directory, under a file lock, and every worker loads that copy.
    """
    if _is_local(model_uri):
        return model_uri[len("file://") :] if model_uri.startswith("file://") else model_uri
    from mlflow.artifacts import download_artifacts

    if not runtime_dir:
        return str(download_artifacts(artifact_uri=model_uri))
    cache = Path(runtime_dir) / "model"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = cache / ".path"
        if done.exists():
            return done.read_text()
        path = str(download_artifacts(artifact_uri=model_uri, dst_path=str(cache / "download")))
        done.write_text(path)
        return path


def load_pyfunc(model_uri: str, runtime_dir: str | None) -> Any:
    from mlflow.pyfunc import scoring_server

    # Honours SERVING_MODEL_CONFIG exactly as `mlflow models serve` does.
    load: Callable[[str], Any] = scoring_server.load_model_with_mlflow_config
    return load(local_model_path(model_uri, runtime_dir))


async def _send_json(send: Send, status: int, payload: dict[str, Any], head: bool = False) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


class ServingApp:
    """ASGI app: ``/version`` always; MLflow's scoring app once the model is loaded."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        on_fatal: Callable[[BaseException], None] | None = None,
        loader: Callable[[str, str | None], Any] = load_pyfunc,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._on_fatal = on_fatal
        self._loader = loader
        self._inner: ASGIApp | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.loaded = threading.Event()
        # Set (from the loader thread, through the loop) when loading ends, either way.
        self._settled: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        metrics.info.labels(name=settings.model_name, version=settings.model_version).set(1)
        self._version_payload: dict[str, Any] = {
            "runtime": "mlflow-deploy-serving",
            "runtime_version": __version__,
            "mlflow_version": _distribution_version("mlflow", "mlflow-skinny"),
            "model": {"name": settings.model_name, "version": settings.model_version},
        }

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
        try:
            # MLflow's timeout middleware reads this when the app is built.
            os.environ[TIMEOUT_ENV] = str(self.settings.timeout)
            model = self._loader(self.settings.model_uri, os.environ.get(RUNTIME_DIR_ENV))
            from mlflow.pyfunc import scoring_server

            init: Callable[[Any], ASGIApp] = scoring_server.init
            inner = init(CountingModel(model, self.metrics.rows.inc))
        except BaseException as exc:  # any failure to load is fatal for the worker
            self._error = exc
            logger.exception("failed to load model %s", self.settings.model_uri)
            if self._on_fatal is not None:
                self._on_fatal(exc)
            return
        seconds = time.perf_counter() - begin
        self.metrics.load_seconds.set(seconds)
        self._inner = inner
        self.loaded.set()
        logger.info("model %s loaded in %.2f s", self.settings.model_uri, seconds)

    @property
    def ready(self) -> bool:
        return self._inner is not None

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        inner = self._inner
        if scope["type"] == "http":
            method = scope["method"]
            if scope["path"] == "/version" and method in ("GET", "HEAD"):
                payload = dict(self._version_payload, ready=inner is not None)
                await _send_json(send, 200, payload, head=method == "HEAD")
                return
            if inner is None and scope["path"] not in PROBE_PATHS:
                # Scoring traffic that reaches a worker still loading its model (a connection
                # accepted just before the pod turned ready elsewhere) waits for the model
                # instead of failing, up to the request timeout.
                inner = await self._wait_loaded(float(self.settings.timeout))
            if inner is None:
                message = "model failed to load" if self._error else "model is loading"
                await _send_json(
                    send,
                    503,
                    {"error_code": "TEMPORARILY_UNAVAILABLE", "message": message},
                    head=method == "HEAD",
                )
                return
        elif inner is None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1013})
            return
        await inner(scope, receive, send)

    async def _wait_loaded(self, timeout: float) -> ASGIApp | None:
        settled = self._settled
        if settled is None or self._error is not None:
            return self._inner
        # asyncio.TimeoutError is TimeoutError from Python 3.11 on; the image may run 3.10.
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(settled.wait(), timeout)
        return self._inner

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loop = asyncio.get_running_loop()
                self._settled = asyncio.Event()
                if self.loaded.is_set() or self._error is not None:
                    self._settled.set()
                self.start_loading()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_app(
    settings: Settings,
    metrics: Metrics | None = None,
    on_fatal: Callable[[BaseException], None] | None = None,
    loader: Callable[[str, str | None], Any] = load_pyfunc,
) -> tuple[ASGIApp, ServingApp]:
    """(the ASGI app to serve, the ServingApp inside it)."""
    serving_app = ServingApp(settings, metrics or Metrics(), on_fatal=on_fatal, loader=loader)
    return MetricsMiddleware(serving_app, serving_app.metrics), serving_app
