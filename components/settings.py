"""Stack settings: the validated form of the ``mlflow-deploy`` config namespace.

Every key under ``mlflow-deploy:`` in ``Pulumi.<stack>.yaml`` maps to one field of
:class:`Settings`. Validation happens before any resource is declared; a bad config raises
:class:`SettingsError`, whose message lists *every* offending key path, e.g.::

    invalid stack config (2 errors):
      mlflow-deploy:candidate.percent: must be between 0 and 100 (got 150)
      mlflow-deploy:kubernetes.replicas: Input should be a valid integer

The models are plain pydantic models so that ``modelctl`` can validate a stack file without
Pulumi. Keys are camelCase in YAML (Pulumi convention) and snake_case in Python.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from components.validation import (
    check_cidr,
    check_image_reference,
    check_namespace,
    cidr_within,
    duration_seconds,
)

NAMESPACE = "mlflow-deploy"

# Kubernetes quantities, e.g. "500m", "1", "2Gi", "512Mi".
_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
# A model version in the MLflow registry is a positive integer, kept as a string.
_VERSION = re.compile(r"^[1-9][0-9]*$")



class SettingsError(ValueError):
    """Invalid stack config. ``errors`` holds ``(key path, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        lines = "\n".join(f"  {path}: {msg}" for path, msg in errors)
        n = len(errors)
        super().__init__(f"invalid stack config ({n} error{'s' if n != 1 else ''}):\n{lines}")


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


def _check_version(v: str | int | None) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    if not _VERSION.match(s):
        raise ValueError(f"a registry model version is a positive integer (got {v!r})")
    return s


def _check_quantity(v: str | int | float | None) -> str | None:
    if v is None:
        return None
    s = str(v)
    if not _QUANTITY.match(s):
        raise ValueError(f"not a Kubernetes quantity (got {v!r}; e.g. '500m', '1', '2Gi')")
    return s


# --------------------------------------------------------------------------- mlflow / model


class MlflowSettings(_Model):
    """Where the MLflow Model Registry lives."""

    tracking_uri: str | None = None
    """Registry URI; if unset, ``MLFLOW_TRACKING_URI`` from the environment."""
    registry_uri: str | None = None
    """Only when the model registry differs from the tracking server."""


class ModelSettings(_Model):
    """The stable model version served to live traffic."""

    name: str = Field(min_length=1)
    version: str | None = None
    alias: str | None = Field(default=None, min_length=1)

    _v = field_validator("version", mode="before")(_check_version)

    @model_validator(mode="after")
    def _one_of_version_or_alias(self) -> ModelSettings:
        if self.version is None and self.alias is None:
            raise ValueError("set exactly one of 'version' or 'alias' (neither is set)")
        if self.version is not None and self.alias is not None:
            raise ValueError("set exactly one of 'version' or 'alias' (both are set)")
        return self


Strategy = Literal["canary", "blue-green", "shadow"]

DEFAULT_PERCENT: dict[str, int] = {"canary": 10, "blue-green": 0, "shadow": 100}
"""Percent used when ``candidate.percent`` is omitted, per strategy."""


class CandidateSettings(_Model):
    """A version on trial beside the stable one."""

    version: str
    strategy: Strategy = "canary"
    percent: int | None = None
    """canary: share of live traffic; blue-green: 0 (preview) or 100 (switched);
    shadow: share of live traffic mirrored to the candidate."""

    _v = field_validator("version", mode="before")(_check_version)

    @field_validator("percent", mode="before")
    @classmethod
    def _percent_range(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("must be an integer between 0 and 100")
        if isinstance(v, int | float) and not 0 <= v <= 100:
            raise ValueError(f"must be between 0 and 100 (got {v})")
        return v

    @model_validator(mode="after")
    def _blue_green_is_a_switch(self) -> CandidateSettings:
        if self.strategy == "blue-green" and self.percent not in (None, 0, 100):
            raise ValueError(
                f"blue-green is a switch: percent is 0 (candidate on preview) or 100 "
                f"(switched), got {self.percent}; use strategy 'canary' for a partial share"
            )
        return self

    @property
    def effective_percent(self) -> int:
        return DEFAULT_PERCENT[self.strategy] if self.percent is None else self.percent


# --------------------------------------------------------------------------- image


class ImageSettings(_Model):
    """How the model image is obtained: built per version, or prebuilt per version."""

    repository: str | None = None
    """Registry repository the built image is pushed to, e.g. ``ghcr.io/acme/models``.
    Cloud targets push to their own registry (ECR, Artifact Registry) instead."""
    uris: dict[str, str] = Field(default_factory=dict)
    """Prebuilt mode: model version -> image URI. A version listed here is not built."""
    base_image: str = "python:{python_version}-slim"
    """Base image; ``{python_version}`` is the model's Python major.minor."""
    platform: str = "linux/amd64"
    push: bool = True
    registry_username: str | None = None
    """Login for ``repository``; the password is the secret ``mlflow-deploy:imageRegistryPassword``."""

    @field_validator("base_image")
    @classmethod
    def _base_image(cls, v: str) -> str:
        # it becomes the Dockerfile's FROM line: anything but a reference could add instructions
        return check_image_reference(v, placeholder=True)

    @field_validator("uris", mode="before")
    @classmethod
    def _uris_keys(cls, v: Any) -> Any:
        if isinstance(v, Mapping):
            out = {}
            for k, uri in v.items():
                out[_check_version(k) or ""] = uri
            return out
        return v


# --------------------------------------------------------------------------- kubernetes


class ResourceQuantities(_Model):
    cpu: str | None = None
    memory: str | None = None

    _q = field_validator("cpu", "memory", mode="before")(_check_quantity)


class Resources(_Model):
    requests: ResourceQuantities = ResourceQuantities(cpu="500m", memory="1Gi")
    limits: ResourceQuantities = ResourceQuantities(cpu="1", memory="2Gi")


class AutoscalingSettings(_Model):
    min_replicas: int = Field(default=2, ge=1)
    max_replicas: int = Field(default=10, ge=1)
    target_cpu_utilization: int = Field(default=70, ge=1, le=100)

    @model_validator(mode="after")
    def _min_le_max(self) -> AutoscalingSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) is greater than maxReplicas ({self.max_replicas})"
            )
        return self


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
    """Serving workers per pod; if unset, the runtime uses the container's CPU limit."""
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


