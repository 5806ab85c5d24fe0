"""Kubernetes: a PodDisruptionBudget only where it can hold (the version's real pod floor), and an
HTTPRoute whose request timeout lets the server's own 504 answer first; every rendered HTTPRoute
validated against the upstream Gateway API CRD (tests/data/gateway-api)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from components.kubernetes import GATEWAY_TIMEOUT_MARGIN_SECONDS, http_route_spec, pdb_spec
from components.rollout import plan_traffic
from components.settings import parse_settings
from modelctl.render import Rendered
from modelctl.sample import SampleRegistry
from tests.conftest import base_config

DATA = Path(__file__).resolve().parents[1] / "data" / "gateway-api"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
GATEWAY = {"router": "gateway", "gateway": {"name": "public", "namespace": "gateway-system"}}


def cfg(registry: SampleRegistry, k8s: dict[str, Any], candidate: dict[str, Any] | None = None) -> dict[str, Any]:
    c = base_config(registry, kubernetes=k8s)
    if candidate is not None:
        c["mlflow-deploy:candidate"] = candidate
    return c


# --------------------------------------------------------------------------- PodDisruptionBudget


def test_a_pdb_needs_two_pods_and_never_forbids_an_eviction() -> None:
    assert pdb_spec("fraud-detector", "7", 1) is None
    assert pdb_spec("fraud-detector", "7", 0) is None
    spec = pdb_spec("fraud-detector", "7", 2)
    assert spec == {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "fraud-detector", "version": "7"}}}
    assert "minAvailable" not in (pdb_spec("fraud-detector", "7", 10) or {})


def test_the_pdb_follows_the_floor_the_hpa_really_has(render: Any, registry: SampleRegistry) -> None:
    """service router + autoscaling: a 10% candidate's HPA floor is scaled down to one pod, so the
    candidate gets no PDB (one pod cannot stay available through an eviction); stable keeps its."""
    k8s = {"router": "service", "replicas": 2, "autoscaling": {"minReplicas": 2, "maxReplicas": 6}}
    out = render(cfg(registry, k8s, candidate={"version": "2", "strategy": "canary", "percent": 10}))
    floors = {h.inputs["metadata"]["name"]: h.inputs["spec"]["minReplicas"] for h in out.of_type(HPA)}
    assert floors == {"fraud-detector-v1": 2, "fraud-detector-v2": 1}
    pdbs = {p.inputs["metadata"]["name"]: p.inputs["spec"] for p in out.of_type(PDB)}
    assert set(pdbs) == {"fraud-detector-v1"}
    assert pdbs["fraud-detector-v1"]["maxUnavailable"] == 1


def test_an_hpa_floor_of_one_gets_no_pdb_even_with_more_replicas(render: Any, registry: SampleRegistry) -> None:
    out = render(cfg(registry, {"replicas": 3, "autoscaling": {"minReplicas": 1, "maxReplicas": 4}}))
    assert out.of_type(PDB) == []


# --------------------------------------------------------------------------- HTTPRoute timeouts


def crd_schema() -> dict[str, Any]:
    """The v1 HTTPRoute schema of the upstream CRD, made strict: objects that define their
    properties refuse others (unless the schema says to preserve unknown fields)."""
    crd = yaml.safe_load((DATA / "gateway-api-v1.3.0-standard-httproutes.yaml").read_text())
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = copy.deepcopy(v1["schema"]["openAPIV3Schema"])

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


def route_object(out: Rendered) -> dict[str, Any]:
    (route,) = out.of_type(ROUTE)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": route.inputs["metadata"],
        "spec": route.inputs["spec"],
    }


def test_the_route_times_out_just_after_the_server(render: Any, registry: SampleRegistry) -> None:
    out = render(cfg(registry, {**GATEWAY, "requestTimeoutSeconds": 45}))
    (rule,) = route_object(out)["spec"]["rules"]
    assert rule["timeouts"] == {"request": f"{45 + GATEWAY_TIMEOUT_MARGIN_SECONDS}s"}
    assert 0 < GATEWAY_TIMEOUT_MARGIN_SECONDS <= 10


@pytest.mark.parametrize(
    "candidate",
    [
        None,
        {"version": "2", "strategy": "canary", "percent": 10},
        {"version": "2", "strategy": "blue-green", "percent": 0},
        {"version": "2", "strategy": "shadow", "percent": 20},
    ],
)
def test_every_rendered_route_is_valid_against_the_upstream_crd(
    candidate: dict[str, Any] | None, render: Any, registry: SampleRegistry
) -> None:
    out = render(
        cfg(registry, {**GATEWAY, "gateway": {**GATEWAY["gateway"], "hostnames": ["m.example.com"]}}, candidate)
    )
    jsonschema.validate(route_object(out), crd_schema())


def test_the_schema_check_is_strict_and_knows_the_duration_format() -> None:
    settings = parse_settings(
        {
            "model": {"name": "fraud-detector", "version": "1"},
            "image": {"repository": "registry.example.com/models"},
            "kubernetes": {**GATEWAY, "requestTimeoutSeconds": 60},
        }
    )
    assert settings.kubernetes is not None
    spec = http_route_spec("fraud-detector", plan_traffic("1", None), settings.kubernetes)
    obj = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "x"}, "spec": spec}
    jsonschema.validate(obj, crd_schema())
    for bad in ({"request": "65 seconds"}, {"request": "65s", "idle": "5s"}):
        broken = copy.deepcopy(obj)
        broken["spec"]["rules"][0]["timeouts"] = bad
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, crd_schema())
