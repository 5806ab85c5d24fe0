"""The serving runtime's container contract on every target: the metrics port is declared but
never routed, the drain delay fits each platform, and every target's environment is one the
runtime accepts (parsed by the runtime's own ``parse_settings``)."""

from __future__ import annotations

from typing import Any

import pytest

from components.image import CONTAINER_PORT, METRICS_PORT, SAGEMAKER_MAX_BODY_BYTES
from components.settings import AzureMlSettings, VertexSettings
from components.settings import parse_settings as parse_stack
from modelctl.render import Rendered
from modelctl.sample import SampleRegistry
from serving.config import parse_settings as parse_runtime
from tests.conftest import base_config

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"


@pytest.fixture
def shadowed(render, registry: SampleRegistry) -> Rendered:  # type: ignore[no-untyped-def]
    """The gateway router's entry: an HTTPRoute with a mirror, and monitoring."""
    k8s = {
        "router": "gateway",
        "gateway": {"name": "public", "namespace": "gateway-system"},
        "replicas": 2,
    }
    cfg = base_config(registry, kubernetes=k8s, monitoring={"enabled": True})
    cfg["mlflow-deploy:candidate"] = {"version": "2", "strategy": "shadow", "percent": 10}
    return render(cfg)


@pytest.fixture
def ingressed(render, registry: SampleRegistry) -> Rendered:  # type: ignore[no-untyped-def]
    """The service router's entries: an Ingress and a LoadBalancer-free Service, with a canary."""
    k8s = {
        "router": "service",
        "ingress": {"host": "fraud.example.com"},
        "networkPolicy": {"entryNamespaces": ["ingress-nginx"]},
        "replicas": 2,
    }
    cfg = base_config(registry, kubernetes=k8s, monitoring={"enabled": True})
    cfg["mlflow-deploy:candidate"] = {"version": "2", "strategy": "canary", "percent": 10}
    return render(cfg)


def _containers(out: Rendered) -> list[dict[str, Any]]:
    return [d.inputs["spec"]["template"]["spec"]["containers"][0] for d in out.of_type(DEPLOYMENT)]


