"""GPU monitoring on Kubernetes: dashboard panels and an alert on NVIDIA's DCGM exporter metrics,
when a version serves on GPUs (``kubernetes.gpu``).

Pure builders; ``components/targets.py`` hands them to ``ModelMonitoring`` (``extra_alerts``,
``extra_rows``) as it does the model-quality ones (components/monitoring_quality.py).

The series are dcgm-exporter's default counters (NVIDIA/dcgm-exporter ``etc/default-counters.csv``):
``DCGM_FI_DEV_GPU_UTIL`` (gauge, GPU utilization in %), ``DCGM_FI_DEV_FB_USED`` and
``DCGM_FI_DEV_FB_FREE`` (gauges, framebuffer memory used / free in MiB). With its Kubernetes pod
mapping on (the Helm chart's and the GPU Operator's default), each GPU's series carries the pod,
namespace and container the device plugin gave the GPU to, as the labels ``pod``, ``namespace``
and ``container`` (dcgm-exporter ``internal/pkg/transformation``: ``podAttribute = "pod"``,
``namespaceAttribute = "namespace"``, ``containerAttribute = "container"``). Scraped with
``honorLabels: false`` (both charts' ServiceMonitor default) Prometheus keeps the exporter pod's
own ``namespace``/``pod`` and renames the exporter's to ``exported_namespace``/``exported_pod``;
every query here takes both forms, so it works with either scrape setting.

The version comes from the pod name: every version's pods belong to its Deployment
``<model>-v<version>`` (components/names.py ``version_name``), so are named
``<model>-v<version>-<replica set hash>-<suffix>``.
"""

from __future__ import annotations

from typing import Any

from components.monitoring import PanelSpec, _alert, _num, model_label
from components.names import base_name
from components.settings import AlertThresholds

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
FB_USED = "DCGM_FI_DEV_FB_USED"
FB_FREE = "DCGM_FI_DEV_FB_FREE"
ALERT_GPU_MEMORY = "ModelGpuMemoryNearFull"
GPU_MEMORY_NEAR_FULL = 0.9
"""Share of a GPU's memory in use above which ModelGpuMemoryNearFull fires: past it a larger batch
or a longer input fails with CUDA out-of-memory."""


def pod_pattern(model: str, version_re: str) -> str:
    """The regex of the pod names of the versions matching ``version_re``."""
    return f"{base_name(model)}-v({version_re})-[a-z0-9]+-[a-z0-9]+"


def gpu_series(metric: str, model: str, namespace: str, version_re: str = "[0-9]+") -> str:
    """``metric`` of the GPUs this model's pods hold, labelled ``version`` (either scrape form)."""
    pods = pod_pattern(model, version_re)
    honored = f'{metric}{{namespace="{namespace}",pod=~"{pods}"}}'
    renamed = (
        f'label_replace({metric}{{exported_namespace="{namespace}",exported_pod=~"{pods}"}}, '
        '"pod", "$1", "exported_pod", "(.+)")'
    )
    return f'label_replace({honored} or {renamed}, "version", "$1", "pod", "{pods}")'


def memory_share(model: str, namespace: str, version_re: str = "[0-9]+") -> str:
    """Per GPU: the share of its memory in use (used / (used + free))."""
    used, free = (gpu_series(m, model, namespace, version_re) for m in (FB_USED, FB_FREE))
    return f"{used} / ({used} + {free})"


def gpu_alert_rules(model: str, namespace: str, thresholds: AlertThresholds) -> list[dict[str, Any]]:
    """``ModelGpuMemoryNearFull``: a GPU of a version above GPU_MEMORY_NEAR_FULL for ``for``."""
    # the rule's own labels are not in the query's result: the model goes in as text
    who = model_label(model) + " v{{ $labels.version }}"
    rule = _alert(
        ALERT_GPU_MEMORY,
        f"max by (version, pod, gpu) ({memory_share(model, namespace)}) > {_num(GPU_MEMORY_NEAR_FULL)}",
        "warning",
        f"{who}: GPU memory {{{{ $value | humanizePercentage }}}} full on {{{{ $labels.pod }}}}",
        f"A GPU of {who} has had more than {GPU_MEMORY_NEAR_FULL:.0%} of its memory in use for "
        f"{thresholds.for_}: larger batches or inputs will fail with CUDA out of memory. Lower the "
        "workers per GPU (kubernetes.workers), the batch size, or use a GPU with more memory.",
        model,
        thresholds.for_,
    )
    rule["labels"]["namespace"] = namespace
    return [rule]


def gpu_rows(model: str, namespace: str) -> list[tuple[str, list[PanelSpec]]]:
    """A "GPUs" row: utilisation and memory of each version's GPUs (the ``$version`` variable)."""
    sel = "$version"
    legend = "v{{version}} {{pod}} GPU {{gpu}}"
    return [
        (
            "GPUs",
            [
                PanelSpec(
                    "GPU utilisation",
                    "percent",
                    ((f"max by (version, pod, gpu) ({gpu_series(GPU_UTIL, model, namespace, sel)})", legend),),
                    f"{GPU_UTIL} (dcgm-exporter): the share of time a kernel ran on each GPU of the version's "
                    "pods. Low under load: the workers are CPU-bound (pre/post-processing) or starved.",
                ),
                PanelSpec(
                    "GPU memory used",
                    "mbytes",
                    ((f"max by (version, pod, gpu) ({gpu_series(FB_USED, model, namespace, sel)})", legend),),
                    f"{FB_USED} (MiB) per GPU: the model, the CUDA context of each worker on it, and the "
                    "framework's cache.",
                ),
                PanelSpec(
                    "GPU memory in use",
                    "percentunit",
                    ((f"max by (version, pod, gpu) ({memory_share(model, namespace, sel)})", legend),),
                    f"{FB_USED} / ({FB_USED} + {FB_FREE}); the line is where {ALERT_GPU_MEMORY} fires.",
                    threshold=GPU_MEMORY_NEAR_FULL,
                ),
            ],
        )
    ]