# --------------------------------------------------------------------------- monitoring


class AlertThresholds(_Model):
    error_ratio: float = Field(default=0.05, gt=0, le=1)
    """Alert when the 5xx share of requests exceeds this for ``for``."""
    p99_latency_seconds: float = Field(default=1.0, gt=0)
    restarts: int = Field(default=3, ge=1)
    """Container restarts within 15 minutes."""
    candidate_error_ratio_margin: float = Field(default=0.02, ge=0, le=1)
    """Canary: alert when the candidate's error ratio exceeds stable's by more than this."""
    candidate_latency_margin: float = Field(default=1.2, ge=1)
    """Canary: alert when the candidate's p99 exceeds stable's times this factor."""
    for_: str = Field(default="5m", alias="for", pattern=r"^[0-9]+[smh]$")


RATE_WINDOW = "5m"
"""The window of every ``rate()`` in the recording rules (components/monitoring.py)."""
MIN_SCRAPES_PER_WINDOW = 4
"""Scrapes a rate window must hold: ``rate()`` needs two samples in it, and four leave room for a
missed scrape or two and for the scrape and rule-evaluation phases not lining up."""




class MonitoringSettings(_Model):
    enabled: bool = True
    install_stack: bool = False
    """Install kube-prometheus-stack with Helm (dev); else assume a Prometheus Operator."""
    stack_namespace: str = "monitoring"
    retention: str = Field(default="7d", pattern=r"^[0-9]+[smhdwy]$")
    release_label: str | None = None
    """Value of the ``release`` label the operator's selectors want (kube-prometheus-stack)."""
    thresholds: AlertThresholds = AlertThresholds()
    # Kubernetes monitoring (components/monitoring.py)
    chart_version: str = Field(default="87.15.1", pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    """installStack: the pinned kube-prometheus-stack chart version."""
    prometheus_resources: Resources = Resources(
        requests=ResourceQuantities(cpu="250m", memory="1Gi"),
        limits=ResourceQuantities(memory="2Gi"),
    )
    """installStack: requests/limits of the Prometheus pod (no CPU limit: throttling delays rule
    evaluation)."""
    stack_values: dict[str, Any] = Field(default_factory=dict)
    """installStack: extra Helm values, deep-merged over the generated ones."""
    scrape_interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m)$")
    """How often the PodMonitor scrapes each model pod's /metrics: more than 0 and at most a
    quarter of the recording rules' 5m rate window (75s)."""
    dashboard_label: str = Field(default="grafana_dashboard", min_length=1)
    """Label the Grafana dashboard sidecar looks for on ConfigMaps (value "1")."""
    dashboard_folder: str = Field(default="MLflow models", min_length=1)
    """Grafana folder of the dashboard (``grafana_folder`` annotation)."""

    @field_validator("scrape_interval")
    @classmethod
    def _scrape_interval(cls, v: str) -> str:
        seconds, window = duration_seconds(v), duration_seconds(RATE_WINDOW)
        if seconds <= 0:
            raise ValueError(f"must be more than 0 (got {v!r})")
        if seconds * MIN_SCRAPES_PER_WINDOW > window:
            raise ValueError(
                f"{v} leaves fewer than {MIN_SCRAPES_PER_WINDOW} scrapes in the recording rules' "
                f"{RATE_WINDOW} rate window, so the rates (and every alert on them) go missing; use "
                f"{int(window // MIN_SCRAPES_PER_WINDOW)}s or less"
            )
        return v


# --------------------------------------------------------------------------- azure ml

# Online endpoint names: 3-32 characters, a letter first, letters/digits/'-' (unique per region).
_AZUREML_ENDPOINT = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
AZUREML_MAX_MIRROR_PERCENT = 50
"""Azure ML mirrors at most 50% of an endpoint's traffic (sum of ``mirror_traffic``)."""


class AzureMlAutoscaleSettings(_Model):
    """Azure Monitor autoscale on each deployment's CPU utilization (target-utilization rules)."""

    min_instances: int = Field(default=1, ge=1)
    max_instances: int = Field(default=3, ge=1)
    target_utilization: int = Field(default=70, ge=10, le=95)
    """Average CPU percent: above it an instance is added, well below it one is removed."""

    @model_validator(mode="after")
    def _min_le_max(self) -> AzureMlAutoscaleSettings:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"minInstances ({self.min_instances}) is greater than maxInstances ({self.max_instances})"
            )
        return self


