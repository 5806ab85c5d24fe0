"""Shadow comparison: pairing mirrored records and the agreement ratio."""

from __future__ import annotations

import random

import pytest

from monitor.records import Record, parse_lines
from monitor.shadow import agree, compare, infer_task, pair
from tests.monitor.helpers import MODEL, features, predictions, record_lines


def _pairs(n: int, disagree: float, *, seed: int = 0, skew: float = 0.5) -> tuple[list[Record], list[Record]]:
    """Mirrored traffic of ``n`` one-row requests, as both versions capture it; the candidate flips
    the class on a random ``disagree`` share of them."""
    df = features(n, seed=seed)
    stable_out = predictions(df)
    rng = random.Random(seed)
    flipped = set(rng.sample(range(n), round(n * disagree)))
    candidate_out = [1 - y if i in flipped else y for i, y in enumerate(stable_out)]
    stable, _ = parse_lines(b"".join(record_lines(df, version="1", outputs=stable_out, ts=1000.0)), MODEL)
    candidate, _ = parse_lines(
        b"".join(record_lines(df, version="2", outputs=candidate_out, ts=1000.0 + skew)), MODEL
    )
    return stable, candidate


@pytest.mark.parametrize("disagree", [0.0, 0.1, 0.37])
def test_mirrored_traffic_gives_the_known_agreement(disagree: float) -> None:
    stable, candidate = _pairs(2000, disagree, seed=int(disagree * 100))
    result = compare(stable, candidate, window_s=30, task="auto", tolerance=0.0, mirrored=True)
    assert result.pairs == 2000
    assert result.ratio == pytest.approx(1 - disagree, abs=0.02)
    assert result.agreed == round(2000 * (1 - disagree))


def test_records_pair_only_within_the_window_and_once() -> None:
    stable, candidate = _pairs(50, 0.0, skew=45.0)
    result = compare(stable, candidate, window_s=30, task="classification", tolerance=0.0, mirrored=True)
    assert result.pairs == 0 and result.ratio is None
    assert "within 30s" in result.reason
    # the same input sent twice to each side pairs twice, each record once, with the closest one
    s = [Record(f"s{i}", t, MODEL, "1", 1, {"x": [1]}, [o], "same") for i, (t, o) in enumerate([(10, 0), (100, 1)])]
    c = [Record(f"c{i}", t, MODEL, "2", 1, {"x": [1]}, [o], "same") for i, (t, o) in enumerate([(101, 1), (11, 0)])]
    matched = pair(s, c, window_s=30)
    assert sorted((a.id, b.id) for a, b in matched) == [("s0", "c1"), ("s1", "c0")]
    assert compare(s, c, window_s=30, task="auto", tolerance=0, mirrored=True).ratio == 1.0


def test_canary_traffic_gives_no_ratio_and_says_why() -> None:
    stable, candidate = _pairs(200, 0.5)
    result = compare(stable, candidate, window_s=30, task="auto", tolerance=0.0, mirrored=False)
    assert result.ratio is None and result.pairs == 0
    assert "not mirrored" in result.reason and "unknown" in result.reason


def test_regression_agrees_within_the_tolerance_per_row() -> None:
    s = [Record("s", 5.0, MODEL, "1", 3, {"x": [1, 2, 3]}, [1.0, 2.0, 3.0], "h")]
    c = [Record("c", 5.2, MODEL, "2", 3, {"x": [1, 2, 3]}, [1.05, 2.2, 2.96], "h")]
    assert infer_task([*s[0].outputs, 1.5]) == "regression"
    tight = compare(s, c, window_s=1, task="regression", tolerance=0.01, mirrored=True)
    loose = compare(s, c, window_s=1, task="auto", tolerance=0.1, mirrored=True)
    assert (tight.pairs, tight.agreed) == (3, 0)
    assert (loose.pairs, loose.agreed) == (3, 2)
    assert loose.ratio == pytest.approx(2 / 3)


def test_how_two_outputs_agree() -> None:
    assert infer_task([0, 1, "cat", True]) == "classification"
    assert infer_task([0.0, 1.0]) == "classification"  # integral floats are labels
    assert agree([0.1, 0.7, 0.2], [0.3, 0.6, 0.1], "classification", 0) is True  # same argmax
    assert agree([0.6, 0.4], [0.4, 0.6], "classification", 0) is False
    assert agree("cat", "dog", "classification", 0) is False
    assert agree([1.0, 2.0], [1.05, 2.0], "regression", 0.1) is True
    assert agree([1.0, 2.0], [1.0], "regression", 0.1) is False
    with pytest.raises(ValueError, match="task"):
        compare([], [], window_s=1, task="ranking", tolerance=0, mirrored=True)
