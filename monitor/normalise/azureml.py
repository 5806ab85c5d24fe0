"""Azure ML online deployment data collection -> capture records.

Where and what (Azure Machine Learning docs, "Collect production data from models deployed for
real-time inferencing", sections "Enable payload logging", "Store collected data in Blob
Storage" and "Data collector batching",
https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data):

    azureml://datastores/workspaceblobstore/paths/modelDataCollector/
        <endpoint>/<deployment>/<collection>/yyyy/MM/dd/HH/<instance_id>.jsonl

one CloudEvents object per line. Payload logging (the reserved collections ``request`` and
``response``) records the HTTP bodies::

    {"specversion": "1.0", "id": "...", "source": ".../onlineEndpoints/<ep>/deployments/<dep>",
     "type": "azureml.inference.request", "datacontenttype": "application/json",
     "time": "2022-05-25T08:59:48Z", "data": {...the request body...}, "path": "/score",
     "method": "POST", "contentrange": "bytes 0-59/*", "correlationid": "...", "xrequestid": "..."}

and the response with ``"type": "azureml.inference.response"`` and the same ``correlationid``.
A JSON body is embedded as JSON; another content type (``text/csv``) as a string. Custom logging
collections (``model_inputs`` / ``model_outputs``, what Azure's MLflow auto-instrumentation
writes) hold DataFrame rows, ``"data": [{col: value, ...}, ...]``; requests sent close together
are *batched* into one event (several rows, one ``correlationid``). A payload above 4 MB or a
binary one is stored beside the file and the event only points at it (``"datainblob": "true"``):
it is counted as ``payload_in_blob`` and skipped.

The deployment (a path segment) decides the version: ``versions`` maps deployment name ->
model version (the stack's ``deployments`` output).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

from monitor.normalise.body import NormaliseError, make_record, parse_request, parse_response
from monitor.normalise.common import hour_of, json_lines, parse_time

REQUEST_COLLECTIONS = ("request", "model_inputs")
RESPONSE_COLLECTIONS = ("response", "model_outputs")


def location(path: str) -> tuple[str, str, str] | None:
    """``(endpoint, deployment, collection)`` of ``.../<ep>/<dep>/<collection>/yyyy/MM/dd/HH/<f>``."""
    parts = path.strip("/").split("/")
    if len(parts) < 8 or hour_of(parts[-5:-1]) is None:
        return None
    return parts[-8], parts[-7], parts[-6]


def _correlation(event: dict[str, Any]) -> str:
    return str(event.get("correlationid") or event.get("xrequestid") or event.get("id") or "")


def _request_inputs(event: dict[str, Any], schema: Any) -> list[Any]:
    """The parsed inputs of one request event: one per request it holds (batched events hold several)."""
    if str(event.get("datainblob", "")).lower() == "true":
        raise NormaliseError("payload_in_blob")
    data = event.get("data")
    ctype = event.get("datacontenttype") or "application/json"
    if str(event.get("type", "")).endswith("model_inputs") or (
        isinstance(data, list) and all(isinstance(r, dict) for r in data) and not _wrapped(data)
    ):
        # custom logging: DataFrame rows (orient="records"); MLflow's parser reads them as such
        return [parse_request({"dataframe_records": data}, "application/json", schema)]
    if isinstance(data, list) and _wrapped(data):  # batched payloads
        return [parse_request(body, "application/json", schema) for body in data]
    if isinstance(data, dict):
        return [parse_request(data, ctype, schema)]
    if isinstance(data, str):
        return [parse_request(data.encode("utf-8"), ctype, schema)]
    raise NormaliseError("bad_event", "no data")


def _wrapped(data: list[Any]) -> bool:
    from mlflow.pyfunc.scoring_server import SUPPORTED_FORMATS

    return bool(data) and all(isinstance(b, dict) and set(b) & SUPPORTED_FORMATS for b in data)


def _response_outputs(event: dict[str, Any]) -> list[Any]:
    data = event.get("data")
    ctype = event.get("datacontenttype") or "application/json"
    if isinstance(data, str) and ctype.split(";")[0].strip() != "application/json":
        return parse_response(data, ctype)
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data) and "predictions" not in data[0]:
        # custom logging of the outputs frame: one row per prediction; a single column is the value
        return [next(iter(r.values())) if len(r) == 1 else r for r in data]
    return parse_response(data, "application/json")


def normalise(
    requests: Iterable[bytes | str],
    responses: Iterable[bytes | str] = (),
    *,
    model: str,
    version: str,
    schema: Any = None,
) -> tuple[list[dict[str, Any]], collections.Counter[str]]:
    """The capture records of one deployment's request and response collections (their lines, in
    any order; responses are joined to requests by ``correlationid``)."""
    rejects: collections.Counter[str] = collections.Counter()
    outputs: dict[str, list[Any]] = {}
    for event in json_lines(responses, rejects):
        try:
            outputs.setdefault(_correlation(event), []).extend(_response_outputs(event))
        except NormaliseError as exc:
            rejects[exc.reason] += 1
    out: list[dict[str, Any]] = []
    for event in json_lines(requests, rejects):
        try:
            ts = parse_time(event.get("time"))
        except (TypeError, ValueError):
            rejects["bad_event"] += 1
            continue
        cid = _correlation(event)
        try:
            parsed = _request_inputs(event, schema)
        except NormaliseError as exc:
            rejects[exc.reason] += 1
            continue
        answer = outputs.get(cid)
        for i, data in enumerate(parsed):
            rid = cid if len(parsed) == 1 else f"{cid}#{i}"
            mine = answer if len(parsed) == 1 else None  # a batched event's answers cannot be split safely
            out.append(make_record(rid, ts, model, version, data, mine))
    return out, rejects