class AzureMlModelStoreSettings(_Model):
    """``modelSource: mlflow_model``: where the registry's artifacts are uploaded for Azure ML.

    The storage account/container behind ``datastore`` (by default the workspace's
    ``workspaceblobstore``); the ModelVersion points at ``azureml://datastores/<datastore>/paths/…``.
    """

    storage_account: str = Field(min_length=3)
    container: str = Field(min_length=3)
    datastore: str = Field(default="workspaceblobstore", min_length=1)
    resource_group: str | None = None
    """The storage account's resource group; default ``azureml.resourceGroup``."""
    path_prefix: str = "mlflow-deploy"


class AzureMlSettings(_Model):
    """Azure ML managed online endpoint (the target is on when the key is present)."""

    subscription_id: str | None = None
    """Default: the azure-native provider's (``azure-native:subscriptionId`` / az CLI login)."""
    resource_group: str = Field(min_length=1)
    workspace: str = Field(min_length=1)
    location: str = Field(min_length=1)
    """The workspace's region, e.g. ``westeurope``."""
    endpoint_name: str | None = None
    """Default ``<model>-<stack>`` (cut to 32 characters). Unique within the region."""
    model_source: Literal["image", "mlflow_model"] = "image"
    """``image``: the project's image per version (an EnvironmentVersion, /ping and /invocations on
    8080), as on every other target. ``mlflow_model``: a ModelVersion of type mlflow_model uploaded
    from the registry artifacts, served by Azure's own MLflow runtime."""
    container_registry: str | None = None
    """Image mode: login server the image is pushed to and the workspace pulls from, e.g. the
    workspace's ACR ``acmeml.azurecr.io``; default ``image.repository``."""
    model_store: AzureMlModelStoreSettings | None = None
    instance_type: str = Field(default="Standard_DS3_v2", min_length=1)
    instance_count: int = Field(default=1, ge=1)
    """Instances per deployment (the deployment's sku capacity); Azure advises 3+ in production."""
    auth_mode: Literal["key", "aad_token"] = "key"
    public_network_access: bool = True
    request_timeout_seconds: int = Field(default=60, ge=1, le=180)
    container_startup_timeout_seconds: int = Field(default=600, ge=60, le=3600)
    """How long a new instance may take to load the model and answer /ping (the startup probe's
    budget; liveness is on /version, which answers during the load)."""
    max_concurrent_requests_per_instance: int = Field(default=2, ge=1)
    workers: int | None = Field(default=None, ge=1)
    """Serving workers per instance (image mode); default: the instance's CPU count."""
    app_insights: bool = False
    autoscale: AzureMlAutoscaleSettings | None = None
    action_group_id: str | None = None
    """ARM id of an existing Azure Monitor action group the alerts notify."""
    expected_requests_per_minute: int = Field(default=600, ge=1)
    """Traffic the 5xx alert is scaled to: it fires above ``errorRatio`` x this many 5xx a minute."""
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("endpoint_name")
    @classmethod
    def _endpoint_name(cls, v: str | None) -> str | None:
        if v is not None and not _AZUREML_ENDPOINT.match(v):
            raise ValueError(
                f"an online endpoint name is 3-32 letters, digits or '-', starting with a letter (got {v!r})"
            )
        return v

    @model_validator(mode="after")
    def _combinations(self) -> AzureMlSettings:
        if self.model_source == "mlflow_model" and self.model_store is None:
            raise _KeyedError(
                "azureml.modelStore",
                "modelSource 'mlflow_model' needs 'modelStore' (the storage account/container the "
                "registry artifacts are uploaded to)"
            )
        return self


# --------------------------------------------------------------------------- sagemaker

# AWS region names: us-east-1, eu-central-2, us-gov-west-1, cn-north-1, ap-southeast-3 ...
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
# SageMaker endpoint / variant names: letters, digits and '-', alphanumeric at both ends, 63 at most.
_SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# A private ECR image: <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>[:tag|@digest]
ECR_IMAGE = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr(-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/"
    r"(?P<repository>[a-z0-9][a-z0-9._/-]*?)(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)
# Graviton instance families (c7g, m6gd, c6gn, r8g ...) run arm64 images.
_GRAVITON = re.compile(r"^ml\.[a-z]+[0-9]+g[a-z]*\.")
# CloudWatch Logs accepts only these retention periods (days).
_LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)


_SAGEMAKER_INSTANCE_TYPES: list[tuple[str, ...]] = []


def sagemaker_instance_types() -> tuple[str, ...]:
    """The real-time instance types the installed botocore's SageMaker API model knows."""
    if not _SAGEMAKER_INSTANCE_TYPES:
        import botocore.session

        model = botocore.session.get_session().get_service_model("sagemaker")
        _SAGEMAKER_INSTANCE_TYPES.append(tuple(model.shape_for("ProductionVariantInstanceType").enum))
    return _SAGEMAKER_INSTANCE_TYPES[0]


PROVIDER_ENDPOINT_WAIT_SECONDS = 60 * 60
"""How long the AWS provider waits for an endpoint to be ``InService`` after CreateEndpoint or
UpdateEndpoint: terraform-provider-aws internal/service/sagemaker/endpoint.go, waitEndpointInService,
``timeout = 60 * time.Minute`` (the resource takes no custom timeouts: ``*WithoutTimeout``). An update
that takes longer fails the ``pulumi up`` while SageMaker carries on, and the next ``up`` finds the
endpoint still ``Updating``. The same file accepts ``maximum_execution_timeout_in_seconds`` of
600-14400 only, though the API (BlueGreenUpdatePolicy.MaximumExecutionTimeoutInSeconds) takes up to
28800."""


class CapacitySizeSettings(_Model):
    """A step of a blue/green traffic shift: instances, or percent of the new fleet's capacity."""

    type: Literal["INSTANCE_COUNT", "CAPACITY_PERCENT"] = "CAPACITY_PERCENT"
    value: int = Field(ge=1)


