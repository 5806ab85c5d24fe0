"""Alerts and dashboard rows on the model monitor's metrics (``monitoring.drift``).

Pure builders. ``components/targets.py`` hands their output to ``ModelMonitoring``
(``extra_alerts``, ``extra_rows``), which puts them in the model's PrometheusRule and dashboard
beside the serving ones; tests run the alerts with the real ``promtool``.

The monitor (``python -m monitor serve``, scraped through the PodMonitor of components/quality.py)
labels its series with the model's registry name (``--model``) and the versions; the scrape adds
``namespace``. The serving runtime's capture counters come through the model's own PodMonitor, so
they carry the pod labels ``model`` (the DNS form of the name) and ``version`` like every serving
series.
"""

from __future__ import annotations

from typing import Any

from components.monitoring import PanelSpec, _alert, _num, series_selector
from components.rollout import TrafficPlan
from components.settings import RATE_WINDOW, AlertThresholds, DriftSettings
from components.validation import duration_seconds

# --------------------------------------------------------------------------- the metric contract

# What the monitor exposes on /metrics (monitor/metrics.py). Change only together.
DRIFT_SHARE = "model_drift_share"
FEATURE_DRIFT_SCORE = "model_feature_drift_score"
DRIFT_DETECTED = "model_drift_detected"
PREDICTION_DRIFT_SCORE = "model_prediction_drift_score"
CAPTURED_IN_WINDOW = "model_capture_records"
LAST_EVALUATION = "model_monitor_last_evaluation_timestamp_seconds"
SHADOW_AGREEMENT = "model_shadow_agreement_ratio"
SHADOW_PAIRS = "model_shadow_pairs_total"
MONITOR_RECORDS = "model_monitor_records_total"
MONITOR_REJECTED = "model_monitor_rejected_total"
# What the serving runtime exposes (serving/metrics.py).
CAPTURE_SENT = "model_capture_records_total"
CAPTURE_DROPPED = "model_capture_dropped_total"

ALERT_DRIFT = "ModelDataDrift"
ALERT_SHADOW = "ModelShadowDisagreement"
ALERT_STALE = "ModelMonitorStale"
STALE_INTERVALS = 3
"""ModelMonitorStale: evaluations missed before the alert."""
TOP_FEATURES = 10


def _quote(value: str) -> str:
    """A PromQL string literal's content (the registry name may hold any character)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def monitor_selector(model: str, namespace: str, **extra: str) -> str:
    """Matchers for the monitor's series of this model: ``model`` is the registry name."""
    matchers = {"namespace": namespace, "model": model, **extra}
    return ",".join(f'{k}="{_quote(v)}"' for k, v in matchers.items())


def stale_seconds(drift: DriftSettings) -> int:
    return int(STALE_INTERVALS * duration_seconds(drift.interval))


def _duration(seconds: int) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def quality_alert_rules(
    model: str, namespace: str, plan: TrafficPlan, thresholds: AlertThresholds, drift: DriftSettings
) -> list[dict[str, Any]]:
    """``ModelDataDrift`` per version; ``ModelShadowDisagreement`` while a candidate gets mirrored
    traffic (the only traffic whose agreement is known); ``ModelMonitorStale`` (two rules, one name:
    evaluations stopped, or the monitor's series gone)."""
    t = thresholds
    sel = monitor_selector(model, namespace)
    who = "{{ $labels.model }} v{{ $labels.version }}"
    rules = [
        _alert(
            ALERT_DRIFT,
            f"max by (namespace, model, version) ({DRIFT_SHARE}{{{sel}}}) > {_num(t.drift_share)}",
            "warning",
            f"{who}: {{{{ $value | humanizePercentage }}}} of the input columns drifted",
            f"More than {t.drift_share:.0%} of the input columns of the requests {who} served in the "
            f"last {drift.window} drifted from the reference (Evidently DataDriftPreset): check the "
            "dashboard's top drifted features and the monitor's report (GET /v1/reports/<version>).",
            model,
            t.for_,
        )
    ]
    if plan.mirror is not None and plan.candidate is not None:
        pair = monitor_selector(model, namespace, stable=plan.stable, candidate=plan.candidate)
        by = "namespace, model, stable, candidate"
        rule = _alert(
            ALERT_SHADOW,
            f"max by ({by}) ({SHADOW_AGREEMENT}{{{pair}}}) < {_num(t.shadow_agreement)} "
            f"and on ({by}) max by ({by}) ({SHADOW_PAIRS}{{{pair}}}) >= {t.shadow_min_pairs}",
            "warning",
            f"shadow candidate v{plan.candidate} agrees with stable v{plan.stable} on "
            "{{ $value | humanizePercentage }} of mirrored requests",
            f"The shadow candidate's outputs match stable's on less than {t.shadow_agreement:.0%} of "
            f"the mirrored requests (at least {t.shadow_min_pairs} pairs): do not promote it as is.",
            model,
            t.for_,
        )
        rule["labels"].update({"version": plan.candidate, "rollout": "shadow", "stable_version": plan.stable})
        rules.append(rule)
    stale = stale_seconds(drift)
    summary = "the model monitor of {{ $labels.model }} has not evaluated for " + _duration(stale)
    rules += [
        _alert(
            ALERT_STALE,
            f"time() - max by (namespace, model) ({LAST_EVALUATION}{{{sel}}}) > {stale}",
            "warning",
            summary,
            f"No drift evaluation for {STALE_INTERVALS} intervals ({drift.interval} each): the monitor is "
            "stuck or failing (its log; GET /healthz; the store volume). Drift alerts are blind meanwhile.",
            model,
            None,
        ),
        _alert(
            ALERT_STALE,
            f"absent({LAST_EVALUATION}{{{sel}}})",
            "warning",
            summary,
            f"The monitor's series are missing for {_duration(stale)}: its pod is down, not scraped "
            "(PodMonitor, network policy) or has never evaluated. Drift alerts are blind meanwhile.",
            model,
            _duration(stale),
        ),
    ]
    return rules


