"""Capture records: parse a POSTed body of JSON lines, check records against the reference's
columns, and turn a list of records into frames.

One record per scored request (serving/capture.py writes them)::

    {"id": "<X-Request-Id>", "ts": 1764662400.123, "model": "iris", "version": "3", "rows": 2,
     "inputs": {"col": [v_row1, v_row2], ...}, "outputs": [0, 0], "input_hash": "<32 hex>"}

A record the monitor cannot use is rejected and counted by reason (``REJECT_REASONS``); a bad
line never fails the other lines of its body.
"""

from __future__ import annotations

import collections
import json
import math
import re
from dataclasses import dataclass
from typing import Any

FIELDS = ("id", "ts", "model", "version", "rows", "inputs", "outputs", "input_hash")

REJECT_REASONS = {
    "malformed": "the line is not JSON (or not UTF-8)",
    "not_object": "the line is JSON but not an object",
    "missing_field": f"a field of {', '.join(FIELDS)} is absent",
    "bad_field": "a field has the wrong type: ts not a finite number, rows not a positive integer, "
    "inputs not an object of lists of `rows` values, outputs not a list, version not a safe name",
    "wrong_model": "the record is for another model than the monitor's --model",
    "unknown_column": "an input column the reference does not have",
    "missing_column": "a reference column the inputs do not have",
    "wrong_type": "a value whose type does not fit its reference column (text in a numeric column, "
    "a list or object where the reference has scalars)",
    "bad_timestamp": "ts more than an hour in the future or older than the retention",
    "store_error": "the store could not write the batch (disk full, read-only): nothing of it was "
    "stored and the sender got a 503",
}
"""Reject reason -> what it means (the ``reason`` label of ``model_monitor_rejected_total``)."""

PREDICTION_COLUMNS = ("prediction", "target")
"""Reference columns that are not model inputs: the first present is the reference's outputs
(for prediction drift); all are left out of the feature columns."""

VERSION_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Record:
    id: str
    ts: float
    model: str
    version: str
    rows: int
    inputs: dict[str, list[Any]]
    outputs: list[Any]
    input_hash: str

    def to_json(self) -> str:
        """The record as one JSON line (without the newline)."""
        # not dataclasses.asdict: it deep-copies every value (10x slower for a 30-column record)
        obj = {
            "id": self.id, "ts": self.ts, "model": self.model, "version": self.version, "rows": self.rows,
            "inputs": self.inputs, "outputs": self.outputs, "input_hash": self.input_hash,
        }  # fmt: skip
        return json.dumps(obj, separators=(",", ":"), default=str)


class RejectError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_lines(body: bytes, model: str) -> tuple[list[Record], collections.Counter[str]]:
    """The records of a JSON-lines body for ``model`` and a Counter of reject reasons.

    Blank lines are skipped. Only the record envelope is checked here; ``check`` compares inputs
    with the reference's columns."""
    records: list[Record] = []
    rejects: collections.Counter[str] = collections.Counter()
    for raw in body.split(b"\n"):
        if not raw.strip():
            continue
        try:
            records.append(_parse_one(raw, model))
        except RejectError as r:
            rejects[r.reason] += 1
        except (TypeError, ValueError, OverflowError):  # a value no check above foresaw: one line lost
            rejects["malformed"] += 1
    return records, rejects


def parse_record(obj: dict[str, Any]) -> Record:
    """A Record from a decoded object (the store reads its own lines back with this)."""
    return _record(obj)


def _parse_one(raw: bytes, model: str) -> Record:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise RejectError("malformed") from None
    if not isinstance(obj, dict):
        raise RejectError("not_object")
    missing = [f for f in FIELDS if f not in obj]
    if missing:
        raise RejectError("missing_field")
    record = _record(obj)
    if record.model != model:
        raise RejectError("wrong_model")
    return record


def _finite(ts: int | float) -> bool:
    """A timestamp a float holds: a JSON integer of 400 digits overflows ``math.isfinite``."""
    try:
        return math.isfinite(ts) and abs(ts) < 1e12
    except OverflowError:
        return False


