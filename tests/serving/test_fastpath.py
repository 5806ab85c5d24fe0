"""serving.fastpath: the short cut builds exactly the DataFrame MLflow's parsing builds, or
declines (then MLflow parses). The reference is MLflow's own ``infer_and_parse_data``."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
from mlflow.pyfunc import scoring_server
from mlflow.types.schema import ColSpec, Schema, TensorSpec

from serving.fastpath import FastFrame


class _Meta:
    def _is_signature_from_type_hint(self) -> bool:
        return False


class _Model:
    metadata = _Meta()


MIXED = Schema([ColSpec("double", "a b"), ColSpec("long", "n"), ColSpec("double", "é")])
SPLIT = {"columns": ["x", "y"], "data": [[1, 2]]}
DOUBLES = Schema([ColSpec("double", "x"), ColSpec("double", "y")])


def _body(columns: list[str], rows: list[list[Any]]) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": rows}}).encode()


def _mlflow_frame(body: bytes, schema: Schema) -> pd.DataFrame:
    return scoring_server.infer_and_parse_data(json.loads(body), schema)


@pytest.mark.parametrize(
    ("schema", "columns", "rows"),
    [
        (DOUBLES, ["x", "y"], [[1.5, 2.25]]),
        (DOUBLES, ["x", "y"], [[1, 2], [3, 4]]),  # ints in double columns: int64 -> float64
        (DOUBLES, ["x", "y"], [[1, 2.5], [2**53, -(2**53)]]),
        (DOUBLES, ["x", "y"], [[float("nan"), float("inf")], [-float("inf"), 0.1]]),
        (MIXED, ["a b", "n", "é"], [[1.0, 7, 3], [0.5, -(2**63), 1e300]]),
        (MIXED, ["a b", "n", "é"], [[1, 2**63 - 1, 2.0]]),
    ],
)
def test_the_frame_is_mlflows(schema: Schema, columns: list[str], rows: list[list[Any]]) -> None:
    fast = FastFrame.for_model(_Model(), schema)
    assert fast is not None
    body = _body(columns, rows)
    got = fast.frame(body, "application/json")
    want = _mlflow_frame(body, schema)
    assert got is not None
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert list(got.dtypes) == list(want.dtypes)
    assert got.columns.dtype == want.columns.dtype
    assert type(got.index) is type(want.index)
    assert repr(got) == repr(want)  # MLflow prints it into error messages


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json; charset=utf-8", _body(["x", "y"], [[1.0, 2.0]])),
        ("text/csv", b"x,y\n1,2\n"),
        ("application/json", _body(["y", "x"], [[1.0, 2.0]])),  # other order
        ("application/json", _body(["x"], [[1.0]])),  # a missing column
        ("application/json", _body(["x", "y", "z"], [[1.0, 2.0, 3.0]])),  # an extra one
        ("application/json", _body(["x", "y"], [])),
        ("application/json", _body(["x", "y"], [[1.0]])),
        ("application/json", _body(["x", "y"], [[True, 2.0]])),
        ("application/json", _body(["x", "y"], [[None, 2.0]])),
        ("application/json", _body(["x", "y"], [["1.0", 2.0]])),
        ("application/json", _body(["x", "y"], [[[1.0], 2.0]])),
        ("application/json", _body(["x", "y"], [[2**53 + 1, 2.0]])),
        ("application/json", json.dumps({"dataframe_split": {**SPLIT, "index": [5]}}).encode()),
        ("application/json", json.dumps({"dataframe_split": SPLIT, "params": {}}).encode()),
        ("application/json", json.dumps({"dataframe_records": [{"x": 1.0, "y": 2.0}]}).encode()),
        ("application/json", b"{not json"),
        ("application/json", b""),
    ],
)
def test_anything_else_is_left_to_mlflow(content_type: str, body: bytes) -> None:
    fast = FastFrame.for_model(_Model(), DOUBLES)
    assert fast is not None
    assert fast.frame(body, content_type) is None


def test_a_float_in_a_long_column_is_left_to_mlflow() -> None:
    fast = FastFrame.for_model(_Model(), MIXED)
    assert fast is not None
    assert fast.frame(_body(["a b", "n", "é"], [[1.0, 7.5, 3.0]]), "application/json") is None
    assert fast.frame(_body(["a b", "n", "é"], [[1.0, 2**63, 3.0]]), "application/json") is None


@pytest.mark.parametrize(
    "schema",
    [
        Schema([ColSpec("string", "s"), ColSpec("double", "x")]),
        Schema([ColSpec("float", "x")]),
        Schema([ColSpec("double", "x", required=False)]),
        Schema([ColSpec("double")]),  # unnamed
        Schema([TensorSpec(__import__("numpy").dtype("float64"), (-1, 4))]),
    ],
)
def test_other_signatures_get_no_short_cut(schema: Schema) -> None:
    assert FastFrame.for_model(_Model(), schema) is None


def test_a_signature_from_type_hints_gets_no_short_cut() -> None:
    class Hinted(_Meta):
        def _is_signature_from_type_hint(self) -> bool:
            return True

    model = _Model()
    model.metadata = Hinted()  # type: ignore[assignment]
    assert FastFrame.for_model(model, DOUBLES) is None
