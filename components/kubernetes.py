"""KubernetesModelService: a model's versions served on Kubernetes, routed by the TrafficPlan.

Objects, for model ``fraud-detector`` with stable 7 and a candidate 8:

* ``Deployment fraud-detector-v7`` and ``…-v8``: one per live version; the name, the
  selector and the pod labels carry the version, so a version's pods are never restarted by a
  routing change (canary percent, promote, rollback).
* ``Service fraud-detector-v7`` and ``…-v8``: one per version (what the router points at).
* ``Service fraud-detector``: the stable entry point. With ``router: service`` it selects every
  version (traffic follows the replica split); with ``router: gateway`` it selects the version
  taking most of the traffic and the ``HTTPRoute fraud-detector`` does the weighting/mirroring.
* ``Service fraud-detector-preview``: blue-green only, the version not taking traffic.
* ``HorizontalPodAutoscaler`` per version when ``autoscaling`` is on CPU, a KEDA ``ScaledObject``
  per version when it is on ``requests``/``concurrency`` (components/autoscaling.py); ``PodDisruptionBudget``
  per version with more than one replica; optional ``Ingress``.
* ``NetworkPolicy fraud-detector`` (unless ``networkPolicy: false``): the serving port from the
  configured entry only, the metrics port from the monitoring namespace, egress DNS only (and the
  model monitor's port with ``monitoring.drift``) (components/network_policy.py).
* ``Namespace`` (``createNamespace: true``) labelled for Pod Security Admission ``restricted``.

The manifest builders are pure functions (tests call them without Pulumi); the component only
declares them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.autoscaling import KEDA_API_VERSION, KEDA_KIND, scaled_object_spec
from components.image import CONTAINER_PORT, METRICS_PORT, RUNTIME_UID, registry_images, serving_env
from components.kubernetes_settings import KubernetesSettings
from components.names import base_name, dns_label, version_name
from components.network_policy import network_policy_spec
from components.registry import ResolvedModel
from components.rollout import TrafficPlan, candidate_replicas
from components.settings import ImageSettings

SERVICE_PORT = 80
PART_OF = "mlflow-deploy"
PREVIEW_SUFFIX = "-preview"
GATEWAY_TIMEOUT_MARGIN_SECONDS = 5
"""The HTTPRoute's request timeout is the server's (``requestTimeoutSeconds``) plus this: the
server answers its own 504 (counted in its metrics, with its body) before the gateway gives up."""
ZONE_KEY = "topology.kubernetes.io/zone"
HOST_KEY = "kubernetes.io/hostname"
POD_SECURITY_LEVEL = "restricted"
"""Pod Security Admission level of a created namespace: the model pod meets ``restricted`` (non-root,
no privilege escalation, all capabilities dropped, seccomp RuntimeDefault, emptyDir volumes only)."""
CHECKOV_SKIPS = {
    "CKV_K8S_43": "the image is pinned by content: a built image is deployed by the digest its push "
    "returns (the tag v<version>-<content hash> stands in only in a preview); the policy pack's "
    "immutable-image-reference holds prebuilt ones to a digest or content tag",
    "CKV_K8S_15": "tags are content-addressed (v<version>-<content hash>) and never re-pushed, so "
    "IfNotPresent cannot run stale code and avoids a registry round-trip on every pod start",
}
"""The two checkov findings that do not apply, skipped with checkov's own annotation and a reason."""


# --------------------------------------------------------------------------- pure builders


def selector_labels(model: str, version: str | None = None) -> dict[str, str]:
    labels = {"app": base_name(model)}
    if version is not None:
        labels["version"] = version
    return labels


