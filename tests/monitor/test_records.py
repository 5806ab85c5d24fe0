"""Capture records: parsing a JSON-lines body, reject reasons, checks against the reference."""

from __future__ import annotations

import json

import pandas as pd

from monitor import records
from monitor.records import Record, check, frame, parse_lines, schema_of
from tests.monitor.helpers import MODEL, features, record_lines, reference


def _obj(**overrides: object) -> dict[str, object]:
    obj: dict[str, object] = {
        "id": "a", "ts": 1764662400.5, "model": MODEL, "version": "3", "rows": 2,
        "inputs": {"f0": [0.1, 0.2], "channel": ["web", "app"]}, "outputs": [0, 1], "input_hash": "h",
    }  # fmt: skip
    obj.update(overrides)
    return obj


def _line(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_the_serving_runtimes_records_parse_back_to_their_values() -> None:
    df = features(5, seed=1)
    body = b"".join(record_lines(df, version="7", rows_per_record=2, outputs=[1, 0, 1, 1, 0]))
    parsed, rejects = parse_lines(body, MODEL)
    assert not rejects
    assert [r.rows for r in parsed] == [2, 2, 1]
    assert {r.version for r in parsed} == {"7"}
    assert parsed[0].inputs["f3"] == df["f3"].iloc[:2].tolist()
    assert parsed[2].inputs["channel"] == [df["channel"].iloc[4]]
    assert [o for r in parsed for o in r.outputs] == [1, 0, 1, 1, 0]
    # the same rows give the same hash (that is what pairs a mirrored request)
    again, _ = parse_lines(b"".join(record_lines(df, version="8", rows_per_record=2)), MODEL)
    assert [r.input_hash for r in again] == [r.input_hash for r in parsed]
    assert len({r.input_hash for r in parsed}) == 3


def test_every_bad_line_is_counted_by_reason_and_the_good_ones_kept() -> None:
    body = b"\n".join(
        [
            _line(_obj(id="good1")),
            b"{not json",
            b"\xff\xfe not utf-8",
            b"[1, 2]",
            b'"a string"',
            _line({k: v for k, v in _obj().items() if k != "inputs"}),
            _line(_obj(model="another-model")),
            _line(_obj(ts="yesterday")),
            _line(_obj(ts=float("nan"))),  # json.dumps writes NaN, json.loads reads it back
            _line(_obj(rows=0)),
            _line(_obj(rows=True)),
            _line(_obj(inputs={"f0": [1.0]})),  # one value for 2 rows
            _line(_obj(inputs=[1, 2])),
            _line(_obj(outputs={"a": 1})),
            _line(_obj(version="../../etc")),
            b"",
            b"   ",
            _line(_obj(id="good2", version=4)),
        ]
    )
    parsed, rejects = parse_lines(body, MODEL)
    assert [r.id for r in parsed] == ["good1", "good2"]
    assert parsed[1].version == "4"
    assert rejects == {
        "malformed": 2,
        "not_object": 2,
        "missing_field": 1,
        "wrong_model": 1,
        "bad_field": 8,
    }
    assert set(rejects) <= set(records.REJECT_REASONS)


def test_a_huge_nesting_is_a_malformed_line_not_a_crash() -> None:
    parsed, rejects = parse_lines(b"[" * 100_000 + b"\n" + _line(_obj()), MODEL)
    assert len(parsed) == 1 and rejects == {"malformed": 1}


def test_an_overflowing_timestamp_is_a_rejected_line_not_a_crash() -> None:
    """A 400-digit JSON integer overflows float conversion: that line is rejected, the body's
    other records are kept."""
    huge = b'{"id": "b", "ts": 1' + b"0" * 400 + b', "model": "%s"' % MODEL.encode()
    huge += b', "version": "3", "rows": 1, "inputs": {"f0": [1]}, "outputs": [0], "input_hash": "h"}'
    parsed, rejects = parse_lines(huge + b"\n" + _line(_obj()) + b"\n" + _line(_obj(ts=1e300)), MODEL)
    assert [r.id for r in parsed] == ["a"]
    assert rejects == {"bad_field": 2}


def test_records_are_checked_against_the_reference_columns_and_types() -> None:
    schema = schema_of(reference(200))
    assert schema.prediction == "prediction"
    assert schema.features == ["f0", "f1", "f2", "f3", "f4", "f5", "channel"]
    assert schema.columns["f0"] == records.NUMERIC and schema.columns["channel"] == records.CATEGORICAL

    def rec(**inputs: list[object]) -> Record:
        base: dict[str, list[object]] = {f"f{i}": [0.5] for i in range(6)} | {"channel": ["web"]}
        base.update(inputs)
        return Record("i", 1.0, MODEL, "1", 1, {k: v for k, v in base.items() if v != ["<drop>"]}, [1], "h")

    batch = [
        rec(),
        rec(f0=[None]),  # a null is a missing value, not a wrong type
        rec(channel=[3]),  # a number in a categorical column is a category
        rec(f0=[True]),  # JSON booleans are numbers to pandas
        rec(extra=[1.0]),
        rec(f2=["<drop>"]),
        rec(f1=["1.5"]),
        rec(f1=[[1.0, 2.0]]),
        rec(channel=[{"a": 1}]),
    ]
    ok, rejects = check(batch, schema)
    assert len(ok) == 4
    assert rejects == {"unknown_column": 1, "missing_column": 1, "wrong_type": 3}


def test_frame_concatenates_rows_and_outputs_in_order() -> None:
    a = Record("a", 1.0, MODEL, "1", 2, {"x": [1, 2], "y": ["p", "q"]}, [0, 1], "h1")
    b = Record("b", 2.0, MODEL, "1", 1, {"x": [3]}, [[0.2, 0.8]], "h2")
    c = Record("c", 3.0, MODEL, "1", 2, {"x": [4, 5], "y": ["r", "s"]}, [7], "h3")  # outputs not per row
    inputs, outputs = frame([a, b, c], ["x", "y"])
    assert isinstance(inputs, pd.DataFrame)
    assert inputs["x"].tolist() == [1, 2, 3, 4, 5]
    assert inputs["y"].isna().tolist() == [False, False, True, False, False]
    assert inputs["y"].dropna().tolist() == ["p", "q", "r", "s"]
    assert outputs.tolist() == [0, 1, [0.2, 0.8], None, None]


def test_a_record_survives_its_json_line() -> None:
    r = Record("a", 1764662400.123456, MODEL, "3", 1, {"x": [1.5], "c": ["é"]}, [1], "abc")
    assert records.parse_record(json.loads(r.to_json())) == r
