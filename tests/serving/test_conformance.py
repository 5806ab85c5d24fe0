"""Conformance of ``POST /invocations`` with MLflow's own scoring app, byte for byte.

A table of requests (every input format, ``params``, unicode, NaN, a large body, every error
case) is replayed against MLflow's app (``scoring_server.init``, in-process through Starlette's
test client: the reference, computed here, never copied) and against the runtime on loopback,
once as it ships and once with adaptive batching on. With batching the requests of a case are
sent concurrently, so they are merged into shared ``predict`` calls (the test checks that merged
batches happened) and each must still get exactly MLflow's answer to it alone.

Compared: the status, the ``Content-Type`` and the body bytes. One thing is normalised, about
the process, not the request: the order of a Python set printed in a message (it depends on the process' hash seed). A
``stack_trace`` MLflow puts in some 400 bodies is left out of the comparison: the runtime never
sends one (documented; it logs it) unless ``SERVING_DEBUG=1``.
The runtime's documented departures from MLflow (500 for a model that raises, 413, the JSON
depth limit) are checked against what the runtime documents, and MLflow's answer to them is
asserted too, so a change on either side shows.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from serving.local import LocalServer
from tests.serving.conftest import SERVER_ENV, IrisModel
from tests.serving.helpers import metric, parse_metrics

CONCURRENT = 8  # copies of each request sent at once to the batching server
JSON = "application/json"
COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def _split(frame: Any) -> dict[str, Any]:
    split = json.loads(frame.to_json(orient="split"))
    del split["index"]
    return split


def _rows(rows: list[list[Any]]) -> bytes:
    return json.dumps({"dataframe_split": {"columns": COLUMNS, "data": rows}}).encode()


def requests_table(iris: IrisModel) -> dict[str, tuple[str, bytes]]:
    """name -> (content type, body)."""
    table: dict[str, tuple[str, bytes]] = {}
    for rows in (1, 7):
        frame = iris.features.iloc[[(i * 21) % 150 for i in range(rows)]]
        records = frame.to_dict(orient="records")
        columns = {name: frame[name].tolist() for name in frame.columns}
        parquet = io.BytesIO()
        frame.to_parquet(parquet)
        table |= {
            f"split_{rows}": (JSON, json.dumps({"dataframe_split": _split(frame)}).encode()),
            f"records_{rows}": (JSON, json.dumps({"dataframe_records": records}).encode()),
            f"instances_{rows}": (JSON, json.dumps({"instances": records}).encode()),
            f"inputs_records_{rows}": (JSON, json.dumps({"inputs": records}).encode()),
            f"inputs_columns_{rows}": (JSON, json.dumps({"inputs": columns}).encode()),
            f"csv_{rows}": ("text/csv", frame.to_csv(index=False).encode()),
            f"csv_charset_{rows}": ("text/csv; charset=utf-8", frame.to_csv(index=False).encode()),
            f"parquet_{rows}": ("application/vnd.apache.parquet", parquet.getvalue()),
            f"params_{rows}": (JSON, json.dumps({"dataframe_split": _split(frame), "params": {"x": 1}}).encode()),
        }
    big = iris.features.sample(n=5000, replace=True, random_state=0)
    table["split_5000_rows"] = (JSON, json.dumps({"dataframe_split": _split(big)}).encode())
    table["records_spaced_unicode_escapes"] = (
        JSON,
        b'{ "dataframe_records" : [ {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, '
        b'"petal length (cm)": 1.4, "petal width (cm)": 0.2, "note \\u00e9": "caf\\u00e9"} ] }',
    )
    one = [5.1, 3.5, 1.4, 0.2]
    table |= {
        # errors MLflow answers itself; the runtime must answer the same bytes
        "legacy_columns_data": (JSON, json.dumps({"columns": COLUMNS, "data": [one]}).encode()),
        "not_json": (JSON, b"{not json"),
        "empty_body": (JSON, b""),
        "json_list": (JSON, b"[1, 2, 3]"),
        "json_string": (JSON, b'"dataframe_split"'),
        "two_formats": (JSON, json.dumps({"instances": [], "inputs": []}).encode()),
        "unknown_key": (JSON, json.dumps({"dataframe": [one]}).encode()),
        "wrong_columns_unicode": (JSON, json.dumps({"dataframe_records": [{"é": 1, "列": 2}]}).encode()),
        "missing_column": (JSON, json.dumps({"dataframe_split": {"columns": COLUMNS[:3], "data": [one[:3]]}}).encode()),
        "string_in_a_double_column": (
            JSON,
            json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [["abc", 3.5, 1.4, 0.2]]}}).encode(),
        ),
        # serving.fastpath: what it takes (ints in double columns) and what it leaves to MLflow
        "split_ints": (JSON, _rows([[5, 3, 1, 0]])),
        "split_bool": (JSON, _rows([[True, 3.5, 1.4, 0.2]])),
        "split_columns_reordered": (
            JSON,
            json.dumps({"dataframe_split": {"columns": COLUMNS[::-1], "data": [one[::-1]]}}).encode(),
        ),
        "split_rows_of_other_length": (
            JSON,
            json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [[1.0, 2.0]]}}).encode(),
        ),
        "unsupported_type": ("text/plain", b"hello"),
        "latin1_charset": ("application/json; charset=latin-1", b"{}"),
        "unknown_ct_param": ("application/json; format=pandas-split", b"{}"),
        "bad_csv": ("text/csv", b"\x00\x01\xff"),
        "bad_parquet": ("application/vnd.apache.parquet", b"PAR1 not parquet"),
        "params_not_a_dict": (
            JSON,
            json.dumps({"dataframe_split": _split(iris.features.head(1)), "params": [1]}).encode(),
        ),
    }
    return table


# The runtime's documented departures from MLflow (docs/performance.md, serving.invocations):
# NaN reaches the model, whose predict raises: MLflow answers 400 (hiding the model failure from
# 5xx alerts), the runtime 500 INTERNAL_ERROR with MLflow's message.
MODEL_FAILED = (
    "Encountered an unexpected error while evaluating the model. Verify that the serialized "
    "input Dataframe is compatible with the model for inference."
)
NAN_BODY = b'{"dataframe_split": {"columns": ' + json.dumps(COLUMNS).encode() + b', "data": [[NaN, 3.5, 1.4, 0.2]]}}'


_SET_REPR = re.compile(r"\{('[^{}]*')\}")
_EXTRA = re.compile(r"extra inputs: \[([^\]]*)\]")  # a list made from a set


def normalised(body: bytes, content_type: str) -> bytes:
    """The body without what depends on the process rather than the request."""
    if not content_type.startswith(JSON):
        return body
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if not isinstance(payload, dict):
        return body
    # MLflow puts a stack trace in some 400 bodies; the runtime never does (documented:
    # traces go to its log, unless SERVING_DEBUG=1)
    payload.pop("stack_trace", None)
    text = json.dumps(payload)  # the same key order and separators as MLflow's json.dumps

    def sort(match: re.Match[str]) -> str:
        start, end = match.span(1)
        whole = match.group(0)
        items = sorted(match.group(1).split(", "))
        return whole[: start - match.start()] + ", ".join(items) + whole[end - match.start() :]

    return _EXTRA.sub(sort, _SET_REPR.sub(sort, text)).encode()


@pytest.fixture(scope="module")
def reference(mlflow_client: Any, iris_model: IrisModel) -> dict[str, tuple[int, str, bytes]]:
    """MLflow's answer to every request of the table: (status, content type, normalised body)."""
    out = {}
    for name, (content_type, body) in requests_table(iris_model).items():
        r = mlflow_client.post("/invocations", content=body, headers={"content-type": content_type})
        ct = r.headers["content-type"]
        out[name] = (r.status_code, ct, normalised(r.content, ct))
    return out