def pod_labels(model: str, version: str) -> dict[str, str]:
    """Labels on every object of a version: app, model and version, plus the recommended ones."""
    return {
        **selector_labels(model, version),
        "model": dns_label(model),
        "app.kubernetes.io/name": base_name(model),
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def common_labels(model: str) -> dict[str, str]:
    return {
        "app": base_name(model),
        "model": dns_label(model),
        "app.kubernetes.io/name": base_name(model),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def namespace_labels() -> dict[str, str]:
    """Labels of a namespace this stack creates: Pod Security Admission enforces ``restricted``
    (and warns and audits at that level too), pinned to the latest policy version."""
    labels = {"app.kubernetes.io/part-of": PART_OF}
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = POD_SECURITY_LEVEL
        labels[f"pod-security.kubernetes.io/{mode}-version"] = "latest"
    return labels


def checkov_annotations(skips: Mapping[str, str] = CHECKOV_SKIPS) -> dict[str, str]:
    """``checkov.io/skip<N>: <check>=<reason>`` for ``skips`` (:data:`CHECKOV_SKIPS` for the model
    pods; on the Deployment's own metadata, so the pod template, and the running pods, do not
    change)."""
    return {f"checkov.io/skip{i}": f"{check}={reason}" for i, (check, reason) in enumerate(skips.items(), 1)}


def topology_spread(model: str, version: str) -> list[dict[str, Any]]:
    """Spread a version's pods across zones and across nodes (best effort: a single-zone or
    single-node cluster still schedules them)."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector_labels(model, version)},
        }
        for key in (ZONE_KEY, HOST_KEY)
    ]


def splits_by_pods(plan: TrafficPlan, cfg: KubernetesSettings) -> bool:
    """True when traffic is split by pod count: ``router: service`` with two versions that both
    take live traffic. (With one version at 100% the entry Service selects just that one.)"""
    return cfg.router == "service" and sum(1 for b in plan.backends if b.weight > 0) > 1


def replicas_by_version(plan: TrafficPlan, cfg: KubernetesSettings) -> dict[str, int]:
    """How many pods each live version runs.

    Stable always runs ``replicas``: no rollout step or rollback changes its Deployment.
    ``router: gateway``: the candidate runs ``replicas`` too (the HTTPRoute splits traffic, so a
    10% canary is as warm as stable). ``router: service``: when both versions take traffic, the
    candidate's pod count carries the split (:func:`candidate_replicas`).
    """
    out = {}
    for b in plan.backends:
        if b.role == "candidate" and splits_by_pods(plan, cfg):
            out[b.version] = candidate_replicas(cfg.replicas, b.weight)
        else:
            out[b.version] = cfg.replicas
    return out


@dataclass(frozen=True)
class CaptureTarget:
    """Where every model pod sends captured requests (``monitoring.drift``): the model monitor."""

    url: str
    """``http://<monitor Service>.<namespace>.svc:<port>/v1/capture``."""
    sample: float
    pod_labels: Mapping[str, str]
    """The monitor pods' labels: the model's NetworkPolicy lets its pods connect to them."""
    port: int


def pod_workers(cfg: KubernetesSettings) -> int | None:
    """Serving workers per pod: ``workers``, else one per GPU with ``gpu``, else None (the
    runtime's own default: the container's CPU limit)."""
    if cfg.workers is not None:
        return cfg.workers
    return cfg.gpu.count if cfg.gpu is not None else None


def gpu_scheduling(cfg: KubernetesSettings) -> dict[str, Any]:
    """The pod spec's ``nodeSelector`` and ``tolerations`` for ``gpu`` (empty without it)."""
    if cfg.gpu is None:
        return {}
    out: dict[str, Any] = {}
    if cfg.gpu.node_selector:
        out["nodeSelector"] = dict(cfg.gpu.node_selector)
    tolerations = [t.model_dump(exclude_none=True) for t in cfg.gpu.effective_tolerations()]
    if tolerations:
        out["tolerations"] = tolerations
    return out


def container_spec(
    model: str, version: str, image: Any, cfg: KubernetesSettings, capture: CaptureTarget | None = None
) -> dict[str, Any]:
    """The serving container. ``capture`` adds the capture URL and sample to its environment: a
    change of the pod template, so turning drift on or off rolls each version's pods in place
    (RollingUpdate, maxUnavailable 0); the Deployment is not replaced (only ``spec.selector``
    replaces one: modelctl/replacements.py)."""
    env = [
        {"name": k, "value": v}
        for k, v in serving_env(
            # the preStop sleep below already waits for the endpoints to drain
            model,
            version,
            workers=pod_workers(cfg),
            gpus=cfg.gpu.count if cfg.gpu is not None else 0,
            timeout_seconds=cfg.request_timeout_seconds,
            drain_seconds=0,
            capture_url=capture.url if capture is not None else None,
            capture_sample=capture.sample if capture is not None else None,
            batch_max_size=cfg.batch_max_size,
            batch_max_wait_ms=cfg.batch_max_wait_ms,
        ).items()
    ]
    resources: dict[str, dict[str, str]] = {}
    for kind in ("requests", "limits"):
        q = getattr(cfg.resources, kind)
        vals = {k: v for k, v in (("cpu", q.cpu), ("memory", q.memory)) if v is not None}
        if vals:
            resources[kind] = vals
    if cfg.gpu is not None:
        # Extended resources are whole units set in limits; the request defaults to the limit and
        # may not differ from it (kubernetes.io "Schedule GPUs": "GPUs are only supposed to be
        # specified in the limits section ... you can specify GPU limits without specifying
        # requests, because Kubernetes will use the limit as the request value by default").
        resources.setdefault("limits", {})[cfg.gpu.resource] = str(cfg.gpu.count)
    return {
        "name": "model",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["serve"],
        # "metrics" is scraped by the PodMonitor; no Service, Ingress or HTTPRoute routes it.
        "ports": [
            {"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "env": env,
        "resources": resources,
        # startup: model load may take minutes; readiness: model loaded; liveness: process up.
        "startupProbe": {
            "httpGet": {"path": "/ping", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
        "readinessProbe": {
            "httpGet": {"path": "/ping", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/version", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        # let endpoints drain before SIGTERM reaches the server
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def deployment_spec(
    model: str,
    version: str,
    image: Any,
    replicas: int,
    cfg: KubernetesSettings,
    service_account: str,
    capture: CaptureTarget | None = None,
) -> dict[str, Any]:
    labels = pod_labels(model, version)
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(model, version)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "revisionHistoryLimit": 3,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "serviceAccountName": service_account,
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": cfg.request_timeout_seconds + 15,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": RUNTIME_UID,
                    "runAsGroup": RUNTIME_UID,
                    "fsGroup": RUNTIME_UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "topologySpreadConstraints": topology_spread(model, version),
                "containers": [container_spec(model, version, image, cfg, capture)],
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
            },
        },
    }
    spec["template"]["spec"].update(gpu_scheduling(cfg))
    if cfg.image_pull_secrets:
        spec["template"]["spec"]["imagePullSecrets"] = [{"name": n} for n in cfg.image_pull_secrets]
    if cfg.autoscaling is None:
        spec["replicas"] = replicas
    return spec


def service_spec(selector: dict[str, str], cfg: KubernetesSettings, entry: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": selector,
        "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        "type": "ClusterIP",
    }
    if entry and cfg.service_type == "LoadBalancer":
        spec["type"] = "LoadBalancer"
        if cfg.load_balancer_source_ranges:
            spec["loadBalancerSourceRanges"] = list(cfg.load_balancer_source_ranges)
        if cfg.network_policy.enabled:
            # keep the client's address (no SNAT to a node IP), so that the network policy's
            # ipBlocks (the source ranges) match the real caller
            spec["externalTrafficPolicy"] = "Local"
    return spec


def hpa_spec(deployment: str, cfg: KubernetesSettings, candidate_weight: int | None) -> dict[str, Any]:
    """An autoscaling/v2 HPA on CPU. ``candidate_weight``: for a candidate whose pod count
    carries a traffic split (service router), its bounds are scaled like its replicas."""
    a = cfg.autoscaling
    assert a is not None
    lo, hi = a.min_replicas, a.max_replicas
    if candidate_weight is not None:
        lo, hi = candidate_replicas(lo, candidate_weight), candidate_replicas(hi, candidate_weight)
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "minReplicas": lo,
        "maxReplicas": max(lo, hi),
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": a.target_cpu_utilization},
                },
            }
        ],
    }


def http_route_spec(model: str, plan: TrafficPlan, cfg: KubernetesSettings) -> dict[str, Any]:
    """A Gateway API HTTPRoute: weighted backendRefs for canary/blue-green, a RequestMirror
    filter (with percent) for shadow."""
    gw = cfg.gateway
    assert gw is not None
    parent: dict[str, Any] = {"name": gw.name}
    if gw.namespace:
        parent["namespace"] = gw.namespace
    if gw.section_name:
        parent["sectionName"] = gw.section_name
    # a shadow candidate is reached only through the mirror filter, never as a backend
    backends = [
        {"name": version_name(model, b.version), "port": SERVICE_PORT, "weight": b.weight}
        for b in plan.backends
        if plan.strategy != "shadow" or b.role == "stable"
    ]
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": backends,
    }
    if plan.mirror is not None:
        rule["filters"] = [
            {
                "type": "RequestMirror",
                "requestMirror": {
                    "backendRef": {"name": version_name(model, plan.mirror.version), "port": SERVICE_PORT},
                    "percent": plan.mirror.percent,
                },
            }
        ]
    # Gateway API v1 HTTPRouteRule.timeouts.request: "When this field is unspecified, request
    # timeout behavior is implementation-specific" (gateway.networking.k8s.io_httproutes.yaml,
    # v1.3.0); a Gateway API Duration (GEP-2257, e.g. "65s"). Slightly above the server's timeout.
    rule["timeouts"] = {"request": f"{cfg.request_timeout_seconds + GATEWAY_TIMEOUT_MARGIN_SECONDS}s"}
    spec: dict[str, Any] = {"parentRefs": [parent], "rules": [rule]}
    if gw.hostnames:
        spec["hostnames"] = list(gw.hostnames)
    return spec


def pdb_spec(model: str, version: str, min_pods: int) -> dict[str, Any] | None:
    """A version's PodDisruptionBudget, or None when its pod floor (the HPA's ``minReplicas`` as
    declared, else the Deployment's replicas) is below two.

    ``maxUnavailable: 1``, never ``minAvailable``: a drain may always evict one pod at a time,
    whatever the HPA has scaled the version to ("If you set maxUnavailable to 0% or 0, or you set
    minAvailable to 100% or the number of replicas, you are requiring zero voluntary evictions ...
    then you cannot successfully drain a Node running one of those Pods", kubernetes.io
    "Specifying a Disruption Budget for your Application"). With one pod a budget cannot keep the
    version available through an eviction anyway: no PDB then (that page's option for a single
    instance: no PDB, tolerate the occasional downtime), so it promises nothing it cannot keep.
    """
    if min_pods < 2:
        return None
    return {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(model, version)}}


