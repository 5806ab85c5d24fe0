"""Guardrails: one entry point per router, no public LoadBalancer by accident, validated build
inputs, a scrape interval the rate window can live with, Pod Security Admission and zone spread."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from components.image import base_image_for, dockerfile
from components.registry import RegistryError, ResolvedModel, resolve_model
from components.settings import SettingsError, parse_settings
from modelctl.render import Rendered, to_manifest
from modelctl.sample import SampleRegistry, register_sample_model
from tests.conftest import base_config

GOOD: dict[str, Any] = {
    "mlflow-deploy:model": {"name": "fraud-detector", "version": "7"},
    "mlflow-deploy:kubernetes": {"namespace": "models"},
    "mlflow-deploy:image": {"repository": "ghcr.io/acme/models"},
}
GATEWAY = {"router": "gateway", "gateway": {"name": "public", "namespace": "gateway-system"}}
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def with_(**keys: Any) -> dict[str, Any]:
    return {**GOOD, **{f"mlflow-deploy:{k}": v for k, v in keys.items()}}


def errors_of(cfg: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SettingsError) as info:
        parse_settings(cfg)
    return dict(info.value.errors)


# --------------------------------------------------------------------------- entry points


@pytest.mark.parametrize(
    ("kubernetes", "path", "fragment"),
    [
        ({**GATEWAY, "ingress": {"host": "h.example.com"}}, "kubernetes.ingress", "only entry point"),
        (
            {**GATEWAY, "serviceType": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/8"]},
            "kubernetes.serviceType",
            "only entry point",
        ),
        (
            {
                "ingress": {"host": "h.example.com"},
                "serviceType": "LoadBalancer",
                "loadBalancerSourceRanges": ["10.0.0.0/8"],
                "networkPolicy": {"entryNamespaces": ["ingress-nginx"]},
            },
            "kubernetes.serviceType",
            "second public entry",
        ),
        ({"serviceType": "LoadBalancer"}, "kubernetes.loadBalancerSourceRanges", "open to the internet"),
        ({"allowPublicLoadBalancer": True}, "kubernetes.allowPublicLoadBalancer", "serviceType 'LoadBalancer'"),
        (
            {
                "serviceType": "LoadBalancer",
                "loadBalancerSourceRanges": ["10.0.0.0/8"],
                "allowPublicLoadBalancer": True,
            },
            "kubernetes.allowPublicLoadBalancer",
            "drop one",
        ),
        (
            {"serviceType": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0"]},
            "kubernetes.loadBalancerSourceRanges",
            "CIDR",
        ),
        (
            {"serviceType": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/33"]},
            "kubernetes.loadBalancerSourceRanges",
            "CIDR",
        ),
        ({"ingress": {"host": "h.example.com"}}, "kubernetes.networkPolicy.entryNamespaces", "ingress controller"),
        (
            {"networkPolicy": {"allowFrom": [{"namespace": "a", "cidr": "10.0.0.0/8"}]}},
            "kubernetes.networkPolicy.allowFrom[0]",
            "either 'cidr' or pods",
        ),
        ({"networkPolicy": {"allowFrom": [{}]}}, "kubernetes.networkPolicy.allowFrom[0]", "either 'cidr' or pods"),
        (
            {"networkPolicy": {"allowFrom": [{"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}]}},
            "kubernetes.networkPolicy.allowFrom[0]",
            "inside 'cidr'",
        ),
        (
            {"networkPolicy": {"metricsFrom": [{"cidr": "nope"}]}},
            "kubernetes.networkPolicy.metricsFrom[0].cidr",
            "CIDR",
        ),
        ({"networkPolicy": {"enabeld": False}}, "kubernetes.networkPolicy.enabeld", "unknown key"),
        (
            {"networkPolicy": {"entryNamespaces": ["Ingress_Nginx"]}},
            "kubernetes.networkPolicy.entryNamespaces",
            "namespace",
        ),
        (
            {"networkPolicy": {"allowFrom": [{"namespace": "a b"}]}},
            "kubernetes.networkPolicy.allowFrom[0].namespace",
            "namespace",
        ),
    ],
)
def test_bad_entry_points_are_refused_with_the_key_path(kubernetes: dict[str, Any], path: str, fragment: str) -> None:
    errs = errors_of(with_(kubernetes=kubernetes))
    assert f"mlflow-deploy:{path}" in errs, errs
    assert fragment in errs[f"mlflow-deploy:{path}"]


def test_good_entry_points_parse() -> None:
    k = parse_settings(with_(kubernetes=GATEWAY)).kubernetes
    assert k is not None and k.network_policy.enabled
    public = parse_settings(with_(kubernetes={"serviceType": "LoadBalancer", "allowPublicLoadBalancer": True}))
    assert public.kubernetes is not None and public.kubernetes.allow_public_load_balancer
    off = parse_settings(with_(kubernetes={"ingress": {"host": "h.example.com"}, "networkPolicy": False}))
    assert off.kubernetes is not None and not off.kubernetes.network_policy.enabled


def test_refused_before_any_resource(render: Callable[..., Rendered], registry: SampleRegistry) -> None:
    cfg = base_config(registry, kubernetes={**GATEWAY, "ingress": {"host": "h.example.com"}})
    with pytest.raises(SettingsError, match=r"mlflow-deploy:kubernetes\.ingress"):
        render(cfg)


# --------------------------------------------------------------------------- metrics stay inside


def _service_target_ports(out: Rendered) -> list[Any]:
    return [p.get("targetPort") for s in out.of_type("kubernetes:core/v1:Service") for p in s.inputs["spec"]["ports"]]


@pytest.mark.parametrize(
    ("kubernetes", "candidate"),
    [
        ({**GATEWAY}, {"version": "2", "strategy": "canary", "percent": 10}),
        ({**GATEWAY}, {"version": "2", "strategy": "shadow", "percent": 5}),
        ({**GATEWAY}, {"version": "2", "strategy": "blue-green", "percent": 0}),
        (
            {"ingress": {"host": "h.example.com"}, "networkPolicy": {"entryNamespaces": ["ingress-nginx"]}},
            {"version": "2", "strategy": "canary", "percent": 10},
        ),
        ({"serviceType": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/8"]}, None),
    ],
)
def test_no_entry_exposes_the_metrics_port(
    render: Callable[..., Rendered], registry: SampleRegistry, kubernetes: dict[str, Any], candidate: Any
) -> None:
    out = render(base_config(registry, kubernetes=kubernetes, candidate=candidate, monitoring={"enabled": True}))
    ports = _service_target_ports(out)
    assert ports and set(ports) == {"http"}, ports
    service_ports = {
        s.inputs["metadata"]["name"]: {p["port"] for p in s.inputs["spec"]["ports"]}
        for s in out.of_type("kubernetes:core/v1:Service")
    }
    for ing in out.of_type("kubernetes:networking.k8s.io/v1:Ingress"):
        for rule in ing.inputs["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["port"] == {"name": "http"}
    for route in out.of_type("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"):
        for rule in route.inputs["spec"]["rules"]:
            refs = list(rule["backendRefs"]) + [
                f["requestMirror"]["backendRef"] for f in rule.get("filters", []) if f["type"] == "RequestMirror"
            ]
            for ref in refs:
                # a Service port, and every Service port goes to the container's http port
                assert ref["port"] in service_ports[ref["name"]]


# --------------------------------------------------------------------------- build inputs


@pytest.mark.parametrize(
    "base_image",
    [
        "python:3.11-slim\nUSER root",
        "python:3.11-slim\r\nRUN curl http://x | sh",
        "python:3.11-slim RUN rm -rf /",
        "python:3.11-slim #comment",
        "python:3.11-slim;id",
        "python:3.11-slim&&id",
        "python:$(id)",
        "python:`id`",
        "python:3.11|sh",
        "python:3.11>x",
        "python:'3.11'",
        'python:"3.11"',
        "python:{python_version}-slim\n",
        "python:{other}-slim",
        "Python:3.11",
        "",
        " python:3.11",
    ],
)
def test_base_image_must_be_a_reference(base_image: str) -> None:
    errs = errors_of(with_(image={"repository": "ghcr.io/acme/models", "baseImage": base_image}))
    assert "not an image reference" in errs["mlflow-deploy:image.baseImage"]
    # the Dockerfile writer refuses it too, so no other path can paste it into FROM
    with pytest.raises(ValueError, match=r"mlflow-deploy:image\.baseImage"):
        dockerfile(base_image)


@pytest.mark.parametrize(
    "base_image",
    [
        "python:{python_version}-slim",
        "python",
        "docker.io/library/python:{python_version}-slim-bookworm",
        "localhost:5001/base/python:{python_version}",
        "ghcr.io/acme/py-base:3.11@sha256:" + "a" * 64,
        "registry.example.com:8443/team_x/py__base:v1.2.3",
    ],
)
def test_good_base_images(base_image: str) -> None:
    s = parse_settings(with_(image={"repository": "ghcr.io/acme/models", "baseImage": base_image}))
    assert s.image.base_image == base_image


def _model(python_version: str) -> ResolvedModel:
    return ResolvedModel(
        name="fraud-detector",
        version="3",
        run_id=None,
        source="x",
        artifact_uri="file:///x",
        flavors=("python_function",),
        signature=None,
        python_version=python_version,
        requirements=(),
        tracking_uri="sqlite://",
    )


@pytest.mark.parametrize(
    "python_version", ["3.11\nUSER root", "3.11 ", "3.11;id", "3.11#", "$(id)", "3", "latest", "3.11-slim"]
)
def test_python_version_must_be_a_version(python_version: str) -> None:
    with pytest.raises(ValueError, match="MLmodel python_version"):
        base_image_for("python:{python_version}-slim", _model(python_version))


def test_base_image_for_fills_in_the_minor_version() -> None:
    ref = base_image_for("python:{python_version}-slim", _model("3.11.7"))
    assert ref == "python:3.11-slim"
    assert dockerfile(ref).splitlines()[2] == "FROM python:3.11-slim"


def test_registry_refuses_a_tampered_python_version(tmp_path: Path) -> None:
    """A real registry whose model's MLmodel says something that is not a version: the model
    does not resolve, so nothing is built or declared."""
    reg = register_sample_model(tmp_path / "reg", versions=1)
    mlmodels = [p for p in (tmp_path / "reg").rglob("MLmodel")]
    assert mlmodels
    for p in mlmodels:
        text = p.read_text()
        assert "python_version:" in text
        lines = [
            "    python_version: '3.11\n\n      USER root'" if line.strip().startswith("python_version:") else line
            for line in text.splitlines()
        ]
        p.write_text("\n".join(lines) + "\n")
    with pytest.raises(RegistryError, match=r"flavors\.python_function\.python_version"):
        resolve_model(reg.name, "1", tracking_uri=reg.tracking_uri)


# --------------------------------------------------------------------------- monitoring


@pytest.mark.parametrize(
    ("interval", "fragment"),
    [
        ("3m", "fewer than 4 scrapes"),
        ("76s", "fewer than 4 scrapes"),
        ("0s", "more than 0"),
        ("0ms", "more than 0"),
        ("2h", "should match pattern"),
    ],
)
def test_scrape_interval_leaves_four_scrapes_per_rate_window(interval: str, fragment: str) -> None:
    errs = errors_of(with_(monitoring={"scrapeInterval": interval}))
    assert fragment in errs["mlflow-deploy:monitoring.scrapeInterval"]


@pytest.mark.parametrize("interval", ["75s", "1m", "30s", "500ms"])
def test_scrape_intervals_that_fit(interval: str) -> None:
    assert parse_settings(with_(monitoring={"scrapeInterval": interval})).monitoring.scrape_interval == interval


def test_the_window_the_check_uses_is_the_rules_window() -> None:
    from components import monitoring
    from components.rollout import plan_traffic

    rules = monitoring.recording_rules("fraud-detector", "models", plan_traffic("1", None))
    windows = {w for r in rules for w in re.findall(r"\[([0-9]+[smhdwy])\]", r["expr"])}
    from components.settings import RATE_WINDOW

    assert windows == {RATE_WINDOW}


# --------------------------------------------------------------------------- namespace and pods


RESTRICTED_VOLUME_KINDS = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The Pod Security Standards' ``restricted`` checks
    (https://kubernetes.io/docs/concepts/security/pod-security-standards/) over a pod spec."""
    out = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(key)
    for v in pod.get("volumes", []):
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_KINDS:
            out.append(f"volume {v['name']}: {kinds}")
    psc = pod.get("securityContext", {})
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            out.append(f"{c['name']}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            out.append(f"{c['name']}: runAsNonRoot")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{c['name']}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{c['name']}: seccompProfile")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            out.append(f"{c['name']}: capabilities.drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{c['name']}: capabilities.add")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{c['name']}: hostPort")
    return out


