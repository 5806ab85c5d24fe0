"""Azure Monitor metric alerts of an Azure ML endpoint: the one place a ``MetricAlert`` is built.

Two components declare them: AzureMlModelEndpoint (components/azureml.py: p99 latency and 5xx per
deployment, on the endpoint's platform metrics) and AzureMlModelQuality
(components/azureml_quality.py: drift share and shadow agreement, on the monitor's custom
metrics). Both describe an alert as a *spec* (description, severity, window, criteria) and hand it
to :func:`metric_alert`, so the alert's fixed shape (global location, auto-mitigation, single
resource multiple metric criteria, the action group) is written once. Both modules import this
one; it imports neither.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi

from components.azureml_settings import AzureMlSettings

# Azure Monitor metric alerts accept only these window sizes (minutes).
_WINDOWS_MINUTES = (1, 5, 15, 30, 60, 360, 720, 1440)


def window_size(for_: str) -> str:
    """``monitoring.thresholds.for`` as an Azure Monitor window: the smallest allowed window that
    is at least that long (``5m`` -> ``PT5M``, ``10m`` -> ``PT15M``, ``2h`` -> ``PT6H``)."""
    m = re.fullmatch(r"([0-9]+)([smh])", for_)
    if not m:
        raise ValueError(f"not a duration: {for_!r}")
    minutes = math.ceil(int(m.group(1)) * {"s": 1 / 60, "m": 1, "h": 60}[m.group(2)])
    chosen = next((w for w in _WINDOWS_MINUTES if w >= minutes), _WINDOWS_MINUTES[-1])
    return f"PT{chosen}M" if chosen < 60 else f"PT{chosen // 60}H"


def metric_alert(
    name: str,
    *,
    rule_name: str,
    cfg: AzureMlSettings,
    spec: Mapping[str, Any],
    criteria: Sequence[Mapping[str, Any]],
    scope: pulumi.Input[str],
    evaluation_frequency: str,
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> Any:
    """Declare one ``MetricAlert`` (Pulumi name ``name``, Azure name ``rule_name``) on ``scope``
    from ``spec`` (``description``, ``severity``, ``window_size``) and ``criteria`` (each a
    ``MetricCriteriaArgs`` keyword set; Azure fires when all hold), notifying
    ``azureml.actionGroupId`` if set."""
    import pulumi_azure_native.monitor as monitor

    actions = [{"action_group_id": cfg.action_group_id}] if cfg.action_group_id else []
    return monitor.MetricAlert(
        name,
        rule_name=rule_name,
        resource_group_name=cfg.resource_group,
        location="global",
        description=spec["description"],
        severity=spec["severity"],
        enabled=True,
        auto_mitigate=True,
        scopes=[scope],
        evaluation_frequency=evaluation_frequency,
        window_size=spec["window_size"],
        criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
            odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
            all_of=[monitor.MetricCriteriaArgs(**c) for c in criteria],
        ),
        actions=actions,
        tags=dict(tags),
        opts=opts,
    )
