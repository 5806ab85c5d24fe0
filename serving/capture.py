"""Payload capture: a sample of scored requests, POSTed in batches to a receiver (the model monitor).

After a ``200`` from ``/invocations`` the handler calls ``Capture.offer`` with the request id, the
input MLflow parsed (a DataFrame for ``dataframe_split``, ``dataframe_records``, CSV, and for
``instances`` / ``inputs`` against a column schema) and MLflow's response text. ``offer`` is O(1):
a sampling decision on the request id, a length check and a ``deque.append`` of references. A
background task per worker turns queued entries into JSON lines and POSTs them
(``Content-Type: application/x-ndjson``) at most ``BATCH_MAX`` per request, at least every
``FLUSH_SECONDS``. One record per request::

    {"id": "<X-Request-Id>", "ts": 1764662400.123, "model": "iris", "version": "3", "rows": 2,
     "inputs": {"sepal length (cm)": [5.1, 4.9], ...}, "outputs": [0, 0], "input_hash": "<32 hex>"}

``inputs`` maps each column to its values, one per row, whatever the request format (a 2-D array
input has columns ``"0"``, ``"1"``, ...; any other input is under ``"input"``). ``outputs`` is
MLflow's ``predictions``. ``input_hash`` is a SHA-256 prefix of ``inputs`` as canonical JSON
(sorted keys): the same rows give the same hash, so a request mirrored to a shadow pairs with the
original, and the hash does not depend on the request format.

Sampling is decided from the request id (a hash of it against ``--capture-sample``), so a request
mirrored with its ``X-Request-Id`` (Istio keeps the header) is captured by both sides or neither.

Capture never blocks, slows or fails a prediction. Records are dropped and counted in
``model_capture_dropped_total{reason}``: ``queue_full`` (``--capture-queue`` entries waiting),
``unreachable`` (connection refused or reset), ``timeout`` (no answer within
``SEND_TIMEOUT_SECONDS``), ``rejected`` (an answer other than 2xx), ``unserializable``,
``shutdown`` (still queued when the worker stopped and the final flush ran out of time). Records
the receiver accepted are counted in ``model_capture_records_total``. After a failed POST the
sender waits ``FLUSH_SECONDS`` before the next one (the queue fills and drops meanwhile).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import datetime
import hashlib
import json
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import numpy

from serving.metrics import Metrics

logger = logging.getLogger("serving.capture")

BATCH_MAX = 256  # records per POST
FLUSH_SECONDS = 1.0  # the longest a record waits in the queue when the receiver is up
SEND_TIMEOUT_SECONDS = 5.0  # connect + send + status line of one POST
SHUTDOWN_FLUSH_SECONDS = 2.0  # what the last flush may take when the worker stops
YIELD_EVERY = 32  # records serialized between two yields to the event loop
DROP_REASONS = ("queue_full", "unreachable", "timeout", "rejected", "unserializable", "shutdown")
_FULL = 1 << 64
# asyncio.TimeoutError is TimeoutError from Python 3.11 on; the image may run 3.10.
_TIMEOUTS = (asyncio.TimeoutError, TimeoutError)


class CaptureURLError(ValueError):
    pass


def parse_url(url: str) -> tuple[str, int, str, bool]:
    """(host, port, path with query, TLS) of an ``http://`` or ``https://`` receiver URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CaptureURLError("is not an http:// or https:// URL with a host")
    try:
        port = parts.port
    except ValueError:
        raise CaptureURLError("has an invalid port") from None
    tls = parts.scheme == "https"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port or (443 if tls else 80), path, tls


def sample_threshold(sample: float) -> int:
    """Request ids whose 64-bit hash is below this are captured."""
    return min(_FULL, int(sample * _FULL))


def sampled(request_id: str, threshold: int) -> bool:
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < threshold


def _column_names(columns: Any) -> list[str]:
    """``[str(name) for name in columns]``, without iterating an Arrow-backed index in Python.

    pandas 3 keeps string column labels in Arrow: iterating them costs ~3 us a label (13 us for
    iris' four), asking Arrow for the list (``__arrow_array__``, the Arrow protocol) ~2 us in all.
    """
    to_arrow = getattr(getattr(columns, "array", None), "__arrow_array__", None)
    if to_arrow is not None:
        arrow = to_arrow()
        if arrow.null_count == 0:
            return [name if type(name) is str else str(name) for name in arrow.to_pylist()]
    return list(map(str, columns))


def inputs_mapping(data: Any) -> dict[str, Any]:
    """Column -> list of values (one per row) of a parsed pyfunc input."""
    columns = getattr(data, "columns", None)
    if columns is not None:  # pandas DataFrame
        names = _column_names(columns)
        try:
            # one conversion for the whole frame: ~7x faster than a tolist() per column
            return dict(zip(names, data.to_numpy().T.tolist(), strict=True))
        except (TypeError, ValueError):
            return {name: data[column].tolist() for name, column in zip(names, columns, strict=True)}
    if isinstance(data, dict):  # named tensors
        return {str(k): (v.tolist() if hasattr(v, "tolist") else v) for k, v in data.items()}
    shape = getattr(data, "shape", None)
    if shape is not None and len(shape) == 2:  # 2-D array: one column per index
        return {str(i): column for i, column in enumerate(data.T.tolist())}
    return {"input": data.tolist() if hasattr(data, "tolist") else data}


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    return str(value)


