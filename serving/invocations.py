"""``POST /invocations``: MLflow's scoring, with status codes that mean what monitoring assumes.

The request is parsed, scored and serialized by MLflow's own ``scoring_server.invocations``
(every input format, the same messages); this handler is the HTTP layer around it, in place of
the FastAPI route and timeout middleware of ``scoring_server.init``. The commonest request (a
plain ``dataframe_split`` for a model of ``double``/``long`` columns) skips MLflow's per-column
casts through ``serving.fastpath``, which builds the same DataFrame; the answer is the same bytes.

===========================================  ======  =================================================
what happened                                status  body
===========================================  ======  =================================================
scored                                       200     MLflow's ``{"predictions": ...}``
body larger than ``--max-body-bytes``        413     JSON, answered before the rest is read
JSON nested deeper than ``--max-json-depth`` 400     JSON, before MLflow parses it
input MLflow cannot parse, or that does not  400     MLflow's JSON error (``error_code``, message);
match the model's signature                          415 for an unsupported content type, as MLflow
no ``Content-Type``                          415     MLflow's unsupported-content-type message
the model's ``predict`` raised               500     ``{"error_code": "INTERNAL_ERROR", ...}``
                                                     (MLflow answers 400 and hides model failures
                                                     from every 5xx alert); an ``MlflowException``
                                                     the model raises keeps MLflow's status for its
                                                     ``error_code``
the model's output cannot be serialized      500     ``INTERNAL_ERROR``
body not received within ``--timeout``       408     JSON
scoring took longer than ``--timeout``       504     MLflow's text
the client went away before the answer       499     nothing is sent; counted under ``499``, not 5xx
===========================================  ======  =================================================

Every answer carries ``X-Request-Id`` (the client's, if it sent a sane one). Stack traces go to
the server log under that id (5xx at ERROR, 4xx at DEBUG), never into a response body unless
``SERVING_DEBUG=1``. Error messages that echo the request are cut (``serving.limits``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from serving.batching import Batcher
from serving.capture import Capture
from serving.fastpath import FastFrame, invoke
from serving.limits import bounded_message, json_depth_exceeds
from serving.metrics import STATUS_KEY, Metrics, Receive, Scope, Send

logger = logging.getLogger("serving")

# scope key the protocol (serving.protocol) puts itself under
CONNECTION_KEY = "mlflow_deploy.connection"
CLIENT_CLOSED = 499  # nginx's code for "client closed the request"

TIMEOUT_BODY = b"Request processing time exceeded limit"  # MLflow's own 504 answer
MODEL_FAILED = (
    "Encountered an unexpected error while evaluating the model. Verify that the serialized "
    "input Dataframe is compatible with the model for inference."
)  # MLflow's message for an exception from predict (it answers 400 with it)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

# outcome of one call to the model (set in the scoring thread, read after it)
NOT_CALLED, RETURNED, RAISED = 0, 1, 2


class ScoringCall:
    """What MLflow's ``invocations`` is handed as "the model", one per request: delegates to the
    loaded ``PyFuncModel``, counts the rows it scores, and records whether ``predict`` returned
    or raised, so the handler can tell a model failure from bad input."""

    __slots__ = ("_batcher", "_model", "_on_rows", "data", "error", "outcome", "reached", "rows")

    def __init__(self, model: Any, on_rows: Callable[[int], None], batcher: Batcher | None = None) -> None:
        self._model = model
        self._on_rows = on_rows
        self._batcher = batcher
        self.reached = False  # predict was called (a batcher counts the requests on their way)
        self.outcome = NOT_CALLED
        self.error: BaseException | None = None
        self.data: Any = None  # the parsed input, once predict returned (for serving.capture)
        self.rows = 0

    @property
    def metadata(self) -> Any:
        return self._model.metadata

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        from mlflow.exceptions import MlflowException

        self.reached = True
        try:
            if self._batcher is None:
                result = self._model.predict(data, params=params)
            else:
                result = self._batcher.predict(data, params, count_rows(data))
        except MlflowException:
            # schema enforcement (400), or the model's own MlflowException: MLflow's mapping
            raise
        except Exception as exc:
            self.outcome, self.error = RAISED, exc
            raise
        self.outcome = RETURNED
        self.data = data
        self.rows = rows = count_rows(data)
        self._on_rows(rows)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


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


class _RejectError(Exception):
    """Answer ``status`` with a JSON error; ``linger``: the body was not read to its end."""

    def __init__(self, status: int, error_code: str, message: str, linger: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.linger = linger


class _ClientGoneError(Exception):
    pass


class _Guard:
    """Ends a request early: at its deadline, or when its client disconnects. Both cancel the
    handler's task (one timer and one callback per request, no extra task)."""

    __slots__ = ("connection", "reason", "task", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float, connection: Any) -> None:
        self.task = asyncio.current_task()
        self.reason: str | None = None
        self.timer: asyncio.TimerHandle | None = loop.call_later(seconds, self.fire, "timeout")
        self.connection = connection
        if connection is not None:
            connection.on_lost(self.fire)

    def fire(self, reason: str) -> None:
        if self.reason is None and self.task is not None:
            self.reason = reason
            self.task.cancel()

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.connection is not None:
            self.connection.on_lost(None)
            self.connection = None

    def absorb(self) -> str:
        """After catching the CancelledError this guard caused: its reason."""
        uncancel = getattr(self.task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()
        assert self.reason is not None
        return self.reason


class Invocations:
    """The handler, bound to a loaded model."""

    def __init__(
        self,
        model: Any,
        metrics: Metrics,
        timeout: float,
        max_body: int,
        max_depth: int,
        debug: bool,
        closing: Callable[[], bool] = lambda: False,
        capture: Capture | None = None,
        batch_max_size: int = 0,
        batch_max_wait_ms: float = 2.0,
    ) -> None:
        from mlflow.pyfunc import scoring_server

        self.model = model
        self.input_schema = model.metadata.get_input_schema()
        self.metrics = metrics
        self.timeout = timeout
        self.max_body = max_body
        self.max_depth = max_depth
        self.debug = debug
        self.closing = closing  # True while the server drains: answers carry Connection: close
        # serving.fastpath: the plain dataframe_split request skips MLflow's per-column casts
        self._invocations: Callable[..., Any] = functools.partial(
            invoke, FastFrame.for_model(model, self.input_schema), scoring_server.invocations
        )
        self.capture = capture  # serving.capture: scored requests go to its queue after the answer
        # serving.batching (opt-in): predict calls of concurrent requests merged. Its scoring
        # threads wait for each other, so they get a pool of their own, larger than a batch.
        self.batcher: Batcher | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        if batch_max_size >= 2:
            self.batcher = Batcher(model, batch_max_size, batch_max_wait_ms, metrics)
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=max(32, 2 * batch_max_size), thread_name_prefix="scoring"
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send, started: float | None = None) -> None:
        """Answer one request. ``started``: when it arrived, if it waited (for the model to
        load) before reaching here; the wait counts against the timeout."""
        request_id, content_type, length = _headers(scope)
        connection = scope.get(CONNECTION_KEY)
        loop = asyncio.get_running_loop()
        elapsed = 0.0 if started is None else time.monotonic() - started
        guard = _Guard(loop, max(self.timeout - elapsed, 0.001), connection)
        reading = True
        call: ScoringCall | None = None
        try:
            try:
                body = await self._read_body(receive, length)
                reading = False
                if (
                    content_type is not None
                    and content_type.startswith("application/json")
                    and json_depth_exceeds(body, self.max_depth)
                ):
                    raise _RejectError(
                        400,
                        "BAD_REQUEST",
                        f"Invalid input. The JSON document nests deeper than {self.max_depth} levels "
                        "(--max-json-depth / SERVING_MAX_JSON_DEPTH).",
                    )
                batcher = self.batcher
                call = ScoringCall(self.model, self.metrics.rows.inc, batcher)
                run = functools.partial(
                    contextvars.copy_context().run,
                    self._invocations,
                    body,
                    content_type or "",
                    call,
                    self.input_schema,
                )
                if batcher is None:
                    result = await loop.run_in_executor(None, run)
                else:
                    batcher.arriving()
                    # shielded: a request that times out still runs (and is counted off) in its
                    # thread, as an unbatched one that already started does
                    result = await asyncio.shield(loop.run_in_executor(self._executor, _batched(run, call, batcher)))
            except asyncio.CancelledError:
                if guard.reason is None:
                    raise  # cancelled from outside (shutdown): not ours to answer
                reason = guard.absorb()
                if reason == "timeout" and not reading:
                    guard.disarm()
                    await _send(send, 504, TIMEOUT_BODY, b"application/json", request_id, self.closing())
                    return
                if reason == "timeout":
                    raise _RejectError(
                        408,
                        "BAD_REQUEST",
                        f"The request body did not arrive within {self.timeout:g} s.",
                        linger=True,
                    ) from None
                raise _ClientGoneError() from None
            guard.disarm()
        except _ClientGoneError:
            guard.disarm()
            scope[STATUS_KEY] = CLIENT_CLOSED
            return
        except _RejectError as reject:
            guard.disarm()
            if reject.linger and connection is not None:
                connection.linger()
            payload = {"error_code": reject.error_code, "message": reject.message}
            await _send(
                send, reject.status, _json(payload), b"application/json", request_id, reject.linger or self.closing()
            )
            return
        except Exception as exc:  # noqa: BLE001 - every failure of MLflow's scoring gets an answer and a log line
            guard.disarm()
            status, payload = self._error(exc, request_id, call)
            await _send(send, status, _json(payload), b"application/json", request_id, self.closing())
            return
        mimetype: str = result.mimetype
        if mimetype.startswith("text/"):
            mimetype += "; charset=utf-8"  # what Starlette's Response adds, as in MLflow's app
        await _send(send, result.status, result.response.encode(), mimetype.encode(), request_id, self.closing())
        capture = self.capture
        if capture is not None and result.status == 200 and call is not None and call.outcome == RETURNED:
            capture.offer(request_id, call.data, result.response, call.rows)

    async def _read_body(self, receive: Receive, length: int | None) -> bytes:
        limit = self.max_body
        if length is not None and length > limit:
            raise _RejectError(413, "BAD_REQUEST", _too_large(length, limit), linger=True)
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGoneError()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False) and len(body) <= limit:
            return body  # the usual case: one message
        chunks = [body]
        size = len(body)
        while message.get("more_body", False):
            if size > limit:
                raise _RejectError(413, "BAD_REQUEST", _too_large(None, limit), linger=True)
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGoneError()
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise _RejectError(413, "BAD_REQUEST", _too_large(size, limit), linger=True)
        return b"".join(chunks)

    def _error(self, exc: Exception, request_id: str, call: ScoringCall | None) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for an exception out of MLflow's ``invocations``, and the log line."""
        from mlflow.exceptions import MlflowException

        failed: BaseException = exc  # whose stack trace goes to the log (and, debugging, the body)
        if call is not None and call.outcome == RAISED:
            # MLflow wrapped the model's exception in MlflowException(BAD_REQUEST): a 500.
            status = 500
            payload: dict[str, Any] = {"error_code": "INTERNAL_ERROR", "message": MODEL_FAILED}
            failed = call.error or exc
            what = f"the model's predict raised {type(failed).__name__}"
        elif isinstance(exc, MlflowException):
            # bad input (schema, parsing: 4xx), or an MlflowException the model raised itself
            status = exc.get_http_status_code()
            payload = {"error_code": exc.error_code, "message": bounded_message(exc.message)}
            if exc.sqlstate is not None:
                payload["sqlstate"] = exc.sqlstate
            if exc.error_class is not None:
                payload["error_class"] = exc.error_class
            payload.update((k, v) for k, v in exc.json_kwargs.items() if k != "stack_trace")
            what = str(exc.error_code)
        elif call is not None and call.outcome == RETURNED:
            status = 500  # predict returned; MLflow could not serialize what it returned
            payload = {
                "error_code": "INTERNAL_ERROR",
                "message": f"The model's output could not be serialized: {type(exc).__name__}",
            }
            what = "serializing the model's output failed"
        else:
            status = 400  # MLflow's parsing failed outside its own error handling (RecursionError)
            payload = {
                "error_code": "BAD_REQUEST",
                "message": bounded_message(
                    f"Invalid input. The request could not be parsed: {type(exc).__name__}: {exc}"
                ),
            }
            what = "parsing failed"
        level = logging.ERROR if status >= 500 else logging.DEBUG
        if logger.isEnabledFor(level):
            logger.log(level, "request %s: %d, %s", request_id, status, what, exc_info=failed)
        if self.debug:
            payload["stack_trace"] = _format(failed)
        return status, payload


def _batched(run: Callable[[], Any], call: ScoringCall, batcher: Batcher) -> Callable[[], Any]:
    def scoring() -> Any:
        try:
            return run()
        finally:
            if not call.reached:
                batcher.passed()  # bad input: it will never join a batch

    return scoring


def _format(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _too_large(size: int | None, limit: int) -> str:
    got = f"{size} bytes" if size is not None else "more"
    return (
        f"The request body ({got}) is larger than the limit of {limit} bytes "
        "(--max-body-bytes / SERVING_MAX_BODY_BYTES)."
    )


def _headers(scope: Scope) -> tuple[str, str | None, int | None]:
    """(request id, content type, content length) from the request headers."""
    request_id: str | None = None
    content_type: str | None = None
    length: int | None = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                request_id = text
    return request_id or uuid.uuid4().hex, content_type, length


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


async def _send(send: Send, status: int, body: bytes, content_type: bytes, request_id: str, close: bool) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
