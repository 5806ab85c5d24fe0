"""The monitor's Prometheus metrics (names are an interface: alerts and dashboards use them).

Gauges describe the last evaluation; series of a version (or a stable/candidate pair) that is no
longer live are removed at the next evaluation, so a dashboard shows only live versions. The two
counters count since the process started (``_total`` is added by the client library).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

DRIFT_SHARE = "model_drift_share"
FEATURE_DRIFT_SCORE = "model_feature_drift_score"
DRIFT_DETECTED = "model_drift_detected"
PREDICTION_DRIFT_SCORE = "model_prediction_drift_score"
CAPTURE_RECORDS = "model_capture_records"
LAST_EVALUATION = "model_monitor_last_evaluation_timestamp_seconds"
SHADOW_AGREEMENT = "model_shadow_agreement_ratio"
SHADOW_PAIRS = "model_shadow_pairs_total"
RECORDS_TOTAL = "model_monitor_records_total"
REJECTED_TOTAL = "model_monitor_rejected_total"

ALL = (
    DRIFT_SHARE,
    FEATURE_DRIFT_SCORE,
    DRIFT_DETECTED,
    PREDICTION_DRIFT_SCORE,
    CAPTURE_RECORDS,
    LAST_EVALUATION,
    SHADOW_AGREEMENT,
    SHADOW_PAIRS,
    RECORDS_TOTAL,
    REJECTED_TOTAL,
)


def _counter_name(name: str) -> str:
    return name.removesuffix("_total")


class Metrics:
    """The collectors of one monitor, on their own registry."""

    def __init__(self, model: str, registry: CollectorRegistry | None = None) -> None:
        self.model = model
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.drift_share = Gauge(
            DRIFT_SHARE, "Share of the feature columns whose drift Evidently detected", ["model", "version"], registry=r
        )
        self.feature_score = Gauge(
            FEATURE_DRIFT_SCORE,
            "Drift score of one feature (higher = more drift: the distance, or 1 - p-value)",
            ["model", "version", "feature"],
            registry=r,
        )
        self.drift_detected = Gauge(
            DRIFT_DETECTED, "1 when the share of drifted columns reaches the drift share threshold",
            ["model", "version"], registry=r,
        )
        self.prediction_score = Gauge(
            PREDICTION_DRIFT_SCORE, "Drift score of the outputs against the reference's prediction column",
            ["model", "version"], registry=r,
        )
        self.capture_records = Gauge(
            CAPTURE_RECORDS, "Captured records in the last evaluation's window", ["model", "version"], registry=r
        )
        self.last_evaluation = Gauge(
            LAST_EVALUATION, "Unix time the last evaluation finished", ["model"], registry=r
        )
        self.shadow_agreement = Gauge(
            SHADOW_AGREEMENT, "Share of paired predictions on which the candidate agrees with the stable version",
            ["model", "stable", "candidate"], registry=r,
        )
        self.shadow_pairs = Gauge(
            SHADOW_PAIRS, "Paired predictions (same inputs, both versions) in the last evaluation's window",
            ["model", "stable", "candidate"], registry=r,
        )
        self.records = Counter(
            _counter_name(RECORDS_TOTAL), "Capture records accepted and stored", ["model", "version"], registry=r
        )
        self.rejected = Counter(
            _counter_name(REJECTED_TOTAL), "Capture records rejected, by reason", ["model", "reason"], registry=r
        )
        self._lock = threading.Lock()
        self._features: dict[str, set[str]] = {}
        self._versions: set[str] = set()
        self._shadow: set[tuple[str, str]] = set()

    def init_reasons(self, reasons: Iterable[str]) -> None:
        """Export every reject reason at 0, so rate() sees the first reject."""
        for reason in reasons:
            self.rejected.labels(self.model, reason)

    def set_version(
        self,
        version: str,
        *,
        records: int,
        drift_share: float | None,
        drifted: bool | None,
        feature_scores: dict[str, float] | None,
        prediction_score: float | None,
    ) -> None:
        """The figures of one live version; None leaves a figure out (a window too small)."""
        m, v = self.model, version
        with self._lock:
            self._versions.add(v)
            self.capture_records.labels(m, v).set(records)
            _set_or_remove(self.drift_share, (m, v), drift_share)
            _set_or_remove(self.drift_detected, (m, v), None if drifted is None else float(drifted))
            _set_or_remove(self.prediction_score, (m, v), prediction_score)
            scores = feature_scores or {}
            for gone in self._features.get(v, set()) - set(scores):
                _remove(self.feature_score, (m, v, gone))
            for feature, score in scores.items():
                self.feature_score.labels(m, v, feature).set(score)
            self._features[v] = set(scores)

    def retire_versions(self, live: Iterable[str]) -> None:
        """Remove the series of versions not in ``live``."""
        live = set(live)
        m = self.model
        with self._lock:
            for v in self._versions - live:
                for gauge in (self.capture_records, self.drift_share, self.drift_detected, self.prediction_score):
                    _remove(gauge, (m, v))
                for feature in self._features.pop(v, set()):
                    _remove(self.feature_score, (m, v, feature))
            self._versions &= live

    def set_shadow(self, stable: str, candidate: str, pairs: int, ratio: float | None) -> None:
        m = self.model
        with self._lock:
            for s, c in self._shadow - {(stable, candidate)}:
                _remove(self.shadow_pairs, (m, s, c))
                _remove(self.shadow_agreement, (m, s, c))
            self._shadow = {(stable, candidate)}
            self.shadow_pairs.labels(m, stable, candidate).set(pairs)
            _set_or_remove(self.shadow_agreement, (m, stable, candidate), ratio)

    def clear_shadow(self) -> None:
        m = self.model
        with self._lock:
            for s, c in self._shadow:
                _remove(self.shadow_pairs, (m, s, c))
                _remove(self.shadow_agreement, (m, s, c))
            self._shadow = set()

    def evaluated(self, ts: float) -> None:
        self.last_evaluation.labels(self.model).set(ts)


def _set_or_remove(gauge: Gauge, labels: tuple[str, ...], value: float | None) -> None:
    if value is None:
        _remove(gauge, labels)
    else:
        gauge.labels(*labels).set(value)


def _remove(gauge: Gauge, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