def ingress_spec(service: str, cfg: KubernetesSettings) -> dict[str, Any]:
    ing = cfg.ingress
    assert ing is not None
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": ing.host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": service, "port": {"name": "http"}}},
                        }
                    ]
                },
            }
        ]
    }
    if ing.class_name:
        spec["ingressClassName"] = ing.class_name
    if ing.tls_secret:
        spec["tls"] = [{"hosts": [ing.host], "secretName": ing.tls_secret}]
    return spec


def entry_selector(model: str, plan: TrafficPlan, cfg: KubernetesSettings) -> dict[str, str]:
    """What the entry Service selects: every version when pods carry the split (service router,
    both versions live), else the version taking the traffic."""
    if splits_by_pods(plan, cfg):
        return selector_labels(model)
    return selector_labels(model, plan.serving_version)


# --------------------------------------------------------------------------- the component


@dataclass
class KubernetesModelServiceArgs:
    model_name: str
    plan: TrafficPlan
    models: Mapping[str, ResolvedModel]
    """The resolved registry model of every live version."""
    settings: KubernetesSettings
    image: ImageSettings
    registry_password: pulumi.Input[str] | None = None
    """Login for ``image.repository`` (the secret ``mlflow-deploy:imageRegistryPassword``)."""
    metrics_namespace: str | None = None
    """Where the Prometheus that scrapes the metrics port runs (``monitoring.stackNamespace``);
    None when monitoring is off: the network policy then lets no scraper in."""
    capture: CaptureTarget | None = None
    """``monitoring.drift``: the model monitor every pod sends captured requests to."""
    keda_prometheus_address: str | None = None
    """The Prometheus the KEDA ScaledObjects query (``autoscaling.metric`` requests/concurrency)."""


