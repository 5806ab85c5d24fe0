"""Adaptive batching (``serving.batching``): merged predict calls, split back, retried alone.

In-process: ``Batcher`` in front of the real iris pyfunc model, called from concurrent threads
as the scoring threads call it; every answer is compared with ``pyfunc.predict`` of that
request's rows alone. On loopback: the real runtime with batching on and the slow test model,
for the request timeout and a failing request among good ones.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from serving.batching import Batcher, split_result
from serving.config import parse_settings
from serving.metrics import Metrics
from tests.serving.conftest import IrisModel, ServerFactory
from tests.serving.helpers import metric, parse_metrics, wait_until


def test_split_result_cuts_rows_in_order_or_refuses() -> None:
    array = np.arange(10)
    assert [p.tolist() for p in split_result(array, [3, 1, 6]) or []] == [[0, 1, 2], [3], [4, 5, 6, 7, 8, 9]]
    frame = pd.DataFrame({"a": range(4), "b": list("wxyz")})
    pieces = split_result(frame, [1, 3]) or []
    assert [p.to_dict(orient="records") for p in pieces] == [
        frame.iloc[:1].to_dict(orient="records"),
        frame.iloc[1:].to_dict(orient="records"),
    ]
    assert [list(p) for p in split_result([1, 2, 3], [2, 1]) or []] == [[1, 2], [3]]
    assert split_result(np.arange(5), [3, 1]) is None  # another number of rows
    assert split_result({"a": [1, 2]}, [1, 1]) is None  # no rows to cut
    assert split_result(np.float64(1.0), [1]) is None
    assert split_result("text", [4]) is None


def test_the_settings_turn_it_on_by_flag_or_env() -> None:
    off = parse_settings([], env={})
    assert off.batch_max_size == 0
    on = parse_settings(["--batch-max-size", "16", "--batch-max-wait-ms", "5"], env={})
    assert (on.batch_max_size, on.batch_max_wait_ms) == (16, 5.0)
    env = parse_settings([], env={"SERVING_BATCH_MAX_SIZE": "8", "SERVING_BATCH_MAX_WAIT_MS": "0.5"})
    assert (env.batch_max_size, env.batch_max_wait_ms) == (8, 0.5)
    with pytest.raises(SystemExit, match="SERVING_BATCH_MAX_SIZE"):
        parse_settings(["--batch-max-size", "-1"], env={})


@pytest.fixture(scope="module")
def pyfunc(iris_model: IrisModel) -> Any:
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(iris_model.path)


def histogram(metrics: Metrics) -> dict[str, float]:
    samples = metrics.batch_size.collect()[0].samples
    return {s.name.rsplit("_", 1)[1]: s.value for s in samples if s.name.endswith(("_count", "_sum"))}


def _run_together(batcher: Batcher, frames: list[pd.DataFrame]) -> list[Any]:
    """Every frame through ``batcher.predict`` from its own thread, all announced first (as the
    handler announces requests on their way to a scoring thread)."""
    for _ in frames:
        batcher.arriving()
    results: list[Any] = [None] * len(frames)

    def one(i: int) -> None:
        try:
            results[i] = batcher.predict(frames[i], None, len(frames[i]))
        except Exception as exc:  # the test looks at which request raised
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(frames))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_concurrent_frames_are_predicted_together_and_each_gets_its_rows(
    pyfunc: Any, iris_model: IrisModel
) -> None:
    metrics = Metrics()
    batcher = Batcher(pyfunc, max_size=32, max_wait_ms=2000, metrics=metrics)
    rng = np.random.default_rng(3)
    frames = [iris_model.features.iloc[rng.choice(150, size=int(n), replace=False)] for n in rng.integers(1, 20, 12)]
    results = _run_together(batcher, frames)
    for frame, result in zip(frames, results, strict=True):
        assert list(result) == list(pyfunc.predict(frame))
    # one merged call for all 12 (they were all announced before any reached predict)
    assert histogram(metrics) == {"count": 1, "sum": 12}


def test_a_bad_frame_fails_alone_and_its_neighbours_are_answered(pyfunc: Any, iris_model: IrisModel) -> None:
    from mlflow.exceptions import MlflowException

    batcher = Batcher(pyfunc, max_size=32, max_wait_ms=2000, metrics=Metrics())
    good = [iris_model.features.iloc[[i, i + 50]] for i in range(0, 40, 10)]
    nan = iris_model.features.iloc[[3]].copy()
    nan.iloc[0, 0] = np.nan  # LogisticRegression refuses NaN: predict raises
    text = iris_model.features.iloc[[4]].astype(object)
    text.iloc[0, 1] = "abc"  # schema enforcement refuses it (MlflowException)
    results = _run_together(batcher, [good[0], nan, good[1], text, good[2], good[3]])
    assert isinstance(results[1], ValueError)
    assert isinstance(results[3], MlflowException)
    for i, frame in zip((0, 2, 4, 5), good, strict=True):
        assert list(results[i]) == list(pyfunc.predict(frame))


def test_other_columns_and_params_are_not_merged(pyfunc: Any, iris_model: IrisModel) -> None:
    metrics = Metrics()
    batcher = Batcher(pyfunc, max_size=32, max_wait_ms=50, metrics=metrics)
    features = iris_model.features
    reordered = features.iloc[[7, 8]][list(reversed(features.columns))]
    frames = [features.iloc[[1, 2]], reordered, features.iloc[[9]]]
    results = _run_together(batcher, frames)
    for frame, result in zip(frames, results, strict=True):
        assert list(result) == list(pyfunc.predict(frame))
    counts = {s.labels["le"]: s.value for s in metrics.batch_size.collect()[0].samples if s.name.endswith("_bucket")}
    assert counts["1.0"] == 1 and counts["2.0"] == 2  # the reordered frame alone; the other two together
    batcher.arriving()
    assert list(batcher.predict(features.iloc[[5]], {"x": 1}, 1)) == list(pyfunc.predict(features.iloc[[5]]))


def test_a_lone_request_does_not_wait(pyfunc: Any, iris_model: IrisModel) -> None:
    """Nothing else on its way: the leader predicts at once (a wait of 1000 s would hang)."""
    batcher = Batcher(pyfunc, max_size=32, max_wait_ms=1_000_000, metrics=Metrics())
    with ThreadPoolExecutor(1) as pool:
        batcher.arriving()
        future = pool.submit(batcher.predict, iris_model.features.iloc[[0]], None, 1)
        assert list(future.result(timeout=60)) == iris_model.expected[:1]


# -- the runtime on loopback -----------------------------------------------------------------


def _slow(x: float, gate: str | None = None, fail: int = 0) -> dict[str, Any]:
    return {"dataframe_split": {"columns": ["x", "fail", "gate"], "data": [[x, fail, gate]]}}


def test_in_the_runtime_a_failing_request_does_not_fail_its_batch(
    start_server: ServerFactory, slow_model: str
) -> None:
    env = {"SERVING_BATCH_MAX_SIZE": "8", "SERVING_BATCH_MAX_WAIT_MS": "1000"}
    server = start_server(slow_model, env=env)
    bodies = [_slow(1), _slow(2, fail=1), _slow(3), _slow(4)]
    with httpx.Client(base_url=server.url, timeout=60) as client, ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: client.post("/invocations", json=body), bodies))
    assert [a.status_code for a in answers] == [200, 500, 200, 200]
    assert [a.json()["predictions"] for a in answers if a.status_code == 200] == [[2.0], [6.0], [8.0]]
    assert answers[1].json()["error_code"] == "INTERNAL_ERROR"
    samples = parse_metrics(httpx.get(f"{server.metrics_url}/metrics", timeout=30).text)
    assert metric(samples, "model_batch_size_sum") > metric(samples, "model_batch_size_count")  # merged
    assert metric(samples, "model_prediction_rows_total") == 3  # rows of the answered requests, once each
    assert metric(samples, "model_requests_total", route="/invocations", status="500") == 1


def test_in_the_runtime_each_request_keeps_its_timeout(
    start_server: ServerFactory, slow_model: str, tmp_path: Path
) -> None:
    env = {"SERVING_BATCH_MAX_SIZE": "8", "SERVING_BATCH_MAX_WAIT_MS": "1000", "SERVING_TIMEOUT_SECONDS": "2"}
    server = start_server(slow_model, env=env)
    gate = str(tmp_path / "gate")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client, ThreadPoolExecutor(2) as pool:
            # both in one batch, held in predict by the gate until after their deadline
            answers = list(pool.map(lambda x: client.post("/invocations", json=_slow(x, gate)), [1, 2]))
            assert [a.status_code for a in answers] == [504, 504]
            assert answers[0].content == b"Request processing time exceeded limit"
            Path(gate).touch()
            wait_until(lambda: Path(f"{gate}.started").exists(), "the batch to have reached predict")
            # the worker answers the next request normally once the batch is released
            assert client.post("/invocations", json=_slow(5)).json() == {"predictions": [10.0]}
    finally:
        Path(gate).touch()
