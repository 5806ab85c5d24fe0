"""The model's NetworkPolicy: who may reach its serving and metrics ports, and that it reaches
nothing but DNS.

Pure builders (tests call them without Pulumi); ``KubernetesModelService`` declares the result.
One policy per model selects the pods of every version (``app: <model>``), so a canary, a
blue-green preview and a shadow candidate are fenced like the stable version.

* **ingress, serving port** (``http``, by name): from the configured entry only: the Gateway's
  data plane (``router: gateway``; default the Gateway's namespace), the ingress controller's
  namespace(s) (``ingress``), the LoadBalancer's ``loadBalancerSourceRanges`` (the entry Service
  keeps client IPs with ``externalTrafficPolicy: Local``), ``allowFrom`` peers, and the model's
  own namespace when ``allowSameNamespace`` is set;
* **ingress, metrics port** (``metrics``, by name): from the monitoring namespace
  (``monitoring.stackNamespace``) or ``metricsFrom``;
* **egress**: DNS (port 53, UDP and TCP) to the cluster DNS pods only. The model is in the image;
  the serving runtime calls nothing but, with ``monitoring.drift``, the model monitor's port (payload
  capture).

The model monitor (``monitoring.drift``, components/quality.py) has its own policy
(:func:`monitor_network_policy_spec`): its port from the model's pods (capture) and from the
scrapers (``/metrics``), egress DNS only (its image holds the reference), plus
``monitoring.drift.egressTo`` for a prebuilt image that downloads the reference.

Ports are referred to by name so that the policy follows the container's ports (a named port the
container lacks simply matches nothing).
"""

from __future__ import annotations

from typing import Any

from components.kubernetes_settings import EgressPeer, KubernetesSettings, NetworkPeer

SERVING_PORT_NAME = "http"
METRICS_PORT_NAME = "metrics"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace (Kubernetes 1.22+): selects a namespace by name."""
DNS_NAMESPACE = "kube-system"
DNS_POD_LABELS = {"k8s-app": "kube-dns"}
"""CoreDNS keeps the kube-dns label on every distribution (kubeadm, EKS, GKE, AKS, kind)."""
PUBLIC_CIDRS = ("0.0.0.0/0", "::/0")


def namespace_peer(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}


def peer_spec(peer: NetworkPeer) -> dict[str, Any]:
    """A ``NetworkPolicyPeer`` from a config peer."""
    if peer.cidr is not None:
        block: dict[str, Any] = {"cidr": peer.cidr}
        if peer.except_:
            block["except"] = list(peer.except_)
        return {"ipBlock": block}
    out: dict[str, Any] = {}
    if peer.namespace is not None:
        out.update(namespace_peer(peer.namespace))
    elif peer.namespace_labels is not None:
        out["namespaceSelector"] = {"matchLabels": dict(peer.namespace_labels)}
    if peer.pod_labels is not None:
        out["podSelector"] = {"matchLabels": dict(peer.pod_labels)}
    return out


def entry_peers(cfg: KubernetesSettings, namespace: str) -> list[dict[str, Any]]:
    """Who may call the serving port."""
    np = cfg.network_policy
    peers: list[dict[str, Any]] = []
    if np.entry_namespaces:
        peers += [namespace_peer(n) for n in np.entry_namespaces]
    elif cfg.router == "gateway" and cfg.gateway is not None:
        peers.append(namespace_peer(cfg.gateway.namespace or namespace))
    if cfg.service_type == "LoadBalancer":
        cidrs = cfg.load_balancer_source_ranges or (list(PUBLIC_CIDRS) if cfg.allow_public_load_balancer else [])
        peers += [{"ipBlock": {"cidr": c}} for c in cidrs]
    peers += [peer_spec(p) for p in np.allow_from]
    if np.allow_same_namespace:
        peers.append({"podSelector": {}})
    return peers


def metrics_peers(cfg: KubernetesSettings, metrics_namespace: str | None) -> list[dict[str, Any]]:
    """Who may scrape the metrics port: ``metricsFrom``, else the monitoring namespace (none when
    monitoring is off)."""
    np = cfg.network_policy
    if np.metrics_from is not None:
        return [peer_spec(p) for p in np.metrics_from]
    return [namespace_peer(metrics_namespace)] if metrics_namespace else []


def dns_egress() -> dict[str, Any]:
    """Egress to the cluster DNS pods, port 53 UDP and TCP."""
    dns = {**namespace_peer(DNS_NAMESPACE), "podSelector": {"matchLabels": dict(DNS_POD_LABELS)}}
    return {"to": [dns], "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}


def network_policy_spec(
    pod_selector: dict[str, str],
    cfg: KubernetesSettings,
    namespace: str,
    metrics_namespace: str | None,
    capture_to: tuple[dict[str, str], int] | None = None,
) -> dict[str, Any]:
    """The ``spec`` of the model's NetworkPolicy (``networking.k8s.io/v1``). ``capture_to``: the
    model monitor's pod labels and port (in the model's namespace), which the pods may connect to."""
    ingress: list[dict[str, Any]] = []
    serving = entry_peers(cfg, namespace)
    if serving:
        ingress.append({"from": serving, "ports": [{"port": SERVING_PORT_NAME, "protocol": "TCP"}]})
    scrapers = metrics_peers(cfg, metrics_namespace)
    if scrapers:
        ingress.append({"from": scrapers, "ports": [{"port": METRICS_PORT_NAME, "protocol": "TCP"}]})
    egress = [dns_egress()]
    if capture_to is not None:
        labels, port = capture_to
        # a pod selector alone: the monitor's pods in this (the policy's) namespace only
        egress.append(
            {"to": [{"podSelector": {"matchLabels": dict(labels)}}], "ports": [{"port": port, "protocol": "TCP"}]}
        )
    return {
        "podSelector": {"matchLabels": dict(pod_selector)},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": ingress,
        "egress": egress,
    }


def egress_peer_rule(peer: EgressPeer) -> dict[str, Any]:
    """An egress rule from a config peer: its pods or IP block, on its ports (none: every port)."""
    rule: dict[str, Any] = {"to": [peer_spec(peer)]}
    if peer.ports:
        rule["ports"] = [{"port": p, "protocol": "TCP"} for p in peer.ports]
    return rule


def monitor_network_policy_spec(
    monitor_selector: dict[str, str],
    model_selector: dict[str, str],
    port_name: str,
    cfg: KubernetesSettings,
    metrics_namespace: str | None,
    egress_to: list[EgressPeer] | None = None,
) -> dict[str, Any]:
    """The ``spec`` of the model monitor's NetworkPolicy: its port (captures and ``/metrics`` share
    it) from the model's pods in its namespace and from the scrapers (:func:`metrics_peers`);
    egress DNS, plus ``egress_to`` (a prebuilt monitor image downloading its reference)."""
    peers: list[dict[str, Any]] = [{"podSelector": {"matchLabels": dict(model_selector)}}]
    peers += metrics_peers(cfg, metrics_namespace)
    return {
        "podSelector": {"matchLabels": dict(monitor_selector)},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": peers, "ports": [{"port": port_name, "protocol": "TCP"}]}],
        "egress": [dns_egress(), *(egress_peer_rule(p) for p in egress_to or [])],
    }
