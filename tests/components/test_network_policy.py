"""The model's NetworkPolicy: rendered by the real program, checked against the Kubernetes schemas
and against a table of flows that must be allowed or denied (tests/components/netpol_eval.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

from modelctl.render import Rendered, to_manifest
from modelctl.sample import SampleRegistry
from tests.components.netpol_eval import Cluster, External, Pod
from tests.conftest import base_config

NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())

# The container ports the policy is written for: the serving port (http, 8080) and the separate
# metrics port (metrics, 9090) of the serving runtime.
MODEL_PORTS = {"http": 8080, "metrics": 9090}
NAMESPACES = {
    "models": {},
    "gateway-system": {},
    "ingress-nginx": {},
    "monitoring": {},
    "observability": {"team": "sre"},
    "kube-system": {},
    "default": {},
    "batch": {"tier": "internal"},
}


def model_pod(version: str, ip: str) -> Pod:
    labels = {"app": "fraud-detector", "version": version, "model": "fraud-detector"}
    return Pod("models", labels, ip, MODEL_PORTS)


STABLE = model_pod("1", "10.1.0.10")
CANARY = model_pod("2", "10.1.0.11")
GATEWAY = Pod("gateway-system", {"app": "envoy"}, "10.2.0.5")
INGRESS_CTRL = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, "10.2.1.5")
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"}, "10.3.0.5")
OTHER_PROMETHEUS = Pod("observability", {"app": "prometheus"}, "10.3.1.5")
NEIGHBOUR = Pod("models", {"app": "other"}, "10.1.0.99")
STRANGER = Pod("default", {"app": "curl"}, "10.4.0.5")
BATCH_SCORER = Pod("batch", {"app": "scorer"}, "10.5.0.5")
BATCH_OTHER = Pod("batch", {"app": "other"}, "10.5.0.6")
COREDNS = Pod("kube-system", {"k8s-app": "kube-dns"}, "10.96.0.10", {"dns": 53, "dns-tcp": 53})
KUBE_PROXYISH = Pod("kube-system", {"k8s-app": "metrics-server"}, "10.96.0.20", {"https": 443})
OFFICE = External("203.0.113.7")
INTERNET = External("198.51.100.9")


def policies(out: Rendered) -> list[dict[str, Any]]:
    found = [to_manifest(r) for r in out.of_type(NETPOL)]
    return [m for m in found if m is not None]


def cluster_of(out: Rendered) -> Cluster:
    pols = policies(out)
    assert len(pols) == 1, "one NetworkPolicy per model"
    return Cluster(pols, NAMESPACES)


Flow = tuple[Any, Any, int, str, bool]


def check_flows(cluster: Cluster, flows: list[Flow]) -> None:
    wrong = [
        (f"{getattr(s, 'namespace', 'ext')}/{s.ip} -> {getattr(d, 'namespace', 'ext')}/{d.ip}:{port}/{proto}", want)
        for s, d, port, proto, want in flows
        if cluster.allows(s, d, port, proto) != want
    ]
    assert not wrong, f"flows decided wrongly (flow, expected): {wrong}"


def common_model_flows(model: Pod) -> list[Flow]:
    """What holds for every configuration: nobody else reaches the model, the model reaches DNS only."""
    return [
        (STRANGER, model, 8080, "TCP", False),
        (STRANGER, model, 9090, "TCP", False),
        (INTERNET, model, 8080, "TCP", False),
        (NEIGHBOUR, model, 9090, "TCP", False),
        (model, COREDNS, 53, "UDP", True),
        (model, COREDNS, 53, "TCP", True),
        (model, COREDNS, 443, "TCP", False),
        (model, KUBE_PROXYISH, 443, "TCP", False),
        (model, KUBE_PROXYISH, 53, "UDP", False),
        (model, STRANGER, 8080, "TCP", False),
        (model, External("1.1.1.1"), 53, "UDP", False),
        (model, INTERNET, 443, "TCP", False),
        (model, CANARY if model is STABLE else STABLE, 8080, "TCP", False),
    ]


@pytest.fixture
def gateway_canary(render: Callable[..., Rendered], registry: SampleRegistry) -> Rendered:
    return render(
        base_config(
            registry,
            kubernetes={"router": "gateway", "gateway": {"name": "public", "namespace": "gateway-system"}},
            candidate={"version": "2", "strategy": "canary", "percent": 10},
            monitoring={"enabled": True},
        )
    )


def test_gateway_canary_flows(gateway_canary: Rendered) -> None:
    cluster = cluster_of(gateway_canary)
    for model in (STABLE, CANARY):
        check_flows(
            cluster,
            [
                (GATEWAY, model, 8080, "TCP", True),
                (GATEWAY, model, 9090, "TCP", False),
                (GATEWAY, model, 8080, "UDP", False),
                (PROMETHEUS, model, 9090, "TCP", True),
                (PROMETHEUS, model, 8080, "TCP", False),
                (OTHER_PROMETHEUS, model, 9090, "TCP", False),
                (NEIGHBOUR, model, 8080, "TCP", False),
                (INGRESS_CTRL, model, 8080, "TCP", False),
                *common_model_flows(model),
            ],
        )


def test_policy_and_namespace_validate_against_the_kubernetes_schemas(gateway_canary: Rendered) -> None:
    for m in policies(gateway_canary):
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(m, version, strict=True)


def test_ports_are_named_so_the_policy_follows_the_container(gateway_canary: Rendered) -> None:
    (pol,) = policies(gateway_canary)
    ports = [p["port"] for rule in pol["spec"]["ingress"] for p in rule["ports"]]
    assert ports == ["http", "metrics"]
    # the serving port's name is the one the container and every Service use
    dep = gateway_canary.named("fraud-detector-v1").inputs
    assert "http" in {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    # it selects every version's pods, not one version's
    assert pol["spec"]["podSelector"] == {"matchLabels": {"app": "fraud-detector"}}


def test_gateway_elsewhere_and_entry_namespaces(render: Callable[..., Rendered], registry: SampleRegistry) -> None:
    # a Gateway in the model's namespace: its pods there may call, the rest of the namespace not
    same_ns_gw = render(base_config(registry, kubernetes={"router": "gateway", "gateway": {"name": "gw"}}))
    gw_pod = Pod("models", {"app": "gw-proxy"}, "10.1.0.50")
    assert cluster_of(same_ns_gw).allows(gw_pod, STABLE, 8080)
    # Envoy Gateway runs the proxies in its own namespace: entryNamespaces says which
    k8s = {
        "router": "gateway",
        "gateway": {"name": "public", "namespace": "apps"},
        "networkPolicy": {"entryNamespaces": ["gateway-system"]},
    }
    c = cluster_of(render(base_config(registry, kubernetes=k8s)))
    check_flows(c, [(GATEWAY, STABLE, 8080, "TCP", True), (Pod("apps", {}, "10.9.0.1"), STABLE, 8080, "TCP", False)])


def test_ingress_controller_namespace(render: Callable[..., Rendered], registry: SampleRegistry) -> None:
    k8s = {"ingress": {"host": "fraud.example.com"}, "networkPolicy": {"entryNamespaces": ["ingress-nginx"]}}
    c = cluster_of(render(base_config(registry, kubernetes=k8s)))
    check_flows(
        c,
        [
            (INGRESS_CTRL, STABLE, 8080, "TCP", True),
            (INGRESS_CTRL, STABLE, 9090, "TCP", False),
            (GATEWAY, STABLE, 8080, "TCP", False),
            # monitoring is off in this stack: nobody scrapes
            (PROMETHEUS, STABLE, 9090, "TCP", False),
            *common_model_flows(STABLE),
        ],
    )


def test_load_balancer_source_ranges_are_the_only_outside_callers(
    render: Callable[..., Rendered], registry: SampleRegistry
) -> None:
    k8s = {"serviceType": "LoadBalancer", "loadBalancerSourceRanges": ["203.0.113.0/24"]}
    out = render(base_config(registry, kubernetes=k8s))
    check_flows(
        cluster_of(out),
        [(OFFICE, STABLE, 8080, "TCP", True), (OFFICE, STABLE, 9090, "TCP", False), *common_model_flows(STABLE)],
    )
    # the client's address reaches the pod (no SNAT to a node), so the ipBlock sees the caller
    entry = next(
        s for s in out.of_type("kubernetes:core/v1:Service") if s.inputs["metadata"]["name"] == "fraud-detector"
    )
    assert entry.inputs["spec"]["externalTrafficPolicy"] == "Local"
    public = render(base_config(registry, kubernetes={"serviceType": "LoadBalancer", "allowPublicLoadBalancer": True}))
    check_flows(cluster_of(public), [(INTERNET, STABLE, 8080, "TCP", True), (INTERNET, STABLE, 9090, "TCP", False)])


def test_opening_it_up(render: Callable[..., Rendered], registry: SampleRegistry) -> None:
    k8s = {
        "networkPolicy": {
            "allowSameNamespace": True,
            "allowFrom": [
                {"namespaceLabels": {"tier": "internal"}, "podLabels": {"app": "scorer"}},
                {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]},
            ],
            "metricsFrom": [{"namespaceLabels": {"team": "sre"}, "podLabels": {"app": "prometheus"}}],
        }
    }
    c = cluster_of(render(base_config(registry, kubernetes=k8s, monitoring={"enabled": True})))
    check_flows(
        c,
        [
            (NEIGHBOUR, STABLE, 8080, "TCP", True),
            (NEIGHBOUR, STABLE, 9090, "TCP", False),
            (BATCH_SCORER, STABLE, 8080, "TCP", True),
            (BATCH_OTHER, STABLE, 8080, "TCP", False),
            (External("192.0.2.10"), STABLE, 8080, "TCP", True),
            (External("192.0.2.200"), STABLE, 8080, "TCP", False),
            (OTHER_PROMETHEUS, STABLE, 9090, "TCP", True),
            (PROMETHEUS, STABLE, 9090, "TCP", False),  # metricsFrom replaces the default
            (STRANGER, STABLE, 8080, "TCP", False),
            (STABLE, COREDNS, 53, "UDP", True),
            (STABLE, INTERNET, 443, "TCP", False),
        ],
    )


def test_monitoring_namespace_follows_the_stack_namespace(
    render: Callable[..., Rendered], registry: SampleRegistry
) -> None:
    out = render(base_config(registry, monitoring={"enabled": True, "stackNamespace": "observability"}))
    check_flows(
        cluster_of(out),
        [(OTHER_PROMETHEUS, STABLE, 9090, "TCP", True), (PROMETHEUS, STABLE, 9090, "TCP", False)],
    )


def test_off_when_asked(render: Callable[..., Rendered], registry: SampleRegistry) -> None:
    out = render(base_config(registry, kubernetes={"networkPolicy": False}))
    assert out.of_type(NETPOL) == []


# --------------------------------------------------------------------------- the evaluator itself


def test_evaluator_semantics() -> None:
    """The evaluator decides like the Kubernetes docs' examples, so the flow tables above mean
    what they say."""
    a = Pod("ns1", {"role": "db"}, "10.0.0.1", {"pg": 5432})
    fe = Pod("ns1", {"role": "frontend"}, "10.0.0.2")
    other_ns_fe = Pod("ns2", {"role": "frontend"}, "10.0.1.2")
    ns = {"ns1": {}, "ns2": {"project": "myproject"}}

    def pol(spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"namespace": "ns1"},
            "spec": spec,
        }

    # no policy: everything goes
    assert Cluster([], ns).allows(other_ns_fe, a, 1)
    # default deny ingress for everything in ns1; egress stays open
    deny = pol({"podSelector": {}, "policyTypes": ["Ingress"]})
    assert not Cluster([deny], ns).allows(fe, a, 5432)
    assert Cluster([deny], ns).allows(a, other_ns_fe, 80)
    # podSelector alone: same namespace only; named port resolves on the destination
    same_ns = pol(
        {
            "podSelector": {"matchLabels": {"role": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}], "ports": [{"port": "pg"}]}],
        }
    )
    c = Cluster([same_ns], ns)
    assert c.allows(fe, a, 5432) and not c.allows(other_ns_fe, a, 5432) and not c.allows(fe, a, 5433)
    # one peer with both selectors (AND) versus two peers (OR)
    and_peer = pol(
        {
            "podSelector": {},
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {"matchLabels": {"project": "myproject"}},
                            "podSelector": {"matchLabels": {"role": "x"}},
                        }
                    ]
                }
            ],
        }
    )
    or_peers = pol(
        {
            "podSelector": {},
            "ingress": [
                {
                    "from": [
                        {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                        {"podSelector": {"matchLabels": {"role": "x"}}},
                    ]
                }
            ],
        }
    )
    assert not Cluster([and_peer], ns).allows(other_ns_fe, a, 1)
    assert Cluster([or_peers], ns).allows(other_ns_fe, a, 1)
    # policies add up
    assert Cluster([deny, or_peers], ns).allows(other_ns_fe, a, 1)
    # ipBlock with except, endPort ranges, protocol default TCP
    blocks = pol(
        {
            "podSelector": {},
            "ingress": [
                {
                    "from": [{"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}}],
                    "ports": [{"port": 32000, "endPort": 32768}],
                }
            ],
        }
    )
    c = Cluster([blocks], ns)
    assert c.allows(External("172.17.2.1"), a, 32001)
    assert not c.allows(External("172.17.1.1"), a, 32001)
    assert not c.allows(External("172.17.2.1"), a, 31999)
    assert not c.allows(External("172.17.2.1"), a, 32001, "UDP")
    # egress isolation: an egress section without policyTypes isolates egress too
    eg = pol(
        {
            "podSelector": {"matchLabels": {"role": "db"}},
            "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": 53, "protocol": "UDP"}]}],
        }
    )
    c = Cluster([eg], ns)
    assert (
        c.allows(a, other_ns_fe, 53, "UDP")
        and not c.allows(a, other_ns_fe, 53)
        and not c.allows(a, External("8.8.8.8"), 53, "UDP")
    )
    # matchExpressions
    expr = pol(
        {
            "podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["db"]}]},
            "policyTypes": ["Ingress"],
        }
    )
    c = Cluster([expr], ns)
    assert not c.allows(fe, a, 1) and c.allows(a, fe, 1)
