"""Canary, blue-green and shadow on Kubernetes; promote and rollback touch routing only."""

from __future__ import annotations

from typing import Any

import pytest

from components.settings import SettingsError
from modelctl.render import Rendered
from modelctl.sample import SampleRegistry
from tests.conftest import base_config

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
GATEWAY = {"router": "gateway", "gateway": {"name": "public", "namespace": "gateway-system"}, "replicas": 3}
SERVICE_ROUTER = {"router": "service", "replicas": 3}


def cfg(registry: SampleRegistry, k8s: dict[str, Any], stable: str = "1", candidate: dict[str, Any] | None = None,
        **extra: Any) -> dict[str, Any]:
    c = base_config(registry, kubernetes=k8s, model={"name": registry.name, "version": stable}, **extra)
    if candidate is not None:
        c["mlflow-deploy:candidate"] = candidate
    return c


def route_rule(out: Rendered) -> dict[str, Any]:
    (route,) = out.of_type(ROUTE)
    (rule,) = route.inputs["spec"]["rules"]
    return rule


def weights(rule: dict[str, Any]) -> dict[str, int]:
    return {b["name"]: b["weight"] for b in rule["backendRefs"]}


def services(out: Rendered) -> dict[str, dict[str, Any]]:
    return {s.inputs["metadata"]["name"]: s.inputs["spec"] for s in out.of_type(SERVICE)}


def replicas(out: Rendered) -> dict[str, int]:
    return {d.name: d.inputs["spec"]["replicas"] for d in out.of_type(DEPLOYMENT)}


# --------------------------------------------------------------------------- gateway router


