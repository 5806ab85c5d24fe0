"""SageMakerModelQuality: drift and shadow agreement for a SageMaker endpoint (``monitoring.drift``).

What it declares, children of the component:

* the monitor's **job role** (trusted by SageMaker): read the endpoint's data capture prefix,
  ``cloudwatch:PutMetricData`` in :data:`NAMESPACE` only (``cloudwatch:namespace`` condition), pull
  the monitor image, write its own Processing-job logs. No wildcard action anywhere.
* an **EventBridge Scheduler** schedule (``rate(<interval>)``) whose universal target calls
  ``sagemaker:CreateProcessingJob`` with the monitor image and ``python -m monitor run-once``; the
  **scheduler role** may only create processing jobs and pass the job role to SageMaker.
* **CloudWatch alarms**: drift share above ``monitoring.thresholds.driftShare`` per live version,
  and, with a shadow candidate, agreement below ``shadowAgreement``; a **dashboard** of both.

Why a SageMaker Processing job and not a Lambda container image: the job runs the monitor image
as it is (``ContainerEntrypoint`` = the CLI), where Lambda needs the image rebuilt around the
Lambda runtime interface client and caps a run at 15 minutes and 10 GB of memory, both of which a
large reference plus an Evidently report can reach (a 10k x 30 report takes ~10 s here; the
window and the reference grow with traffic). Scheduler's universal target calls the API directly
and fills the job name from ``<aws.scheduler.execution-id>``, unique per run, so no glue function
is needed. The cost is a minute of provisioning per run: fine at a 10-minute or longer interval.

The data capture's variant prefixes map to versions through ``--versions stable=<v>,candidate=<v>``
in the job's arguments: a rollout changes the schedule's target input, an in-place update
(modelctl/replacements.py, ``aws:scheduler/schedule:Schedule``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi

from components.names import base_name
from components.rollout import monitor_version_args
from components.validation import duration_seconds

if TYPE_CHECKING:
    from components.rollout import TrafficPlan
    from components.sagemaker_plan import Variant
    from components.sagemaker_settings import SageMakerDataCaptureSettings
    from components.settings import AlertThresholds, DriftSettings

COMPONENT_TYPE = "mlflow-deploy:sagemaker:ModelQuality"
NAMESPACE = "mlflow-deploy/ModelQuality"
"""The CloudWatch namespace ``run-once`` publishes to; the job role may put metrics here only."""
PROCESSING_TARGET = "arn:aws:scheduler:::aws-sdk:sagemaker:createProcessingJob"
JOB_INSTANCE_TYPE = "ml.m5.large"
JOB_MAX_RUNTIME_SECONDS = 3600
CAPTURE_DEFAULT_SUFFIX = "data-capture"
"""With drift on and ``sagemaker.dataCapture`` unset, the stack's capture bucket holds the capture
under this prefix."""
CAPTURE_SSE_ALGORITHM = "AES256"
"""The stack's capture bucket: SSE-S3 (S3-managed keys) as the bucket's default encryption. A KMS
key of your own goes with a bucket of your own: ``sagemaker.dataCapture.kmsKeyArn``."""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> int:
    return int(duration[:-1]) * _UNITS[duration[-1]]


def schedule_expression(interval: str) -> str:
    """``rate(10 minutes)``: Scheduler's rate unit is minutes at least."""
    minutes = max(1, seconds(interval) // 60)
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"rate({hours} hour{'s' if hours > 1 else ''})"
    return f"rate({minutes} minute{'s' if minutes > 1 else ''})"


def capture_uri(dc: SageMakerDataCaptureSettings, endpoint: str) -> str:
    """Where SageMaker writes the endpoint's capture: ``<DestinationS3Uri>/<EndpointName>``."""
    return f"{dc.destination_s3_uri.rstrip('/')}/{endpoint}"


def default_capture_bucket(endpoint: str, region: str) -> str:
    """``<endpoint>-capture-<region>``: the bucket the stack declares for the endpoint's capture when
    drift is on and ``sagemaker.dataCapture`` is unset (a valid S3 name: lowercase, 63 at most)."""
    name = f"{endpoint.lower()}-capture-{region}"
    return name if len(name) <= 63 else f"{endpoint.lower()[: 63 - len(region) - 9].rstrip('-')}-capture-{region}"


def capture_expiry_days(retention: str) -> int:
    """``monitoring.drift.retention`` as the S3 lifecycle expiration of the stack's capture bucket:
    S3 counts whole days only, so rounded up (``36h`` -> 2: a record is kept at least as long as
    the retention says, like the Kubernetes monitor's store, which deletes by whole hours)."""
    return math.ceil(duration_seconds(retention) / 86400)


def capture_lifecycle_rule(retention: str) -> dict[str, Any]:
    """The one lifecycle rule of the stack's capture bucket: objects under ``data-capture/`` (the
    only thing the stack writes there) expire after :func:`capture_expiry_days`. Captured requests
    and responses are often personal data: they are not kept longer than the monitor needs them."""
    return {
        "id": f"expire-{CAPTURE_DEFAULT_SUFFIX}",
        "status": "Enabled",
        "filter": {"prefix": f"{CAPTURE_DEFAULT_SUFFIX}/"},
        "expiration": {"days": capture_expiry_days(retention)},
    }


def declare_capture_bucket(
    base: str, bucket: str, drift: DriftSettings, opts: pulumi.ResourceOptions
) -> list[pulumi.Resource]:
    """The stack's capture bucket and what keeps it private and bounded: every public access
    blocked, SSE-S3 by default, captured objects expiring after ``monitoring.drift.retention``.
    ``opts`` parent them to the SageMaker component (and its provider); the endpoint config waits
    for all four, so nothing is captured into a bucket before it is locked down.

    Replacement (modelctl/replacement_rules.py): each configuration replaces only on a new
    ``bucket`` (or ``expectedBucketOwner``, unset here), and the bucket name derives from the
    endpoint and region, which a rollout never changes; a new retention is an in-place
    PutBucketLifecycleConfiguration."""
    import pulumi_aws as aws

    b = aws.s3.Bucket(f"{base}-sm-capture", bucket=bucket, opts=opts)
    return [
        b,
        aws.s3.BucketPublicAccessBlock(
            f"{base}-sm-capture-public-access",
            bucket=b.bucket,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=opts,
        ),
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{base}-sm-capture-encryption",
            bucket=b.bucket,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": CAPTURE_SSE_ALGORITHM}}],
            opts=opts,
        ),
        aws.s3.BucketLifecycleConfiguration(
            f"{base}-sm-capture-expiry",
            bucket=b.bucket,
            rules=[capture_lifecycle_rule(drift.retention)],
            opts=opts,
        ),
    ]


