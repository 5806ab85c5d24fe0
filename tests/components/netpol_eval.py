"""A small evaluator of Kubernetes NetworkPolicy semantics, for tests.

It answers "may this connection be made?" for a set of ``networking.k8s.io/v1`` NetworkPolicy
objects, as the API reference and the concepts page define it
(https://kubernetes.io/docs/concepts/services-networking/network-policies/):

* a pod is isolated for ingress (egress) when a policy in its namespace selects it and has
  ``Ingress`` (``Egress``) in ``policyTypes``; ``policyTypes`` left out means ``Ingress``, plus
  ``Egress`` when the policy has an ``egress`` section;
* an isolated pod admits a connection when some rule of some selecting policy admits it (policies
  add up, none subtracts); a connection needs both the source's egress and the destination's
  ingress to allow it;
* a rule admits when a peer matches (``from``/``to`` empty or left out: every peer) and a port
  matches (``ports`` empty or left out: every port); a port is a number or the name of a
  container port of the destination pod, ``protocol`` defaults to TCP, ``endPort`` makes a range;
* a peer: ``ipBlock`` (cidr minus ``except``) matches by IP; ``podSelector`` alone selects pods in
  the policy's own namespace; ``namespaceSelector`` alone every pod of the matching namespaces;
  both in one peer, pods matching both (an AND); ``{}`` selects everything;
* label selectors: ``matchLabels`` and ``matchExpressions`` (In, NotIn, Exists, DoesNotExist).

Only what policies decide is modelled: no CNI specifics (kubelet probes, host-network pods, SNAT).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str]
    ip: str
    ports: Mapping[str, int] = field(default_factory=dict)
    """Named container ports (name -> number), what a named policy port resolves against."""


@dataclass(frozen=True)
class External:
    """A client or server outside the cluster (only ipBlocks match it)."""

    ip: str


Endpoint = Pod | External


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector; None (left out) is handled by the caller, ``{}`` matches everything."""
    if selector is None:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {op!r}")
    return True


class Cluster:
    def __init__(self, policies: Sequence[Mapping[str, Any]], namespaces: Mapping[str, Mapping[str, str]]):
        """``namespaces``: name -> extra labels (``kubernetes.io/metadata.name`` is added, as the
        API server does)."""
        for p in policies:
            assert p["kind"] == "NetworkPolicy" and p["apiVersion"] == "networking.k8s.io/v1", p
        self.policies = list(policies)
        self.namespaces = {n: {**labels, "kubernetes.io/metadata.name": n} for n, labels in namespaces.items()}

    # ---------------------------------------------------------------- policy selection

    @staticmethod
    def _types(policy: Mapping[str, Any]) -> list[str]:
        spec = policy["spec"]
        if spec.get("policyTypes"):
            return list(spec["policyTypes"])
        return ["Ingress", *(["Egress"] if "egress" in spec else [])]

    def _selecting(self, pod: Pod, direction: str) -> list[Mapping[str, Any]]:
        return [
            p
            for p in self.policies
            if p["metadata"]["namespace"] == pod.namespace
            and selector_matches(p["spec"]["podSelector"], pod.labels)
            and direction in self._types(p)
        ]

    # ---------------------------------------------------------------- peers and ports

    def _peer_matches(self, peer: Mapping[str, Any], policy_ns: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            ip = ipaddress.ip_address(other.ip)
            net = ipaddress.ip_network(block["cidr"], strict=False)
            if ip.version != net.version or ip not in net:
                return False
            return not any(
                ip.version == ipaddress.ip_network(e, strict=False).version
                and ip in ipaddress.ip_network(e, strict=False)
                for e in block.get("except") or []
            )
        if not isinstance(other, Pod):
            return False  # pod/namespace selectors select pods only
        ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
        if ns_sel is None and pod_sel is None:
            raise ValueError(f"empty peer {peer!r}")
        if ns_sel is None:
            ns_ok = other.namespace == policy_ns
        else:
            ns_ok = selector_matches(ns_sel, self.namespaces.get(other.namespace, {}))
        return ns_ok and selector_matches(pod_sel or {}, other.labels)

    @staticmethod
    def _port_matches(rule_ports: Sequence[Mapping[str, Any]] | None, dst: Endpoint, port: int, protocol: str) -> bool:
        if not rule_ports:
            return True
        for rp in rule_ports:
            if rp.get("protocol", "TCP") != protocol:
                continue
            p = rp.get("port")
            if p is None:
                return True
            if isinstance(p, str):
                if p.isdigit():
                    raise ValueError(f"a numeric port given as a string: {p!r}")
                number = dst.ports.get(p) if isinstance(dst, Pod) else None
                if number is not None and number == port:
                    return True
                continue
            end = rp.get("endPort", p)
            if p <= port <= end:
                return True
        return False

    def _rules_admit(
        self,
        policies: list[Mapping[str, Any]],
        section: str,
        peers_key: str,
        other: Endpoint,
        dst: Endpoint,
        port: int,
        protocol: str,
    ) -> bool:
        for p in policies:
            ns = p["metadata"]["namespace"]
            for rule in p["spec"].get(section) or []:
                peers = rule.get(peers_key)
                peer_ok = not peers or any(self._peer_matches(peer, ns, other) for peer in peers)
                if peer_ok and self._port_matches(rule.get("ports"), dst, port, protocol):
                    return True
        return False

    # ---------------------------------------------------------------- the question

    def allows(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        """May ``src`` open a connection to ``dst`` on ``port``/``protocol``?"""
        if isinstance(src, Pod):
            egress = self._selecting(src, "Egress")
            if egress and not self._rules_admit(egress, "egress", "to", dst, dst, port, protocol):
                return False
        if isinstance(dst, Pod):
            ingress = self._selecting(dst, "Ingress")
            if ingress and not self._rules_admit(ingress, "ingress", "from", src, dst, port, protocol):
                return False
        return True
