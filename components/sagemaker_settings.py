"""Settings of the SageMaker target (``mlflow-deploy:sagemaker``)."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from components.gpu import sagemaker_accelerator_note, sagemaker_gpus
from components.settings_base import _KeyedError, _Model

if TYPE_CHECKING:
    from components.settings import Settings

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
    """Application Auto Scaling, target tracking on SageMakerVariantInvocationsPerInstance
    (``metric: invocations``) or SageMakerVariantConcurrentRequestsPerModelHighResolution
    (``metric: concurrency``, the high-resolution concurrency metric botocore's
    application-autoscaling ``MetricType`` enum lists for SageMaker variants)."""

    metric: Literal["invocations", "concurrency"] = "invocations"
    min_instances: int = Field(default=1, ge=1)
    max_instances: int = Field(default=4, ge=1)
    invocations_per_instance: float = Field(default=1000, gt=0)
    """``invocations``: target invocations per instance per minute."""
    concurrent_requests_per_model: float = Field(default=4, gt=0)
    """``concurrency``: target requests in flight per model copy (instance), sampled every 10 s."""
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


class SageMakerServerlessSettings(_Model):
    """A serverless endpoint instead of instances (ProductionVariantServerlessConfig: botocore's
    SageMaker model, MemorySizeInMB 1024-6144 in 1 GB steps, MaxConcurrency and
    ProvisionedConcurrency 1-200, provisioned at most max)."""

    memory_size_mb: int = Field(default=2048, ge=1024, le=6144)
    max_concurrency: int = Field(default=20, ge=1, le=200)
    provisioned_concurrency: int | None = Field(default=None, ge=1, le=200)
    """Warm capacity kept ready (no cold start for that many concurrent requests), billed while idle."""

    @field_validator("memory_size_mb")
    @classmethod
    def _gb_steps(cls, v: int) -> int:
        if v % 1024:
            raise ValueError(f"memory comes in 1 GB steps: 1024, 2048, 3072, 4096, 5120 or 6144 (got {v})")
        return v

    @model_validator(mode="after")
    def _provisioned_le_max(self) -> SageMakerServerlessSettings:
        p = self.provisioned_concurrency
        if p is not None and p > self.max_concurrency:
            raise ValueError(f"provisionedConcurrency ({p}) is more than maxConcurrency ({self.max_concurrency})")
        return self


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
    """Serving workers per instance; default: one per GPU on a GPU instance, else its CPU count."""
    gpu: bool | None = None
    """Serve on the instance's GPUs (CUDA image, one worker per GPU). Default: on exactly when
    ``instanceType`` has GPUs; ``true`` with a CPU instance type is an error."""
    serverless: SageMakerServerlessSettings | None = None
    """A serverless endpoint (no instances, scales to zero): see docs/sagemaker.md for what it
    cannot do (candidates, shadow, data capture, network isolation, GPUs, autoscaling)."""
    batch_max_size: int = Field(default=0, ge=0, le=1024)
    """Adaptive batching: concurrent requests merged into one predict, at most this many
    (``SERVING_BATCH_MAX_SIZE``); 0 = off. Only for models that predict rows independently."""
    batch_max_wait_ms: float | None = Field(default=None, ge=0, le=1000)
    """Adaptive batching: longest a request waits for others (``SERVING_BATCH_MAX_WAIT_MS``);
    default: the runtime's (2 ms)."""
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

    @property
    def gpus(self) -> int:
        """GPUs per instance the serving container uses (0: CPU serving)."""
        if self.gpu is False or self.serverless is not None:
            return 0
        return sagemaker_gpus(self.instance_type)

    @property
    def effective_network_isolation(self) -> bool:
        """Serverless endpoints do not support network isolation (serverless-endpoints.html)."""
        return self.network_isolation and self.serverless is None

    @model_validator(mode="after")
    def _compute(self) -> SageMakerSettings:
        try:
            n = sagemaker_gpus(self.instance_type)
        except ValueError as exc:
            raise _KeyedError("sagemaker.instanceType", str(exc)) from None
        if self.gpu and n == 0:
            note = sagemaker_accelerator_note(self.instance_type)
            raise _KeyedError(
                "sagemaker.gpu",
                note or f"{self.instance_type} has no GPU; pick a GPU instance type (ml.g5.xlarge, ml.g6.xlarge, ...)",
            )
        if self.serverless is not None:
            # "Feature exclusions: ... GPUs, ... network isolation, data capture, multiple production
            # variants ..." (docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html);
            # the instances' autoscaling is replaced by the serverless concurrency.
            explicit = self.model_fields_set
            refused = {
                "sagemaker.gpu": self.gpu is True,
                "sagemaker.instanceType": "instance_type" in explicit,
                "sagemaker.instanceCount": "instance_count" in explicit,
                "sagemaker.candidateInstanceCount": self.candidate_instance_count is not None,
                "sagemaker.volumeSizeGb": self.volume_size_gb is not None,
                "sagemaker.dataCapture": self.data_capture is not None,
                "sagemaker.autoscaling": self.autoscaling is not None,
                "sagemaker.networkIsolation": "network_isolation" in explicit and self.network_isolation,
            }
            for key, bad in refused.items():
                if bad:
                    raise _KeyedError(
                        key,
                        "a serverless endpoint (sagemaker.serverless) has no instances and no "
                        f"{key.split('.')[-1]}: SageMaker Serverless Inference excludes GPUs, network "
                        "isolation, data capture and instance autoscaling; drop it or drop serverless",
                    )
            d = self.deployment
            for key, size in (("canarySize", d.canary_size), ("linearStepSize", d.linear_step_size)):
                if size is not None and size.type == "INSTANCE_COUNT":
                    raise _KeyedError(
                        f"sagemaker.deployment.{key}",
                        "a serverless endpoint has no instances to count; use type CAPACITY_PERCENT",
                    )
        return self

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
    c = s.candidate
    if sm.serverless is not None and c is not None:
        # a candidate is a second production variant (canary, blue-green preview) or a shadow
        # variant: serverless endpoints take neither ("multiple production variants" in the
        # Serverless Inference feature exclusions; "Serverless inference" in the shadow tests'
        # exclusions, docs.aws.amazon.com/sagemaker/latest/dg/shadow-tests-exclusions.html)
        raise _KeyedError(
            "candidate",
            f"a serverless SageMaker endpoint runs one production variant: no {c.strategy} candidate "
            "beside it. Promote by setting model.version: the endpoint update is a blue/green "
            "deployment under sagemaker.deployment (ALL_AT_ONCE, CANARY or LINEAR by capacity "
            "percent, with the rollback alarms); rolling updates are not offered for serverless",
        )
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