def effective_data_capture(
    dc: SageMakerDataCaptureSettings | None, drift: DriftSettings | None, endpoint: str, region: str
) -> tuple[SageMakerDataCaptureSettings | None, str | None]:
    """The capture the endpoint runs with, and the bucket the stack must declare for it (None: the
    user's own ``sagemaker.dataCapture``, or no drift). Drift on and no ``dataCapture``: requests and
    responses at ``monitoring.drift.sample`` under ``s3://<default bucket>/data-capture``."""
    if dc is not None or drift is None or not drift.enabled:
        return dc, None
    from components.sagemaker_settings import SageMakerDataCaptureSettings

    bucket = default_capture_bucket(endpoint, region)
    return (
        SageMakerDataCaptureSettings(
            destination_s3_uri=f"s3://{bucket}/{CAPTURE_DEFAULT_SUFFIX}",
            sampling_percent=max(1, round(drift.sample * 100)),
            capture=["Input", "Output"],
        ),
        bucket,
    )


def variant_versions(variants: Sequence[Variant]) -> str:
    return ",".join(f"{v.name}={v.version}" for v in variants)


def run_once_arguments(
    *,
    model: str,
    endpoint: str,
    region: str,
    dc: SageMakerDataCaptureSettings,
    drift: DriftSettings,
    variants: Sequence[Variant],
    plan: TrafficPlan,
) -> list[str]:
    args = [
        "python", "-m", "monitor", "run-once",
        "--model", model,
        "--source", capture_uri(dc, endpoint),
        "--format", "sagemaker",
        "--versions", variant_versions(variants),
        "--reference", drift.reference or "",
        "--since", drift.window,
        "--publish", f"cloudwatch:{NAMESPACE}?region={region}",
        "--task", drift.task,
        "--shadow-tolerance", str(drift.shadow_tolerance),
        "--shadow-window", drift.shadow_window,
        "--max-reference-rows", str(drift.max_reference_rows),
    ]  # fmt: skip
    return args + monitor_version_args(plan)


