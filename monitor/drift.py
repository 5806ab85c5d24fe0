"""Data and prediction drift of a window of captured rows against the reference, with Evidently.

One Evidently ``Report`` per evaluation: ``DataDriftPreset`` over the feature columns (its
``DriftedColumnsCount`` gives the share of drifted columns, its per-column ``ValueDrift`` the
scores) and a ``ValueDrift`` on the outputs column (prediction drift). The figures are read from
``Snapshot.dict()`` (``{"metrics": [{"config": {"type": "evidently:metric_v2:...", "column": ...,
"method": ...}, "value": ...}], "tests": [...]}``, evidently/core/report.py ``Snapshot.dict``),
matched on the metric config's type and column, never on display strings.

The statistical test is chosen by the monitor, from the size of the *window* (Evidently's own
default looks at the reference size only, and its distance tests flag undrifted windows of a few
hundred rows: the normed Wasserstein distance of 100 rows of the reference's own distribution is
about 0.13, above its 0.1 threshold):

* fewer than ``SMALL_WINDOW_ROWS`` rows: K-S (numerical) and chi-square (categorical) p-values,
  drift when p < 0.05;
* from ``SMALL_WINDOW_ROWS`` rows on: normed Wasserstein distance (numerical) and Jensen-Shannon
  distance (categorical), drift when the distance is >= 0.1 (Evidently's defaults for large data:
  p-values of large samples flag differences too small to matter).

A numerical column with at most ``FEW_VALUES`` distinct reference values (a flag, a class label) is
treated as categorical. The exported score is oriented so that higher always means more drift: the
distance itself, or ``1 - p`` for a p-value test (``DriftResult.methods`` says which). Prediction
drift is always the distance (Wasserstein or Jensen-Shannon), at any window size, so
``model_prediction_drift_score`` stays on one scale over time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

SMALL_WINDOW_ROWS = 1000
FEW_VALUES = 5
PREDICTION = "__prediction__"  # the outputs column inside the Evidently datasets
SMALL = {"num": "ks", "cat": "chisquare"}
LARGE = {"num": "wasserstein", "cat": "jensenshannon"}
P_VALUE_METHODS = {"ks", "chisquare", "z", "K-S p_value", "chi-square p_value", "Z-test p_value"}


@dataclass
class DriftResult:
    rows: int
    drift_share: float
    drifted: bool
    feature_scores: dict[str, float]
    prediction_drift_score: float | None
    html: str | None = None
    drifted_features: list[str] = field(default_factory=list)
    methods: dict[str, str] = field(default_factory=dict)  # column -> Evidently's method name
    prediction_drifted: bool | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # column -> why it was not evaluated

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "drift_share": self.drift_share,
            "drifted": self.drifted,
            "drifted_features": self.drifted_features,
            "feature_scores": self.feature_scores,
            "methods": self.methods,
            "prediction_drift_score": self.prediction_drift_score,
            "prediction_drifted": self.prediction_drifted,
            "skipped": self.skipped,
        }


class DriftError(Exception):
    """The window cannot be compared with the reference (no common column with data)."""


def evaluate(
    reference: Any,
    current: Any,
    reference_predictions: Any | None,
    current_predictions: Any | None,
    *,
    html: bool = False,
    drift_share: float = 0.5,
) -> DriftResult:
    """Drift of ``current`` (the window's inputs) against ``reference``; prediction drift when
    both prediction Series are given and hold scalars. ``drifted``: the share of drifted columns
    is at least ``drift_share`` (Evidently's dataset drift rule)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    rows = len(current)
    kinds, skipped = _column_kinds(reference, current)
    if not kinds:
        raise DriftError("no column of the window has values to compare with the reference")
    ref = _prepare(reference, kinds)
    cur = _prepare(current, kinds)

    pred_kind = None
    if reference_predictions is not None and current_predictions is not None:
        ref_pred, cur_pred = _scalar_series(reference_predictions), _scalar_series(current_predictions)
        if ref_pred is not None and cur_pred is not None:
            pred_kind = _kind(ref_pred, cur_pred)
            ref[PREDICTION] = _cast(ref_pred.reset_index(drop=True), pred_kind)
            cur[PREDICTION] = _cast(cur_pred.reset_index(drop=True), pred_kind)
        else:
            skipped[PREDICTION] = "outputs are not one scalar per row"

    methods = SMALL if rows < SMALL_WINDOW_ROWS else LARGE
    features = list(kinds)
    all_kinds = dict(kinds, **({PREDICTION: pred_kind} if pred_kind else {}))
    definition = DataDefinition(
        numerical_columns=[c for c, k in all_kinds.items() if k == "num"],
        categorical_columns=[c for c, k in all_kinds.items() if k == "cat"],
    )
    metrics: list[Any] = [
        DataDriftPreset(
            columns=features, drift_share=drift_share, num_method=methods["num"], cat_method=methods["cat"]
        )
    ]
    if pred_kind:
        # always a distance, whatever the window's size: model_prediction_drift_score is a score on
        # one scale over time (1 - p of a small window and a large window's distance are not),
        # and no alert decides on it
        metrics.append(ValueDrift(column=PREDICTION, method=LARGE[pred_kind]))
    snapshot = Report(metrics, include_tests=False).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    result = _read(snapshot.dict(), features, rows, drift_share)
    result.skipped.update(skipped)
    if html:
        result.html = snapshot.get_html_str(as_iframe=False)
    return result


def _read(data: dict[str, Any], features: list[str], rows: int, drift_share: float) -> DriftResult:
    """The figures of a ``Snapshot.dict()``."""
    share: float | None = None
    scores: dict[str, float] = {}
    methods: dict[str, str] = {}
    drifted_cols: list[str] = []
    pred_score: float | None = None
    pred_drifted: bool | None = None
    for metric in data.get("metrics", []):
        config = metric.get("config") or {}
        kind = str(config.get("type", "")).rsplit(":", 1)[-1]
        value = metric.get("value")
        if kind == "DriftedColumnsCount" and isinstance(value, dict) and "share" in value:
            share = float(value["share"])
        elif kind == "ValueDrift" and isinstance(value, (int, float)):
            column = str(config.get("column"))
            method = str(config.get("method"))
            raw_threshold = config.get("threshold")
            threshold = float(raw_threshold) if isinstance(raw_threshold, (int, float)) else 0.1
            score, drifted = _orient(float(value), method, threshold)
            if column == PREDICTION:
                pred_score, pred_drifted = score, drifted
            else:
                scores[column] = score
                methods[column] = method
                if drifted:
                    drifted_cols.append(column)
    evaluated = [c for c in features if c in scores]
    if share is None:  # the count metric is missing: the share of the columns' own decisions
        share = len(drifted_cols) / len(evaluated) if evaluated else 0.0
    return DriftResult(
        rows=rows,
        drift_share=share,
        drifted=share >= drift_share,
        feature_scores=scores,
        prediction_drift_score=pred_score,
        drifted_features=sorted(drifted_cols),
        methods=methods,
        prediction_drifted=pred_drifted,
    )


def _orient(value: float, method: str, threshold: float) -> tuple[float, bool]:
    """(score where higher means more drift, drifted) of an Evidently drift score."""
    if not math.isfinite(value):
        return 0.0, False
    if method in P_VALUE_METHODS or "p_value" in method:
        return 1.0 - value, value < threshold
    return value, value >= threshold


def _column_kinds(reference: Any, current: Any) -> tuple[dict[str, str], dict[str, str]]:
    import pandas as pd

    kinds: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for column in current.columns:
        if column not in reference.columns:
            skipped[str(column)] = "not in the reference"
            continue
        ref, cur = reference[column], current[column]
        if ref.notna().sum() == 0:
            skipped[str(column)] = "no value in the reference"
            continue
        if cur.notna().sum() == 0:
            skipped[str(column)] = "no value in the window"
            continue
        if _numeric(ref) and pd.to_numeric(cur, errors="coerce").notna().sum() == 0:
            skipped[str(column)] = "no numeric value in the window"
            continue
        kinds[str(column)] = _kind(ref, cur)
    return kinds, skipped


def _numeric(s: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype))


def _kind(ref: Any, cur: Any) -> str:
    import pandas as pd

    if not _numeric(ref):
        return "cat"
    if not _numeric(cur) and pd.to_numeric(cur, errors="coerce").notna().sum() == 0:
        return "cat"
    return "num" if ref.nunique(dropna=True) > FEW_VALUES else "cat"


def _cast(s: Any, kind: str) -> Any:
    import pandas as pd

    if kind == "num":
        return pd.to_numeric(s, errors="coerce").astype("float64")
    out = s.astype(object).where(s.notna(), None)
    # 1 and 1.0 are one category: numbers are written the way the reference writes them
    return out.map(lambda v: None if v is None else _label(v))


def _label(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _prepare(frame: Any, kinds: dict[str, str]) -> Any:
    import pandas as pd

    return pd.DataFrame({c: _cast(frame[c].reset_index(drop=True), k) for c, k in kinds.items()})


def _scalar_series(s: Any) -> Any | None:
    """``s`` when every value is a scalar (not a list or dict) and some is not null; else None."""
    values = s.dropna()
    if values.empty or any(isinstance(v, (list, dict, tuple)) for v in values):
        return None
    return s