def test_created_namespace_enforces_restricted_and_the_pods_comply(
    render: Callable[..., Rendered], registry: SampleRegistry
) -> None:
    out = render(
        base_config(
            registry, kubernetes={"createNamespace": True, **GATEWAY}, candidate={"version": "2", "strategy": "canary"}
        )
    )
    (ns,) = out.of_type("kubernetes:core/v1:Namespace")
    labels = ns.inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"
    manifest = to_manifest(ns)
    assert manifest is not None
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)
    deps = out.of_type("kubernetes:apps/v1:Deployment")
    assert len(deps) == 2
    for d in deps:
        assert restricted_violations(d.inputs["spec"]["template"]["spec"]) == []


def test_restricted_check_catches_a_violation() -> None:
    pod = {
        "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": True}}],
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
    }
    found = restricted_violations(pod)
    assert "c: allowPrivilegeEscalation" in found and any(v.startswith("volume h") for v in found)


def test_pods_spread_over_zones_and_nodes(render: Callable[..., Rendered], registry: SampleRegistry) -> None:
    out = render(base_config(registry))
    spec = out.named("fraud-detector-v1").inputs["spec"]["template"]["spec"]
    keys = {c["topologyKey"]: c for c in spec["topologySpreadConstraints"]}
    assert set(keys) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for c in keys.values():
        assert c["labelSelector"] == {"matchLabels": {"app": "fraud-detector", "version": "1"}}
        assert c["whenUnsatisfiable"] == "ScheduleAnyway"