class KubernetesModelService(pulumi.ComponentResource):
    """Outputs: ``service_name``, ``service_dns``, ``url``, ``live_versions``, ``traffic``,
    ``namespace``."""

    def __init__(
        self, name: str, args: KubernetesModelServiceArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mlflow-deploy:index:KubernetesModelService", name, None, opts)
        cfg, plan, model = args.settings, args.plan, args.model_name
        missing = [v for v in plan.versions if v not in args.models]
        if missing:
            raise ValueError(f"no resolved model for version(s) {', '.join(missing)}")
        base = base_name(model)
        images = registry_images(
            "k8s",
            {v: args.models[v] for v in plan.versions},
            args.image,
            args.image.repository,
            opts=pulumi.ResourceOptions(parent=self),
            registry_username=args.image.registry_username,
            registry_password=args.registry_password,
            gpu=cfg.gpu is not None,
        )
        ns_name = cfg.namespace

        child = pulumi.ResourceOptions(parent=self)
        if cfg.kube_context:
            provider = k8s.Provider(f"{base}-k8s", context=cfg.kube_context, opts=child)
            child = pulumi.ResourceOptions(parent=self, provider=provider)
        self._child = child

        deps: list[pulumi.Resource] = []
        if cfg.create_namespace:
            ns = k8s.core.v1.Namespace(
                f"{base}-ns",
                metadata={"name": ns_name, "labels": namespace_labels()},
                opts=child,
            )
            deps.append(ns)
        opts_ns = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=deps))

        sa = k8s.core.v1.ServiceAccount(
            f"{base}-sa",
            metadata={"name": base, "namespace": ns_name, "labels": common_labels(model)},
            automount_service_account_token=False,
            opts=opts_ns,
        )
        replicas = replicas_by_version(plan, cfg)
        self.deployments: dict[str, k8s.apps.v1.Deployment] = {}
        self.version_services: dict[str, k8s.core.v1.Service] = {}
        for b in plan.backends:
            v = b.version
            vname = version_name(model, v)
            self.deployments[v] = k8s.apps.v1.Deployment(
                vname,
                metadata={
                    "name": vname,
                    "namespace": ns_name,
                    "labels": pod_labels(model, v),
                    "annotations": checkov_annotations(),
                },
                spec=deployment_spec(model, v, images[v], replicas[v], cfg, base, args.capture),
                opts=pulumi.ResourceOptions.merge(opts_ns, pulumi.ResourceOptions(depends_on=[sa])),
            )
            self.version_services[v] = k8s.core.v1.Service(
                f"{vname}-svc",
                metadata={"name": vname, "namespace": ns_name, "labels": pod_labels(model, v)},
                spec=service_spec(selector_labels(model, v), cfg, entry=False),
                opts=opts_ns,
            )
            min_pods = replicas[v]
            if cfg.autoscaling is not None and cfg.autoscaling.keda:
                scaled = b.role == "candidate" and splits_by_pods(plan, cfg)
                so = scaled_object_spec(
                    vname,
                    cfg.autoscaling,
                    namespace=ns_name,
                    model_label=dns_label(model),
                    version=v,
                    prometheus_address=args.keda_prometheus_address or "",
                    candidate_weight=b.weight if scaled else None,
                )
                min_pods = so["minReplicaCount"]
                k8s.apiextensions.CustomResource(
                    f"{vname}-scaledobject",
                    api_version=KEDA_API_VERSION,
                    kind=KEDA_KIND,
                    metadata={"name": vname, "namespace": ns_name, "labels": pod_labels(model, v)},
                    spec=so,
                    opts=pulumi.ResourceOptions.merge(
                        opts_ns, pulumi.ResourceOptions(depends_on=[self.deployments[v]])
                    ),
                )
            elif cfg.autoscaling is not None:
                scaled = b.role == "candidate" and splits_by_pods(plan, cfg)
                hpa = hpa_spec(vname, cfg, b.weight if scaled else None)
                min_pods = hpa["minReplicas"]  # the floor the HPA may really scale it down to
                k8s.autoscaling.v2.HorizontalPodAutoscaler(
                    f"{vname}-hpa",
                    metadata={"name": vname, "namespace": ns_name, "labels": pod_labels(model, v)},
                    spec=hpa,
                    opts=opts_ns,
                )
            pdb = pdb_spec(model, v, min_pods)
            if pdb is not None:
                k8s.policy.v1.PodDisruptionBudget(
                    f"{vname}-pdb",
                    metadata={"name": vname, "namespace": ns_name, "labels": pod_labels(model, v)},
                    spec=pdb,
                    opts=opts_ns,
                )

        if cfg.network_policy.enabled:
            k8s.networking.v1.NetworkPolicy(
                f"{base}-netpol",
                metadata={"name": base, "namespace": ns_name, "labels": common_labels(model)},
                spec=network_policy_spec(
                    selector_labels(model),
                    cfg,
                    ns_name,
                    args.metrics_namespace,
                    capture_to=None
                    if args.capture is None
                    else (dict(args.capture.pod_labels), args.capture.port),
                ),
                opts=opts_ns,
            )
        entry = k8s.core.v1.Service(
            f"{base}-svc",
            metadata={"name": base, "namespace": ns_name, "labels": common_labels(model)},
            spec=service_spec(entry_selector(model, plan, cfg), cfg, entry=True),
            opts=opts_ns,
        )
        if plan.preview is not None:
            k8s.core.v1.Service(
                f"{base}{PREVIEW_SUFFIX}-svc",
                metadata={
                    "name": f"{base}{PREVIEW_SUFFIX}",
                    "namespace": ns_name,
                    "labels": common_labels(model),
                },
                spec=service_spec(selector_labels(model, plan.preview), cfg, entry=False),
                opts=opts_ns,
            )
        if cfg.router == "gateway":
            k8s.apiextensions.CustomResource(
                f"{base}-route",
                api_version="gateway.networking.k8s.io/v1",
                kind="HTTPRoute",
                metadata={"name": base, "namespace": ns_name, "labels": common_labels(model)},
                spec=http_route_spec(model, plan, cfg),
                opts=pulumi.ResourceOptions.merge(
                    opts_ns, pulumi.ResourceOptions(depends_on=list(self.version_services.values()))
                ),
            )
        if cfg.ingress is not None:
            k8s.networking.v1.Ingress(
                f"{base}-ingress",
                metadata={
                    "name": base,
                    "namespace": ns_name,
                    "labels": common_labels(model),
                    "annotations": dict(cfg.ingress.annotations),
                },
                spec=ingress_spec(base, cfg),
                opts=opts_ns,
            )

        self.namespace = ns_name
        self.service_name = base
        self.service_dns = f"{base}.{ns_name}.svc.cluster.local"
        if cfg.ingress is not None:
            scheme = "https" if cfg.ingress.tls_secret else "http"
            self.url: pulumi.Output[str] = pulumi.Output.from_input(f"{scheme}://{cfg.ingress.host}")
        elif cfg.service_type == "LoadBalancer":
            self.url = entry.status.apply(_lb_url)
        else:
            self.url = pulumi.Output.from_input(f"http://{self.service_dns}")
        self.live_versions = list(plan.versions)
        self.traffic = dict(plan.weights)
        self.register_outputs(
            {
                "namespace": ns_name,
                "serviceName": base,
                "serviceDns": self.service_dns,
                "url": self.url,
                "liveVersions": self.live_versions,
                "traffic": self.traffic,
            }
        )

    @property
    def child_opts(self) -> pulumi.ResourceOptions:
        """Options for resources that belong under this target (same parent and provider)."""
        return self._child


def _lb_url(status: Any) -> str:
    """The LoadBalancer Service's address (``status.loadBalancer.ingress[0]``) once assigned."""
    ingress = getattr(getattr(status, "load_balancer", None), "ingress", None) or []
    for entry in ingress:
        host = getattr(entry, "hostname", None) or getattr(entry, "ip", None)
        if host:
            return f"http://{host}"
    return "(pending load balancer address)"
