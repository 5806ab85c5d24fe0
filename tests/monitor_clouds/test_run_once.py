"""``run-once`` over local copies of each cloud's capture store.

The drift tests need the monitor's own records/drift/shadow modules (monitor/records.py,
monitor/drift.py); they are skipped where those are not present yet, and run as they are once
they are."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitor import run_once, sources

DATA = Path(__file__).parent / "data"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
NOW = 1764666000.0  # 2025-12-02T09:00:00Z
HOUR = "2025/12/02/08"


def sample(n: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    means, stds = np.array([5.8, 3.0, 3.8, 1.2]), np.array([0.8, 0.4, 1.7, 0.7])
    return pd.DataFrame(np.round(rng.normal(means + shift * stds, stds, size=(n, 4)), 2), columns=COLUMNS)


def requests(df: pd.DataFrame, per: int = 5) -> list[pd.DataFrame]:
    return [df.iloc[i : i + per] for i in range(0, len(df), per)]


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_sagemaker(root: Path, df: pd.DataFrame, variant: str = "stable") -> Path:
    """A data capture prefix of endpoint ``iris-prod``: CSV and base64 JSON bodies alternate."""
    out = root / "iris-prod" / variant / HOUR / "capture.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        for i, part in enumerate(requests(df)):
            if i % 2:
                body = {"dataframe_split": {"columns": COLUMNS, "data": part.values.tolist()}}
                side = {"observedContentType": "application/json", "mode": "INPUT", "encoding": "BASE64"}
                side["data"] = base64.b64encode(json.dumps(body).encode()).decode()
            else:
                side = {
                    "observedContentType": "text/csv",
                    "mode": "INPUT",
                    "encoding": "CSV",
                    "data": part.to_csv(index=False),
                }
            output = {"observedContentType": "application/json", "mode": "OUTPUT", "encoding": "JSON"}
            output["data"] = json.dumps({"predictions": [0] * len(part)})
            meta = {"eventId": f"e{i}", "inferenceTime": iso(NOW - 1800 + i)}
            f.write(
                json.dumps({"captureData": {"endpointInput": side, "endpointOutput": output}, "eventMetadata": meta})
                + "\n"
            )
    return root / "iris-prod"


def write_azureml(root: Path, df: pd.DataFrame) -> Path:
    base = root / "modelDataCollector" / "iris-prod" / "iris-v3"
    for c in ("request", "response"):
        (base / c / HOUR).mkdir(parents=True, exist_ok=True)
    with (
        (base / "request" / HOUR / "a.jsonl").open("w") as req,
        (base / "response" / HOUR / "a.jsonl").open("w") as resp,
    ):
        for i, part in enumerate(requests(df)):
            common = {
                "specversion": "1.0",
                "time": iso(NOW - 1800 + i),
                "correlationid": f"c{i}",
                "xrequestid": f"c{i}",
            }
            if i % 2:
                data: object = part.to_csv(index=False)
                ctype = "text/csv"
            else:
                data, ctype = {"dataframe_records": part.to_dict(orient="records")}, "application/json"
            req.write(
                json.dumps({**common, "type": "azureml.inference.request", "datacontenttype": ctype, "data": data})
                + "\n"
            )
            answer = {"predictions": [0] * len(part)}
            resp.write(
                json.dumps(
                    {
                        **common,
                        "type": "azureml.inference.response",
                        "datacontenttype": "application/json",
                        "data": answer,
                    }
                )
                + "\n"
            )
    return root / "modelDataCollector" / "iris-prod"


def write_vertex(root: Path, df: pd.DataFrame) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    out = root / "rr.jsonl"
    with out.open("w") as f:
        for i, part in enumerate(requests(df)):
            row = {
                "endpoint": "projects/1/locations/europe-west4/endpoints/2",
                "deployed_model_id": "1000000003",
                "logging_time": iso(NOW - 1800 + i).replace("T", " ").replace("Z", " UTC"),
                "request_id": str(i),
                "request_payload": [json.dumps(r) for r in part.to_dict(orient="records")],
                "response_payload": ["0"] * len(part),
            }
            f.write(json.dumps(row) + "\n")
    return out


FORMATS = {
    "sagemaker": (write_sagemaker, "stable=3"),
    "azureml": (write_azureml, "iris-v3=3"),
    "vertex": (write_vertex, "1000000003=3"),
}


def args(source: Path, fmt: str, versions: str, reference: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run-once", "--model", "iris", "--source", str(source), "--format", fmt, "--versions", versions,
        "--reference", str(reference), "--since", "1h", "--until", str(NOW), "--publish", f"fake:{out}", *extra,
    ]  # fmt: skip


def published(out: Path) -> dict[tuple[str, str], float]:
    points = [json.loads(line) for line in out.read_text().splitlines()]
    return {(p["name"], p["labels"].get("version", p["labels"].get("reason", ""))): p["value"] for p in points}


# --------------------------------------------------------------------------- sources


def test_sources_read_only_the_window(tmp_path):
    root = DATA / "sagemaker/capture/iris-prod"
    inside = dt.datetime(2025, 12, 2, 9, tzinfo=dt.UTC).timestamp()
    records, rejects = sources.read(str(root), "sagemaker", "iris", {"stable": "3"}, inside - 3600, inside)
    assert len(records) == 3 and rejects == {"malformed_line": 1, "no_input": 1}
    records, _ = sources.read(str(root), "sagemaker", "iris", {"stable": "3"}, inside - 1900, inside)
    assert [r["id"] for r in records] == ["req-3"]  # from 08:28:20: 08:10 and 08:20 are before the window
    records, _ = sources.read(str(root), "sagemaker", "iris", {"stable": "3"}, inside + 3600, inside + 7200)
    assert records == []


def test_sources_map_variants_and_deployments_to_versions(tmp_path):
    end = dt.datetime(2025, 12, 2, 9, tzinfo=dt.UTC).timestamp()
    records, rejects = sources.read(
        str(DATA / "sagemaker/capture/iris-prod"), "sagemaker", "iris", {"other": "4"}, end - 3600, end
    )
    assert records == [] and rejects == {"unknown_variant": 1}
    az = DATA / "azureml/modelDataCollector/iris-prod"
    records, rejects = sources.read(str(az), "azureml", "iris", {"iris-v3": "3"}, end - 3600, end)
    # payload logging (3 requests, one stored in a blob) and custom logging (one batched event)
    assert sorted(r["id"] for r in records) == ["batch", "c1", "c2", "c3"]
    assert {r["version"] for r in records} == {"3"} and rejects == {"payload_in_blob": 1}


def test_format_is_inferred_from_the_scheme():
    assert sources.infer_format("s3://b/capture/ep") == "sagemaker"
    assert sources.infer_format("bq://p.d.t") == "vertex"
    assert sources.infer_format("https://acct.blob.core.windows.net/c/modelDataCollector/ep") == "azureml"
    assert sources.infer_format("/tmp/x") is None


# --------------------------------------------------------------------------- the CLI's failures


def test_bad_duration_is_a_usage_error(tmp_path, capsys):
    code = run_once.main(
        [
            *args(tmp_path, "sagemaker", "stable=3", tmp_path / "ref.csv", tmp_path / "o")[:-6],
            "--since",
            "1 hour",
            "--publish",
            "fake:",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "1 hour" in err


def test_local_source_without_format_is_a_usage_error(tmp_path, capsys):
    argv = [
        a for a in args(tmp_path, "x", "stable=3", tmp_path / "r.csv", tmp_path / "o") if a not in ("--format", "x")
    ]
    assert run_once.main(argv) == 2
    assert "--format" in capsys.readouterr().err


def test_missing_reference_is_one_line_and_exit_1(tmp_path, capsys):
    code = run_once.main(args(tmp_path, "sagemaker", "stable=3", tmp_path / "missing.parquet", tmp_path / "o"))
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: reference:") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- drift


@pytest.fixture
def monitor_modules():
    pytest.importorskip("monitor.records", reason="monitor/records.py (issue 15's monitor) is not on this branch yet")
    pytest.importorskip("monitor.drift", reason="monitor/drift.py (issue 15's monitor) is not on this branch yet")
    pytest.importorskip("monitor.shadow", reason="monitor/shadow.py (issue 15's monitor) is not on this branch yet")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_run_once_publishes_drift_above_threshold_for_drifted_traffic_and_below_for_undrifted(
    fmt, tmp_path, monitor_modules
):
    from components.settings import AlertThresholds

    threshold = AlertThresholds().drift_share
    reference = tmp_path / "reference.parquet"
    sample(600, 0.0, seed=1).to_parquet(reference)
    write, versions = FORMATS[fmt]
    for name, shift in (("undrifted", 0.0), ("drifted", 2.5)):
        source = write(tmp_path / name, sample(300, shift, seed=2))
        out = tmp_path / f"{name}.jsonl"
        assert run_once.main(args(source, fmt, versions, reference, out)) == 0
        figures = published(out)
        assert figures[("model_capture_records", "3")] == 300
        share = figures[("model_drift_share", "3")]
        if name == "drifted":
            assert share > threshold and figures[("model_drift_detected", "3")] == 1
        else:
            assert share < threshold and figures[("model_drift_detected", "3")] == 0


def test_a_version_that_cannot_be_measured_never_stops_the_others(tmp_path, monitor_modules):
    """The candidate's only requests name a column the reference lacks (rejected, counted), or
    are too few to measure (skipped): stable's drift is still published, and so is the run."""
    reference = tmp_path / "reference.parquet"
    sample(600, 0.0, seed=1).to_parquet(reference)
    cases = {
        "unknown-column": pd.DataFrame({"Zzz": [1.0] * 5}),
        "too-few-rows": sample(5, 0.0, seed=3),
    }
    for name, candidate in cases.items():
        root = tmp_path / name
        write_sagemaker(root, sample(300, 0.0, seed=2), "stable")
        source = write_sagemaker(root, candidate, "candidate")
        out = tmp_path / f"{name}.jsonl"
        code = run_once.main(args(source, "sagemaker", "stable=3,candidate=4", reference, out))
        assert code == 0, name
        figures = published(out)
        assert ("model_drift_share", "3") in figures and figures[("model_capture_records", "3")] == 300
        assert ("model_drift_share", "4") not in figures, name
        assert ("model_monitor_last_evaluation_timestamp_seconds", "") in figures
        if name == "unknown-column":
            assert sum(v for (metric, _), v in figures.items() if metric == "model_monitor_rejected_total") == 1