@pytest.fixture(scope="module", params=["lean", "batching"])
def server(request: pytest.FixtureRequest, iris_model: IrisModel) -> Iterator[tuple[str, LocalServer]]:
    env = {**SERVER_ENV}
    if request.param == "batching":
        # a long wait: requests sent together reliably meet in one batch on this busy machine
        env |= {"SERVING_BATCH_MAX_SIZE": "16", "SERVING_BATCH_MAX_WAIT_MS": "50"}
    srv = LocalServer(iris_model.path, workers=2, env=env)
    srv.start(startup_timeout=180)
    try:
        yield request.param, srv
    finally:
        srv.stop(grace=20)


def _post(client: httpx.Client, content_type: str, body: bytes) -> httpx.Response:
    return client.post("/invocations", content=body, headers={"content-type": content_type})


def test_every_request_gets_mlflows_answer(
    server: tuple[str, LocalServer], reference: dict[str, tuple[int, str, bytes]], iris_model: IrisModel
) -> None:
    mode, srv = server
    table = requests_table(iris_model)
    assert {status for status, _, _ in reference.values()} >= {200, 400, 415}
    copies = CONCURRENT if mode == "batching" else 1
    mismatches = []
    with httpx.Client(base_url=srv.url, timeout=60) as client, ThreadPoolExecutor(CONCURRENT) as pool:
        for name, (content_type, body) in table.items():
            answers = list(pool.map(_post, [client] * copies, [content_type] * copies, [body] * copies))
            for r in answers:
                ct = r.headers["content-type"]
                got = (r.status_code, ct, normalised(r.content, ct))
                if got != reference[name]:
                    mismatches.append((name, got, reference[name]))
                assert r.headers["x-request-id"]
    assert not mismatches, "\n".join(f"{n}:\n ours   {g}\n mlflow {w}" for n, g, w in mismatches[:3])
    if mode == "batching":
        samples = parse_metrics(httpx.get(f"{srv.metrics_url}/metrics", timeout=30).text)
        calls = metric(samples, "model_batch_size_count")
        requests = metric(samples, "model_batch_size_sum")
        # merged predict calls happened: fewer calls than requests that reached predict
        assert calls > 0 and requests > calls, (calls, requests)


