"""Settings of the Kubernetes target (``mlflow-deploy:kubernetes``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from components.settings_base import (
    _check_quantity,
    _KeyedError,
    _Model,
)
from components.validation import (
    check_cidr,
    check_namespace,
    cidr_within,
)

if TYPE_CHECKING:
    from components.settings import Settings

# --------------------------------------------------------------------------- kubernetes


class ResourceQuantities(_Model):
    cpu: str | None = None
    memory: str | None = None

    _q = field_validator("cpu", "memory", mode="before")(_check_quantity)


class Resources(_Model):
    requests: ResourceQuantities = ResourceQuantities(cpu="500m", memory="1Gi")
    limits: ResourceQuantities = ResourceQuantities(cpu="1", memory="2Gi")


AUTOSCALING_METRICS = ("cpu", "requests", "concurrency")


class AutoscalingSettings(_Model):
    """``cpu``: a HorizontalPodAutoscaler on CPU utilisation. ``requests`` / ``concurrency``: a KEDA
    ScaledObject on the runtime's own Prometheus series (components/autoscaling.py)."""

    metric: Literal["cpu", "requests", "concurrency"] = "cpu"
    min_replicas: int = Field(default=2, ge=0)
    """0 (scale to zero) only with ``requests``/``concurrency`` and a ``wakeQuery``."""
    max_replicas: int = Field(default=10, ge=1)
    target_cpu_utilization: int = Field(default=70, ge=1, le=100)
    target_requests_per_second: float = Field(default=20, gt=0)
    """``requests``: requests a second per pod (``rate(model_requests_total[1m])``) KEDA aims at."""
    target_concurrency: float = Field(default=4, gt=0)
    """``concurrency``: requests in flight per pod (``model_requests_in_flight``) KEDA aims at."""
    prometheus_address: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    """The Prometheus KEDA queries; default the Prometheus Operator's ``prometheus-operated``
    Service in ``monitoring.stackNamespace``."""
    wake_query: str | None = Field(default=None, min_length=1)
    """With ``minReplicas: 0``: a PromQL query on the *entry point's* metrics (Gateway / ingress
    controller) that is above 0 while callers knock on a version with no pods; the runtime's own
    series vanish with its last pod, so they cannot wake it."""
    cooldown_seconds: int = Field(default=300, ge=0)
    """KEDA: seconds without activity before a version scales to zero."""
    polling_interval_seconds: int = Field(default=15, ge=1)
    """KEDA: how often the triggers are queried."""

    @model_validator(mode="after")
    def _min_le_max(self) -> AutoscalingSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) is greater than maxReplicas ({self.max_replicas})"
            )
        if self.min_replicas == 0 and self.metric == "cpu":
            raise _KeyedError(
                "kubernetes.autoscaling.minReplicas",
                "0 (scale to zero) needs metric 'requests' or 'concurrency' (a KEDA ScaledObject): a "
                "HorizontalPodAutoscaler on CPU never scales below 1",
            )
        if self.min_replicas == 0 and self.wake_query is None:
            raise _KeyedError(
                "kubernetes.autoscaling.wakeQuery",
                "minReplicas 0 needs a query that sees requests while the version has no pod (the "
                "runtime's own series vanish with its last pod), e.g. the Gateway's or ingress "
                "controller's request rate for the model's route",
            )
        if self.wake_query is not None and self.min_replicas != 0:
            raise _KeyedError("kubernetes.autoscaling.wakeQuery", "only used with minReplicas 0")
        if self.metric == "cpu":
            keda_only = {
                "prometheusAddress": self.prometheus_address,
                "wakeQuery": self.wake_query,
            }
            for key, value in keda_only.items():
                if value is not None:
                    raise _KeyedError(
                        f"kubernetes.autoscaling.{key}", "only used with metric 'requests' or 'concurrency'"
                    )
        return self

    @property
    def keda(self) -> bool:
        return self.metric != "cpu"


