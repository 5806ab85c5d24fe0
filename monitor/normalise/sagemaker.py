"""SageMaker data capture -> capture records.

Where and what (Amazon SageMaker developer guide, "Data capture",
https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-data-capture.html, and the capture
file sample in "View Data Capture data": one JSON object per line):

    s3://<DestinationS3Uri>/<EndpointName>/<VariantName>/yyyy/mm/dd/hh/<file>.jsonl

    {"captureData": {
        "endpointInput":  {"observedContentType": "text/csv", "mode": "INPUT",
                           "data": "5.1,3.5,1.4,0.2", "encoding": "CSV"},
        "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                           "data": "{\"predictions\": [0]}", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceId": "<optional, X-Amzn-SageMaker-Inference-Id>",
                       "inferenceTime": "2022-02-14T17:25:49Z"},
     "eventVersion": "0"}

``encoding`` is ``CSV`` or ``JSON`` when the observed content type is one of the endpoint's
``CaptureContentTypeHeader`` CSV / JSON types (the data is then the body as text), and
``BASE64`` otherwise (DataCaptureConfig: "If no headers are specified SageMaker AI will by
default base64 encode"). A shadow variant writes under its own ``<VariantName>`` prefix: the
variant decides the version, not the file's content.
"""

from __future__ import annotations

import base64
import binascii
import collections
from collections.abc import Iterable
from typing import Any

from monitor.normalise.body import NormaliseError, make_record, parse_request, parse_response
from monitor.normalise.common import hour_of, json_lines, parse_time


def location(key: str) -> tuple[str, str] | None:
    """``(endpoint, variant)`` of a capture object key ``.../<endpoint>/<variant>/yyyy/mm/dd/hh/f``."""
    parts = key.strip("/").split("/")
    if len(parts) < 7 or hour_of(parts[-5:-1]) is None:
        return None
    return parts[-7], parts[-6]


def decode(side: dict[str, Any]) -> bytes:
    """The body SageMaker captured on one side (``endpointInput`` / ``endpointOutput``)."""
    data = side.get("data")
    if not isinstance(data, str):
        raise NormaliseError("bad_capture", "no data")
    encoding = str(side.get("encoding", "")).upper()
    if encoding == "BASE64":
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise NormaliseError("bad_base64") from None
    if encoding in ("CSV", "JSON"):
        return data.encode("utf-8")
    raise NormaliseError("unknown_encoding", encoding or "(none)")


def record(event: dict[str, Any], *, model: str, version: str, schema: Any = None) -> dict[str, Any]:
    capture = event.get("captureData")
    meta = event.get("eventMetadata") or {}
    if not isinstance(capture, dict) or not isinstance(meta, dict):
        raise NormaliseError("bad_capture", "no captureData")
    request = capture.get("endpointInput")
    if not isinstance(request, dict):
        raise NormaliseError("no_input", "the endpoint captures Output only")
    data = parse_request(decode(request), request.get("observedContentType"), schema)
    outputs = None
    response = capture.get("endpointOutput")
    if isinstance(response, dict):
        outputs = parse_response(decode(response), response.get("observedContentType"))
    request_id = str(meta.get("inferenceId") or meta.get("eventId") or "")
    try:
        ts = parse_time(meta["inferenceTime"])
    except (KeyError, ValueError):
        raise NormaliseError("bad_capture", "no inferenceTime") from None
    return make_record(request_id, ts, model, version, data, outputs)


def normalise(
    lines: Iterable[bytes | str], *, model: str, version: str, schema: Any = None
) -> tuple[list[dict[str, Any]], collections.Counter[str]]:
    """The capture records of one capture file (one variant: ``version`` is that variant's)."""
    rejects: collections.Counter[str] = collections.Counter()
    out: list[dict[str, Any]] = []
    for event in json_lines(lines, rejects):
        try:
            out.append(record(event, model=model, version=version, schema=schema))
        except NormaliseError as exc:
            rejects[exc.reason] += 1
    return out, rejects
