"""The monitor end to end: ``python -m monitor serve`` on loopback with a parquet reference,
records encoded by the serving runtime's own encoder, the real Evidently behind /v1/evaluate."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from monitor import metrics as names
from tests.monitor.helpers import (
    MODEL,
    ROOT,
    features,
    free_port,
    monitor_command,
    predictions,
    record_lines,
    reference,
    running_monitor,
)
from tests.serving.helpers import metric, parse_metrics, wait_until


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reference") / "reference.parquet"
    reference(5000).to_parquet(path)
    return path


def _bad_lines() -> list[bytes]:
    good = json.loads(record_lines(features(1, seed=0), version="1")[0])

    def variant(**changes: object) -> bytes:
        obj = dict(good)
        for key, value in changes.items():
            if value is None:
                obj.pop(key)
            else:
                obj[key] = value
        return json.dumps(obj).encode()

    return [
        b"{not json",
        b"[]",
        variant(outputs=None),
        variant(model="another"),
        variant(rows="1"),
        variant(inputs={**good["inputs"], "surprise": [1]}),
        variant(inputs={k: v for k, v in good["inputs"].items() if k != "f3"}),
        variant(inputs={**good["inputs"], "f2": ["high"]}),
        variant(ts=good["ts"] + 86400),
    ]


@pytest.mark.slow
def test_bad_capture_input_is_counted_never_fatal(reference_file: Path, tmp_path: Path) -> None:
    good = record_lines(features(30, seed=1), version="1")
    with running_monitor(str(reference_file), tmp_path / "store") as mon:
        r = mon.post([*good[:10], *_bad_lines(), *good[10:]])
        assert r.status_code == 200
        assert r.json() == {
            "accepted": 30,
            "rejected": {
                "bad_field": 1,
                "bad_timestamp": 1,
                "malformed": 1,
                "missing_column": 1,
                "missing_field": 1,
                "not_object": 1,
                "unknown_column": 1,
                "wrong_model": 1,
                "wrong_type": 1,
            },
        }
        # whole-body problems
        assert httpx.post(f"{mon.url}/v1/capture", content=b"").status_code == 400
        assert httpx.post(f"{mon.url}/v1/capture", content=b"\n \n").status_code == 400
        gz = httpx.post(f"{mon.url}/v1/capture", content=b"x", headers={"content-encoding": "gzip"})
        assert gz.status_code == 400 and "Content-Encoding" in gz.json()["error"]
        big = httpx.post(f"{mon.url}/v1/capture", content=b"\n" * (16 * 1024 * 1024 + 1), timeout=60)
        assert big.status_code == 413
        assert httpx.get(f"{mon.url}/v1/capture").status_code == 405
        # still alive, and the counters say what happened
        assert httpx.get(f"{mon.url}/healthz").status_code == 200
        samples = parse_metrics(mon.metrics())
        assert metric(samples, names.RECORDS_TOTAL, model=MODEL, version="1") == 30
        assert metric(samples, names.REJECTED_TOTAL, model=MODEL, reason="wrong_type") == 1
        assert metric(samples, names.REJECTED_TOTAL, model=MODEL, reason="malformed") == 1
        assert (names.REJECTED_TOTAL, frozenset({("model", MODEL), ("reason", "bad_timestamp")})) in samples
        assert len(list((tmp_path / "store" / "1").glob("*.jsonl"))) == 1
        assert mon.proc.poll() is None


@pytest.mark.slow
def test_drift_per_version_shadow_agreement_and_reports(reference_file: Path, tmp_path: Path) -> None:
    """Version 1 gets undrifted traffic; version 2 is its shadow (the same requests, mirrored) and
    disagrees on 12% of them; version 3 gets traffic whose f0..f3 are shifted by one sigma."""
    n = 2000
    undrifted = features(n, seed=21)
    stable_out = predictions(undrifted)
    flipped = set(random.Random(7).sample(range(n), int(n * 0.12)))
    shadow_out = [1 - y if i in flipped else y for i, y in enumerate(stable_out)]
    drifted = features(n, seed=22, shift=1.0, shifted=["f0", "f1", "f2", "f3"])
    extra = ("--stable", "1", "--candidate", "2", "--strategy", "shadow", "--shadow-window", "30s")
    with running_monitor(str(reference_file), tmp_path / "store", *extra) as mon:
        assert httpx.get(f"{mon.url}/v1/reports/1").status_code == 404
        stable = record_lines(undrifted, version="1", outputs=stable_out)
        mirrored = record_lines(undrifted, version="2", outputs=shadow_out)
        for start in range(0, n, 256):  # interleaved batches, as two serving pods would send them
            assert mon.post(stable[start : start + 256]).json()["accepted"] == len(stable[start : start + 256])
            assert mon.post(mirrored[start : start + 256]).status_code == 200
        assert mon.post(record_lines(drifted, version="3", rows_per_record=5)).json()["accepted"] == n // 5

        summary = mon.evaluate()
        v1, v2, v3 = (summary["versions"][v] for v in ("1", "2", "3"))
        assert (v1["records"], v1["rows"], v3["records"], v3["rows"]) == (n, n, n // 5, n)
        assert v1["drift_share"] <= 1 / 7 and v1["drifted"] is False
        assert v2["drift_share"] == v1["drift_share"]  # the same inputs
        assert v3["drift_share"] == pytest.approx(4 / 7) and v3["drifted"] is True
        assert v3["drifted_features"] == ["f0", "f1", "f2", "f3"]
        assert v1["prediction_drift_score"] < 0.1
        shadow = summary["shadow"]
        assert shadow["pairs"] == n
        assert shadow["ratio"] == pytest.approx(0.88, abs=0.02)

        samples = parse_metrics(mon.metrics())
        assert metric(samples, names.DRIFT_SHARE, model=MODEL, version="3") == pytest.approx(4 / 7)
        assert metric(samples, names.DRIFT_DETECTED, model=MODEL, version="3") == 1
        assert metric(samples, names.DRIFT_DETECTED, model=MODEL, version="1") == 0
        assert metric(samples, names.DRIFT_SHARE, model=MODEL, version="1") == v1["drift_share"]
        assert metric(samples, names.FEATURE_DRIFT_SCORE, model=MODEL, version="3", feature="f0") > 0.8
        assert metric(samples, names.FEATURE_DRIFT_SCORE, model=MODEL, version="3", feature="f5") < 0.1
        assert metric(samples, names.CAPTURE_RECORDS, model=MODEL, version="3") == n // 5
        assert metric(samples, names.SHADOW_AGREEMENT, model=MODEL, stable="1", candidate="2") == shadow["ratio"]
        assert metric(samples, names.SHADOW_PAIRS, model=MODEL, stable="1", candidate="2") == n
        assert metric(samples, names.LAST_EVALUATION, model=MODEL) == pytest.approx(summary["timestamp"])
        assert metric(samples, names.PREDICTION_DRIFT_SCORE, model=MODEL, version="1") == v1["prediction_drift_score"]

        report = httpx.get(f"{mon.url}/v1/reports/3", timeout=30)
        assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
        assert "Dataset Drift" in report.text
        assert httpx.get(f"{mon.url}/v1/reports/..%2Fsecret").status_code == 404
        assert httpx.get(f"{mon.url}/v1/summary").json()["versions"]["3"]["drift_share"] == v3["drift_share"]


@pytest.mark.slow
def test_canary_agreement_is_unknown_and_evaluation_runs_every_interval(reference_file: Path, tmp_path: Path) -> None:
    df = features(5, seed=3)  # fewer rows than drift needs: counted, no drift figures
    extra = ("--stable", "1", "--candidate", "2", "--strategy", "canary", "--interval", "1s", "--window", "1h")
    with running_monitor(str(reference_file), tmp_path / "store", *extra) as mon:
        assert mon.post([*record_lines(df, version="1"), *record_lines(df, version="2")]).json()["accepted"] == 10

        def evaluated_with_traffic() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            samples = parse_metrics(mon.metrics())
            return samples if metric(samples, names.CAPTURE_RECORDS, model=MODEL, version="2") == 5 else None

        samples = wait_until(evaluated_with_traffic, "an evaluation by the evaluator thread")
        assert metric(samples, names.SHADOW_PAIRS, model=MODEL, stable="1", candidate="2") == 0
        assert not [k for k in samples if k[0] in (names.SHADOW_AGREEMENT, names.DRIFT_SHARE)]
        summary = httpx.get(f"{mon.url}/v1/summary").json()
        assert summary["shadow"]["ratio"] is None and "not mirrored" in summary["shadow"]["reason"]
        assert "fewer than" in summary["versions"]["1"]["skipped"]


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "monitor", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_failures_are_one_line_and_a_nonzero_exit(reference_file: Path, tmp_path: Path) -> None:
    missing = _run_cli(*monitor_command(str(tmp_path / "nope.parquet"), tmp_path / "s", free_port())[3:])
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "cannot load the reference" in missing.stderr
    assert "does not exist" in missing.stderr and "reference log" in missing.stderr

    bad_flag = _run_cli(*monitor_command(str(reference_file), tmp_path / "s", free_port(), "--interval", "soon")[3:])
    assert bad_flag.returncode == 2 and bad_flag.stderr.count("\n") == 1 and "'soon'" in bad_flag.stderr

    short = _run_cli(*monitor_command(str(reference_file), tmp_path / "s", free_port(), "--window", "1m")[3:])
    assert short.returncode == 2 and "shorter than --interval" in short.stderr and short.stderr.count("\n") == 1

    (tmp_path / "file").write_text("not a directory")
    store = _run_cli(*monitor_command(str(reference_file), tmp_path / "file", free_port())[3:])
    assert store.returncode == 1 and store.stderr.count("\n") == 1 and "cannot use the store" in store.stderr

    assert _run_cli().returncode == 2


@pytest.mark.slow
def test_a_busy_port_is_one_line(reference_file: Path, tmp_path: Path) -> None:
    with running_monitor(str(reference_file), tmp_path / "a") as mon:
        busy = _run_cli(*monitor_command(str(reference_file), tmp_path / "b", mon.port)[3:])
    assert busy.returncode == 1 and busy.stderr.count("\n") == 1 and "cannot listen" in busy.stderr
