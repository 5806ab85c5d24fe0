"""The SageMaker endpoint's CloudWatch monitoring, as pure functions: the rollback alarms (per
variant role: 5XX ratio and p99 ModelLatency), their evaluation window, the baking-period
warning, and the dashboard body. ``SageMakerModelService`` (sagemaker.py) declares them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from components.sagemaker_plan import (
    CANDIDATE_VARIANT,
    INSTANCE_METRICS_NAMESPACE,
    METRICS_NAMESPACE,
    STABLE_VARIANT,
    Variant,
)
from components.sagemaker_settings import SageMakerAlarmSettings, SageMakerSettings
from components.settings import AlertThresholds

ALARM_PERIOD_SECONDS = 60


# --------------------------------------------------------------------------- alarms


_DURATION = re.compile(r"^([0-9]+)([smh])$")


def evaluation_periods(alarms: SageMakerAlarmSettings, thresholds: AlertThresholds) -> int:
    """1-minute periods a threshold must be breached: ``alarms.evaluationMinutes``, else the
    monitoring ``for`` duration rounded up to whole minutes."""
    if alarms.evaluation_minutes is not None:
        return alarms.evaluation_minutes
    m = _DURATION.match(thresholds.for_)
    if m is None:
        raise ValueError(f"monitoring.thresholds.for: not a duration ({thresholds.for_!r})")
    seconds = int(m[1]) * {"s": 1, "m": 60, "h": 3600}[m[2]]
    return max(1, math.ceil(seconds / ALARM_PERIOD_SECONDS))


def baking_warning(cfg: SageMakerSettings, thresholds: AlertThresholds) -> str | None:
    """A warning when a baking period is shorter than the rollback alarms' evaluation window: the
    update would move on before an alarm could fire."""
    window = evaluation_periods(cfg.alarms, thresholds) * ALARM_PERIOD_SECONDS
    wait = cfg.deployment.wait_interval_seconds
    if not cfg.deployment.auto_rollback or wait >= window:
        return None
    return (
        f"sagemaker.deployment.waitIntervalSeconds ({wait}s) is shorter than the rollback alarms' window "
        f"({window}s): a bad update can move on before an alarm is able to fire"
    )


@dataclass(frozen=True)
class AlarmSpec:
    resource_name: str
    name: str
    variant: str
    kind: str  # "errors" | "latency"
    args: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``aws.cloudwatch.MetricAlarm``."""


ALARM_ROLES = (STABLE_VARIANT, CANDIDATE_VARIANT)
"""The variants the rollback alarms watch: both roles, in every rollout state."""


def alarm_specs(
    endpoint: str,
    alarms: SageMakerAlarmSettings,
    thresholds: AlertThresholds,
) -> list[AlarmSpec]:
    """Per variant role (``stable`` and ``candidate``, whether or not a candidate is on trial):
    the 5XX share of invocations, and p99 ModelLatency (reported in microseconds).

    The alarms never depend on the rollout state, so the Endpoint's ``deployment_config``, which
    names them, is identical in every state. In terraform-provider-aws
    (``internal/service/sagemaker/endpoint.go``, bridged by pulumi-aws 7) ``name`` is ForceNew and
    so is the ``auto_rollback_configuration`` block as a whole (MaxItems 1): adding or dropping it
    replaces the endpoint, delete-first because the program fixes its ``name`` (see
    ``modelctl/replacements.py``). Its alarm list is not ForceNew, but a list that followed the
    candidate would turn every rollout step into an endpoint change the reviewer must reason
    about, and an alarm deleted while an update still watches it is a rollback SageMaker cannot
    make. So the candidate's alarms exist while no candidate does: with no data they stay OK
    (``notBreaching``), and cost a few cents a month. The version a variant runs is in the
    dashboard and the stack outputs, not in the alarm (a description that named it would be an
    update of every alarm on every promotion).

    Thresholds come from ``sagemaker.alarms`` where set, else from ``monitoring.thresholds``.
    Missing data (no traffic) is not a breach: an idle candidate must not roll a deployment back.
    """
    ratio = alarms.error_ratio if alarms.error_ratio is not None else thresholds.error_ratio
    p99 = alarms.p99_latency_seconds if alarms.p99_latency_seconds is not None else thresholds.p99_latency_seconds
    periods = evaluation_periods(alarms, thresholds)
    out: list[AlarmSpec] = []
    for role in ALARM_ROLES:
        dims = {"EndpointName": endpoint, "VariantName": role}
        common: dict[str, Any] = {
            "comparison_operator": "GreaterThanThreshold",
            "evaluation_periods": periods,
            "datapoints_to_alarm": periods,
            "treat_missing_data": "notBreaching",
            "alarm_actions": list(alarms.actions),
            "ok_actions": list(alarms.actions),
        }
        name = f"{endpoint}-{role}-5xx-ratio"
        out.append(
            AlarmSpec(
                resource_name=f"{endpoint}-{role}-errors",
                name=name,
                variant=role,
                kind="errors",
                args={
                    **common,
                    "name": name,
                    "alarm_description": (
                        f"{endpoint}/{role} variant: 5XX errors above {ratio:.2%} of invocations for "
                        f"{periods} min; rolls back a deployment in progress"
                    ),
                    "threshold": ratio,
                    "metric_queries": [
                        _metric_query("errors", "Invocation5XXErrors", dims),
                        _metric_query("invocations", "Invocations", dims),
                        {
                            "id": "ratio",
                            "expression": "IF(invocations > 0, errors / invocations, 0)",
                            "label": "5XX ratio",
                            "return_data": True,
                        },
                    ],
                },
            )
        )
        name = f"{endpoint}-{role}-p99-latency"
        out.append(
            AlarmSpec(
                resource_name=f"{endpoint}-{role}-latency",
                name=name,
                variant=role,
                kind="latency",
                args={
                    **common,
                    "name": name,
                    "alarm_description": (
                        f"{endpoint}/{role} variant: p99 model latency above {p99:g}s for {periods} min; "
                        "rolls back a deployment in progress"
                    ),
                    "namespace": METRICS_NAMESPACE,
                    "metric_name": "ModelLatency",
                    "dimensions": dims,
                    "extended_statistic": "p99",
                    "period": ALARM_PERIOD_SECONDS,
                    "unit": "Microseconds",
                    "threshold": p99 * 1_000_000,
                },
            )
        )
    return out


