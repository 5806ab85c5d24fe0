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

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

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
    ingress: IngressSettings | None = None
    router: Literal["service", "gateway"] = "service"
    """How traffic is split between versions: ``gateway`` (an HTTPRoute) or ``service``
    (one Service over both versions, replicas split by weight)."""
    gateway: GatewaySettings | None = None
    image_pull_secrets: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _combinations(self) -> KubernetesSettings:
        if self.router == "gateway" and self.gateway is None:
            raise ValueError("router 'gateway' needs 'gateway' (the Gateway to attach to)")
        if self.load_balancer_source_ranges and self.service_type != "LoadBalancer":
            raise ValueError("loadBalancerSourceRanges needs serviceType 'LoadBalancer'")
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
    """How often the PodMonitor scrapes each model pod's /metrics."""
    dashboard_label: str = Field(default="grafana_dashboard", min_length=1)
    """Label the Grafana dashboard sidecar looks for on ConfigMaps (value "1")."""
    dashboard_folder: str = Field(default="MLflow models", min_length=1)
    """Grafana folder of the dashboard (``grafana_folder`` annotation)."""


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


# --------------------------------------------------------------------------- the whole stack


class Settings(_Model):
    mlflow: MlflowSettings = MlflowSettings()
    model: ModelSettings
    candidate: CandidateSettings | None = None
    image: ImageSettings = ImageSettings()
    kubernetes: KubernetesSettings | None = None
    monitoring: MonitoringSettings = MonitoringSettings()
    sagemaker: dict[str, Any] | None = None
    azureml: AzureMlSettings | None = None
    vertex: dict[str, Any] | None = None

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