def _record(obj: dict[str, Any]) -> Record:
    try:
        rid, ts, model, version = obj["id"], obj["ts"], obj["model"], obj["version"]
        rows, inputs, outputs, input_hash = obj["rows"], obj["inputs"], obj["outputs"], obj["input_hash"]
    except KeyError:
        raise RejectError("missing_field") from None
    if (
        not isinstance(rid, str)
        or not isinstance(model, str)
        or not isinstance(input_hash, str)
        or isinstance(ts, bool)
        or not isinstance(ts, (int, float))
        or not _finite(ts)
        or isinstance(rows, bool)
        or not isinstance(rows, int)
        or rows < 1
        or not isinstance(inputs, dict)
        or not inputs
        or not isinstance(outputs, list)
    ):
        raise RejectError("bad_field")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise RejectError("bad_field")
    for values in inputs.values():
        if not isinstance(values, list) or len(values) != rows:
            raise RejectError("bad_field")
    return Record(rid, float(ts), model, version, rows, inputs, outputs, input_hash)


# --- the reference's columns -------------------------------------------------------------------

NUMERIC, CATEGORICAL = "numeric", "categorical"


@dataclass(frozen=True)
class Schema:
    """The reference's feature columns and their kinds, and its outputs column if any."""

    columns: dict[str, str]  # column -> NUMERIC | CATEGORICAL
    prediction: str | None = None

    @property
    def features(self) -> list[str]:
        return list(self.columns)


def schema_of(reference: Any) -> Schema:
    """The Schema of a reference DataFrame: numeric dtypes (not bool) are NUMERIC, the rest
    CATEGORICAL; ``prediction`` / ``target`` columns are outputs, not features."""
    import pandas as pd

    prediction = next((c for c in PREDICTION_COLUMNS if c in reference.columns), None)
    columns: dict[str, str] = {}
    for name in reference.columns:
        if name in PREDICTION_COLUMNS:
            continue
        dtype = reference[name].dtype
        numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        columns[str(name)] = NUMERIC if numeric else CATEGORICAL
    return Schema(columns, prediction)


def check(records: list[Record], schema: Schema) -> tuple[list[Record], collections.Counter[str]]:
    """The records whose inputs fit the reference's columns, and the reasons of the others."""
    ok: list[Record] = []
    rejects: collections.Counter[str] = collections.Counter()
    for record in records:
        reason = _check_one(record, schema)
        if reason is None:
            ok.append(record)
        else:
            rejects[reason] += 1
    return ok, rejects


def _check_one(record: Record, schema: Schema) -> str | None:
    for name in record.inputs:
        if name not in schema.columns:
            return "unknown_column"
    for name, kind in schema.columns.items():
        values = record.inputs.get(name)
        if values is None:
            return "missing_column"
        for v in values:
            if v is None:
                continue
            if isinstance(v, (list, dict)):
                return "wrong_type"
            if kind == NUMERIC and (isinstance(v, str) or not isinstance(v, (int, float))):
                return "wrong_type"
    return None


# --- frames -------------------------------------------------------------------------------------


def frame(records: list[Record], columns: list[str]) -> tuple[Any, Any]:
    """The inputs of ``records`` as one DataFrame (``columns``, one row per captured row; a column
    a record lacks is null) and their outputs as one Series (one value per row; null where a
    record's outputs do not have one per row)."""
    import pandas as pd

    data: dict[str, list[Any]] = {c: [] for c in columns}
    outputs: list[Any] = []
    for record in records:
        for c in columns:
            values = record.inputs.get(c)
            data[c].extend(values if values is not None else [None] * record.rows)
        if len(record.outputs) == record.rows:
            outputs.extend(record.outputs)
        else:
            outputs.extend([None] * record.rows)
    return pd.DataFrame(data, columns=columns), pd.Series(outputs, dtype=object, name="prediction")