def _metric_query(qid: str, metric: str, dims: dict[str, str]) -> dict[str, Any]:
    return {
        "id": qid,
        "return_data": False,
        "metric": {
            "namespace": METRICS_NAMESPACE,
            "metric_name": metric,
            "dimensions": dict(dims),
            "period": ALARM_PERIOD_SECONDS,
            "stat": "Sum",
        },
    }


# --------------------------------------------------------------------------- dashboard


def dashboard_body(endpoint: str, region: str, variants: Sequence[Variant]) -> dict[str, Any]:
    """A CloudWatch dashboard: invocations, 4XX/5XX, model latency, CPU and memory per variant."""

    def line(namespace: str, metric: str, v: Variant, stat: str, label: str) -> list[Any]:
        return [
            namespace,
            metric,
            "EndpointName",
            endpoint,
            "VariantName",
            v.name,
            {"stat": stat, "label": f"{label} {v.name} (v{v.version})"},
        ]

    def widget(title: str, metrics: list[list[Any]], x: int, y: int, unit: str | None = None) -> dict[str, Any]:
        props: dict[str, Any] = {
            "title": title,
            "region": region,
            "view": "timeSeries",
            "stacked": False,
            "period": 60,
            "metrics": metrics,
        }
        if unit is not None:
            props["yAxis"] = {"left": {"label": unit, "showUnits": False}}
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6, "properties": props}

    widgets = [
        widget(
            "Invocations per minute",
            [line(METRICS_NAMESPACE, "Invocations", v, "Sum", "invocations") for v in variants],
            0,
            0,
        ),
        widget(
            "4XX and 5XX errors per minute",
            [
                line(METRICS_NAMESPACE, metric, v, "Sum", label)
                for v in variants
                for metric, label in (("Invocation4XXErrors", "4XX"), ("Invocation5XXErrors", "5XX"))
            ],
            12,
            0,
        ),
        widget(
            "Model latency (microseconds)",
            [line(METRICS_NAMESPACE, "ModelLatency", v, stat, stat) for v in variants for stat in ("p50", "p99")],
            0,
            6,
            "µs",
        ),
        widget(
            "CPU utilization (% of one core, summed over cores)",
            [line(INSTANCE_METRICS_NAMESPACE, "CPUUtilization", v, "Average", "CPU") for v in variants],
            12,
            6,
            "%",
        ),
        widget(
            "Memory utilization",
            [line(INSTANCE_METRICS_NAMESPACE, "MemoryUtilization", v, "Average", "memory") for v in variants],
            0,
            12,
            "%",
        ),
        {
            "type": "text",
            "x": 12,
            "y": 12,
            "width": 12,
            "height": 6,
            "properties": {
                "markdown": "\n".join(
                    [f"## {endpoint}", "", "| variant | version | weight |", "|---|---|---|"]
                    + [f"| {v.name}{' (shadow)' if v.shadow else ''} | {v.version} | {v.weight:g} |" for v in variants]
                )
            },
        },
    ]
    return {"widgets": widgets}