def processing_job_request(*, image: str, role_arn: str, arguments: list[str]) -> dict[str, Any]:
    """The CreateProcessingJob request Scheduler sends each run (API names: the universal target's
    input is the API request, PascalCase)."""
    return {
        "ProcessingJobName": "<aws.scheduler.execution-id>",
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": JOB_INSTANCE_TYPE, "VolumeSizeInGB": 30}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": JOB_MAX_RUNTIME_SECONDS},
        "AppSpecification": {"ImageUri": image, "ContainerEntrypoint": arguments},
        "RoleArn": role_arn,
    }


def sagemaker_trust() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }


def scheduler_trust(account_id: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "scheduler.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            }
        ],
    }


def job_policy(
    *, partition: str, region: str, account_id: str, dc: SageMakerDataCaptureSettings, endpoint: str,
    repository_arns: Sequence[str],
) -> dict[str, Any]:  # fmt: skip
    """The monitor job's permissions: read the capture prefix, put metrics in :data:`NAMESPACE`,
    pull the image, write its logs."""
    prefix = "/".join(p for p in (dc.prefix, endpoint) if p)
    group = f"arn:{partition}:logs:{region}:{account_id}:log-group:/aws/sagemaker/ProcessingJobs"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ListCapture",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:{partition}:s3:::{dc.bucket}"],
            "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}},
        },
        {
            "Sid": "ReadCapture",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"arn:{partition}:s3:::{dc.bucket}/{prefix}/*"],
        },
        {
            "Sid": "PublishQualityMetrics",
            "Effect": "Allow",
            "Action": ["cloudwatch:PutMetricData"],
            "Resource": "*",  # PutMetricData has no resource type; the namespace condition scopes it
            "Condition": {"StringEquals": {"cloudwatch:namespace": NAMESPACE}},
        },
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {
            "Sid": "PullMonitorImage",
            "Effect": "Allow",
            "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": sorted(set(repository_arns)),
        },
        {
            "Sid": "JobLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:CreateLogGroup"],
            "Resource": [group, f"{group}:log-stream:*"],
        },
    ]
    if dc.kms_key_arn:
        statements.append(
            {"Sid": "DecryptCapture", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [dc.kms_key_arn]}
        )
    return {"Version": "2012-10-17", "Statement": statements}


def scheduler_policy(*, partition: str, region: str, account_id: str, job_role_arn: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "StartMonitorJob",
                "Effect": "Allow",
                "Action": ["sagemaker:CreateProcessingJob"],
                "Resource": [f"arn:{partition}:sagemaker:{region}:{account_id}:processing-job/*"],
            },
            {
                "Sid": "PassJobRole",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": [job_role_arn],
                "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            },
        ],
    }


@dataclass(frozen=True)
class QualityAlarm:
    resource_name: str
    name: str
    args: dict[str, Any]


