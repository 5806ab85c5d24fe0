"""Drift with the real Evidently: low for a sample of the reference's distribution, high for
shifted features, in small (p-value tests) and large (distance tests) windows."""

from __future__ import annotations

import pandas as pd
import pytest

from monitor import drift
from tests.monitor.helpers import features, predictions, reference

pytestmark = pytest.mark.slow  # Evidently: seconds per report

REF = reference(5000)
REF_X, REF_Y = REF.drop(columns=["prediction"]), REF["prediction"]


@pytest.mark.parametrize("rows", [300, 3000])
def test_a_sample_of_the_reference_distribution_does_not_drift(rows: int) -> None:
    cur = features(rows, seed=11)
    result = drift.evaluate(REF_X, cur, REF_Y, pd.Series(predictions(cur)))
    assert result.rows == rows
    assert result.drift_share <= 1 / 7  # at most one column of seven by chance
    assert result.drifted is False
    assert set(result.feature_scores) == set(REF_X.columns)
    assert result.prediction_drifted is False
    if rows >= drift.SMALL_WINDOW_ROWS:  # distances: small for the same distribution
        assert result.methods["f0"] == "wasserstein" and result.methods["channel"] == "jensenshannon"
        assert max(result.feature_scores.values()) < 0.1
    else:  # p-value tests: the score is 1 - p
        assert result.methods["f0"] == "ks" and result.methods["channel"] == "chisquare"
        assert sorted(result.feature_scores.values())[-2] < 0.95


@pytest.mark.parametrize("rows", [300, 3000])
def test_shifted_features_drift_and_the_others_do_not(rows: int) -> None:
    shifted = ["f0", "f1", "f2", "f3"]
    cur = features(rows, seed=12, shift=1.0, shifted=shifted)
    result = drift.evaluate(REF_X, cur, REF_Y, pd.Series(predictions(cur)))
    assert result.drifted_features == sorted(shifted)
    assert result.drift_share == pytest.approx(4 / 7)
    assert result.drifted is True
    for column in shifted:  # a one-sigma shift: normed Wasserstein ~1, K-S p ~0
        assert result.feature_scores[column] > (0.8 if rows >= drift.SMALL_WINDOW_ROWS else 0.999)
    for column in ("f4", "f5", "channel"):  # under the threshold: distance < 0.1, or p > 0.05
        assert result.feature_scores[column] < (0.1 if rows >= drift.SMALL_WINDOW_ROWS else 0.95)


def test_prediction_drift_follows_the_outputs() -> None:
    cur = features(2000, seed=13)
    same = drift.evaluate(REF_X, cur, REF_Y, pd.Series(predictions(cur)))
    all_ones = drift.evaluate(REF_X, cur, REF_Y, pd.Series([1] * 2000))
    assert same.prediction_drift_score is not None and all_ones.prediction_drift_score is not None
    assert same.prediction_drift_score < 0.05
    # Jensen-Shannon distance (natural log) of {0: .5, 1: .5} against {1: 1}: sqrt(0.2158) = 0.46
    assert all_ones.prediction_drift_score == pytest.approx(0.46, abs=0.02)
    assert all_ones.prediction_drifted is True and same.prediction_drifted is False
    assert all_ones.drift_share == same.drift_share  # outputs are not a feature column


def test_the_prediction_drift_score_is_on_one_scale_at_any_window_size() -> None:
    """The same output distribution scores the same in a small window (where feature drift uses
    p-values) and a large one: the Jensen-Shannon distance of all-ones, 0.46, in both."""
    for rows in (300, 3000):
        cur = features(rows, seed=17)
        result = drift.evaluate(REF_X, cur, REF_Y, pd.Series([1] * rows))
        assert result.prediction_drift_score == pytest.approx(0.46, abs=0.02), rows


def test_no_prediction_drift_without_scalar_outputs_or_reference_predictions() -> None:
    cur = features(400, seed=14)
    probs = pd.Series([[0.3, 0.7]] * 400)
    result = drift.evaluate(REF_X, cur, REF_Y, probs)
    assert result.prediction_drift_score is None
    assert "scalar" in result.skipped[drift.PREDICTION]
    assert drift.evaluate(REF_X, cur, None, pd.Series(predictions(cur))).prediction_drift_score is None


def test_empty_columns_are_skipped_and_the_html_report_is_evidentlys() -> None:
    cur = features(400, seed=15)
    cur["f5"] = None
    result = drift.evaluate(REF_X, cur, REF_Y, pd.Series(predictions(cur)), html=True)
    assert "f5" not in result.feature_scores
    assert result.skipped["f5"] == "no value in the window"
    assert result.html is not None and result.html.lstrip().lower().startswith("<!doctype html")
    assert "Dataset Drift" in result.html and "channel" in result.html  # Evidently's widgets
    with pytest.raises(drift.DriftError):
        drift.evaluate(REF_X, cur[["f5"]], None, None)