class SageMakerDeploymentSettings(_Model):
    """The endpoint's ``DeploymentConfig``: how an update shifts traffic from the old fleet to the
    new one, and the CloudWatch alarms that roll it back."""

    type: Literal["ALL_AT_ONCE", "CANARY", "LINEAR"] = "ALL_AT_ONCE"
    canary_size: CapacitySizeSettings | None = None
    """CANARY: the first step (at most 50% of a variant's instances)."""
    linear_step_size: CapacitySizeSettings | None = None
    """LINEAR: every step (10-50% of a variant's instances)."""
    wait_interval_seconds: int = Field(default=300, ge=0, le=3600)
    """Baking period after each step, while the rollback alarms watch the new fleet."""
    termination_wait_seconds: int = Field(default=0, ge=0, le=3600)
    """Keep the old fleet this long after the last step (a quick way back)."""
    maximum_execution_timeout_seconds: int | None = Field(default=None, ge=600, le=28800)
    """SageMaker rolls the update back when it has not finished after this long. At most 3600: the
    AWS provider waits 60 minutes for the update (``PROVIDER_ENDPOINT_WAIT_SECONDS``)."""
    auto_rollback: bool = True
    """Roll an update back when one of the alarms (5XX ratio, p99 model latency) fires."""

    @field_validator("maximum_execution_timeout_seconds")
    @classmethod
    def _within_the_providers_wait(cls, v: int | None) -> int | None:
        if v is not None and v > PROVIDER_ENDPOINT_WAIT_SECONDS:
            raise ValueError(
                f"at most {PROVIDER_ENDPOINT_WAIT_SECONDS} (got {v}): the AWS provider waits at most 60 minutes "
                "for an endpoint update (terraform-provider-aws waitEndpointInService), so a longer update "
                "fails `pulumi up` while SageMaker carries on"
            )
        return v

    @model_validator(mode="after")
    def _sizes(self) -> SageMakerDeploymentSettings:
        if self.type == "CANARY" and self.canary_size is None:
            raise ValueError("type CANARY needs canarySize ({type: CAPACITY_PERCENT, value: 25})")
        if self.type == "LINEAR" and self.linear_step_size is None:
            raise ValueError("type LINEAR needs linearStepSize ({type: CAPACITY_PERCENT, value: 25})")
        if self.type != "CANARY" and self.canary_size is not None:
            raise ValueError(f"canarySize is for type CANARY (type is {self.type})")
        if self.type != "LINEAR" and self.linear_step_size is not None:
            raise ValueError(f"linearStepSize is for type LINEAR (type is {self.type})")
        c = self.canary_size
        if c is not None and c.type == "CAPACITY_PERCENT" and c.value > 50:
            raise ValueError(f"canarySize is at most 50% of the new fleet (got {c.value}%)")
        s = self.linear_step_size
        if s is not None and s.type == "CAPACITY_PERCENT" and not 10 <= s.value <= 50:
            raise ValueError(f"linearStepSize is 10-50% of the new fleet (got {s.value}%)")
        t = self.maximum_execution_timeout_seconds
        if t is not None and t <= self.wait_interval_seconds + self.termination_wait_seconds:
            raise ValueError(
                f"maximumExecutionTimeoutSeconds ({t}) must exceed waitIntervalSeconds + "
                f"terminationWaitSeconds ({self.wait_interval_seconds + self.termination_wait_seconds})"
            )
        return self


class SageMakerAutoscalingSettings(_Model):
    """Application Auto Scaling, target tracking on SageMakerVariantInvocationsPerInstance."""

    min_instances: int = Field(default=1, ge=1)
    max_instances: int = Field(default=4, ge=1)
    invocations_per_instance: float = Field(default=1000, gt=0)
    """Target invocations per instance per minute."""
    scale_in_cooldown_seconds: int = Field(default=300, ge=0)
    scale_out_cooldown_seconds: int = Field(default=60, ge=0)
    include_candidate: bool = False
    """Scale the candidate's variant too. Off by default: SageMaker refuses an UpdateEndpoint that
    removes an auto-scaled variant, so dropping an auto-scaled candidate (rollback, promote) needs
    a `pulumi up` with this off first. See docs/sagemaker.md."""

    @model_validator(mode="after")
    def _min_le_max(self) -> SageMakerAutoscalingSettings:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"minInstances ({self.min_instances}) is greater than maxInstances ({self.max_instances})"
            )
        return self


