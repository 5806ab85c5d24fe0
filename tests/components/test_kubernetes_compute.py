"""Kubernetes compute options: GPUs (limits, node selection, tolerations, workers per GPU) and
request-based autoscaling with KEDA, every ScaledObject validated against KEDA's own CRD schema
(tests/data/crds/keda-v2.20.2-scaledobjects.yaml) and every Deployment against Kubernetes'."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from components.settings import SettingsError, parse_settings
from modelctl.render import Rendered
from modelctl.sample import SampleRegistry
from tests.conftest import base_config
from tests.gpu_models import GpuModels

DATA = Path(__file__).resolve().parents[1] / "data" / "crds"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
MONITORING = {"enabled": True, "stackNamespace": "monitoring"}
GPU_DEPLOYMENT = "image-scorer-v1"


def k8s(**extra: Any) -> dict[str, Any]:
    return {"namespace": "models", "replicas": 2, **extra}


def errors_of(config: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SettingsError) as exc:
        parse_settings(config)
    return dict(exc.value.errors)


def pod_spec(out: Rendered, name: str = "fraud-detector-v1") -> dict[str, Any]:
    return out.named(name).inputs["spec"]["template"]["spec"]


def deployment_manifest(out: Rendered, name: str = "fraud-detector-v1") -> dict[str, Any]:
    d = out.named(name)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": d.inputs["metadata"], "spec": d.inputs["spec"]}


# --------------------------------------------------------------------------- GPUs


def gpu_config(registry: SampleRegistry, gpu_models: GpuModels, **k8s_extra: Any) -> dict[str, Any]:
    """The torch model (a GPU can serve it; the sklearn sample is refused) on Kubernetes."""
    return base_config(registry, model={"name": gpu_models.name, "version": "1"}, kubernetes=k8s(**k8s_extra))


def test_gpu_limits_node_selection_tolerations_and_one_worker_per_gpu(
    render: Any, registry: SampleRegistry, gpu_models: GpuModels
) -> None:
    gpu = {"count": 2, "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"}}
    out = render(gpu_config(registry, gpu_models, gpu=gpu))
    spec = pod_spec(out, GPU_DEPLOYMENT)
    (c,) = spec["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert "nvidia.com/gpu" not in c["resources"].get("requests", {})
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["SERVING_WORKERS"] == "2"
    assert env["SERVING_GPUS"] == "2"  # the runtime pins each worker to its GPU (serving/gpus.py)
    kubernetes_validate.validate(
        deployment_manifest(out, GPU_DEPLOYMENT), kubernetes_validate.latest_version(), strict=True
    )


def test_explicit_workers_and_tolerations_win(render: Any, registry: SampleRegistry, gpu_models: GpuModels) -> None:
    gpu = {
        "count": 1,
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
    }
    out = render(gpu_config(registry, gpu_models, gpu=gpu, workers=3))
    spec = pod_spec(out, GPU_DEPLOYMENT)
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["SERVING_WORKERS"] == "3"


def test_no_gpu_no_gpu_fields(render: Any, registry: SampleRegistry) -> None:
    spec = pod_spec(render(base_config(registry)))
    assert "nodeSelector" not in spec and "tolerations" not in spec
    assert not any("gpu" in k for k in spec["containers"][0]["resources"].get("limits", {}))
    assert "SERVING_WORKERS" not in {e["name"] for e in spec["containers"][0]["env"]}


@pytest.mark.parametrize(
    ("gpu", "key", "needle"),
    [
        ({"count": 0}, "kubernetes.gpu.count", "greater than or equal to 1"),
        ({"resource": "amd.com/gpu"}, "kubernetes.gpu.resource", "CUDA"),
        ({"resource": "gpu"}, "kubernetes.gpu.resource", "pattern"),
        ({"tolerations": [{"operator": "Exists", "value": "x"}]}, "kubernetes.gpu.tolerations[0]", "no value"),
    ],
)
def test_impossible_gpu_settings_name_the_key(
    registry: SampleRegistry, gpu: dict[str, Any], key: str, needle: str
) -> None:
    errs = errors_of(base_config(registry, kubernetes=k8s(gpu=gpu)))
    assert needle in errs[f"mlflow-deploy:{key}"]


# --------------------------------------------------------------------------- KEDA


def keda_schema() -> dict[str, Any]:
    """The v1alpha1 ScaledObject schema of KEDA's CRD, strict: objects that list their properties
    refuse others (unless the schema preserves unknown fields)."""
    crd = yaml.safe_load((DATA / "keda-v2.20.2-scaledobjects.yaml").read_text())
    assert crd["metadata"]["name"] == "scaledobjects.keda.sh"
    (v,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])

    def strict(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node.setdefault("additionalProperties", False)
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)

    strict(schema)
    return schema


def validate_scaled_object(res: Any) -> None:
    obj = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": res.inputs["metadata"],
        "spec": res.inputs["spec"],
    }
    jsonschema.validate(obj, keda_schema())
    spec = obj["spec"]
    # the CRD's x-kubernetes-validations rule (CEL), which jsonschema does not run
    assert spec["minReplicaCount"] <= spec.get("maxReplicaCount", 100)


def test_the_schema_check_catches_a_bad_scaled_object() -> None:
    """The strict schema is not a rubber stamp: a misspelt field and a negative count fail."""
    schema = keda_schema()
    good = {"scaleTargetRef": {"name": "x"}, "triggers": [{"type": "prometheus", "metadata": {"query": "up"}}]}
    jsonschema.validate({"spec": good}, schema)
    for bad in ({**good, "minReplicas": 1}, {**good, "minReplicaCount": -1}, {"scaleTargetRef": {"name": "x"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"spec": bad}, schema)


@pytest.mark.parametrize("metric", ["requests", "concurrency"])
def test_request_metrics_render_a_valid_scaled_object_instead_of_an_hpa(
    render: Any, registry: SampleRegistry, metric: str
) -> None:
    auto = {"metric": metric, "minReplicas": 2, "maxReplicas": 8}
    out = render(base_config(registry, kubernetes=k8s(autoscaling=auto), monitoring=MONITORING))
    assert out.of_type(HPA) == []
    (so,) = out.of_type(SCALED_OBJECT)
    validate_scaled_object(so)
    spec = so.inputs["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud-detector-v1"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 8)
    (trig,) = spec["triggers"]
    meta = trig["metadata"]
    assert meta["serverAddress"] == "http://prometheus-operated.monitoring.svc:9090"
    series = "model_requests_total" if metric == "requests" else "model_requests_in_flight"
    assert series in meta["query"]
    assert 'namespace="models",model="fraud-detector",version="1"' in meta["query"]
    assert meta["threshold"] == ("20" if metric == "requests" else "4")
    # KEDA owns the replica count: the Deployment leaves it out
    assert "replicas" not in out.named("fraud-detector-v1").inputs["spec"]
    assert so.inputs["metadata"]["namespace"] == "models"


def test_scale_to_zero_adds_a_wake_trigger_and_no_pdb(render: Any, registry: SampleRegistry) -> None:
    wake = 'sum(rate(envoy_cluster_upstream_rq_total{envoy_cluster_name=~".*fraud-detector.*"}[1m]))'
    auto = {"metric": "requests", "minReplicas": 0, "maxReplicas": 4, "wakeQuery": wake, "cooldownSeconds": 600}
    out = render(base_config(registry, kubernetes=k8s(autoscaling=auto), monitoring=MONITORING))
    (so,) = out.of_type(SCALED_OBJECT)
    validate_scaled_object(so)
    spec = so.inputs["spec"]
    assert spec["minReplicaCount"] == 0 and spec["cooldownPeriod"] == 600
    names = [t["name"] for t in spec["triggers"]]
    assert names == ["requests", "wake"]
    assert spec["triggers"][1]["metadata"]["query"] == wake
    assert spec["triggers"][1]["metadata"]["activationThreshold"] == "0"
    assert out.of_type(PDB) == []


@pytest.mark.parametrize(
    ("auto", "monitoring", "key", "needle"),
    [
        ({"minReplicas": 0}, MONITORING, "kubernetes.autoscaling.minReplicas", "KEDA"),
        ({"metric": "requests", "minReplicas": 0}, MONITORING, "kubernetes.autoscaling.wakeQuery", "no pod"),
        ({"metric": "requests", "wakeQuery": "up"}, MONITORING, "kubernetes.autoscaling.wakeQuery", "minReplicas 0"),
        ({"prometheusAddress": "http://p:9090"}, MONITORING, "kubernetes.autoscaling.prometheusAddress", "only used"),
        ({"metric": "concurrency"}, {"enabled": False}, "kubernetes.autoscaling.metric", "monitoring.enabled"),
        ({"metric": "rps"}, MONITORING, "kubernetes.autoscaling.metric", "got 'rps'"),
    ],
)
def test_impossible_autoscaling_names_the_key(
    registry: SampleRegistry, auto: dict[str, Any], monitoring: dict[str, Any], key: str, needle: str
) -> None:
    errs = errors_of(base_config(registry, kubernetes=k8s(autoscaling=auto), monitoring=monitoring))
    assert needle in errs[f"mlflow-deploy:{key}"], errs


def test_a_canary_gets_its_own_scaled_object_and_stable_is_unchanged(render: Any, registry: SampleRegistry) -> None:
    auto = {"metric": "concurrency", "minReplicas": 2, "maxReplicas": 6}
    k = k8s(autoscaling=auto, router="gateway", gateway={"name": "public", "namespace": "gw"})
    before = render(base_config(registry, kubernetes=k, monitoring=MONITORING))
    after = render(
        base_config(registry, kubernetes=k, monitoring=MONITORING, candidate={"version": "2", "percent": 10})
    )
    assert sorted(r.name for r in after.of_type(SCALED_OBJECT)) == [
        "fraud-detector-v1-scaledobject",
        "fraud-detector-v2-scaledobject",
    ]
    for so in after.of_type(SCALED_OBJECT):
        validate_scaled_object(so)
    assert after.named("fraud-detector-v1-scaledobject").inputs == before.named("fraud-detector-v1-scaledobject").inputs
    assert (
        'version="2"'
        in after.named("fraud-detector-v2-scaledobject").inputs["spec"]["triggers"][0]["metadata"]["query"]
    )
