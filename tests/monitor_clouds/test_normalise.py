"""The cloud capture normalisers on records in each cloud's documented format (data/README.md):
CSV, base64 and JSON bodies, batched events, payloads in blobs, other deployed models."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd
import pytest

from monitor.normalise import azureml, body, sagemaker, vertex

DATA = Path(__file__).parent / "data"
SM_FILE = DATA / "sagemaker/capture/iris-prod/stable/2025/12/02/08/2025-12-02T08-10-00-000-3b1f.jsonl"
AZ = DATA / "azureml/modelDataCollector/iris-prod/iris-v3"
VX_FILE = DATA / "vertex/request_response_logging.jsonl"

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# The four rows the three sample requests carry, in every format.
EXPECTED = pd.DataFrame(
    [[5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2], [6.7, 3.1, 4.4, 1.4], [6.3, 3.3, 6.0, 2.5]], columns=COLUMNS
)
EXPECTED_OUTPUTS = [0, 0, 1, 2]


def frame(records: list[dict]) -> tuple[pd.DataFrame, list]:
    """Rows of the records' inputs (the columns in ``COLUMNS`` order) and their outputs."""
    parts = [pd.DataFrame({c: r["inputs"][c] for c in COLUMNS}) for r in records]
    outputs = [o for r in records for o in r["outputs"]]
    return pd.concat(parts, ignore_index=True), outputs


def kubernetes_record(rows: list[list[float]]) -> dict:
    """What the serving runtime captures on Kubernetes for a dataframe_split request of ``rows``."""
    from mlflow.pyfunc import scoring_server as ss

    from serving.capture import encode_record

    data = ss.infer_and_parse_data({"dataframe_split": {"columns": COLUMNS, "data": rows}})
    return json.loads(encode_record("k", 0.0, "iris", "3", data, '{"predictions": []}', len(rows)))


def sagemaker_records():
    return sagemaker.normalise(SM_FILE.open("rb"), model="iris", version="3")


def azure_records():
    return azureml.normalise(
        (AZ / "request/2025/12/02/08/0a1b2c3d.jsonl").open("rb"),
        (AZ / "response/2025/12/02/08/0a1b2c3d.jsonl").open("rb"),
        model="iris",
        version="3",
    )


def vertex_records():
    rows = [json.loads(line) for line in VX_FILE.read_text().splitlines()]
    return vertex.normalise(rows, model="iris", versions={"1000000003": "3"})


@pytest.mark.parametrize(
    "read", [sagemaker_records, azure_records, vertex_records], ids=["sagemaker", "azureml", "vertex"]
)
def test_every_format_gives_the_same_dataframe_and_outputs(read):
    records, _ = read()
    df, outputs = frame(records)
    pd.testing.assert_frame_equal(df, EXPECTED)
    assert outputs == EXPECTED_OUTPUTS
    assert [r["rows"] for r in records] == [2, 1, 1]
    assert {r["model"] for r in records} == {"iris"} and {r["version"] for r in records} == {"3"}


@pytest.mark.parametrize(
    "read", [sagemaker_records, azure_records, vertex_records], ids=["sagemaker", "azureml", "vertex"]
)
def test_records_match_what_kubernetes_capture_sends_for_the_same_rows(read):
    """Same inputs and same input_hash as the serving runtime's capture: drift and shadow pairing
    see cloud traffic exactly as they see Kubernetes traffic."""
    records, _ = read()
    for record, rows in zip(
        records,
        [EXPECTED.values[:2].tolist(), EXPECTED.values[2:3].tolist(), EXPECTED.values[3:].tolist()],
        strict=True,
    ):
        k8s = kubernetes_record(rows)
        assert record["inputs"] == k8s["inputs"]
        assert record["input_hash"] == k8s["input_hash"]


def test_sagemaker_reads_csv_base64_and_json_bodies_and_counts_bad_lines():
    records, rejects = sagemaker_records()
    assert [r["id"] for r in records] == [
        "6f0bb3e6-6c1c-4a8f-9d0c-2a1d1e0b0001",  # eventId when there is no inferenceId
        "6f0bb3e6-6c1c-4a8f-9d0c-2a1d1e0b0002",
        "req-3",  # inferenceId wins
    ]
    assert records[1]["ts"] == pytest.approx(1764663600.25)
    assert rejects == {"malformed_line": 1, "no_input": 1}


def test_sagemaker_base64_that_is_not_base64_is_counted():
    event = {
        "captureData": {
            "endpointInput": {"observedContentType": "application/json", "data": "%%%", "encoding": "BASE64"}
        },
        "eventMetadata": {"eventId": "e", "inferenceTime": "2025-12-02T08:00:00Z"},
    }
    records, rejects = sagemaker.normalise([json.dumps(event)], model="iris", version="3")
    assert records == [] and rejects == {"bad_base64": 1}