class SageMakerDataCaptureSettings(_Model):
    """Endpoint data capture (requests and/or responses) to S3."""

    destination_s3_uri: str = Field(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
    """``s3://bucket/prefix``; the execution role may write under this prefix only."""
    sampling_percent: int = Field(default=100, ge=0, le=100)
    capture: list[Literal["Input", "Output"]] = Field(default=["Input", "Output"], min_length=1)
    kms_key_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$")
    json_content_types: list[str] = Field(default_factory=lambda: ["application/json"])
    csv_content_types: list[str] = Field(default_factory=lambda: ["text/csv"])

    @property
    def bucket(self) -> str:
        return self.destination_s3_uri[len("s3://") :].split("/", 1)[0]

    @property
    def prefix(self) -> str:
        rest = self.destination_s3_uri[len("s3://") :].split("/", 1)
        return rest[1].strip("/") if len(rest) > 1 else ""


class SageMakerAlarmSettings(_Model):
    """The CloudWatch alarms that roll a deployment back (one pair per variant). Thresholds default
    to ``monitoring.thresholds`` so that one set of thresholds drives every target."""

    error_ratio: float | None = Field(default=None, gt=0, le=1)
    """5XX errors / invocations; default ``monitoring.thresholds.errorRatio``."""
    p99_latency_seconds: float | None = Field(default=None, gt=0)
    """p99 ModelLatency; default ``monitoring.thresholds.p99LatencySeconds``."""
    evaluation_minutes: int | None = Field(default=None, ge=1, le=1440)
    """Minutes (1-minute periods) a threshold must be breached; default ``monitoring.thresholds.for``."""
    actions: list[str] = Field(default_factory=list)
    """ARNs notified when an alarm fires (SNS topics)."""

    @field_validator("actions")
    @classmethod
    def _arns(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if not re.match(r"^arn:aws[a-z-]*:[a-z0-9-]+:", a)]
        if bad:
            raise ValueError(f"alarm actions are ARNs, e.g. an SNS topic's (got {bad[0]!r})")
        return v


class SageMakerSettings(_Model):
    """AWS SageMaker real-time endpoint (the target is on when the key is present)."""

    region: str
    endpoint_name: str | None = None
    """Default: the model name (``fraud-detector``). Unique per account and region."""
    instance_type: str = "ml.m5.large"
    instance_count: int = Field(default=1, ge=1)
    """Instances of the stable variant; 2 or more spread over Availability Zones."""
    candidate_instance_count: int | None = Field(default=None, ge=1)
    """Instances of the candidate's variant; default ``instanceCount``."""
    volume_size_gb: int | None = Field(default=None, ge=1, le=512)
    container_startup_timeout_seconds: int = Field(default=600, ge=60, le=3600)
    """How long a new instance may take to answer /ping (model load included)."""
    workers: int | None = Field(default=None, ge=1)
    """Serving workers per instance; default: the instance's CPU count."""
    request_timeout_seconds: int = Field(default=60, ge=1, le=60)
    """SageMaker gives a real-time invocation 60 seconds at most."""
    network_isolation: bool = True
    """No network access from the container (the model is baked into the image)."""
    ecr_repository: str | None = Field(
        default=None, pattern=r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
    )
    """Default ``mlflow-deploy/<model>``."""
    data_capture: SageMakerDataCaptureSettings | None = None
    deployment: SageMakerDeploymentSettings = SageMakerDeploymentSettings()
    alarms: SageMakerAlarmSettings = SageMakerAlarmSettings()
    autoscaling: SageMakerAutoscalingSettings | None = None
    log_retention_days: int = 30
    retain_replaced_configs: bool = True
    """Leave replaced EndpointConfigs, and the Models they name, in AWS (Pulumi forgets them) so that
    an endpoint SageMaker rolled back keeps a config, and its models, to run on
    (terraform-provider-aws#48997)."""
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not _AWS_REGION.match(v):
            raise ValueError(f"not an AWS region name (got {v!r}; e.g. 'us-east-1')")
        return v

    @field_validator("endpoint_name")
    @classmethod
    def _endpoint_name(cls, v: str | None) -> str | None:
        if v is not None and not _SAGEMAKER_NAME.match(v):
            raise ValueError(
                f"an endpoint name is 1-63 letters, digits or '-', alphanumeric at both ends (got {v!r})"
            )
        return v

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, v: str) -> str:
        known = sagemaker_instance_types()
        if v not in known:
            raise ValueError(
                f"{v!r} is not a SageMaker real-time instance type (botocore's SageMaker model lists "
                f"{len(known)}, e.g. ml.m5.large; a new type may need a newer botocore)"
            )
        return v

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        if v not in _LOG_RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs keeps logs for one of {_LOG_RETENTION_DAYS} days (got {v})")
        return v

    @model_validator(mode="after")
    def _combinations(self) -> SageMakerSettings:
        d = self.deployment
        counts = {self.instance_count, self.candidate_instance_count or self.instance_count}
        for key, size, lo, hi in (
            ("canarySize", d.canary_size, 0.0, 0.5),
            ("linearStepSize", d.linear_step_size, 0.1, 0.5),
        ):
            if size is None or size.type != "INSTANCE_COUNT":
                continue
            for n in sorted(counts):
                if not lo * n <= size.value <= hi * n:
                    raise _KeyedError(
                        f"sagemaker.deployment.{key}",
                        f"{size.value} instance(s) is not {int(lo * 100)}-{int(hi * 100)}% of a "
                        f"variant with {n} instance(s); use type CAPACITY_PERCENT or more instances",
                    )
        bake = baking_seconds(self)
        t = d.maximum_execution_timeout_seconds
        if t is not None and t <= bake:
            raise _KeyedError(
                "sagemaker.deployment.maximumExecutionTimeoutSeconds",
                f"{t} does not exceed the update's baking periods and termination wait ({bake} s): "
                "SageMaker would roll every update back",
            )
        planned = self.container_startup_timeout_seconds + bake
        if t is None and planned > PROVIDER_ENDPOINT_WAIT_SECONDS:
            raise _KeyedError(
                "sagemaker.deployment.waitIntervalSeconds",
                f"an update may take {planned} s (containerStartupTimeoutSeconds "
                f"{self.container_startup_timeout_seconds} + {traffic_steps(self)} baking period(s) of "
                f"{d.wait_interval_seconds} s + terminationWaitSeconds {d.termination_wait_seconds}), more "
                "than the 60 minutes the AWS provider waits for it (terraform-provider-aws "
                "waitEndpointInService): shorten waitIntervalSeconds, use larger steps, or set "
                "maximumExecutionTimeoutSeconds (at most 3600) to cap it",
            )
        a = self.autoscaling
        if a is not None and not a.min_instances <= self.instance_count <= a.max_instances:
            raise _KeyedError(
                "sagemaker.instanceCount",
                f"{self.instance_count} is outside autoscaling's {a.min_instances}-{a.max_instances}: "
                "every endpoint update starts a variant at instanceCount",
            )
        cand = self.candidate_instance_count or self.instance_count
        if a is not None and a.include_candidate and not a.min_instances <= cand <= a.max_instances:
            raise _KeyedError(
                "sagemaker.candidateInstanceCount",
                f"{cand} is outside autoscaling's {a.min_instances}-{a.max_instances} (includeCandidate is on)",
            )
        return self