def test_a_mix_of_good_and_bad_requests_sent_together(
    server: tuple[str, LocalServer], reference: dict[str, tuple[int, str, bytes]], iris_model: IrisModel
) -> None:
    """Requests that share a batch (same columns) but one of which fails schema enforcement, and
    row counts that differ: each gets its own answer, in its own order."""
    _, srv = server
    table = requests_table(iris_model)
    mix = ["split_1", "string_in_a_double_column", "split_7", "records_7", "split_5000_rows", "records_1"] * 3
    with httpx.Client(base_url=srv.url, timeout=60) as client, ThreadPoolExecutor(len(mix)) as pool:
        answers = list(pool.map(lambda name: _post(client, *table[name]), mix))
    for name, r in zip(mix, answers, strict=True):
        ct = r.headers["content-type"]
        assert (r.status_code, ct, normalised(r.content, ct)) == reference[name], name


def test_documented_departure_a_model_that_raises_is_500(server: tuple[str, LocalServer], mlflow_client: Any) -> None:
    _, srv = server
    theirs = mlflow_client.post("/invocations", content=NAN_BODY, headers={"content-type": JSON})
    assert theirs.status_code == 400 and theirs.json()["message"] == MODEL_FAILED
    with httpx.Client(base_url=srv.url, timeout=60) as client:
        ours = _post(client, JSON, NAN_BODY)
    assert ours.status_code == 500
    assert ours.content == json.dumps({"error_code": "INTERNAL_ERROR", "message": MODEL_FAILED}).encode()