def alarm_specs(
    model: str, endpoint: str, variants: Sequence[Variant], thresholds: AlertThresholds, drift: DriftSettings
) -> list[QualityAlarm]:
    """Drift share per live version; shadow agreement for a shadow candidate. Missing data (no
    traffic in the window, agreement unknown) is not breaching."""
    period = max(60, seconds(drift.interval))
    out = []
    for v in variants:
        name = f"{endpoint}-drift-v{v.version}"
        out.append(
            QualityAlarm(
                f"{base_name(model)}-sm-drift-{v.name}",
                name,
                {
                    "name": name,
                    "alarm_description": f"Share of drifted input columns of {model} v{v.version} above "
                    f"monitoring.thresholds.driftShare ({thresholds.drift_share})",
                    "namespace": NAMESPACE,
                    "metric_name": "model_drift_share",
                    "dimensions": {"model": model, "version": v.version},
                    "statistic": "Maximum",
                    "period": period,
                    "evaluation_periods": 1,
                    "threshold": thresholds.drift_share,
                    "comparison_operator": "GreaterThanThreshold",
                    "treat_missing_data": "notBreaching",
                },
            )
        )
    stable = next((v for v in variants if v.role == "stable"), None)
    shadow = next((v for v in variants if v.shadow), None)
    if stable is not None and shadow is not None:
        name = f"{endpoint}-shadow-agreement"
        dims = {"model": model, "stable": stable.version, "candidate": shadow.version}
        out.append(
            QualityAlarm(
                f"{base_name(model)}-sm-shadow-agreement",
                name,
                {
                    "name": name,
                    "alarm_description": f"Shadow v{shadow.version} agrees with v{stable.version} on less than "
                    f"monitoring.thresholds.shadowAgreement ({thresholds.shadow_agreement}) of at least "
                    f"shadowMinPairs ({thresholds.shadow_min_pairs}) paired requests",
                    # metric math: with fewer pairs than shadowMinPairs agreement counts as 1 (unknown,
                    # not breaching); a window without data stays missing (notBreaching)
                    "metric_queries": [
                        _query("agreement", "model_shadow_agreement_ratio", dims, "Minimum", period),
                        _query("pairs", "model_shadow_pairs_total", dims, "Maximum", period),
                        {
                            "id": "gated",
                            "expression": f"IF(pairs >= {thresholds.shadow_min_pairs}, agreement, 1)",
                            "label": "Shadow agreement (enough pairs)",
                            "return_data": True,
                        },
                    ],
                    "evaluation_periods": 1,
                    "threshold": thresholds.shadow_agreement,
                    "comparison_operator": "LessThanThreshold",
                    "treat_missing_data": "notBreaching",
                },
            )
        )
    return out


def _query(qid: str, metric: str, dims: dict[str, str], stat: str, period: int) -> dict[str, Any]:
    return {
        "id": qid,
        "return_data": False,
        "metric": {"namespace": NAMESPACE, "metric_name": metric, "dimensions": dict(dims), "period": period,
                   "stat": stat},
    }  # fmt: skip


def dashboard_body(model: str, region: str, variants: Sequence[Variant]) -> dict[str, Any]:
    drift = [
        [NAMESPACE, "model_drift_share", "model", model, "version", v.version, {"label": f"v{v.version}"}]
        for v in variants
    ]
    records = [
        [NAMESPACE, "model_capture_records", "model", model, "version", v.version, {"label": f"v{v.version}"}]
        for v in variants
    ]
    widgets = [
        {"type": "metric", "x": 0, "y": 0, "width": 12, "height": 6,
         "properties": {"title": "Drift share per version", "region": region, "metrics": drift, "stat": "Maximum",
                        "yAxis": {"left": {"min": 0, "max": 1}}}},
        {"type": "metric", "x": 12, "y": 0, "width": 12, "height": 6,
         "properties": {"title": "Captured rows per evaluation", "region": region, "metrics": records,
                        "stat": "Maximum"}},
    ]  # fmt: skip
    stable = next((v for v in variants if v.role == "stable"), None)
    shadow = next((v for v in variants if v.shadow), None)
    if stable is not None and shadow is not None:
        dims = ["model", model, "stable", stable.version, "candidate", shadow.version]
        widgets.append(
            {"type": "metric", "x": 0, "y": 6, "width": 12, "height": 6,
             "properties": {"title": "Shadow agreement", "region": region, "stat": "Minimum",
                            "metrics": [[NAMESPACE, "model_shadow_agreement_ratio", *dims],
                                        [NAMESPACE, "model_shadow_pairs_total", *dims, {"yAxis": "right"}]]}}
        )  # fmt: skip
    return {"widgets": widgets}


@dataclass
class SageMakerModelQualityArgs:
    model_name: str
    endpoint: str
    region: str
    partition: str
    account_id: pulumi.Input[str]
    plan: TrafficPlan
    variants: Sequence[Variant]
    data_capture: SageMakerDataCaptureSettings
    drift: DriftSettings
    thresholds: AlertThresholds
    image: str
    dashboard: bool = True