def traffic_steps(s: SageMakerSettings) -> int:
    """Baking periods of a blue/green update: ALL_AT_ONCE one; CANARY two (the canary's, then a
    final one after the rest of the traffic shifts); LINEAR one per step. (AWS: "Use canary
    traffic shifting": "... all of the traffic shifts to the green fleet and there is a final
    baking period"; "Use linear traffic shifting": "For each step, there is a baking period".)"""
    d = s.deployment
    if d.type == "CANARY":
        return 2
    if d.type == "LINEAR" and d.linear_step_size is not None:
        size = d.linear_step_size
        if size.type == "CAPACITY_PERCENT":
            return math.ceil(100 / size.value)
        fleet = max(s.instance_count, s.candidate_instance_count or s.instance_count)
        return math.ceil(fleet / size.value)
    return 1


def baking_seconds(s: SageMakerSettings) -> int:
    """Time an update spends baking and waiting after the new fleet is up."""
    d = s.deployment
    return traffic_steps(s) * d.wait_interval_seconds + d.termination_wait_seconds


def longest_update_seconds(s: SageMakerSettings) -> int:
    """The longest endpoint update these settings allow: ``maximumExecutionTimeoutSeconds`` when
    set (SageMaker rolls back past it), else the new fleet's startup plus every baking period and
    the termination wait. Never more than ``PROVIDER_ENDPOINT_WAIT_SECONDS`` (the settings refuse
    more); .github/workflows/deploy.yml is sized to it."""
    t = s.deployment.maximum_execution_timeout_seconds
    return t if t is not None else s.container_startup_timeout_seconds + baking_seconds(s)


def _sagemaker_cross_checks(s: Settings) -> None:
    """Checks of ``sagemaker`` against the rest of the stack (called from ``Settings._cross_checks``)."""
    sm = s.sagemaker
    if sm is None:
        return
    live = [s.model.version] + ([s.candidate.version] if s.candidate is not None else [])
    for version, uri in sorted(s.image.uris.items()):
        if version in live and not ECR_IMAGE.match(uri):
            raise _KeyedError(
                f"image.uris.{version}",
                f"SageMaker pulls images from Amazon ECR only (got {uri!r}); push the image to ECR "
                "or drop the version from image.uris so it is built into the target's repository",
            )
    if _GRAVITON.match(sm.instance_type) and s.image.platform != "linux/arm64":
        raise _KeyedError(
            "image.platform",
            f"{sm.instance_type} is a Graviton (arm64) instance; set image.platform to 'linux/arm64' "
            f"(got {s.image.platform!r})",
        )


# --------------------------------------------------------------------------- vertex ai

# Vertex AI endpoint IDs: a letter, then up to 62 lowercase letters/digits/'-' (not ending in
# '-'), or a number of at most 10 digits without a leading zero.
_VERTEX_ENDPOINT_ID = re.compile(r"^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[1-9][0-9]{0,9})$")
# Artifact Registry repository IDs: a letter, lowercase letters/digits/'-', at most 63.
_GCP_REPOSITORY_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_GCP_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_GCP_NETWORK = re.compile(r"^projects/[^/]+/global/networks/[^/]+$")
_GCP_NOTIFICATION_CHANNEL = re.compile(r"^projects/[^/]+/notificationChannels/[^/]+$")
_GCP_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_GCP_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
# Registries Vertex AI pulls custom serving containers from.
_VERTEX_IMAGE_HOST = re.compile(r"^([a-z0-9-]+-docker\.pkg\.dev|([a-z]+\.)?gcr\.io)/")


class VertexPrivateServiceConnectSettings(_Model):
    """Expose the endpoint only through Private Service Connect."""

    project_allowlist: list[str] = Field(min_length=1)
    """Projects allowed to create PSC forwarding rules to the endpoint."""


