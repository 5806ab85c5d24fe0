"""Stack settings: the validated form of the ``mlflow-deploy`` config namespace.

Every key under ``mlflow-deploy:`` in ``Pulumi.<stack>.yaml`` maps to one field of
:class:`Settings`. This module holds the keys every stack shares (``mlflow``, ``model``,
``candidate``, ``image``, ``monitoring``) and the cross-key checks; each target's keys live beside
its component (``kubernetes_settings.py``, ``sagemaker_settings.py``, ``azureml_settings.py``,
``vertex_settings.py``), the model base class and the error type in ``settings_base.py``.
Validation happens before any resource is declared; a bad config raises :class:`SettingsError`,
whose message lists *every* offending key path, e.g.::

    invalid stack config (2 errors):
      mlflow-deploy:candidate.percent: must be between 0 and 100 (got 150)
      mlflow-deploy:kubernetes.replicas: Input should be a valid integer

The models are plain pydantic models so that ``modelctl`` can validate a stack file without
Pulumi. Keys are camelCase in YAML (Pulumi convention) and snake_case in Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from components.analysis_settings import (
    DEFAULT_SOURCE,
    SOURCE_TARGET,
    AnalysisSettings,
    check_steps,
    parse_since,
    steps_problem,
)
from components.azureml_settings import AZUREML_MAX_MIRROR_PERCENT, AzureMlSettings
from components.kubernetes_settings import (
    EgressPeer,
    KubernetesSettings,
    ResourceQuantities,
    Resources,
    _kubernetes_cross_checks,
)
from components.sagemaker_settings import SageMakerSettings, _sagemaker_cross_checks
from components.settings_base import (
    NAMESPACE,
    SettingsError,
    _check_quantity,
    _check_version,
    _KeyedError,
    _Model,
)
from components.validation import (
    check_image_reference,
    duration_seconds,
)
from components.vertex_settings import VertexSettings, _vertex_cross_checks

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
    steps: list[int] | None = None
    """Progressive delivery: the percents ``modelctl analyze`` walks through, e.g. [5, 25, 50, 100]
    (blue-green [0, 100], shadow one step); ``percent`` is the current one."""
    since: str | None = None
    """When the current step started (ISO 8601, UTC); written by ``promote`` and ``analyze``."""

    _v = field_validator("version", mode="before")(_check_version)
    _steps = field_validator("steps", mode="before")(check_steps)
    _since = field_validator("since", mode="before")(parse_since)

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
        if self.steps is not None:
            problem = steps_problem(self.strategy, self.steps, self.effective_percent)
            if problem is not None:
                raise _KeyedError(*problem)
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
    drift_share: float = Field(default=0.5, gt=0, le=1)
    """``monitoring.drift``: alert when the share of drifted input columns is above this for ``for``
    (Evidently's own dataset-drift default is 0.5)."""
    shadow_agreement: float = Field(default=0.95, gt=0, le=1)
    """``monitoring.drift``: alert when the candidate agrees with stable on less than this share of
    paired (mirrored) requests, once ``shadowMinPairs`` pairs are in."""
    shadow_min_pairs: int = Field(default=100, ge=1)
    """Pairs the shadow-agreement alert needs before it may fire (fewer: agreement unknown)."""


RATE_WINDOW = "5m"
"""The window of every ``rate()`` in the recording rules (components/monitoring.py)."""
MIN_SCRAPES_PER_WINDOW = 4
"""Scrapes a rate window must hold: ``rate()`` needs two samples in it, and four leave room for a
missed scrape or two and for the scrape and rule-evaluation phases not lining up."""




class DriftSettings(_Model):
    """``monitoring.drift``: payload capture, the model monitor (drift with Evidently, shadow output
    comparison) and its alerts. Off by default."""

    enabled: bool = False
    reference: str | None = None
    """The training-data sample drift is measured against: ``models:/<name>/<version>`` (that
    version's run artifact ``reference/``), ``runs:/<run>/<path>``, ``s3://``, ``gs://``, a local
    path; parquet or CSV (monitor/reference.py). Loaded at preview: a reference that cannot be
    loaded is a config error."""
    sample: float = Field(default=1.0, gt=0, le=1)
    """Share of requests the serving runtime captures (``--capture-sample``)."""
    interval: str = Field(default="10m", pattern=r"^[0-9]+[smh]$")
    """How often the monitor evaluates each live version."""
    window: str = Field(default="1h", pattern=r"^[0-9]+[smhd]$")
    """How much captured traffic one evaluation looks at."""
    retention: str = Field(default="7d", pattern=r"^[0-9]+[hdw]$")
    """How long captured records are kept: the Kubernetes monitor's record store, and on SageMaker
    the stack's own capture bucket (an S3 lifecycle expiry of whole days, rounded up). At least
    ``window``."""
    task: Literal["auto", "classification", "regression"] = "auto"
    """How shadow outputs compare: classification = same prediction; regression = within
    ``shadowTolerance``; auto = classification when both outputs are integers or strings."""
    shadow_tolerance: float = Field(default=0.0, ge=0)
    """Regression: |stable - candidate| at most this counts as agreement."""
    shadow_window: str = Field(default="30s", pattern=r"^[0-9]+[smh]$")
    """A stable and a candidate record with the same input hash pair when this close in time."""
    max_reference_rows: int = Field(default=50_000, ge=100)
    """Rows of the reference the monitor keeps (a seeded sample beyond that)."""
    image: str | None = None
    """A prebuilt monitor image; else the stack builds one from monitor/ with the reference inside
    (pushed to ``<image.repository>/<model>-monitor``)."""
    egress_to: list[EgressPeer] = Field(default_factory=list)
    """Kubernetes, prebuilt ``image`` only: where the monitor may connect to download the reference
    at start (the tracking server, the artifact store), beside DNS. A built monitor image holds its
    reference and connects nowhere."""
    storage_size: str = "10Gi"
    """Kubernetes: size of the monitor's PersistentVolumeClaim (the record store)."""
    storage_class: str | None = None
    resources: Resources = Resources(
        requests=ResourceQuantities(cpu="250m", memory="512Mi"),
        limits=ResourceQuantities(cpu="1", memory="2Gi"),
    )
    """Kubernetes: the monitor pod's requests/limits (Evidently holds the window in memory). A CPU
    limit by default (checkov CKV_K8S_11): an evaluation is a burst of work beside the model pods on
    the node, and throttling it only makes the evaluation longer, never a prediction slower."""

    @field_validator("storage_size")
    @classmethod
    def _storage_size(cls, v: str) -> str:
        return _check_quantity(v) or v

    @model_validator(mode="after")
    def _needs_reference(self) -> DriftSettings:
        if self.enabled and not self.reference:
            raise _KeyedError(
                "monitoring.drift.reference",
                "drift detection needs reference data to compare traffic with; "
                "set it to models:/<name>/<version> after logging one "
                "(python -m modelctl reference log --model <name> --version <v> --data train.parquet)",
            )
        if self.egress_to and self.image is None:
            raise _KeyedError(
                "monitoring.drift.egressTo",
                "only used with a prebuilt monitor image (monitoring.drift.image): a built image holds "
                "the reference and connects nowhere",
            )
        if duration_seconds(self.retention) <= 0:
            raise _KeyedError(
                "monitoring.drift.retention",
                f"{self.retention} would delete captured records as they arrive: keep them at least "
                "as long as the window",
            )
        if duration_seconds(self.retention) < duration_seconds(self.window):
            raise _KeyedError(
                "monitoring.drift.retention",
                f"{self.retention} is shorter than the window {self.window}: an evaluation would look "
                "at traffic already deleted",
            )
        if duration_seconds(self.window) < duration_seconds(self.interval):
            raise _KeyedError(
                "monitoring.drift.window",
                f"{self.window} is shorter than the interval {self.interval}: traffic between "
                "two evaluations would never be looked at",
            )
        return self


class MonitoringSettings(_Model):
    enabled: bool = True
    install_stack: bool = False
    """Install kube-prometheus-stack with Helm (dev); else assume a Prometheus Operator."""
    stack_namespace: str = "monitoring"
    retention: str = Field(default="7d", pattern=r"^[0-9]+[smhdwy]$")
    release_label: str | None = None
    """Value of the ``release`` label the operator's selectors want (kube-prometheus-stack)."""
    thresholds: AlertThresholds = AlertThresholds()
    drift: DriftSettings = DriftSettings()
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
    analysis: AnalysisSettings | None = None

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
        _analysis_cross_checks(self)
        _drift_cross_checks(self)
        _sagemaker_cross_checks(self)
        _kubernetes_cross_checks(self)
        _drift_cloud_checks(self)
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

    @property
    def analysis_source(self) -> str | None:
        """``analysis.source``, else the default of the first target (see analysis_settings.py)."""
        if self.analysis is not None and self.analysis.source is not None:
            return self.analysis.source
        return next((DEFAULT_SOURCE[t] for t in self.targets), None)


def _analysis_cross_checks(s: Settings) -> None:
    a = s.analysis
    if a is None:
        return
    source = s.analysis_source
    if source is not None and SOURCE_TARGET[source] not in s.targets:
        raise _KeyedError(
            "analysis.source",
            f"{source} reads the {SOURCE_TARGET[source]} target's metrics, and that target is not on",
        )
    if source == "prometheus" and not a.prometheus_url:
        raise _KeyedError(
            "analysis.prometheusUrl",
            "source prometheus needs the Prometheus HTTP API URL (e.g. http://prometheus.monitoring:9090)",
        )
    if (a.max_drift_share is not None or a.min_shadow_agreement is not None) and not s.monitoring.drift.enabled:
        key = "analysis.maxDriftShare" if a.max_drift_share is not None else "analysis.minShadowAgreement"
        raise _KeyedError(key, "comes from the model monitor: set monitoring.drift.enabled (and its reference)")


def is_local_reference(uri: str) -> bool:
    """A reference read from the file system (``file://`` or a plain path), not downloaded."""
    return uri.startswith("file://") or ":/" not in uri


def _drift_cross_checks(s: Settings) -> None:
    d = s.monitoring.drift
    if not d.enabled:
        return
    k = s.kubernetes
    if k is None:
        return  # the cloud targets: _drift_cloud_checks
    if d.image is None and s.image.repository is None:
        raise _KeyedError(
            "monitoring.drift.image",
            "the monitor image is built (no prebuilt monitoring.drift.image) and a built image needs "
            "image.repository to push to",
        )
    if (
        d.image is not None
        and k.network_policy.enabled
        and d.reference is not None
        and not is_local_reference(d.reference)
        and not d.egress_to
    ):
        raise _KeyedError(
            "monitoring.drift.egressTo",
            f"a prebuilt monitor image downloads the reference ({d.reference}) when it starts, and the "
            "network policy lets the monitor reach DNS only: list the tracking server and the artifact "
            "store, e.g. [{namespace: mlflow, podLabels: {app: mlflow}, ports: [5000]}] or "
            "[{cidr: 10.20.0.0/16, ports: [443]}] (or let the stack build the image: it holds the reference)",
        )


# Secrets are separate top-level keys so that they can be stored encrypted (`pulumi config set
# --secret`). They are read with config.get_secret and never land in Settings.
SECRET_KEYS = ("mlflowTrackingToken", "imageRegistryPassword")


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


def _drift_cloud_checks(s: Settings) -> None:
    """``monitoring.drift`` on a cloud target: what its capture and scheduled monitor job need."""
    drift = s.monitoring.drift
    if not drift.enabled:
        return
    sm = s.sagemaker
    # sagemaker.dataCapture unset: the stack captures to its own bucket (sagemaker_quality.py)
    if sm is not None and sm.data_capture is not None and "Input" not in sm.data_capture.capture:
        raise _KeyedError("sagemaker.dataCapture.capture", "drift needs the requests: capture must include Input")
    az = s.azureml
    if az is not None and az.monitor is None:
        raise _KeyedError(
            "azureml.monitor",
            "drift on Azure ML reads the deployments' data collection from the workspace's default "
            "storage: set azureml.monitor.storageAccountId and azureml.monitor.container (the "
            "workspaceblobstore datastore's account and container)",
        )
    vx = s.vertex
    if vx is not None and vx.network is not None:
        # Request-response logging is documented for public (shared, dedicated) and Private Service
        # Connect endpoints (cloud.google.com/vertex-ai/docs/predictions/online-prediction-logging);
        # a VPC-peered endpoint's clients call the deployed model's private URI directly
        # (deployedModels.privateEndpoints.predictHttpUri), not the prediction service that logs.
        raise _KeyedError(
            "vertex.network",
            "a VPC-peered private endpoint does not support request-response logging, which drift on "
            "Vertex AI reads: use vertex.privateServiceConnect (or a public endpoint) with "
            "monitoring.drift, or turn drift off for this stack",
        )
    for target in ("sagemaker", "azureml", "vertex"):
        if getattr(s, target) is not None and not drift.image:
            raise _KeyedError(
                "monitoring.drift.image",
                f"{target} runs the monitor image as a scheduled job: set a prebuilt monitor image "
                "its job can pull (ECR for SageMaker, ACR or public for Azure ML, Artifact Registry for Vertex AI)",
            )
