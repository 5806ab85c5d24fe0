"""Capture records: the fast encoders give exactly the text the plain ``json`` encoding gives.

The reference in every test is the standard library: ``json.dumps(..., sort_keys=True,
separators=(",", ":"))`` of the column -> values mapping, and ``json.loads`` of MLflow's own
response text (``predictions_to_json``). ``input_hash`` is computed from that text, so a single
character of difference would split a stable request from its shadow mirror.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from serving import capture


def reference_inputs(frame: pd.DataFrame) -> str:
    mapping = dict(zip(map(str, frame.columns), frame.to_numpy().T.tolist(), strict=True))
    return json.dumps(mapping, sort_keys=True, separators=(",", ":"), default=lambda v: v.isoformat())


def mlflow_response(predictions: Any) -> str:
    from mlflow.pyfunc.scoring_server import predictions_to_json

    out = io.StringIO()
    predictions_to_json(predictions, out)
    return out.getvalue()


def magnitudes(seed: int) -> np.ndarray:
    """Floats from 1e-320 to 1e300 (both signs), the values around Python's switch to exponent
    notation (1e-4, 1e16), zeros, and rounded "feature-like" values."""
    rng = np.random.default_rng(seed)
    spread = rng.uniform(1, 10, 400) * 10.0 ** rng.integers(-320, 300, 400) * rng.choice([-1, 1], 400)
    edges = np.array([1e-4, 9.99999e-5, 1e-5, 2.5e-5, 0.00011, 1e16, 9.999999999999998e15, 1e15, 1e17, 0.0, -0.0])
    rounded = np.round(rng.uniform(-100, 100, 400), 2)
    return np.concatenate([spread, edges, -edges, rounded, rng.normal(size=400)])


@pytest.mark.parametrize("seed", range(5))
def test_float_frames_encode_as_json_does(seed: int) -> None:
    values = magnitudes(seed)
    rng = np.random.default_rng(seed)
    encoder = capture.InputsEncoder()
    for rows in (1, 3, 100):
        picked = rng.choice(values, size=(rows, 5))
        frame = pd.DataFrame(picked, columns=["sepal width", "b", "A", "é", "z z"])
        assert encoder(frame) == reference_inputs(frame)


@pytest.mark.parametrize(
    "value", [1e-4, 9.99999e-5, 2.5e-5, 1e-5, 1e-7, 5e-324, 1e15, 9.999999999999998e15, 1e16, 3e20, -2.5e-5, -1e16]
)
def test_each_value_near_the_exponent_switch_alone_in_its_frame(value: float) -> None:
    # alone with ordinary values: nothing else in the frame sends it the slow way
    frame = pd.DataFrame({"v": [value, 1.5], "w": [10.25, 0.5]})
    assert capture.InputsEncoder()(frame) == reference_inputs(frame)


def test_ordinary_numeric_frames_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    assert capture.orjson is not None  # requirements.txt installs it, as the image does

    def slow(data: Any) -> str:
        raise AssertionError("the json fallback ran for an ordinary frame")

    monkeypatch.setattr(capture, "canonical_inputs", slow)
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(np.round(rng.uniform(0.1, 8, (100, 4)), 1), columns=["d", "c", "b", "a"])
    text = capture.InputsEncoder()(frame)
    monkeypatch.undo()
    assert text == reference_inputs(frame)


def test_nan_infinity_and_tiny_values_keep_pythons_spelling() -> None:
    frame = pd.DataFrame({"x": [float("nan"), 1.0], "y": [float("inf"), -float("inf")], "z": [1e-7, 3e20]})
    text = capture.InputsEncoder()(frame)
    assert text == reference_inputs(frame)
    assert '"x":[NaN,1.0]' in text and "Infinity" in text and "1e-07" in text and "3e+20" in text


def test_other_frames_encode_as_json_does() -> None:
    frames = [
        pd.DataFrame({"b": np.arange(4, dtype=np.int64) * 10**17, "a": [-1, 0, 1, 2]}),  # int64
        pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}),  # ints and floats: one float array
        pd.DataFrame({"a": ["é", 'x"y'], "b": [1.0, 2.0]}),  # strings: object values
        pd.DataFrame({2: [1.0], 10: [2.0], 1: [3.0]}),  # integer labels: sorted as strings
        pd.DataFrame([[1.0, 2.0]], columns=["a", "a"]),  # duplicate names: the last one wins
        pd.DataFrame({"a": np.array([], dtype=np.float64), "b": np.array([], dtype=np.float64)}),  # no rows
        pd.DataFrame({"f": np.array([0.1, 5.1], dtype=np.float32)}),  # float32: widened by tolist
        pd.DataFrame({"t": pd.to_datetime(["2024-01-01"]), "v": [1.5]}),
    ]
    encoder = capture.InputsEncoder()
    for frame in frames:
        assert encoder(frame) == reference_inputs(frame), frame.dtypes.to_dict()
        assert encoder(frame) == capture.canonical_inputs(frame)


@pytest.mark.parametrize(
    "predictions",
    [
        np.array([0, 1, 2]),
        np.array([0.5, 1e-7, 3e20, float("nan")]),
        np.array([[0.1, 0.9], [0.75, 0.25]]),
        np.array(["setosa", "vér"]),
        pd.DataFrame({"label": ["a", "b"], "score": [0.1, 0.2]}),
        {"a": np.array([1, 2])},
        np.array([True, False]),
    ],
    ids=["ints", "floats", "2d", "strings", "frame", "dict", "bools"],
)
def test_outputs_are_mlflows_predictions_compacted(predictions: Any) -> None:
    response = mlflow_response(predictions)
    parsed = json.loads(response)
    assert capture.outputs_json(response) == json.dumps(parsed["predictions"], separators=(",", ":"))


def test_a_record_is_one_json_line_with_the_hash_of_its_inputs() -> None:
    import hashlib

    frame = pd.DataFrame({"b": [1.5, 2.0], "a": [3.0, 4.25]})
    line = capture.encode_record("req-1", 1764662400.1234567, "iris", "3", frame, mlflow_response(np.array([0, 1])), 2)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = json.loads(line)
    assert record == {
        "id": "req-1",
        "ts": 1764662400.123457,
        "model": "iris",
        "version": "3",
        "rows": 2,
        "inputs": {"a": [3.0, 4.25], "b": [1.5, 2.0]},
        "outputs": [0, 1],
        "input_hash": hashlib.sha256(b'{"a":[3.0,4.25],"b":[1.5,2.0]}').hexdigest()[:32],
    }