class VertexSettings(_Model):
    """GCP Vertex AI online prediction (the target is on when the key is present)."""

    project: str = Field(min_length=1)
    """The GCP project ID every Vertex resource is created in."""
    region: str = "us-central1"
    endpoint_id: str | None = None
    """The endpoint's ID (last part of its resource name); default: the model name
    (``fraud-detector``). Unique per project and region."""
    repository_id: str | None = None
    """Artifact Registry repository for built images; default: the model name."""
    create_repository: bool = True
    """Declare the repository; ``false`` pushes to an existing one (``repositoryId``)."""
    machine_type: str = Field(default="n1-standard-2", min_length=1)
    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=2, ge=1)
    target_cpu_utilization: int = Field(default=60, ge=1, le=100)
    """Autoscaling target (percent CPU) between minReplicas and maxReplicas."""
    workers: int | None = Field(default=None, ge=1)
    """Serving workers per replica; default: the machine's CPU count."""
    service_account: str | None = None
    """Service account the serving container runs as; default: Vertex AI's own."""
    network: str | None = None
    """VPC peering (private services access): ``projects/<number>/global/networks/<name>``."""
    private_service_connect: VertexPrivateServiceConnectSettings | None = None
    dedicated_endpoint: bool = False
    """A dedicated public DNS name for the endpoint instead of the shared regional one."""
    enable_apis: bool = False
    """Enable the Vertex AI, Artifact Registry and Cloud Monitoring APIs on the project."""
    notification_channels: list[str] = Field(default_factory=list)
    """Cloud Monitoring channels the alerts notify: ``projects/<p>/notificationChannels/<id>``."""
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not _GCP_REGION.match(v):
            raise ValueError(f"not a GCP region (got {v!r}; e.g. 'us-central1', 'europe-west4')")
        return v

    @field_validator("endpoint_id")
    @classmethod
    def _endpoint_id(cls, v: str | None) -> str | None:
        if v is not None and not _VERTEX_ENDPOINT_ID.match(v):
            raise ValueError(
                "an endpoint ID is a lowercase letter followed by at most 62 letters, digits or '-', "
                f"or a number of at most 10 digits without a leading zero (got {v!r})"
            )
        return v

    @field_validator("repository_id")
    @classmethod
    def _repository_id(cls, v: str | None) -> str | None:
        if v is not None and not _GCP_REPOSITORY_ID.match(v):
            raise ValueError(
                f"an Artifact Registry repository ID is a lowercase letter followed by at most 62 "
                f"letters, digits or '-' (got {v!r})"
            )
        return v

    @field_validator("network")
    @classmethod
    def _network(cls, v: str | None) -> str | None:
        if v is not None and not _GCP_NETWORK.match(v):
            raise ValueError(f"a network is 'projects/<project number>/global/networks/<name>' (got {v!r})")
        return v

    @field_validator("notification_channels")
    @classmethod
    def _channels(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not _GCP_NOTIFICATION_CHANNEL.match(c)]
        if bad:
            raise ValueError(
                f"a notification channel is 'projects/<project>/notificationChannels/<id>' (got {bad[0]!r})"
            )
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not _GCP_LABEL_KEY.match(key) or not _GCP_LABEL_VALUE.match(value):
                raise ValueError(
                    f"GCP labels are lowercase letters, digits, '_' and '-', keys starting with a "
                    f"letter, at most 63 characters (got {key!r}: {value!r})"
                )
        return v

    @model_validator(mode="after")
    def _combinations(self) -> VertexSettings:
        if self.min_replicas > self.max_replicas:
            raise _KeyedError(
                "vertex.minReplicas",
                f"minReplicas ({self.min_replicas}) is greater than maxReplicas ({self.max_replicas})",
            )
        if self.network is not None and self.private_service_connect is not None:
            raise _KeyedError(
                "vertex.privateServiceConnect",
                "set at most one of 'network' (VPC peering) and 'privateServiceConnect'",
            )
        if self.dedicated_endpoint and (self.network is not None or self.private_service_connect is not None):
            raise _KeyedError(
                "vertex.dedicatedEndpoint",
                "a dedicated endpoint is a public one; drop it with 'network' or 'privateServiceConnect'",
            )
        if not self.create_repository and self.repository_id is None:
            raise _KeyedError(
                "vertex.repositoryId", "createRepository is false: name the existing repository to push to"
            )
        return self


def _vertex_cross_checks(settings: Settings) -> None:
    """What Vertex AI cannot do with the rest of the stack config (called by Settings._cross_checks)."""
    c = settings.candidate
    if c is not None and c.strategy == "shadow":
        raise _KeyedError(
            "candidate.strategy",
            "Vertex AI endpoints cannot mirror (shadow) traffic to a deployed model. Alternatives: "
            "strategy 'canary' with a small percent (e.g. 1-5) on Vertex; or run the shadow on the "
            "Kubernetes gateway router (kubernetes.router: gateway), SageMaker or Azure ML, with "
            "vertex off in that stack",
        )
    vertex = settings.vertex
    if c is not None and vertex is not None and vertex.network is not None:
        # "Only support one model per private endpoint. This is different from a public Vertex AI
        # endpoint where you can split traffic" (cloud.google.com/vertex-ai/docs/predictions/
        # using-private-endpoints); google-cloud-aiplatform's PrivateEndpoint: "A maximum of one
        # model can be deployed to each private Endpoint". PSC endpoints take a split.
        raise _KeyedError(
            "candidate",
            "vertex.network makes a VPC-peered private endpoint, which holds one deployed model "
            "and has no traffic split: no candidate can run beside the stable version there. "
            "Promote by setting model.version (the deployed model is replaced delete-first, with "
            "downtime: see docs/vertex.md), or use vertex.privateServiceConnect, whose endpoints "
            "split traffic",
        )
    live = [settings.model.version] + ([c.version] if c is not None else [])
    for v in live:
        uri = settings.image.uris.get(v) if v is not None else None
        if uri is not None and not _VERTEX_IMAGE_HOST.match(uri):
            raise _KeyedError(
                f"image.uris.{v}",
                f"Vertex AI pulls serving images from Artifact Registry ('<region>-docker.pkg.dev/...') "
                f"or Container Registry ('gcr.io/...'), got {uri!r}; leave the version out of image.uris "
                "to have it built and pushed to the stack's Artifact Registry repository",
            )


# --------------------------------------------------------------------------- the whole stack


