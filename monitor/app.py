"""The monitor's HTTP API (Starlette, served by uvicorn on one port):

* ``POST /v1/capture``: a body of JSON lines (capture records). ``200 {"accepted": n, "rejected":
  {reason: n}}`` once the accepted records are stored durably; a bad line is a counted reject,
  never an error. Whole-body problems: ``400`` (empty body, a ``Content-Encoding`` other than
  identity), ``413`` (larger than ``max_body`` bytes), ``503`` (the store cannot write).
* ``POST /v1/evaluate``: evaluate now (in a worker thread); answers the JSON summary.
* ``GET /v1/summary``: the last evaluation's summary (``404`` before the first).
* ``GET /v1/reports/<version>``: the latest Evidently HTML report of that version.
* ``GET /metrics``: Prometheus text format.
* ``GET /healthz``: ``200`` while the reference is loaded and the evaluator thread runs.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from monitor.service import Evaluator, Monitor

logger = logging.getLogger("monitor.app")

MAX_BODY = 16 * 1024 * 1024
"""The largest capture body accepted (bytes); the serving runtime sends at most 256 records."""


class _TooLarge(Exception):  # noqa: N818 - control flow, not an error type of the API
    pass


def create_app(monitor: Monitor, evaluator: Evaluator | None = None, *, max_body: int = MAX_BODY) -> Starlette:
    async def capture(request: Request) -> Response:
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            return _error(400, f"Content-Encoding {encoding!r} is not supported: send plain JSON lines")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            return _error(413, f"the body is larger than {max_body} bytes")
        try:
            body = await _read_body(request, max_body)
        except _TooLarge:
            return _error(413, f"the body is larger than {max_body} bytes")
        except ClientDisconnect:
            return Response(status_code=400)
        if not body.strip():
            return _error(400, "the body is empty: send capture records as JSON lines")
        try:
            counts = await run_in_threadpool(monitor.ingest, body)
        except OSError as e:
            logger.error("cannot store capture records: %s", e)
            return _error(503, f"cannot store the records: {e.strerror or e}")
        return JSONResponse(counts)

    async def evaluate(request: Request) -> Response:
        try:
            summary = await run_in_threadpool(monitor.evaluate)
        except Exception as e:  # answer the failure, keep serving
            logger.exception("evaluation failed")
            return _error(500, f"the evaluation failed: {type(e).__name__}: {e}")
        return JSONResponse(_jsonable(summary))

    async def summary(request: Request) -> Response:
        if monitor.last_summary is None:
            return _error(404, "no evaluation yet")
        return JSONResponse(_jsonable(monitor.last_summary))

    async def report(request: Request) -> Response:
        version = request.path_params["version"]
        path = monitor.report(version)
        if path is None:
            return _error(404, f"no report for version {version!r} yet (it needs traffic in a window)")
        return FileResponse(path, media_type="text/html; charset=utf-8")

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(monitor.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        if evaluator is not None and not evaluator.alive():
            return _error(503, "the evaluator thread is not running")
        return JSONResponse({"status": "ok", "model": monitor.config.model, "reference_rows": len(monitor.reference)})

    routes = [
        Route("/v1/capture", capture, methods=["POST"]),
        Route("/v1/evaluate", evaluate, methods=["POST"]),
        Route("/v1/summary", summary, methods=["GET"]),
        Route("/v1/reports/{version}", report, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes)


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _jsonable(value: Any) -> Any:
    """NaN and infinities (JSON has none) as null."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
