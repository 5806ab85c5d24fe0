"""GPU monitoring on Kubernetes (components/monitoring_gpu.py): the GPU memory alert and the GPU
panels' queries, run by the real ``promtool test rules`` on dcgm-exporter series, in both forms a
scrape gives them (the exporter's pod labels kept with ``honorLabels: true``, or renamed to
``exported_*`` with the charts' default ``honorLabels: false``); and the render wiring."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components import monitoring as mon
from components import monitoring_gpu as mg
from components.rollout import plan_traffic
from components.settings import AlertThresholds
from modelctl.sample import SampleRegistry
from tests.components.test_monitoring_rules import PROMTOOL, run_promtool, without_annotations
from tests.conftest import base_config
from tests.gpu_models import GpuModels

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")

MODEL, NS = "fraud-detector", "models"
T = AlertThresholds(for_="5m")  # type: ignore[call-arg]
POD7 = "fraud-detector-v7-5d9f8b7c4-abcde"
POD8 = "fraud-detector-v8-7c6b5d4f9-fghij"
GPU = {"gpu": "0", "UUID": "GPU-5e1c", "device": "nvidia0", "modelName": "NVIDIA L4", "Hostname": "gpu-node-1"}
EXPORTER = {"namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-x7k2p", "job": "nvidia-dcgm-exporter"}


def honored(metric: str, values: str, pod: str, namespace: str = NS, **gpu: str) -> dict[str, str]:
    """The exporter's pod mapping kept as is (honorLabels: true)."""
    labels = {**GPU, **gpu, "container": "model", "namespace": namespace, "pod": pod, "job": "nvidia-dcgm-exporter"}
    return {"series": metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}", "values": values}


def renamed(metric: str, values: str, pod: str, **gpu: str) -> dict[str, str]:
    """The scrape target's labels win (honorLabels: false): the pod mapping is exported_*."""
    labels = {**GPU, **gpu, **EXPORTER, "exported_container": "model", "exported_namespace": NS, "exported_pod": pod}
    return {"series": metric + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}", "values": values}


def memory(form: Any, pod: str, used: int, free: int, **gpu: str) -> list[dict[str, str]]:
    return [form(mg.FB_USED, f"{used}x30", pod, **gpu), form(mg.FB_FREE, f"{free}x30", pod, **gpu)]


def groups() -> list[dict[str, Any]]:
    extra = mg.gpu_alert_rules(MODEL, NS, T)
    return without_annotations(mon.rule_groups(MODEL, NS, plan_traffic("7", None), T, extra))


def fired(version: str, pod: str, gpu: str = "0") -> dict[str, Any]:
    labels = {"namespace": NS, "model": MODEL, "severity": "warning", "version": version, "pod": pod, "gpu": gpu}
    return {"exp_labels": labels}