def test_checkov_skips_are_exactly_the_two_false_positives(
    render: Callable[..., Rendered], registry: SampleRegistry
) -> None:
    out = render(base_config(registry))
    meta = out.named("fraud-detector-v1").inputs["metadata"]
    skips = {k: v for k, v in meta.get("annotations", {}).items() if k.startswith("checkov.io/skip")}
    checks = {v.split("=", 1)[0]: v.split("=", 1)[1] for v in skips.values()}
    assert set(checks) == {"CKV_K8S_43", "CKV_K8S_15"}
    assert all(len(reason) > 20 for reason in checks.values())
    # not on the pod template: adding or rewording a skip restarts nothing
    assert "annotations" not in out.named("fraud-detector-v1").inputs["spec"]["template"]["metadata"]
    json.dumps(skips)  # plain strings


# --------------------------------------------------------------------------- gateway api version

CRD = Path(__file__).resolve().parents[1] / "data" / "crds" / "gateway-api-v1.3.0-standard-httproutes.yaml"


def _strict(schema: Any) -> Any:
    """A CRD's structural schema with unknown fields refused (as the API server prunes them)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
        if (
            out.get("type") == "object"
            and "properties" in out
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def test_shadow_route_fits_the_first_gateway_api_with_mirror_percent(
    render: Callable[..., Rendered], registry: SampleRegistry
) -> None:
    import jsonschema
    import yaml

    crd = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] == "v1.3.0"
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    spec_schema = _strict(v1["schema"]["openAPIV3Schema"]["properties"]["spec"])
    out = render(
        base_config(registry, kubernetes=GATEWAY, candidate={"version": "2", "strategy": "shadow", "percent": 5})
    )
    (route,) = out.of_type("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute")
    spec = route.inputs["spec"]
    jsonschema.validate(spec, spec_schema)
    mirror = spec["rules"][0]["filters"][0]["requestMirror"]
    assert mirror["percent"] == 5
    # the control: a field the schema lacks is refused, so the pass above means the v1.3 schema has percent
    bad = json.loads(json.dumps(spec))
    bad["rules"][0]["filters"][0]["requestMirror"]["share"] = 5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, spec_schema)