class Settings(_Model):
    mlflow: MlflowSettings = MlflowSettings()
    model: ModelSettings
    candidate: CandidateSettings | None = None
    image: ImageSettings = ImageSettings()
    kubernetes: KubernetesSettings | None = None
    monitoring: MonitoringSettings = MonitoringSettings()
    sagemaker: SageMakerSettings | None = None
    azureml: AzureMlSettings | None = None
    vertex: VertexSettings | None = None

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        c = self.candidate
        if c is not None:
            if self.model.version is not None and c.version == self.model.version:
                raise _KeyedError(
                    "candidate.version",
                    f"the candidate is the stable version ({c.version}); to promote, set "
                    "model.version and drop candidate",
                )
            k = self.kubernetes
            if c.strategy == "shadow" and k is not None and k.router == "service":
                raise _KeyedError(
                    "candidate.strategy",
                    "shadow needs kubernetes.router 'gateway' (an HTTPRoute RequestMirror); "
                    "a plain Service cannot mirror traffic",
                )
        if self.kubernetes is not None and self.image.repository is None:
            wanted = [self.model.version] + ([c.version] if c is not None else [])
            unbuilt = [v or f"alias {self.model.alias}" for v in wanted if v not in self.image.uris]
            if unbuilt:
                raise _KeyedError(
                    "image.repository",
                    f"version(s) {', '.join(unbuilt)} are built (not in image.uris), and a built "
                    "image needs a repository to push to",
                )
        az = self.azureml
        if az is not None:
            if c is not None and c.strategy == "shadow" and c.effective_percent > AZUREML_MAX_MIRROR_PERCENT:
                raise _KeyedError(
                    "candidate.percent",
                    f"Azure ML mirrors at most {AZUREML_MAX_MIRROR_PERCENT}% of traffic to a shadow "
                    f"deployment (got {c.effective_percent}"
                    f"{'' if c.percent is not None else ', the shadow default'}); set candidate.percent "
                    f"to {AZUREML_MAX_MIRROR_PERCENT} or less",
                )
            if az.model_source == "image" and az.container_registry is None and self.image.repository is None:
                wanted = [self.model.version] + ([c.version] if c is not None else [])
                unbuilt = [v or f"alias {self.model.alias}" for v in wanted if v not in self.image.uris]
                if unbuilt:
                    raise _KeyedError(
                        "azureml.containerRegistry",
                        f"version(s) {', '.join(unbuilt)} are built for Azure ML (not in image.uris) "
                        "and need a registry the workspace pulls from: set azureml.containerRegistry "
                        "(the workspace's ACR) or image.repository",
                    )
        if self.monitoring.enabled and self.monitoring.install_stack and self.kubernetes is None:
            raise _KeyedError(
                "monitoring.installStack",
                "installs kube-prometheus-stack into the Kubernetes target's cluster: it needs "
                "the kubernetes target (the cloud targets use their own monitoring)",
            )
        if self.monitoring.stack_values and not self.monitoring.install_stack:
            raise _KeyedError("monitoring.stackValues", "only used with installStack: true")
        _sagemaker_cross_checks(self)
        if self.vertex is not None:
            _vertex_cross_checks(self)
        if not self.targets:
            raise _KeyedError(
                "kubernetes", "no target is on: set at least one of kubernetes, sagemaker, azureml, vertex"
            )
        return self

    @property
    def targets(self) -> list[str]:
        return [t for t in ("kubernetes", "sagemaker", "azureml", "vertex") if getattr(self, t) is not None]


# Secrets are separate top-level keys so that they can be stored encrypted (`pulumi config set
# --secret`). They are read with config.get_secret and never land in Settings.
SECRET_KEYS = ("mlflowTrackingToken", "imageRegistryPassword")


class _KeyedError(ValueError):
    """A cross-field error that knows which key it is about."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(message)


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
        else:
            parts.append(p)
    return ".".join(parts)


def parse_settings(config: Mapping[str, Any]) -> Settings:
    """Validate a stack's config: keys as in the YAML file, with or without the
    ``mlflow-deploy:`` prefix; keys of other namespaces (``kubernetes:context``) are ignored.

    Raises :class:`SettingsError` listing every offending key path.
    """
    data: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    for key, value in config.items():
        ns, sep, name = key.partition(":")
        if sep and ns != NAMESPACE:
            continue
        name = name if sep else key
        if name in SECRET_KEYS:
            continue
        data[name] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"]
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, _KeyedError):
                loc, msg = tuple(ctx_err.path.split(".")), str(ctx_err)
            elif msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                msg = "required key is missing"
            elif err["type"] == "literal_error":
                msg = f"{msg} (got {err.get('input')!r})"
            path = _loc_to_path(loc)
            errors.append((f"{NAMESPACE}:{path}" if path else NAMESPACE, msg))
    raise SettingsError(errors)


def load_settings() -> Settings:
    """Read and validate the current stack's ``mlflow-deploy`` config (inside a Pulumi program).

    Raises :class:`SettingsError` before any resource is declared.
    """
    import json

    import pulumi.runtime.config as rc

    raw: dict[str, Any] = {}
    # the language host hands config over via set_all_config (CONFIG); PULUMI_CONFIG is the
    # process-wide fallback
    for key, value in {**rc.get_config_env(), **rc.CONFIG.get()}.items():
        ns, _, name = key.partition(":")
        if ns != NAMESPACE:
            continue
        try:
            raw[name] = json.loads(value)
        except (TypeError, ValueError):
            raw[name] = value
    return parse_settings(raw)
