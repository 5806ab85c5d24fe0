"""Downloading a ``models:/`` (``runs:/``, ``s3://`` ...) model within a bounded time.

A registry that is down used to keep the server unready for minutes: MLflow's HTTP client
retries each call up to 7 times with exponential backoff (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``), inside the worker, with only urllib3's warnings in the
log. Here the download gets a budget (``--download-timeout``, 60 s): attempts are retried with
a growing pause (1, 2, 4, 8, then 10 s), each failure is logged on one line, and when the budget
is spent ``DownloadError`` says why, so the server exits 1 with that reason and the orchestrator
shows a crash loop with a message instead of a pod that never turns ready. Errors that retrying
cannot fix (no such model or version, permission denied) fail at once.

While the download runs, MLflow's own retries are turned off and its per-request timeout is
capped by what is left of the budget, unless the environment sets them. Each attempt runs in a
thread the caller stops waiting for at the deadline, so the budget holds whatever a store's
client does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger("serving")

MAX_PAUSE_SECONDS = 10.0
# MLflow error codes that no retry will change.
PERMANENT_ERROR_CODES = frozenset(
    {
        "RESOURCE_DOES_NOT_EXIST",
        "INVALID_PARAMETER_VALUE",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "BAD_REQUEST",
        "ENDPOINT_NOT_FOUND",
        "NOT_FOUND",
    }
)
_MLFLOW_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
_MLFLOW_TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"


class DownloadError(RuntimeError):
    """The model could not be downloaded; the message is the one line to log."""


def one_line(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def is_permanent(exc: BaseException) -> bool:
    return getattr(exc, "error_code", None) in PERMANENT_ERROR_CODES


@contextlib.contextmanager
def _mlflow_http_settings(timeout: float) -> Iterator[None]:
    """No retries inside MLflow's HTTP client, and a request timeout within the budget, unless
    the environment already chose them."""
    saved = {key: os.environ.get(key) for key in (_MLFLOW_RETRIES, _MLFLOW_TIMEOUT)}
    if saved[_MLFLOW_RETRIES] is None:
        os.environ[_MLFLOW_RETRIES] = "0"
    if saved[_MLFLOW_TIMEOUT] is None:
        os.environ[_MLFLOW_TIMEOUT] = str(max(1, min(30, int(timeout))))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _attempt(fetch: Callable[[], str], timeout: float) -> str:
    """``fetch()`` in a daemon thread; its result, its exception, or TimeoutError."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fetch()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
            box["error"] = exc

    thread = threading.Thread(target=run, name="model-download", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    if thread.is_alive():
        raise TimeoutError(f"the attempt was still running after {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return str(box["result"])


def download_with_budget(
    model_uri: str,
    dst_path: str | None,
    budget_seconds: float,
    fetch: Callable[[str, str | None], str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Download ``model_uri`` (to ``dst_path``); retry transient failures until
    ``budget_seconds`` have passed, then raise ``DownloadError``."""
    if fetch is None:
        from mlflow.artifacts import download_artifacts

        def fetch(uri: str, dst: str | None) -> str:
            return str(download_artifacts(artifact_uri=uri, dst_path=dst))

    assert fetch is not None
    begin = time.monotonic()
    deadline = begin + budget_seconds
    pause = 1.0
    attempt = 0
    last_reason = ""
    while True:
        left = deadline - time.monotonic()
        if attempt and left <= 0.05:
            raise DownloadError(
                f"cannot download {model_uri}: gave up after {attempt} attempt(s) in "
                f"{time.monotonic() - begin:.0f} s (--download-timeout / "
                f"SERVING_DOWNLOAD_TIMEOUT_SECONDS={budget_seconds:g}): {last_reason}"
            )
        attempt += 1
        try:
            with _mlflow_http_settings(left):
                path = _attempt(lambda: fetch(model_uri, dst_path), left)
        except Exception as exc:
            last_reason = one_line(exc)
            if is_permanent(exc):
                raise DownloadError(f"cannot download {model_uri}: {last_reason}") from exc
            left = deadline - time.monotonic()
            if left <= 0.05:
                continue  # the budget is spent: the loop gives up with this reason
            wait = min(pause, left)
            logger.warning(
                "download of %s failed (attempt %d, %.0f s of %g s left): %s; retrying in %.1f s",
                model_uri,
                attempt,
                left,
                budget_seconds,
                last_reason,
                wait,
            )
            sleep(wait)
            pause = min(pause * 2, MAX_PAUSE_SECONDS)
            continue
        if attempt > 1:
            logger.info("downloaded %s at attempt %d", model_uri, attempt)
        return path