class Toleration(_Model):
    """A pod toleration (core/v1 Toleration)."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    @model_validator(mode="after")
    def _value(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("operator 'Exists' takes no value")
        if self.operator == "Equal" and self.key is None:
            raise ValueError("operator 'Equal' needs a key")
        return self


# an extended resource name: <vendor domain>/<name>, e.g. nvidia.com/gpu, amd.com/gpu
_EXTENDED_RESOURCE = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"


class GpuSettings(_Model):
    """GPUs per pod: a container limit on the device plugin's extended resource, node selection and
    tolerations for the GPU nodes' taints; serving workers default to one per GPU."""

    count: int = Field(default=1, ge=1)
    resource: str = Field(default=DEFAULT_GPU_RESOURCE, pattern=_EXTENDED_RESOURCE)
    """The device plugin's resource (``nvidia.com/gpu``; the runtime image is CUDA, so NVIDIA)."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """e.g. ``{cloud.google.com/gke-accelerator: nvidia-l4}`` or a node-pool label."""
    tolerations: list[Toleration] | None = None
    """Default: tolerate the ``<resource>`` NoSchedule taint GPU node pools carry (GKE, AKS and
    EKS GPU node groups taint ``nvidia.com/gpu``)."""

    @field_validator("resource")
    @classmethod
    def _nvidia(cls, v: str) -> str:
        if not v.startswith("nvidia.com/"):
            raise ValueError(f"the serving image is built for CUDA: use an nvidia.com/ resource (got {v!r})")
        return v

    def effective_tolerations(self) -> list[Toleration]:
        if self.tolerations is not None:
            return self.tolerations
        return [Toleration(key=self.resource, operator="Exists", effect="NoSchedule")]


class IngressSettings(_Model):
    host: str = Field(min_length=1)
    class_name: str | None = None
    tls_secret: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)


class GatewaySettings(_Model):
    """The existing Gateway (Gateway API) that the HTTPRoute attaches to."""

    name: str = Field(min_length=1)
    namespace: str | None = None
    section_name: str | None = None
    hostnames: list[str] = Field(default_factory=list)


class NetworkPeer(_Model):
    """Who may connect: pods (by namespace and/or labels) or an IP block, one of the two."""

    namespace: str | None = None
    """A namespace by name (its ``kubernetes.io/metadata.name`` label)."""
    namespace_labels: dict[str, str] | None = None
    """Namespaces by labels (instead of ``namespace``)."""
    pod_labels: dict[str, str] | None = None
    """Pods by labels: in the namespace(s) above, else in the model's own namespace."""
    cidr: str | None = None
    """An IP block (clients outside the cluster, or pods of a CNI that keeps their IPs)."""
    except_: list[str] = Field(default_factory=list, alias="except")
    """Parts of ``cidr`` that stay shut."""

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str | None) -> str | None:
        return None if v is None else check_cidr(v)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str | None) -> str | None:
        return None if v is None else check_namespace(v)

    @field_validator("except_")
    @classmethod
    def _except(cls, v: list[str]) -> list[str]:
        return [check_cidr(c) for c in v]

    @model_validator(mode="after")
    def _one_kind(self) -> NetworkPeer:
        pods = self.namespace is not None or self.namespace_labels is not None or self.pod_labels is not None
        if pods == (self.cidr is not None):
            raise ValueError(
                "set either 'cidr' or pods ('namespace', 'namespaceLabels', 'podLabels'), not both/neither"
            )
        if self.namespace is not None and self.namespace_labels is not None:
            raise ValueError("set at most one of 'namespace' and 'namespaceLabels'")
        if self.except_:
            assert self.cidr is not None
            outside = [c for c in self.except_ if not cidr_within(c, self.cidr)]
            if outside:
                raise ValueError(f"'except' blocks must lie inside 'cidr' {self.cidr} (got {outside[0]!r})")
        return self


class EgressPeer(NetworkPeer):
    """Where a pod may connect to: pods or an IP block (as :class:`NetworkPeer`) on these ports."""

    ports: list[int] = Field(default_factory=list)
    """TCP ports; empty: every port."""

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        bad = [p for p in v if not 1 <= p <= 65535]
        if bad:
            raise ValueError(f"a port is between 1 and 65535 (got {bad[0]})")
        return v