def _encoder(sort_keys: bool) -> Callable[[Any], str]:
    """``json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), default=_default)``, the
    same text, without building an encoder per call: CPython's C encoder, made once (~2x faster
    on a small record), or ``JSONEncoder.encode`` where it is missing."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has _json
        return json.JSONEncoder(sort_keys=sort_keys, separators=(",", ":"), default=_default).encode
    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys,
    # allow_nan): markers None = no cycle check (parsed request data has no cycles).
    encode = make(None, _default, json.encoder.encode_basestring_ascii, None, ":", ",", sort_keys, False, True)

    def dumps(value: Any) -> str:
        if isinstance(value, str):
            return str(json.encoder.encode_basestring_ascii(value))
        return "".join(encode(value, 0))

    return dumps


_dumps_sorted = _encoder(sort_keys=True)
_dumps = _encoder(sort_keys=False)
_json_string = json.encoder.encode_basestring_ascii  # json.dumps of a str

# orjson (optional; in the image) formats a float64 array ~15x faster than json.dumps formats
# the same floats, and as the same text (both give the shortest repr that round-trips) except
# where Python switches to exponent notation (below 1e-4, from 1e16; orjson writes "1e16",
# "1e-7", "0.00002"), NaN and infinities (orjson: null). Output with an "e", an "n" or "0.0000"
# anywhere is thrown away and the frame goes through json instead (a value like 10.00001 sends
# a request that way for nothing, never to a different text).
try:
    import orjson
except ImportError:  # pragma: no cover - the image installs it; capture works without
    orjson = None  # type: ignore[assignment]
_NUMERIC = (numpy.dtype("float64"), numpy.dtype("int64"))


def _column_order(names: list[str]) -> tuple[list[int], list[str]] | None:
    """(the index of each column in sorted-name order, its JSON key) or None for duplicates."""
    if len(set(names)) != len(names):
        return None
    order = sorted(range(len(names)), key=names.__getitem__)
    return order, [_json_string(names[i]) for i in order]


class InputsEncoder:
    """``canonical_inputs``, faster for DataFrames: the sorted order and JSON keys of a column
    set are kept, and a float64/int64 frame is formatted by orjson in one call."""

    def __init__(self) -> None:
        self._orders: dict[tuple[str, ...], tuple[list[int], list[str]] | None] = {}

    def __call__(self, data: Any) -> str:
        columns = getattr(data, "columns", None)
        if columns is None or orjson is None:
            return canonical_inputs(data)
        names = _column_names(columns)
        key = tuple(names)
        if key not in self._orders:
            if len(self._orders) >= 64:
                self._orders.clear()
            self._orders[key] = _column_order(names)
        order = self._orders[key]
        values = data.to_numpy()
        if order is None or not names or values.dtype not in _NUMERIC:
            return canonical_inputs(data)
        # column after column (orjson takes C-contiguous arrays only)
        text = orjson.dumps(numpy.ascontiguousarray(values.T), option=orjson.OPT_SERIALIZE_NUMPY)
        if values.dtype.kind == "f" and (b"e" in text or b"n" in text or b"0.0000" in text):
            return canonical_inputs(data)
        parts = text[2:-2].decode().split("],[")  # numbers only: no bracket inside a column
        return "{" + ",".join(f"{k}:[{parts[i]}]" for i, k in zip(*order, strict=True)) + "}"


def canonical_inputs(data: Any) -> str:
    return _dumps_sorted(inputs_mapping(data))


def input_hash(inputs_json: str) -> str:
    return hashlib.sha256(inputs_json.encode()).hexdigest()[:32]


_PREDICTIONS = '{"predictions": '


def outputs_json(response: str) -> str:
    """MLflow's ``predictions`` (or the whole response) as compact JSON."""
    if response.startswith(_PREDICTIONS) and response.endswith("}"):
        inner = response[len(_PREDICTIONS) : -1]
        if '"' not in inner and "\n" not in inner:
            # numbers, true/false/null, NaN, lists: MLflow's ", " separators are its only spaces
            # (json.loads + dumps give the same text, ~10x slower for 100 predictions)
            return inner.replace(" ", "")
    try:
        parsed = json.loads(response)
    except ValueError:
        parsed = response
    outputs = parsed["predictions"] if isinstance(parsed, dict) and "predictions" in parsed else parsed
    return _dumps(outputs)


def encode_record(request_id: str, ts: float, model: str, version: str, data: Any, response: str, rows: int) -> bytes:
    """One JSON line (with its newline)."""
    return RecordEncoder(model, version).encode(request_id, ts, data, response, rows)


