"""Settings of the Vertex AI target (``mlflow-deploy:vertex``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from components.gpu import check_vertex_accelerator
from components.settings_base import _KeyedError, _Model

if TYPE_CHECKING:
    from components.settings import Settings

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


_BQ_ID = r"^[A-Za-z0-9_]{1,1024}$"


class VertexRequestLoggingSettings(_Model):
    """``monitoring.drift`` on Vertex AI: the BigQuery dataset and table the endpoint's
    request-response logging writes to (declared by the stack). The sampling rate is
    ``monitoring.drift.sample``."""

    dataset: str | None = Field(default=None, pattern=_BQ_ID)
    """Dataset ID; default ``<model>_requests`` (``-`` becomes ``_``)."""
    table: str = Field(default="request_response_logging", pattern=_BQ_ID)
    location: str | None = None
    """The dataset's location; default ``vertex.region``."""
    delete_contents_on_destroy: bool = False
    retention_days: int | None = Field(default=None, ge=1)
    """Partition expiration of the logged rows (the table is partitioned by ``logging_time``)."""


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
    accelerator_type: str | None = None
    """GPUs of each replica (MachineSpec.acceleratorType, the API's AcceleratorType enum, e.g.
    ``NVIDIA_L4``): attached to N1 machines, or the ones A2/A3/A4/G2 machine types come with."""
    accelerator_count: int | None = Field(default=None, ge=1)
    """How many; default 1 on N1, the machine's own count on A2/A3/A4/G2."""
    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=2, ge=1)
    autoscaling_metric: Literal["cpu", "gpu", "requests"] = "cpu"
    """What the replicas scale on between minReplicas and maxReplicas (the deployed model's
    autoscaling metric specs): ``cpu`` (CPU utilisation), ``gpu`` (the accelerators' duty cycle,
    together with CPU: Vertex scales up when either is over its target) or ``requests``
    (requests per minute per replica)."""
    target_cpu_utilization: int = Field(default=60, ge=1, le=100)
    """Autoscaling target (percent CPU) of ``cpu`` and ``gpu``."""
    target_duty_cycle: int | None = Field(default=None, ge=1, le=100)
    """``gpu``: target accelerator duty cycle (percent); default 60."""
    target_requests_per_minute: int | None = Field(default=None, ge=1)
    """``requests``: target requests per minute per replica (required: it depends on the model's
    latency)."""
    workers: int | None = Field(default=None, ge=1)
    """Serving workers per replica; default: the machine's CPU count."""
    batch_max_size: int = Field(default=0, ge=0, le=1024)
    """Adaptive batching: concurrent requests merged into one predict, at most this many
    (``SERVING_BATCH_MAX_SIZE``); 0 = off. Only for models that predict rows independently."""
    batch_max_wait_ms: float | None = Field(default=None, ge=0, le=1000)
    """Adaptive batching: longest a request waits for others (``SERVING_BATCH_MAX_WAIT_MS``);
    default: the runtime's (2 ms)."""
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
    request_logging: VertexRequestLoggingSettings = VertexRequestLoggingSettings()
    """``monitoring.drift``: where request-response logging writes (dataset, table)."""

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

    @property
    def accelerator(self) -> tuple[str | None, int | None]:
        """(acceleratorType, acceleratorCount) as deployed: the machine type's own count filled in."""
        got = check_vertex_accelerator(self.machine_type, self.accelerator_type, self.accelerator_count)
        return (None, None) if got is None else got

    @property
    def gpus(self) -> int:
        return self.accelerator[1] or 0

    @property
    def autoscaling_targets(self) -> dict[str, int]:
        """The deployed model's autoscaling targets, by our metric name (``cpu``, ``gpu``,
        ``requests``): what components.vertex_provider sends as AutoscalingMetricSpecs."""
        if self.autoscaling_metric == "requests":
            assert self.target_requests_per_minute is not None  # _autoscaling
            return {"requests": self.target_requests_per_minute}
        if self.autoscaling_metric == "gpu":
            return {"cpu": self.target_cpu_utilization, "gpu": self.target_duty_cycle or 60}
        return {"cpu": self.target_cpu_utilization}

    @model_validator(mode="after")
    def _autoscaling(self) -> VertexSettings:
        m = self.autoscaling_metric
        if m == "gpu" and self.accelerator_type is None:
            raise _KeyedError(
                "vertex.autoscalingMetric",
                "'gpu' scales on the accelerators' duty cycle, and no accelerator is set: set "
                "vertex.acceleratorType (a GPU machine), or use 'cpu' or 'requests'",
            )
        if m == "requests" and self.target_requests_per_minute is None:
            raise _KeyedError(
                "vertex.targetRequestsPerMinute",
                "autoscalingMetric 'requests' needs a target: requests per minute per replica "
                "(e.g. what one replica answers in a minute at the latency you accept)",
            )
        if m == "requests" and "target_cpu_utilization" in self.model_fields_set:
            raise _KeyedError(
                "vertex.targetCpuUtilization", "only used with autoscalingMetric 'cpu' or 'gpu'"
            )
        if m != "gpu" and self.target_duty_cycle is not None:
            raise _KeyedError("vertex.targetDutyCycle", "only used with autoscalingMetric 'gpu'")
        if m != "requests" and self.target_requests_per_minute is not None:
            raise _KeyedError("vertex.targetRequestsPerMinute", "only used with autoscalingMetric 'requests'")
        return self

    @model_validator(mode="after")
    def _accelerator(self) -> VertexSettings:
        try:
            check_vertex_accelerator(self.machine_type, self.accelerator_type, self.accelerator_count)
        except ValueError as exc:
            msg = str(exc)
            count = msg.startswith("acceleratorCount") or "(got acceleratorCount" in msg
            key = "vertex.acceleratorCount" if count else "vertex.acceleratorType"
            raise _KeyedError(key, str(exc)) from None
        return self

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


