"""Request-based autoscaling on Kubernetes: a KEDA ``ScaledObject`` per version.

``kubernetes.autoscaling.metric: requests | concurrency`` replaces the CPU HorizontalPodAutoscaler
with a KEDA ScaledObject (keda.sh/v1alpha1) whose Prometheus trigger reads the serving runtime's
own series, scraped by the PodMonitor (components/monitoring.py) with the pod labels ``model`` and
``version`` on them:

* ``requests``: ``sum(rate(model_requests_total{…}[1m]))``, target ``targetRequestsPerSecond`` per
  pod (the trigger's ``threshold`` is per replica: KEDA hands it to the HPA it creates as an
  ``AverageValue`` target, keda pkg/scalers/prometheus_scaler.go ``GetMetricSpecForScaling``);
* ``concurrency``: ``sum(model_requests_in_flight{…})``, target ``targetConcurrency`` per pod.

KEDA creates and owns the HPA (``keda-hpa-<name>``), so no HPA of ours is declared beside it.
``minReplicas: 0`` (scale to zero) is KEDA's ``minReplicaCount: 0``; the version's own series end
with its last pod, so a second trigger, ``wakeQuery`` on the entry point's metrics, activates it
again (any trigger above its activation threshold scales 0 -> 1, keda "Scaling Deployments":
activation phase). The schema these specs are checked against is KEDA v2.20.2's CRD
(tests/data/crds/keda-v2.20.2-scaledobjects.yaml).

Pure builders; the Kubernetes component declares them.
"""

from __future__ import annotations

from typing import Any

from components.kubernetes_settings import AutoscalingSettings
from components.rollout import candidate_replicas

KEDA_API_VERSION = "keda.sh/v1alpha1"
KEDA_KIND = "ScaledObject"
REQUESTS_WINDOW = "1m"
"""The rate window of the ``requests`` query: short, so scaling follows a burst within a minute;
it holds four scrapes at the default 15s-30s scrape intervals."""
OPERATED_SERVICE = "prometheus-operated"
"""The Service the Prometheus Operator creates for every Prometheus in a namespace (port 9090,
``web``); kube-prometheus-stack's Prometheus answers behind it."""


def default_prometheus_address(stack_namespace: str) -> str:
    return f"http://{OPERATED_SERVICE}.{stack_namespace}.svc:9090"


def version_selector(namespace: str, model_label: str, version: str) -> str:
    """PromQL matchers of one version's series (the PodMonitor's target labels)."""
    return f'namespace="{namespace}",model="{model_label}",version="{version}"'


def trigger_query(a: AutoscalingSettings, namespace: str, model_label: str, version: str) -> str:
    sel = version_selector(namespace, model_label, version)
    if a.metric == "requests":
        return f"sum(rate(model_requests_total{{{sel}}}[{REQUESTS_WINDOW}]))"
    if a.metric == "concurrency":
        return f"sum(model_requests_in_flight{{{sel}}})"
    raise ValueError(f"metric {a.metric!r} is not served by KEDA")


def _num(x: float) -> str:
    """KEDA trigger metadata values are strings; integers without a trailing ``.0``."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def bounds(a: AutoscalingSettings, candidate_weight: int | None) -> tuple[int, int]:
    """(min, max) replicas; a candidate whose pod count carries a split (service router) has its
    bounds scaled like its replicas (as its HPA would, components/kubernetes.py hpa_spec)."""
    lo, hi = a.min_replicas, a.max_replicas
    if candidate_weight is not None:
        lo = candidate_replicas(lo, candidate_weight) if lo > 0 else 0
        hi = candidate_replicas(hi, candidate_weight)
    return lo, max(lo, hi, 1)


def scaled_object_spec(
    deployment: str,
    a: AutoscalingSettings,
    *,
    namespace: str,
    model_label: str,
    version: str,
    prometheus_address: str,
    candidate_weight: int | None = None,
) -> dict[str, Any]:
    """The ``spec`` of a version's ScaledObject."""
    lo, hi = bounds(a, candidate_weight)
    target = a.target_requests_per_second if a.metric == "requests" else a.target_concurrency
    triggers: list[dict[str, Any]] = [
        {
            "type": "prometheus",
            "name": a.metric,
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": prometheus_address,
                "query": trigger_query(a, namespace, model_label, version),
                "threshold": _num(target),
                # a version with pods but no scrape yet reads as no load, not as an error
                "ignoreNullValues": "true",
            },
        }
    ]
    if lo == 0:
        assert a.wake_query is not None  # settings: minReplicas 0 needs wakeQuery
        triggers.append(
            {
                "type": "prometheus",
                "name": "wake",
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": prometheus_address,
                    "query": a.wake_query,
                    "threshold": _num(target),
                    "activationThreshold": "0",
                    "ignoreNullValues": "true",
                },
            }
        )
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "minReplicaCount": lo,
        "maxReplicaCount": hi,
        "pollingInterval": a.polling_interval_seconds,
        "cooldownPeriod": a.cooldown_seconds,
        "triggers": triggers,
    }