def test_gateway_canary_weights(render, registry) -> None:  # type: ignore[no-untyped-def]
    out = render(cfg(registry, GATEWAY, candidate={"version": "2", "percent": 10}))
    rule = route_rule(out)
    assert weights(rule) == {"fraud-detector-v1": 90, "fraud-detector-v2": 10}
    assert "filters" not in rule
    (route,) = out.of_type(ROUTE)
    assert route.inputs["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route.inputs["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateway-system"}]
    # every version has its own Deployment and Service, and both run full size
    assert replicas(out) == {"fraud-detector-v1": 3, "fraud-detector-v2": 3}
    svcs = services(out)
    assert svcs["fraud-detector-v2"]["selector"] == {"app": "fraud-detector", "version": "2"}
    assert svcs["fraud-detector"]["selector"] == {"app": "fraud-detector", "version": "1"}
    assert out.outputs["traffic"] == {"1": 90, "2": 10}


def test_gateway_shadow_uses_a_request_mirror_filter(render, registry) -> None:  # type: ignore[no-untyped-def]
    out = render(cfg(registry, GATEWAY, candidate={"version": "2", "strategy": "shadow", "percent": 25}))
    rule = route_rule(out)
    assert weights(rule) == {"fraud-detector-v1": 100}  # live traffic stays on stable
    (f,) = rule["filters"]
    assert f["type"] == "RequestMirror"
    assert f["requestMirror"]["backendRef"] == {"name": "fraud-detector-v2", "port": 80}
    assert f["requestMirror"]["percent"] == 25
    assert out.outputs["mirror"] == {"version": "2", "percent": 25}


def test_gateway_blue_green_preview_then_switch(render, registry) -> None:  # type: ignore[no-untyped-def]
    before = render(cfg(registry, GATEWAY, candidate={"version": "2", "strategy": "blue-green"}))
    after = render(cfg(registry, GATEWAY, candidate={"version": "2", "strategy": "blue-green", "percent": 100}))
    assert weights(route_rule(before)) == {"fraud-detector-v1": 100, "fraud-detector-v2": 0}
    assert weights(route_rule(after)) == {"fraud-detector-v1": 0, "fraud-detector-v2": 100}
    assert services(before)["fraud-detector-preview"]["selector"]["version"] == "2"
    assert services(after)["fraud-detector-preview"]["selector"]["version"] == "1"
    # the switch is one routing change: the Deployments are untouched
    for name in ("fraud-detector-v1", "fraud-detector-v2"):
        assert before.named(name).inputs == after.named(name).inputs
    assert services(after)["fraud-detector"]["selector"]["version"] == "2"


def test_no_preview_service_outside_blue_green(render, registry) -> None:  # type: ignore[no-untyped-def]
    out = render(cfg(registry, GATEWAY, candidate={"version": "2", "percent": 10}))
    assert "fraud-detector-preview" not in services(out)


# --------------------------------------------------------------------------- service router


def test_service_router_splits_by_replicas(render, registry) -> None:  # type: ignore[no-untyped-def]
    out = render(cfg(registry, SERVICE_ROUTER, candidate={"version": "2", "percent": 25}))
    assert out.of_type(ROUTE) == []
    r = replicas(out)
    assert r["fraud-detector-v1"] == 3  # stable keeps its size
    share = r["fraud-detector-v2"] / (r["fraud-detector-v1"] + r["fraud-detector-v2"])
    assert share == pytest.approx(0.25, abs=0.01)
    # the entry Service selects both versions' pods
    assert services(out)["fraud-detector"]["selector"] == {"app": "fraud-detector"}


def test_service_router_blue_green_switch_is_a_selector_change(render, registry) -> None:  # type: ignore[no-untyped-def]
    before = render(cfg(registry, SERVICE_ROUTER, candidate={"version": "2", "strategy": "blue-green"}))
    after = render(cfg(registry, SERVICE_ROUTER, candidate={"version": "2", "strategy": "blue-green", "percent": 100}))
    assert services(before)["fraud-detector"]["selector"] == {"app": "fraud-detector", "version": "1"}
    assert services(after)["fraud-detector"]["selector"] == {"app": "fraud-detector", "version": "2"}
    assert replicas(before) == replicas(after) == {"fraud-detector-v1": 3, "fraud-detector-v2": 3}


def test_service_router_refuses_shadow(registry) -> None:  # type: ignore[no-untyped-def]
    from components.settings import parse_settings

    with pytest.raises(SettingsError, match=r"mlflow-deploy:candidate\.strategy: shadow needs kubernetes\.router"):
        parse_settings(cfg(registry, SERVICE_ROUTER, candidate={"version": "2", "strategy": "shadow"}))


# --------------------------------------------------------------------------- rollback / promote


def changed(a: Rendered, b: Rendered) -> tuple[set[str], set[str], set[str]]:
    """(changed, only in a, only in b) resource names between two renders."""
    ra = {r.name: r for r in a.resources if r.custom}  # a component may share a child's name
    rb = {r.name: r for r in b.resources if r.custom}
    diff = {n for n in ra.keys() & rb.keys() if ra[n].inputs != rb[n].inputs}
    return diff, ra.keys() - rb.keys(), rb.keys() - ra.keys()


@pytest.mark.parametrize("k8s", [GATEWAY, SERVICE_ROUTER], ids=["gateway", "service"])
def test_rollback_touches_routing_only(render, registry, k8s) -> None:  # type: ignore[no-untyped-def]
    canary = render(cfg(registry, k8s, candidate={"version": "2", "percent": 10}))
    rolled_back = render(cfg(registry, k8s))
    # the stable version's Deployment is declared with identical inputs
    assert canary.named("fraud-detector-v1").inputs == rolled_back.named("fraud-detector-v1").inputs
    diff, removed, added = changed(canary, rolled_back)
    assert added == set()
    # removed: exactly the candidate's objects (its Deployment, Service, PDB, image)
    assert removed and all("v2" in n for n in removed)
    assert {"fraud-detector-v2", "fraud-detector-v2-svc"} <= removed
    # changed: only routing (the route's weights, or the entry Service's selector)
    routing = {"fraud-detector-route"} if k8s is GATEWAY else {"fraud-detector-svc"}
    assert diff == routing


def test_promote_finish_touches_routing_only_with_the_gateway(render, registry) -> None:  # type: ignore[no-untyped-def]
    full = render(cfg(registry, GATEWAY, candidate={"version": "2", "percent": 100}))
    promoted = render(cfg(registry, GATEWAY, stable="2"))
    assert full.named("fraud-detector-v2").inputs == promoted.named("fraud-detector-v2").inputs
    diff, removed, added = changed(full, promoted)
    assert added == set()
    assert removed and all("v1" in n for n in removed)
    assert diff <= {"fraud-detector-route", "fraud-detector-svc"}


def test_promote_after_blue_green_switch_restarts_nothing(render, registry) -> None:  # type: ignore[no-untyped-def]
    bg = {"version": "2", "strategy": "blue-green", "percent": 100}
    switched = render(cfg(registry, SERVICE_ROUTER, candidate=bg))
    promoted = render(cfg(registry, SERVICE_ROUTER, stable="2"))
    assert switched.named("fraud-detector-v2").inputs == promoted.named("fraud-detector-v2").inputs
    diff, _, added = changed(switched, promoted)
    assert added == set() and diff == set()
