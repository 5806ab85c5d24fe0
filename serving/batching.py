"""Adaptive batching: concurrent predictions merged into one ``predict`` call (opt-in).

With ``--batch-max-size N`` (``SERVING_BATCH_MAX_SIZE``, N >= 2) each request is still parsed,
validated and answered by MLflow's own ``invocations`` in its own thread, so formats, messages
and status codes stay MLflow's; only the call to the model's ``predict`` goes through
``Batcher.predict``:

* a request whose input is a DataFrame and that has no ``params`` joins the batch being formed
  for its column names; anything else (tensors, ``params``) is predicted alone, at once;
* the first request of a batch (its leader) waits, at most ``--batch-max-wait-ms``, while other
  requests are on their way to ``predict`` (parsed but not there yet) and the batch holds fewer
  than N; with nothing else in flight it does not wait at all, so a lone request (c=1) pays
  nothing;
* the leader concatenates the batch's frames, calls ``predict`` once (schema enforcement and
  the model's vectorised predict, once for all rows), and splits the result back by each
  request's row count, in order;
* if the merged ``predict`` raises, or returns something that cannot be split by rows (a dict, a
  scalar, a different number of rows), every request of the batch is predicted again on its own:
  one bad request never fails its neighbours, and each gets its own error;
* a request's timeout still holds: the handler answers 504 at its deadline whatever its batch
  is doing (the thread finishes in the background, as without batching).

Off by default, because merging assumes rows are predicted independently (true of a scikit-learn
estimator, not of a model that normalises over its input); float outputs of a merged batch can
differ in the last bits from a single request's where the model's arithmetic depends on the
batch (BLAS kernels).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from serving.metrics import Metrics


class _Slot:
    __slots__ = ("data", "done", "result", "retry", "rows")

    def __init__(self, data: Any, rows: int) -> None:
        self.data = data
        self.rows = rows
        self.done = threading.Event()
        self.result: Any = None
        self.retry = False  # the merged predict failed: predict alone


class _Batch:
    __slots__ = ("closed", "slots")

    def __init__(self) -> None:
        self.slots: list[_Slot] = []
        self.closed = False


def _frame_key(data: Any) -> tuple[Any, ...] | None:
    """The batch a parsed input can join (its column names), or None: predict it alone."""
    columns = getattr(data, "columns", None)
    if columns is None or not hasattr(data, "iloc"):
        return None
    return tuple(columns.tolist())


def split_result(result: Any, sizes: list[int]) -> list[Any] | None:
    """``result`` cut into consecutive pieces of ``sizes`` rows, or None if it has another number
    of rows or no rows to cut (a dict, a scalar)."""
    total = sum(sizes)
    if isinstance(result, (dict, str, bytes)):
        return None
    shape = getattr(result, "shape", None)
    if shape is not None:
        if len(shape) == 0 or shape[0] != total:
            return None
        take = result.iloc if hasattr(result, "iloc") else result
    elif isinstance(result, (list, tuple)):
        if len(result) != total:
            return None
        take = result
    else:
        return None
    pieces = []
    start = 0
    for size in sizes:
        pieces.append(take[start : start + size])
        start += size
    return pieces


class Batcher:
    """Merges concurrent ``predict`` calls of one worker (called from the scoring threads)."""

    def __init__(self, model: Any, max_size: int, max_wait_ms: float, metrics: Metrics) -> None:
        self.model = model
        self.max_size = max_size
        self.max_wait = max_wait_ms / 1000.0
        self._observe: Callable[[float], None] = metrics.batch_size.observe
        self._lock = threading.Condition()
        self._forming: dict[tuple[Any, ...], _Batch] = {}
        self._arriving = 0  # requests handed to a scoring thread that have not reached predict yet

    # -- the handler's bookkeeping (event loop thread) ---------------------------------------

    def arriving(self) -> None:
        """A request goes to a scoring thread; it will call ``predict`` or ``passed``."""
        with self._lock:
            self._arriving += 1

    def passed(self) -> None:
        """A request left its scoring thread without reaching ``predict`` (bad input)."""
        with self._lock:
            self._arriving -= 1
            self._lock.notify_all()

    # -- the scoring threads -----------------------------------------------------------------

    def predict(self, data: Any, params: dict[str, Any] | None, rows: int) -> Any:
        key = _frame_key(data) if not params else None
        with self._lock:
            self._arriving -= 1
            self._lock.notify_all()
            if key is None or self.max_size < 2:
                batch = None
            else:
                batch = self._forming.get(key)
                if batch is not None and not batch.closed:
                    slot = _Slot(data, rows)
                    batch.slots.append(slot)
                    if len(batch.slots) >= self.max_size:
                        batch.closed = True
                        del self._forming[key]
                        self._lock.notify_all()
                    follower = True
                else:
                    batch = _Batch()
                    slot = _Slot(data, rows)
                    batch.slots.append(slot)
                    self._forming[key] = batch
                    follower = False
        if batch is None:
            self._observe(1)
            return self.model.predict(data, params=params)
        if follower:
            slot.done.wait()
            if slot.retry:
                return self.model.predict(data, params=params)
            return slot.result
        self._lead(key, batch)  # type: ignore[arg-type]
        if slot.retry:
            return self.model.predict(data, params=params)
        return slot.result

    def _lead(self, key: tuple[Any, ...], batch: _Batch) -> None:
        deadline = time.monotonic() + self.max_wait
        with self._lock:
            while not batch.closed and self._arriving > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
            if not batch.closed:
                batch.closed = True
                if self._forming.get(key) is batch:
                    del self._forming[key]
        slots = batch.slots
        pieces: list[Any] | None = None
        try:
            self._observe(len(slots))
            if len(slots) > 1:
                import pandas as pd

                merged = pd.concat([s.data for s in slots], ignore_index=True)
                pieces = split_result(self.model.predict(merged), [s.rows for s in slots])
        except Exception:  # noqa: BLE001 - retried per request: each gets its own answer
            pieces = None
        finally:
            # whatever happened, every follower is released (alone again if there is no piece)
            for i, s in enumerate(slots):
                if pieces is None:
                    s.retry = True
                else:
                    s.result = pieces[i]
                if i:
                    s.done.set()