def test_kubernetes_containers_declare_the_metrics_port(shadowed: Rendered) -> None:
    containers = _containers(shadowed)
    assert len(containers) == 2
    for c in containers:
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"http": CONTAINER_PORT, "metrics": METRICS_PORT}
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["SERVING_METRICS_PORT"] == str(METRICS_PORT)
        # the preStop sleep already lets the endpoints drain: no second wait in the runtime
        assert env["SERVING_DRAIN_SECONDS"] == "0"
        assert c["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
        runtime = parse_runtime([], env=env, cpus=lambda: 2)
        assert (runtime.port, runtime.metrics_port, runtime.drain_seconds) == (CONTAINER_PORT, METRICS_PORT, 0)


def service_ports(out: Rendered) -> dict[str, dict[Any, Any]]:
    """Service name -> its ports (by number and name) -> the target port; every one is ``http``."""
    services = {s.inputs["metadata"]["name"]: s.inputs["spec"] for s in out.of_type(SERVICE)}
    assert services
    ports: dict[str, dict[Any, Any]] = {}
    for name, spec in services.items():
        for port in spec["ports"]:
            assert port["targetPort"] == "http", (name, port)
            ports.setdefault(name, {})[port["port"]] = port["targetPort"]
            ports[name][port["name"]] = port["targetPort"]
    return ports


def test_an_ingress_never_reaches_the_metrics_port(ingressed: Rendered) -> None:
    ports = service_ports(ingressed)
    (ingress,) = ingressed.of_type(INGRESS)
    for rule in ingress.inputs["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert ports[backend["name"]][backend["port"]["name"]] == "http"


def test_nothing_that_routes_traffic_reaches_the_metrics_port(shadowed: Rendered) -> None:
    ports = service_ports(shadowed)
    assert not shadowed.of_type(INGRESS)

    (route,) = shadowed.of_type(ROUTE)
    refs = []
    for rule in route.inputs["spec"]["rules"]:
        refs += rule["backendRefs"]
        refs += [f["requestMirror"]["backendRef"] for f in rule.get("filters", []) if f["type"] == "RequestMirror"]
    assert len(refs) == 2  # the stable backend and the mirror
    for ref in refs:
        assert ports[ref["name"]][ref["port"]] == "http"


def test_the_pod_monitor_scrapes_the_metrics_port(shadowed: Rendered) -> None:
    (pm,) = shadowed.of_type(POD_MONITOR)
    (endpoint,) = pm.inputs["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    for c in _containers(shadowed):
        assert endpoint["port"] in {p["name"] for p in c["ports"]}


def _sagemaker_env() -> dict[str, str]:
    from components.sagemaker import container_environment

    stack = parse_stack(
        {
            "mlflow-deploy:model": {"name": "fraud-detector", "version": "7"},
            "mlflow-deploy:sagemaker": {"region": "us-east-1"},
        }
    )
    assert stack.sagemaker is not None
    return container_environment("fraud-detector", "7", stack.sagemaker)


def _azureml_env() -> dict[str, str]:
    from components.azureml import environment_variables

    return environment_variables(
        "fraud-detector", "7", AzureMlSettings(resourceGroup="ml-rg", workspace="ml-ws", location="westeurope")
    )


def _vertex_env() -> dict[str, str]:
    from components.vertex import container_env

    return container_env("fraud-detector", "7", VertexSettings(project="acme-ml"))


@pytest.mark.parametrize("target", ["sagemaker", "azureml", "vertex"])
def test_cloud_targets_drain_before_they_stop(target: str) -> None:
    """SageMaker, Azure ML and Vertex AI have no preStop hook: the runtime itself keeps serving
    with readiness 503 for 5 s after SIGTERM. They route only the serving port; the metrics
    port is declared in the environment (and the image's EXPOSE) for whoever scrapes it."""
    env = {"sagemaker": _sagemaker_env, "azureml": _azureml_env, "vertex": _vertex_env}[target]()
    assert env["SERVING_DRAIN_SECONDS"] == "5"
    assert env["SERVING_METRICS_PORT"] == str(METRICS_PORT)
    runtime = parse_runtime([], env=env, cpus=lambda: 2)
    assert runtime.drain_seconds == 5 and runtime.metrics_port == METRICS_PORT != runtime.port


def test_sagemaker_containers_accept_what_sagemaker_lets_through() -> None:
    runtime = parse_runtime([], env=_sagemaker_env(), cpus=lambda: 2)
    assert runtime.max_body_bytes == SAGEMAKER_MAX_BODY_BYTES
    # the other targets keep the runtime's default
    assert parse_runtime([], env=_vertex_env(), cpus=lambda: 2).max_body_bytes == 6 * 1024 * 1024


@pytest.mark.parametrize("target", ["kubernetes", "sagemaker", "azureml", "vertex"])
def test_batching_keys_reach_the_runtime_on_every_target(
    target: str, render, registry: SampleRegistry  # type: ignore[no-untyped-def]
) -> None:
    """``batchMaxSize`` / ``batchMaxWaitMs`` of each target become the runtime's batching, read by
    the runtime's own parser; left out, the runtime does not batch."""
    from components.azureml import environment_variables
    from components.sagemaker import container_environment
    from components.vertex import container_env

    def env_of(keys: dict[str, Any]) -> dict[str, str]:
        if target == "kubernetes":
            out = render(base_config(registry, kubernetes={"replicas": 1, **keys}))
            return {e["name"]: e["value"] for e in _containers(out)[0]["env"]}
        if target == "sagemaker":
            stack = parse_stack(
                {
                    "mlflow-deploy:model": {"name": "fraud-detector", "version": "7"},
                    "mlflow-deploy:sagemaker": {"region": "us-east-1", **keys},
                }
            )
            assert stack.sagemaker is not None
            return container_environment("fraud-detector", "7", stack.sagemaker)
        if target == "azureml":
            az = AzureMlSettings(resourceGroup="ml-rg", workspace="ml-ws", location="westeurope", **keys)
            return environment_variables("fraud-detector", "7", az)
        return container_env("fraud-detector", "7", VertexSettings(project="acme-ml", **keys))

    on = parse_runtime([], env=env_of({"batchMaxSize": 16, "batchMaxWaitMs": 5}), cpus=lambda: 2)
    assert (on.batch_max_size, on.batch_max_wait_ms) == (16, 5.0)
    default_wait = parse_runtime([], env=env_of({"batchMaxSize": 8}), cpus=lambda: 2)
    assert (default_wait.batch_max_size, default_wait.batch_max_wait_ms) == (8, 2.0)
    off = env_of({})
    assert "SERVING_BATCH_MAX_SIZE" not in off and parse_runtime([], env=off, cpus=lambda: 2).batch_max_size == 0