class RecordEncoder:
    """Turns queued requests of one model version into JSON lines (``encode_record``'s bytes)."""

    def __init__(self, model: str, version: str) -> None:
        self._middle = f',"model":{_json_string(model)},"version":{_json_string(version)},"rows":'
        self._inputs = InputsEncoder()

    def encode(self, request_id: str, ts: float, data: Any, response: str, rows: int) -> bytes:
        inputs = self._inputs(data)
        return (
            f'{{"id":{_json_string(request_id)},"ts":{round(ts, 6)!r}{self._middle}{rows}'
            f',"inputs":{inputs},"outputs":{outputs_json(response)},"input_hash":"{input_hash(inputs)}"}}\n'
        ).encode()


class Capture:
    """The queue and sender of one worker process."""

    def __init__(self, url: str, sample: float, queue_size: int, model: str, version: str, metrics: Metrics) -> None:
        self.url = url
        self.host, self.port, self.path, tls = parse_url(url)
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if tls else None
        self.threshold = sample_threshold(sample)
        self.queue_size = queue_size
        self.model, self.version = model, version
        self.queue: collections.deque[tuple[str, float, Any, str, int]] = collections.deque()
        self.sent = metrics.capture_records
        self.dropped = {reason: metrics.capture_dropped.labels(reason=reason) for reason in DROP_REASONS}
        self._full = self.dropped["queue_full"]
        self._encoder = RecordEncoder(model, version)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        host = self.host if ":" not in self.host else f"[{self.host}]"
        default_port = 443 if tls else 80
        self._host_header = host if self.port == default_port else f"{host}:{self.port}"

    # -- the request path --------------------------------------------------------------------

    def offer(self, request_id: str, data: Any, response: str, rows: int) -> None:
        """Queue one scored request (or drop it): O(1), never raises for a full queue."""
        if self.threshold < _FULL and not sampled(request_id, self.threshold):
            return
        queue = self.queue
        if len(queue) >= self.queue_size:
            self._full.inc()
            return
        queue.append((request_id, time.time(), data, response, rows))
        wake = self._wake
        if wake is not None and len(queue) >= BATCH_MAX and not wake.is_set():
            wake.set()

    # -- the background task -----------------------------------------------------------------

    def start(self) -> None:
        """Start the sender on the running loop (the worker's lifespan startup)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="capture-sender")

    async def close(self, grace: float = SHUTDOWN_FLUSH_SECONDS) -> None:
        """Stop the sender and flush what is queued within ``grace`` seconds; count the rest."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(self._flush(retry_pause=False), grace)
        if self.queue:
            self.dropped["shutdown"].inc(len(self.queue))
            self.queue.clear()

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(wake.wait(), FLUSH_SECONDS)
            wake.clear()
            try:
                await self._flush(retry_pause=True)
            except asyncio.CancelledError:
                raise
            except Exception:  # the sender must outlive any bug in one batch
                logger.exception("capture: a batch failed")

    async def _flush(self, retry_pause: bool) -> None:
        while self.queue:
            ok = await self._send_batch()
            if not ok and retry_pause:
                await asyncio.sleep(FLUSH_SECONDS)

    async def _send_batch(self) -> bool:
        queue = self.queue
        lines: list[bytes] = []
        taken = 0
        encode = self._encoder.encode
        while queue and taken < BATCH_MAX:
            request_id, ts, data, response, rows = queue.popleft()
            taken += 1
            try:
                lines.append(encode(request_id, ts, data, response, rows))
            except Exception:  # noqa: BLE001 - one odd input must not lose the batch
                self.dropped["unserializable"].inc()
            if taken % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # keep the loop answering requests while serializing
        if not lines:
            return True
        reason = await self._post(b"".join(lines))
        if reason is None:
            self.sent.inc(len(lines))
            return True
        self.dropped[reason].inc(len(lines))
        return False

    async def _post(self, body: bytes) -> str | None:
        """None when the receiver answered 2xx, else the drop reason."""
        try:
            status = await asyncio.wait_for(self._exchange(body), SEND_TIMEOUT_SECONDS)
        except _TIMEOUTS:
            logger.debug("capture: %s did not answer within %.0f s", self.url, SEND_TIMEOUT_SECONDS)
            return "timeout"
        except (OSError, ssl.SSLError, EOFError, ValueError, IndexError) as exc:
            logger.debug("capture: %s: %s", self.url, exc)
            return "unreachable"
        if 200 <= status < 300:
            return None
        logger.debug("capture: %s answered %d", self.url, status)
        return "rejected"

    async def _exchange(self, body: bytes) -> int:
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl)
        try:
            head = (
                f"POST {self.path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
                f"Content-Type: application/x-ndjson\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1")
            writer.write(head + body)
            await writer.drain()
            line = await reader.readline()
            if not line:
                raise EOFError("connection closed before an answer")
            return int(line.split()[1])
        finally:
            writer.close()
