"""Vertex AI request-response logging (BigQuery rows) -> capture records.

An endpoint's ``predictRequestResponseLoggingConfig`` (``enabled``, ``samplingRate``,
``bigqueryDestination.outputUri = bq://project.dataset.table``) makes Vertex AI write a sample of
online predictions to that table (Vertex AI docs, "Online prediction logging" -> "Request-response
logging", https://cloud.google.com/vertex-ai/docs/predictions/online-prediction-logging). One row
per request, schema:

    endpoint STRING, deployed_model_id STRING, logging_time TIMESTAMP, request_id NUMERIC,
    request_payload ARRAY<STRING>, response_payload ARRAY<STRING>

``request_payload`` holds the request's ``instances``, one JSON string each; ``response_payload``
the ``predictions``, one JSON string each. The request Vertex received was
``{"instances": [...]}``: it is rebuilt and parsed by MLflow's parser as the model server parsed
it (the serving runtime accepts Vertex's ``instances`` body as MLflow's ``instances`` format).

``deployed_model_id`` decides the version: ``versions`` maps deployed model ID -> model version
(the stack's ``deployedModels`` output; the IDs are deterministic, see components/vertex.py).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Mapping
from typing import Any

from monitor.normalise.body import NormaliseError, make_record, parse_request
from monitor.normalise.common import parse_time

COLUMNS = ("endpoint", "deployed_model_id", "logging_time", "request_id", "request_payload", "response_payload")


def _json_items(values: Any, reason: str) -> list[Any]:
    if not isinstance(values, (list, tuple)):
        raise NormaliseError(reason, "not an array")
    try:
        return [json.loads(v) if isinstance(v, str) else v for v in values]
    except ValueError:
        raise NormaliseError(reason, "an element is not JSON") from None


def record(row: Mapping[str, Any], *, model: str, version: str, schema: Any = None) -> dict[str, Any]:
    instances = _json_items(row.get("request_payload"), "bad_request_payload")
    if not instances:
        raise NormaliseError("bad_request_payload", "empty")
    if len(instances) == 1 and isinstance(instances[0], dict) and "instances" in instances[0]:
        body = instances[0]  # the whole body logged as one element
    else:
        body = {"instances": instances}
    data = parse_request(body, "application/json", schema)
    outputs = _json_items(row.get("response_payload") or [], "bad_response_payload")
    if len(outputs) == 1 and isinstance(outputs[0], dict) and "predictions" in outputs[0]:
        outputs = list(outputs[0]["predictions"])
    try:
        ts = parse_time(row["logging_time"])
    except (KeyError, TypeError, ValueError):
        raise NormaliseError("bad_row", "no logging_time") from None
    return make_record(str(row.get("request_id") or ""), ts, model, version, data, outputs)


def normalise(
    rows: Iterable[Mapping[str, Any]], *, model: str, versions: Mapping[str, str], schema: Any = None
) -> tuple[list[dict[str, Any]], collections.Counter[str]]:
    """Capture records of the rows whose ``deployed_model_id`` is one of ``versions``' keys; rows
    of other deployed models count as ``unknown_deployed_model``."""
    rejects: collections.Counter[str] = collections.Counter()
    out: list[dict[str, Any]] = []
    for row in rows:
        version = versions.get(str(row.get("deployed_model_id", "")))
        if version is None:
            rejects["unknown_deployed_model"] += 1
            continue
        try:
            out.append(record(row, model=model, version=version, schema=schema))
        except NormaliseError as exc:
            rejects[exc.reason] += 1
    return out, rejects
