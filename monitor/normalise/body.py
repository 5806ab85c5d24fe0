"""Request and response bodies, parsed the way the MLflow scoring server parses them.

``parse_request`` follows ``mlflow.pyfunc.scoring_server.invocations`` step by step and calls the
same functions: ``text/csv`` -> ``parse_csv_input``; ``application/json`` -> ``_split_data_and_params``
then ``infer_and_parse_data`` (``dataframe_split``, ``dataframe_records``, ``instances``,
``inputs``); ``application/vnd.apache.parquet`` -> ``parse_parquet_input``. With the model's input
schema (``schema=``) the column types are the ones the server enforced; without it pandas infers
them, as the server does for a model without a signature.

``make_record`` builds the capture record with the serving runtime's own functions
(``serving.capture.canonical_inputs`` / ``input_hash``), so a request captured by a cloud and the
same request captured on Kubernetes have the same ``inputs`` and the same ``input_hash``.
"""

from __future__ import annotations

import json
from io import BytesIO, StringIO
from typing import Any

from serving.capture import canonical_inputs, input_hash

JSON_TYPES = ("application/json",)
CSV_TYPES = ("text/csv",)
PARQUET_TYPES = ("application/vnd.apache.parquet",)


class NormaliseError(ValueError):
    """One captured record could not be turned into a capture record; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def mime_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_request(body: bytes | str | dict[str, Any], content_type: str | None, schema: Any = None) -> Any:
    """The model input MLflow's scoring server builds from this request body (a DataFrame, an
    array or a dict of arrays). Raises ``NormaliseError`` where the server would answer 4xx."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server as ss

    mime = mime_type(content_type)
    try:
        if mime in CSV_TYPES:
            text = body.decode("utf-8") if isinstance(body, bytes) else body
            if not isinstance(text, str):
                raise NormaliseError("bad_body", "a CSV body is text")
            return ss.parse_csv_input(csv_input=StringIO(text), schema=schema)
        if mime in JSON_TYPES:
            data, _params = ss._split_data_and_params(body if isinstance(body, dict) else _text(body))
            return ss.infer_and_parse_data(data, schema)
        if mime in PARQUET_TYPES:
            raw = body if isinstance(body, bytes) else None
            if raw is None:
                raise NormaliseError("bad_body", "a parquet body is bytes")
            return ss.parse_parquet_input(parquet_input=BytesIO(raw))
    except MlflowException as exc:
        raise NormaliseError("unparsable_request", exc.message.splitlines()[0][:200]) from None
    except UnicodeDecodeError:
        raise NormaliseError("unparsable_request", "not UTF-8") from None
    raise NormaliseError("unsupported_content_type", mime or "(none)")


def _text(body: bytes | str | dict[str, Any]) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8")
    return body if isinstance(body, str) else json.dumps(body)


def parse_response(body: bytes | str | Any, content_type: str | None = "application/json") -> list[Any]:
    """The predictions of a response body: MLflow's ``{"predictions": [...]}``, a bare JSON list
    (Azure ML's MLflow server answers one), or CSV / newline-separated values (SageMaker's
    ``Accept: text/csv``)."""
    if isinstance(body, (bytes, str)):
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        if mime_type(content_type) in CSV_TYPES:
            return [_scalar(line.strip()) for line in text.splitlines() if line.strip()]
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            raise NormaliseError("unparsable_response", text[:80]) from None
    else:
        parsed = body
    if isinstance(parsed, dict) and "predictions" in parsed:
        parsed = parsed["predictions"]
    if isinstance(parsed, dict):  # a DataFrame-shaped answer: {column: [values]} -> rows
        cols = list(parsed.values())
        if cols and all(isinstance(c, list) for c in cols):
            return [dict(zip(parsed, row, strict=True)) for row in zip(*cols, strict=True)]
        return [parsed]
    return parsed if isinstance(parsed, list) else [parsed]


def _scalar(cell: str) -> Any:
    if "," in cell:
        return [_scalar(c) for c in cell.split(",")]
    try:
        return int(cell)
    except ValueError:
        try:
            return float(cell)
        except ValueError:
            return cell


def rows_of(data: Any) -> int:
    shape = getattr(data, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    if isinstance(data, dict) and data:
        first = next(iter(data.values()))
        return len(first) if hasattr(first, "__len__") else 1
    return len(data) if isinstance(data, list) else 1


def make_record(
    request_id: str, ts: float, model: str, version: str, data: Any, outputs: list[Any] | None
) -> dict[str, Any]:
    """The capture record (the contract's shape, as a dict) of one parsed request."""
    inputs_json = canonical_inputs(data)
    return {
        "id": request_id,
        "ts": round(ts, 6),
        "model": model,
        "version": version,
        "rows": rows_of(data),
        "inputs": json.loads(inputs_json),
        "outputs": list(outputs) if outputs is not None else [],
        "input_hash": input_hash(inputs_json),
    }