class SageMakerModelQuality(pulumi.ComponentResource):
    """Outputs: ``schedule_name``, ``job_role_arn``, ``alarm_names``, ``exports``."""

    def __init__(self, name: str, args: SageMakerModelQualityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        import pulumi_aws as aws

        child = pulumi.ResourceOptions(parent=self)
        model, endpoint, dc = args.model_name, args.endpoint, args.data_capture
        base = base_name(model)
        repo_arn = _image_repository_arn(args.image, args.partition)
        account = pulumi.Output.from_input(args.account_id)

        job_role = aws.iam.Role(
            f"{base}-sm-monitor-job",
            description=f"Model monitor job of endpoint {endpoint} (mlflow-deploy)",
            assume_role_policy=json.dumps(sagemaker_trust()),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{base}-sm-monitor-job",
            role=job_role.id,
            policy=account.apply(
                lambda a: json.dumps(
                    job_policy(
                        partition=args.partition,
                        region=args.region,
                        account_id=a,
                        dc=dc,
                        endpoint=endpoint,
                        repository_arns=[repo_arn] if repo_arn else [],
                    )
                )
            ),
            opts=child,
        )
        scheduler_role = aws.iam.Role(
            f"{base}-sm-monitor-scheduler",
            description=f"EventBridge Scheduler starting the model monitor job of {endpoint} (mlflow-deploy)",
            assume_role_policy=account.apply(lambda a: json.dumps(scheduler_trust(a))),
            opts=child,
        )
        scheduler_policy_res = aws.iam.RolePolicy(
            f"{base}-sm-monitor-scheduler",
            role=scheduler_role.id,
            policy=pulumi.Output.all(account, job_role.arn).apply(
                lambda a: json.dumps(
                    scheduler_policy(partition=args.partition, region=args.region, account_id=a[0], job_role_arn=a[1])
                )
            ),
            opts=child,
        )
        arguments = run_once_arguments(
            model=model, endpoint=endpoint, region=args.region, dc=dc, drift=args.drift, variants=args.variants,
            plan=args.plan,
        )  # fmt: skip
        schedule = aws.scheduler.Schedule(
            f"{base}-sm-monitor",
            name=f"{endpoint}-monitor"[:64],
            description=f"python -m monitor run-once for {endpoint} every {args.drift.interval}",
            schedule_expression=schedule_expression(args.drift.interval),
            flexible_time_window={"mode": "OFF"},
            target={
                "arn": PROCESSING_TARGET,
                "role_arn": scheduler_role.arn,
                "input": job_role.arn.apply(
                    lambda arn: json.dumps(processing_job_request(image=args.image, role_arn=arn, arguments=arguments))
                ),
                "retry_policy": {"maximum_retry_attempts": 0},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[scheduler_policy_res]),
        )
        specs = alarm_specs(model, endpoint, args.variants, args.thresholds, args.drift)
        for s in specs:
            aws.cloudwatch.MetricAlarm(s.resource_name, **s.args, opts=child)
        self.dashboard_name: str | None = None
        if args.dashboard:
            board = aws.cloudwatch.Dashboard(
                f"{base}-sm-quality-dashboard",
                dashboard_name=f"{endpoint}-quality",
                dashboard_body=json.dumps(dashboard_body(model, args.region, args.variants)),
                opts=child,
            )
            self.dashboard_name = f"{endpoint}-quality"
            del board
        self.schedule_name = schedule.name
        self.job_role_arn = job_role.arn
        self.alarm_names = [s.name for s in specs]
        self.exports: dict[str, Any] = {
            "namespace": NAMESPACE,
            "schedule": self.schedule_name,
            "captureUri": capture_uri(dc, endpoint),
            "alarms": self.alarm_names,
            "dashboard": self.dashboard_name,
        }
        self.register_outputs(dict(self.exports))


def _image_repository_arn(uri: str, partition: str) -> str | None:
    from components.sagemaker import ecr_repository_arn

    return ecr_repository_arn(uri, partition)