def quality_rows(
    model: str, namespace: str, thresholds: AlertThresholds
) -> list[tuple[str, list[PanelSpec]]]:
    """Dashboard rows: drift share per version, top drifted features, shadow agreement, capture
    rate and drops."""
    msel = monitor_selector(model, namespace) + ',version=~"$version"'
    ssel = series_selector(model, namespace) + ',version=~"$version"'
    pair = monitor_selector(model, namespace)
    legend = "v{{version}}"
    return [
        (
            "Model quality: input drift",
            [
                PanelSpec(
                    "Drift share",
                    "percentunit",
                    ((f"max by (version) ({DRIFT_SHARE}{{{msel}}})", legend),),
                    "Share of the input columns that drifted from the reference in the last window, per "
                    "version (Evidently DataDriftPreset); the line is the ModelDataDrift threshold.",
                    threshold=thresholds.drift_share,
                ),
                PanelSpec(
                    f"Top {TOP_FEATURES} feature drift scores",
                    "short",
                    (
                        (
                            f"topk({TOP_FEATURES}, max by (version, feature) ({FEATURE_DRIFT_SCORE}{{{msel}}}))",
                            "v{{version}} {{feature}}",
                        ),
                        (f"max by (version) ({PREDICTION_DRIFT_SCORE}{{{msel}}})", "v{{version}} prediction"),
                    ),
                    "Evidently's drift score per input column (and for the predictions), the highest ones.",
                ),
            ],
        ),
        (
            "Model quality: shadow comparison",
            [
                PanelSpec(
                    "Shadow agreement",
                    "percentunit",
                    ((f"max by (stable, candidate) ({SHADOW_AGREEMENT}{{{pair}}})", "v{{candidate}} vs v{{stable}}"),),
                    "Share of mirrored requests on which the candidate's output matches stable's; empty "
                    "when agreement is unknown (no shadow, canary traffic). The line is the alert threshold.",
                    threshold=thresholds.shadow_agreement,
                ),
                PanelSpec(
                    "Shadow pairs",
                    "short",
                    ((f"max by (stable, candidate) ({SHADOW_PAIRS}{{{pair}}})", "v{{candidate}} vs v{{stable}}"),),
                    f"Stable/candidate record pairs compared; the alert waits for {thresholds.shadow_min_pairs}.",
                ),
            ],
        ),
        (
            "Payload capture",
            [
                PanelSpec(
                    "Captured requests/s",
                    "short",
                    ((f"sum by (version) (rate({CAPTURE_SENT}{{{ssel}}}[{RATE_WINDOW}]))", legend),),
                    "Requests the serving pods captured and the monitor accepted, per version.",
                ),
                PanelSpec(
                    "Capture drops/s",
                    "short",
                    (
                        (
                            f"sum by (version, reason) (rate({CAPTURE_DROPPED}{{{ssel}}}[{RATE_WINDOW}]))",
                            "v{{version}} {{reason}}",
                        ),
                    ),
                    "Captured requests the serving pods dropped (queue full, monitor unreachable, ...): "
                    "predictions are never slowed, the sample is thinner.",
                ),
                PanelSpec(
                    "Monitor rejects/s",
                    "short",
                    (
                        (
                            f"sum by (reason) (rate({MONITOR_REJECTED}{{{monitor_selector(model, namespace)}}}"
                            f"[{RATE_WINDOW}]))",
                            "{{reason}}",
                        ),
                    ),
                    "Capture records the monitor refused (malformed, unknown model or columns).",
                ),
            ],
        ),
    ]
