"""The ``vertex`` stack config: defaults, and every bad input failing with its key path."""

from __future__ import annotations

from typing import Any

import pytest

from components.settings import SettingsError, parse_settings
from components.vertex_settings import VertexSettings

BASE: dict[str, Any] = {
    "mlflow-deploy:model": {"name": "fraud-detector", "version": "7"},
    "mlflow-deploy:vertex": {"project": "acme-ml"},
}


def cfg(vertex: dict[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
    out = dict(BASE)
    if vertex is not None:
        out["mlflow-deploy:vertex"] = {"project": "acme-ml", **vertex}
    for k, v in keys.items():
        out[f"mlflow-deploy:{k}"] = v
    return out


def errors_of(config: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SettingsError) as info:
        parse_settings(config)
    return dict(info.value.errors)


def test_vertex_alone_is_a_target_with_defaults() -> None:
    s = parse_settings(BASE)
    assert s.targets == ["vertex"]
    v = s.vertex
    assert isinstance(v, VertexSettings)
    assert (v.project, v.region, v.min_replicas, v.max_replicas) == ("acme-ml", "us-central1", 1, 2)
    assert v.endpoint_id is None and v.create_repository and v.notification_channels == []


def test_camel_case_keys() -> None:
    s = parse_settings(
        cfg(
            {
                "region": "europe-west4",
                "machineType": "e2-standard-4",
                "minReplicas": 2,
                "maxReplicas": 8,
                "targetCpuUtilization": 70,
                "endpointId": "fraud",
                "privateServiceConnect": {"projectAllowlist": ["acme-apps"]},
                "notificationChannels": ["projects/acme-ml/notificationChannels/123"],
            }
        )
    )
    v = s.vertex
    assert v is not None and v.machine_type == "e2-standard-4" and (v.min_replicas, v.max_replicas) == (2, 8)
    assert v.private_service_connect is not None and v.private_service_connect.project_allowlist == ["acme-apps"]


@pytest.mark.parametrize("strategy", ["canary", "blue-green"])
def test_routing_strategies_are_accepted(strategy: str) -> None:
    s = parse_settings(cfg(candidate={"version": "8", "strategy": strategy, "percent": 100}))
    assert s.candidate is not None and s.candidate.strategy == strategy


def test_shadow_is_refused_naming_the_key_and_the_alternatives() -> None:
    errs = errors_of(cfg(candidate={"version": "8", "strategy": "shadow", "percent": 20}))
    msg = errs["mlflow-deploy:candidate.strategy"]
    assert "Vertex" in msg and "mirror" in msg
    for alternative in ("canary", "kubernetes.router: gateway", "SageMaker", "Azure ML"):
        assert alternative in msg
    with pytest.raises(SettingsError, match=r"mlflow-deploy:candidate\.strategy: Vertex"):
        parse_settings(cfg(candidate={"version": "8", "strategy": "shadow"}))


def test_shadow_without_vertex_is_not_vertex_s_business() -> None:
    config = {
        "mlflow-deploy:model": {"name": "fraud-detector", "version": "7"},
        "mlflow-deploy:candidate": {"version": "8", "strategy": "shadow"},
        "mlflow-deploy:image": {"repository": "ghcr.io/acme/models"},
        "mlflow-deploy:kubernetes": {"router": "gateway", "gateway": {"name": "public"}},
    }
    assert parse_settings(config).candidate is not None


@pytest.mark.parametrize(
    ("vertex", "key", "fragment"),
    [
        ({"minReplicas": 3, "maxReplicas": 2}, "vertex.minReplicas", "greater than maxReplicas"),
        ({"minReplicas": 0}, "vertex.minReplicas", "greater than or equal to 1"),
        ({"targetCpuUtilization": 0}, "vertex.targetCpuUtilization", "greater than or equal to 1"),
        ({"region": "Europe West"}, "vertex.region", "not a GCP region"),
        ({"endpointId": "Fraud_Detector"}, "vertex.endpointId", "endpoint ID"),
        ({"endpointId": "0123"}, "vertex.endpointId", "leading zero"),
        ({"endpointId": "12345678901"}, "vertex.endpointId", "10 digits"),
        ({"endpointId": "fraud-"}, "vertex.endpointId", "endpoint ID"),
        ({"repositoryId": "9models"}, "vertex.repositoryId", "repository ID"),
        ({"createRepository": False}, "vertex.repositoryId", "existing repository"),
        ({"network": "default"}, "vertex.network", "global/networks"),
        (
            {"network": "projects/1/global/networks/vpc", "privateServiceConnect": {"projectAllowlist": ["a"]}},
            "vertex.privateServiceConnect",
            "at most one",
        ),
        ({"privateServiceConnect": {"projectAllowlist": []}}, "vertex.privateServiceConnect.projectAllowlist", ""),
        (
            {"dedicatedEndpoint": True, "network": "projects/1/global/networks/vpc"},
            "vertex.dedicatedEndpoint",
            "public",
        ),
        ({"notificationChannels": ["ops@acme.com"]}, "vertex.notificationChannels", "notificationChannels/<id>"),
        ({"labels": {"Team": "ml"}}, "vertex.labels", "lowercase"),
        ({"replicas": 2}, "vertex.replicas", "unknown key"),
        ({"autoscalingMetric": "gpu"}, "vertex.autoscalingMetric", "no accelerator is set"),
        ({"autoscalingMetric": "latency"}, "vertex.autoscalingMetric", "'cpu', 'gpu' or 'requests'"),
        ({"autoscalingMetric": "requests"}, "vertex.targetRequestsPerMinute", "needs a target"),
        (
            {"autoscalingMetric": "requests", "targetRequestsPerMinute": 600, "targetCpuUtilization": 70},
            "vertex.targetCpuUtilization",
            "only used with autoscalingMetric 'cpu' or 'gpu'",
        ),
        ({"targetDutyCycle": 70}, "vertex.targetDutyCycle", "only used with autoscalingMetric 'gpu'"),
        ({"targetRequestsPerMinute": 600}, "vertex.targetRequestsPerMinute", "only used with autoscalingMetric"),
        (
            {
                "machineType": "g2-standard-8",
                "acceleratorType": "NVIDIA_L4",
                "autoscalingMetric": "gpu",
                "targetDutyCycle": 101,
            },
            "vertex.targetDutyCycle",
            "less than or equal to 100",
        ),
    ],
)
def test_bad_vertex_config_names_the_key(vertex: dict[str, Any], key: str, fragment: str) -> None:
    errs = errors_of(cfg(vertex))
    assert f"mlflow-deploy:{key}" in errs, errs
    assert fragment in errs[f"mlflow-deploy:{key}"]


def test_project_is_required() -> None:
    config = dict(BASE)
    config["mlflow-deploy:vertex"] = {"region": "us-east1"}
    assert errors_of(config) == {"mlflow-deploy:vertex.project": "required key is missing"}


@pytest.mark.parametrize("endpoint_id", ["fraud-detector", "f", "1234567890", "a" * 63])
def test_valid_endpoint_ids(endpoint_id: str) -> None:
    v = parse_settings(cfg({"endpointId": endpoint_id})).vertex
    assert v is not None and v.endpoint_id == endpoint_id


def test_prebuilt_images_must_be_in_a_registry_vertex_pulls_from() -> None:
    errs = errors_of(cfg(image={"uris": {"7": "ghcr.io/acme/fraud:7"}}))
    assert "Artifact Registry" in errs["mlflow-deploy:image.uris.7"]
    # the candidate's too
    errs = errors_of(
        cfg(
            image={"uris": {"7": "europe-west4-docker.pkg.dev/acme-ml/models/fraud:7", "8": "docker.io/acme/fraud:8"}},
            candidate={"version": "8"},
        )
    )
    assert list(errs) == ["mlflow-deploy:image.uris.8"]
    ok = cfg(image={"uris": {"7": "europe-west4-docker.pkg.dev/acme-ml/models/fraud:7", "8": "gcr.io/acme-ml/fraud:8"}})
    assert parse_settings({**ok, "mlflow-deploy:candidate": {"version": "8"}}).image.uris["8"].startswith("gcr.io")
    # a version not live is none of Vertex's business
    assert parse_settings(cfg(image={"uris": {"3": "ghcr.io/acme/fraud:3"}})).vertex is not None


def test_the_prod_example_switches_vertex_on_with_valid_values() -> None:
    from pathlib import Path

    from modelctl.render import read_stack_config

    prod = read_stack_config(Path(__file__).resolve().parents[2] / "Pulumi.prod.yaml")
    v = VertexSettings.model_validate(prod["mlflow-deploy:vertex"])
    assert v.project and v.min_replicas >= 2 and v.notification_channels


def test_autoscaling_targets_per_metric() -> None:
    """What each metric sends: CPU alone; the duty cycle together with CPU on a GPU machine (Vertex
    scales GPU deployments on both); the request rate alone."""
    from components.vertex_settings import VertexSettings

    base = {"project": "acme-ml"}
    assert VertexSettings(**base).autoscaling_targets == {"cpu": 60}
    gpu = VertexSettings(
        **base, machineType="g2-standard-8", acceleratorType="NVIDIA_L4", autoscalingMetric="gpu", targetDutyCycle=70
    )
    assert gpu.autoscaling_targets == {"cpu": 60, "gpu": 70}
    gpu_default = VertexSettings(
        **base, machineType="g2-standard-8", acceleratorType="NVIDIA_L4", autoscalingMetric="gpu"
    )
    assert gpu_default.autoscaling_targets == {"cpu": 60, "gpu": 60}
    req = VertexSettings(**base, autoscalingMetric="requests", targetRequestsPerMinute=900)
    assert req.autoscaling_targets == {"requests": 900}