class NetworkPolicySettings(_Model):
    """The model's NetworkPolicy (on by default): who may reach the serving port and the metrics
    port; egress is DNS only. ``networkPolicy: false`` turns it off."""

    enabled: bool = True
    entry_namespaces: list[str] | None = None
    """Namespaces whose pods may call the serving port: the Gateway's data plane (default: the
    Gateway's namespace) or the ingress controller (required with ``ingress``)."""
    allow_from: list[NetworkPeer] = Field(default_factory=list)
    """More callers of the serving port (in-cluster clients, IP blocks)."""
    allow_same_namespace: bool = False
    """Let every pod in the model's namespace call the serving port."""
    metrics_from: list[NetworkPeer] | None = None
    """Who may scrape the metrics port; default: the namespace ``monitoring.stackNamespace``."""

    @model_validator(mode="before")
    @classmethod
    def _bool(cls, v: Any) -> Any:
        return {"enabled": v} if isinstance(v, bool) else v

    @field_validator("entry_namespaces")
    @classmethod
    def _namespaces(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [check_namespace(n) for n in v]


class KubernetesSettings(_Model):
    namespace: str = Field(default="models", min_length=1)
    create_namespace: bool = False
    kube_context: str | None = None
    """kubeconfig context; if unset, the provider's default (current context)."""
    replicas: int = Field(default=2, ge=0)
    resources: Resources = Resources()
    workers: int | None = Field(default=None, ge=1)
    """Serving workers per pod; if unset, one per GPU with ``gpu``, else the container's CPU limit."""
    gpu: GpuSettings | None = None
    batch_max_size: int = Field(default=0, ge=0, le=1024)
    """Adaptive batching: concurrent requests merged into one predict, at most this many
    (``SERVING_BATCH_MAX_SIZE``); 0 = off. Only for models that predict rows independently."""
    batch_max_wait_ms: float | None = Field(default=None, ge=0, le=1000)
    """Adaptive batching: longest a request waits for others (``SERVING_BATCH_MAX_WAIT_MS``);
    default: the runtime's (2 ms)."""
    request_timeout_seconds: int = Field(default=60, ge=1)
    autoscaling: AutoscalingSettings | None = None
    service_type: Literal["ClusterIP", "LoadBalancer"] = "ClusterIP"
    load_balancer_source_ranges: list[str] = Field(default_factory=list)
    allow_public_load_balancer: bool = False
    """A LoadBalancer without ``loadBalancerSourceRanges`` (open to the internet) only with this."""
    network_policy: NetworkPolicySettings = NetworkPolicySettings()
    ingress: IngressSettings | None = None
    router: Literal["service", "gateway"] = "service"
    """How traffic is split between versions: ``gateway`` (an HTTPRoute) or ``service``
    (one Service over both versions, replicas split by weight)."""
    gateway: GatewaySettings | None = None
    image_pull_secrets: list[str] = Field(default_factory=list)

    @field_validator("load_balancer_source_ranges")
    @classmethod
    def _ranges(cls, v: list[str]) -> list[str]:
        return [check_cidr(c) for c in v]

    @model_validator(mode="after")
    def _combinations(self) -> KubernetesSettings:
        if self.router == "gateway" and self.gateway is None:
            raise ValueError("router 'gateway' needs 'gateway' (the Gateway to attach to)")
        if self.load_balancer_source_ranges and self.service_type != "LoadBalancer":
            raise ValueError("loadBalancerSourceRanges needs serviceType 'LoadBalancer'")
        # One entry point per router: with the gateway router only the HTTPRoute sees the canary
        # weights and the mirror; an Ingress or a LoadBalancer goes to the entry Service, which
        # selects the stable version only, so its traffic would bypass the rollout.
        if self.router == "gateway" and self.ingress is not None:
            raise _KeyedError(
                "kubernetes.ingress",
                "with router 'gateway' the HTTPRoute is the only entry point: an Ingress reaches the "
                "stable version only and bypasses the canary split and the mirror; drop 'ingress' "
                "(expose the Gateway instead) or use router 'service'",
            )
        if self.router == "gateway" and self.service_type == "LoadBalancer":
            raise _KeyedError(
                "kubernetes.serviceType",
                "with router 'gateway' the HTTPRoute is the only entry point: a LoadBalancer Service "
                "reaches the stable version only and bypasses the canary split and the mirror; use "
                "serviceType 'ClusterIP' (expose the Gateway instead) or router 'service'",
            )
        if self.ingress is not None and self.service_type == "LoadBalancer":
            raise _KeyedError(
                "kubernetes.serviceType",
                "the Ingress is the entry point: a LoadBalancer Service beside it is a second public "
                "entry that skips the Ingress's host and TLS rules; use serviceType 'ClusterIP'",
            )
        if self.allow_public_load_balancer and self.service_type != "LoadBalancer":
            raise _KeyedError("kubernetes.allowPublicLoadBalancer", "only used with serviceType 'LoadBalancer'")
        if self.allow_public_load_balancer and self.load_balancer_source_ranges:
            raise _KeyedError(
                "kubernetes.allowPublicLoadBalancer",
                "loadBalancerSourceRanges already limits who reaches the LoadBalancer; drop one of the two",
            )
        if (
            self.service_type == "LoadBalancer"
            and not self.load_balancer_source_ranges
            and not self.allow_public_load_balancer
        ):
            raise _KeyedError(
                "kubernetes.loadBalancerSourceRanges",
                "a LoadBalancer Service without source ranges is open to the internet: list the client "
                "CIDRs (e.g. [10.0.0.0/8]), or set kubernetes.allowPublicLoadBalancer: true to mean it",
            )
        np = self.network_policy
        if np.enabled and self.ingress is not None and not np.entry_namespaces:
            raise _KeyedError(
                "kubernetes.networkPolicy.entryNamespaces",
                "with 'ingress' the network policy must let the ingress controller in: name its "
                "namespace(s), e.g. [ingress-nginx] (or set networkPolicy: false)",
            )
        return self




def _kubernetes_cross_checks(s: Settings) -> None:
    """Checks of ``kubernetes`` against the rest of the stack (called by Settings._cross_checks)."""
    k = s.kubernetes
    if k is None:
        return
    a = k.autoscaling
    if a is not None and a.keda and not s.monitoring.enabled:
        raise _KeyedError(
            "kubernetes.autoscaling.metric",
            f"{a.metric!r} scales on the runtime's Prometheus series, which the PodMonitor of "
            "monitoring collects: turn monitoring.enabled on, or use metric 'cpu'",
        )