def test_sagemaker_request_the_server_would_refuse_is_counted_not_raised():
    body_ = base64.b64encode(b'{"columns": ["a"], "data": [[1]]}').decode()  # MLflow 1.x format: refused
    event = {
        "captureData": {
            "endpointInput": {"observedContentType": "application/json", "data": body_, "encoding": "BASE64"}
        },
        "eventMetadata": {"eventId": "e", "inferenceTime": "2025-12-02T08:00:00Z"},
    }
    records, rejects = sagemaker.normalise([json.dumps(event)], model="iris", version="3")
    assert records == [] and rejects == {"unparsable_request": 1}


def test_sagemaker_location_is_endpoint_and_variant():
    key = "capture/iris-prod/candidate/2025/12/02/08/2025-12-02T08-10-00-000-3b1f.jsonl"
    assert sagemaker.location(key) == ("iris-prod", "candidate")
    assert sagemaker.location("capture/iris-prod/candidate/notes.txt") is None


def test_azure_joins_responses_by_correlation_id_and_skips_blob_payloads():
    records, rejects = azure_records()
    assert [r["id"] for r in records] == ["c1", "c2", "c3"]
    assert rejects == {"payload_in_blob": 1}
    assert azureml.location(str(AZ / "request/2025/12/02/08/0a1b2c3d.jsonl")) == ("iris-prod", "iris-v3", "request")


def test_azure_batched_custom_logging_event_is_one_record_with_all_rows():
    records, rejects = azureml.normalise(
        (AZ / "model_inputs/2025/12/02/08/5e6f.jsonl").open(), model="iris", version="3"
    )
    assert not rejects
    assert len(records) == 1 and records[0]["rows"] == 4
    df, _ = frame(records)
    pd.testing.assert_frame_equal(df, EXPECTED)


def test_azure_batched_payloads_become_one_record_per_request():
    split = {"dataframe_split": {"columns": COLUMNS, "data": EXPECTED.values[:2].tolist()}}
    recs = {"dataframe_records": [dict(zip(COLUMNS, EXPECTED.values[3].tolist(), strict=True))]}
    event = {
        "type": "azureml.inference.request",
        "time": "2025-12-02T08:00:00Z",
        "correlationid": "b",
        "data": [split, recs],
    }
    records, _ = azureml.normalise([json.dumps(event)], model="iris", version="3")
    assert [r["id"] for r in records] == ["b#0", "b#1"]
    assert [r["rows"] for r in records] == [2, 1]


def test_vertex_counts_rows_of_other_deployed_models_and_bad_payloads():
    records, rejects = vertex_records()
    assert len(records) == 3 and rejects == {"unknown_deployed_model": 1}
    bad = {"deployed_model_id": "1", "logging_time": "2025-12-02 08:00:00 UTC", "request_payload": ["{not json"]}
    assert vertex.normalise([bad], model="iris", versions={"1": "3"})[1] == {"bad_request_payload": 1}


@pytest.mark.parametrize(
    ("payload", "ctype"),
    [
        (b"sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n", "text/csv"),
        (
            b'{"dataframe_split": {"columns": ["sepal_length","sepal_width","petal_length","petal_width"],'
            b' "data": [[5.1,3.5,1.4,0.2]]}}',
            "application/json",
        ),
        (
            b'{"dataframe_records": [{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}',
            "application/json; charset=utf-8",
        ),
        (
            b'{"inputs": {"sepal_length":[5.1],"sepal_width":[3.5],"petal_length":[1.4],"petal_width":[0.2]}}',
            "application/json",
        ),
    ],
    ids=["csv", "dataframe_split", "dataframe_records", "inputs"],
)
def test_every_mlflow_request_format_gives_the_same_inputs(payload, ctype):
    data = body.parse_request(payload, ctype)
    record = body.make_record("r", 0.0, "iris", "3", data, [0])
    assert record["inputs"] == {
        "sepal_length": [5.1],
        "sepal_width": [3.5],
        "petal_length": [1.4],
        "petal_width": [0.2],
    }


def test_parquet_body_is_read_like_the_server_reads_it():
    import io

    buf = io.BytesIO()
    EXPECTED.to_parquet(buf)
    data = body.parse_request(buf.getvalue(), "application/vnd.apache.parquet")
    pd.testing.assert_frame_equal(data, EXPECTED)


def test_unsupported_content_type_is_a_reason():
    with pytest.raises(body.NormaliseError) as err:
        body.parse_request(b"x", "image/png")
    assert err.value.reason == "unsupported_content_type"


def test_responses_in_each_shape():
    assert body.parse_response('{"predictions": [1, 2]}') == [1, 2]
    assert body.parse_response("[1, 2]") == [1, 2]
    assert body.parse_response("0.5\n1.5\n", "text/csv; charset=utf-8") == [0.5, 1.5]
    assert body.parse_response('{"predictions": {"a": [1, 2], "b": [3, 4]}}') == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