def test_gpu_memory_alert_fires_per_gpu_above_the_share_for_the_for_duration(tmp_path: Path) -> None:
    inputs = [
        *memory(honored, POD7, used=21_000, free=1_500),  # 93%: fires
        *memory(honored, POD7, used=11_000, free=11_500, gpu="1", UUID="GPU-77aa", device="nvidia1"),  # 49%
        *memory(renamed, POD8, used=22_000, free=500),  # 98%, the other scrape form: fires
        *memory(honored, "other-model-v7-5d9f8b7c4-abcde", used=22_000, free=100),  # not this model
        *memory(honored, POD7.replace("v7", "v9"), used=22_000, free=100, namespace="staging"),  # not this namespace
    ]
    tests = [
        {
            "interval": "1m",
            "input_series": inputs,
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": mg.ALERT_GPU_MEMORY, "exp_alerts": []},  # pending: for 5m
                {
                    "eval_time": "10m",
                    "alertname": mg.ALERT_GPU_MEMORY,
                    "exp_alerts": [fired("7", POD7), fired("8", POD8)],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": memory(honored, POD7, used=19_000, free=4_000),  # 83%: below 90%
            "alert_rule_test": [{"eval_time": "20m", "alertname": mg.ALERT_GPU_MEMORY, "exp_alerts": []}],
        },
    ]
    run_promtool(tmp_path, groups(), tests)


def test_panel_queries_per_version(tmp_path: Path) -> None:
    """The panels' queries with Grafana's ``$version`` set to 7 and to both versions."""
    (row,) = mg.gpu_rows(MODEL, NS)
    title, panels = row
    assert title == "GPUs"
    by_title = {p.title: p.queries[0][0] for p in panels}
    inputs = [
        honored(mg.GPU_UTIL, "80x30", POD7),
        renamed(mg.GPU_UTIL, "35x30", POD8),
        *memory(honored, POD7, used=18_000, free=6_000),
        *memory(renamed, POD8, used=6_000, free=18_000),
    ]
    labels7 = {"version": "7", "pod": POD7, "gpu": "0"}
    labels8 = {"version": "8", "pod": POD8, "gpu": "0"}
    cases = [
        ("GPU utilisation", "7", [(labels7, 80)]),
        ("GPU utilisation", "7|8", [(labels7, 80), (labels8, 35)]),
        ("GPU memory used", "8", [(labels8, 6000)]),
        ("GPU memory in use", "7|8", [(labels7, 0.75), (labels8, 0.25)]),
    ]
    tests = [
        {
            "interval": "1m",
            "input_series": inputs,
            "promql_expr_test": [
                {
                    "expr": by_title[t].replace("$version", v),
                    "eval_time": "5m",
                    "exp_samples": [
                        {"labels": "{" + ",".join(f'{k}="{x}"' for k, x in lab.items()) + "}", "value": val}
                        for lab, val in want
                    ],
                }
                for t, v, want in cases
            ],
        }
    ]
    run_promtool(tmp_path, groups(), tests)
    board = mon.build_dashboard(MODEL, NS, T, mg.gpu_rows(MODEL, NS))
    in_use = next(p for p in board["panels"] if p.get("title") == "GPU memory in use")
    assert in_use["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == mg.GPU_MEMORY_NEAR_FULL
    json.dumps(board)


def test_annotations_render_in_promtool(tmp_path: Path) -> None:
    extra = mg.gpu_alert_rules(MODEL, NS, T)
    rule_groups = mon.rule_groups(MODEL, NS, plan_traffic("7", None), T, extra)
    (rule,) = [r for g in rule_groups for r in g["rules"] if r.get("alert") == mg.ALERT_GPU_MEMORY]
    test = {
        "interval": "1m",
        "input_series": memory(honored, POD7, used=23_000, free=0),
        "alert_rule_test": [
            {
                "eval_time": "10m",
                "alertname": mg.ALERT_GPU_MEMORY,
                "exp_alerts": [
                    {
                        "exp_labels": fired("7", POD7)["exp_labels"],
                        "exp_annotations": {
                            "summary": f"fraud-detector v7: GPU memory 100% full on {POD7}",
                            "description": rule["annotations"]["description"]
                            .replace("{{ $labels.version }}", "7"),
                        },
                    }
                ],
            }
        ],
    }
    run_promtool(tmp_path, rule_groups, [test])


def test_rendered_only_with_gpus(render: Any, registry: SampleRegistry, gpu_models: GpuModels) -> None:
    monitoring = {"enabled": True, "stackNamespace": "monitoring"}
    k8s = {"namespace": "models", "replicas": 1}

    def alerts_and_panels(kubernetes: dict[str, Any], model: str) -> tuple[set[str], set[str]]:
        cfg = base_config(registry, model={"name": model, "version": "1"}, kubernetes=kubernetes, monitoring=monitoring)
        out = render(cfg)
        (rule,) = out.of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")
        names = {r.get("alert") for g in rule.inputs["spec"]["groups"] for r in g["rules"]}
        (cm,) = [c for c in out.of_type("kubernetes:core/v1:ConfigMap") if "dashboard" in c.name]
        board = json.loads(next(iter(cm.inputs["data"].values())))
        return names, {p.get("title") for p in board["panels"]}

    names, titles = alerts_and_panels({**k8s, "gpu": {"count": 1}}, gpu_models.name)
    assert mg.ALERT_GPU_MEMORY in names and {"GPUs", "GPU utilisation", "GPU memory in use"} <= titles
    names, titles = alerts_and_panels(k8s, registry.name)
    assert mg.ALERT_GPU_MEMORY not in names and "GPU utilisation" not in titles
