"""SageMakerModelService: a model's versions on an AWS SageMaker real-time endpoint.

Resources, for model ``fraud-detector`` with stable 7 and a canary of 8:

* ``aws.ecr.Repository mlflow-deploy/fraud-detector``: scan on push, immutable tags; the image
  of every version built into it (ModelImage), unless ``image.uris`` names a prebuilt ECR image.
* ``aws.iam.Role`` + ``aws.iam.RolePolicy``: the execution role SageMaker assumes. Least
  privilege: pull from the model's repositories only, write the endpoint's log group only, put
  metrics in SageMaker's namespaces only, write under the data-capture prefix only.
* ``aws.sagemaker.Model`` per live version (``sm-fraud-detector-v7``): image + serving-runtime
  environment, nothing that depends on the rollout, so a routing change never replaces one.
* ``aws.sagemaker.EndpointConfiguration``: from the TrafficPlan. Canary / blue-green: a production
  variant per version (``stable``, ``candidate``) with the plan's weights; shadow: the stable
  production variant and the candidate as a shadow variant sampling the mirror percent.
* ``aws.sagemaker.Endpoint fraud-detector``: its ``deployment_config`` makes every update a
  blue/green deployment (ALL_AT_ONCE, CANARY or LINEAR traffic shifting, baking periods) that
  rolls back by itself when one of the alarms below fires.
* ``aws.cloudwatch.MetricAlarm`` per variant: 5XX ratio and p99 ModelLatency (the rollback alarms);
  ``aws.cloudwatch.LogGroup`` of the endpoint (retention); ``aws.cloudwatch.Dashboard``.
* ``aws.appautoscaling.Target`` + ``Policy`` (target tracking on
  SageMakerVariantInvocationsPerInstance) per auto-scaled variant.

Variants are named by role (``stable``/``candidate``), not by version: SageMaker's blue/green
traffic shifting needs the new endpoint config to keep the old variant names, so a version
change of the stable variant is a guarded blue/green update. The version a variant runs is in
the Model it points at, the dashboard labels and the stack outputs.

Everything that decides something (variants, environment, policies, deployment config) is a pure
function below, and the alarms and the dashboard are pure functions in ``sagemaker_monitoring.py``
(``Variant`` and the shared constants live in ``sagemaker_plan.py``), all tested without Pulumi;
the component only declares.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.image import SAGEMAKER_MAX_BODY_BYTES, model_images, serving_env
from components.names import base_name, version_name
from components.registry import ResolvedModel
from components.rollout import TrafficPlan
from components.sagemaker_monitoring import alarm_specs, baking_warning, dashboard_body
from components.sagemaker_plan import CANDIDATE_VARIANT, METRICS_NAMESPACE, STABLE_VARIANT, Variant
from components.sagemaker_settings import (
    ECR_IMAGE,
    SageMakerDataCaptureSettings,
    SageMakerDeploymentSettings,
    SageMakerSettings,
)
from components.settings import AlertThresholds, DriftSettings, ImageSettings

COMPONENT_TYPE = "mlflow-deploy:index:SageMakerModelService"
DEFAULT_ECR_PREFIX = "mlflow-deploy"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"

# IAM actions that take no resource-level scoping: their Resource must be "*".
# ecr:GetAuthorizationToken is account-wide; cloudwatch:PutMetricData has no resource type (it is
# narrowed by the cloudwatch:namespace condition instead).
UNSCOPABLE_ACTIONS = frozenset({"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"})
ECR_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
LOG_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents")


# --------------------------------------------------------------------------- names


def partition_of(region: str) -> str:
    """The AWS partition a region belongs to (for ARNs)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def endpoint_name(model: str, cfg: SageMakerSettings) -> str:
    """The endpoint's name: configured, else the model's base name (``fraud-detector``)."""
    return cfg.endpoint_name or base_name(model)


def ecr_repository_name(model: str, cfg: SageMakerSettings) -> str:
    return cfg.ecr_repository or f"{DEFAULT_ECR_PREFIX}/{base_name(model, 200)}"


def log_group_name(endpoint: str) -> str:
    """The log group SageMaker writes an endpoint's container logs to."""
    return f"/aws/sagemaker/Endpoints/{endpoint}"


def scaling_resource_id(endpoint: str, variant: str) -> str:
    """Application Auto Scaling's id of a SageMaker variant."""
    return f"endpoint/{endpoint}/variant/{variant}"


def invoke_url(region: str, endpoint: str) -> str:
    suffix = "amazonaws.com.cn" if partition_of(region) == "aws-cn" else "amazonaws.com"
    return f"https://runtime.sagemaker.{region}.{suffix}/endpoints/{endpoint}/invocations"


def dashboard_url(region: str, dashboard: str) -> str:
    host = "console.amazonaws.cn" if partition_of(region) == "aws-cn" else "console.aws.amazon.com"
    return f"https://{region}.{host}/cloudwatch/home?region={region}#dashboards/dashboard/{dashboard}"


def sagemaker_image_uri(ref: str) -> str:
    """The image URI a SageMaker Model names. A pushed image's ref is ``repo:tag@sha256:…``;
    SageMaker takes ``repo:tag`` or ``repo@sha256:…``, so a digest-pinned ref drops its tag."""
    name, at, digest = ref.partition("@")
    if not at:
        return ref
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    return f"{name}@{digest}"


def ecr_repository_arn(uri: str, partition: str) -> str | None:
    """The ARN of the private ECR repository an image URI lives in; None if it is not ECR."""
    m = ECR_IMAGE.match(uri)
    if m is None:
        return None
    return f"arn:{partition}:ecr:{m['region']}:{m['account']}:repository/{m['repository']}"


# --------------------------------------------------------------------------- variants


def plan_variants(plan: TrafficPlan, cfg: SageMakerSettings) -> tuple[Variant, ...]:
    """The endpoint config's variants: production ones first, then the shadow (if any)."""
    scaling = cfg.autoscaling
    out: list[Variant] = []
    for b in plan.backends:
        stable = b.role == "stable"
        count = cfg.instance_count if stable else (cfg.candidate_instance_count or cfg.instance_count)
        autoscaled = scaling is not None and (stable or scaling.include_candidate)
        name = STABLE_VARIANT if stable else CANDIDATE_VARIANT
        if plan.strategy == "shadow":
            if stable:
                out.append(Variant(name, b.version, b.role, 1.0, count, autoscaled=autoscaled))
            else:
                pct = plan.mirror.percent if plan.mirror is not None else 0
                out.append(Variant(name, b.version, b.role, pct / 100, count, True, autoscaled))
        else:
            out.append(Variant(name, b.version, b.role, float(b.weight), count, autoscaled=autoscaled))
    return tuple(sorted(out, key=lambda v: v.shadow))


# --------------------------------------------------------------------------- models


def container_environment(model: str, version: str, cfg: SageMakerSettings) -> dict[str, str]:
    """The serving runtime's environment in a version's container. Depends on the version and the
    target's settings only, never on the rollout: a routing change does not replace the Model."""
    return serving_env(
        model,
        version,
        workers=cfg.workers if cfg.workers is not None else (cfg.gpus or None),
        gpus=cfg.gpus,
        timeout_seconds=cfg.request_timeout_seconds,
        max_body_bytes=SAGEMAKER_MAX_BODY_BYTES,
        batch_max_size=cfg.batch_max_size,
        batch_max_wait_ms=cfg.batch_max_wait_ms,
    )


def production_variant(v: Variant, model_name: pulumi.Input[str], cfg: SageMakerSettings) -> dict[str, Any]:
    """A ``production_variants`` / ``shadow_production_variants`` entry (pulumi_aws input)."""
    if cfg.serverless is not None:
        # ProductionVariant: ServerlessConfig instead of InstanceType/InitialInstanceCount; the
        # startup health-check timeout and the volume size are instance settings
        sv = cfg.serverless
        serverless: dict[str, Any] = {"memory_size_in_mb": sv.memory_size_mb, "max_concurrency": sv.max_concurrency}
        if sv.provisioned_concurrency is not None:
            serverless["provisioned_concurrency"] = sv.provisioned_concurrency
        return {
            "variant_name": v.name,
            "model_name": model_name,
            "initial_variant_weight": v.weight,
            "serverless_config": serverless,
        }
    out: dict[str, Any] = {
        "variant_name": v.name,
        "model_name": model_name,
        "instance_type": cfg.instance_type,
        "initial_instance_count": v.instance_count,
        "initial_variant_weight": v.weight,
        "container_startup_health_check_timeout_in_seconds": cfg.container_startup_timeout_seconds,
    }
    if cfg.volume_size_gb is not None:
        out["volume_size_in_gb"] = cfg.volume_size_gb
    return out


def data_capture_config(dc: SageMakerDataCaptureSettings) -> dict[str, Any]:
    out: dict[str, Any] = {
        "enable_capture": True,
        "initial_sampling_percentage": dc.sampling_percent,
        "destination_s3_uri": dc.destination_s3_uri.rstrip("/"),
        "capture_options": [{"capture_mode": mode} for mode in dc.capture],
    }
    headers: dict[str, Any] = {}
    if dc.json_content_types:
        headers["json_content_types"] = list(dc.json_content_types)
    if dc.csv_content_types:
        headers["csv_content_types"] = list(dc.csv_content_types)
    if headers:
        out["capture_content_type_header"] = headers
    if dc.kms_key_arn:
        out["kms_key_id"] = dc.kms_key_arn
    return out


# --------------------------------------------------------------------------- deployment


def traffic_routing(d: SageMakerDeploymentSettings) -> dict[str, Any]:
    out: dict[str, Any] = {"type": d.type, "wait_interval_in_seconds": d.wait_interval_seconds}
    if d.type == "CANARY" and d.canary_size is not None:
        out["canary_size"] = {"type": d.canary_size.type, "value": d.canary_size.value}
    if d.type == "LINEAR" and d.linear_step_size is not None:
        out["linear_step_size"] = {"type": d.linear_step_size.type, "value": d.linear_step_size.value}
    return out


def deployment_config(d: SageMakerDeploymentSettings, rollback_alarms: Sequence[str]) -> dict[str, Any]:
    """The Endpoint's ``deployment_config``: a blue/green update policy, and auto-rollback on the
    given CloudWatch alarms (SageMaker takes 1-10)."""
    policy: dict[str, Any] = {
        "traffic_routing_configuration": traffic_routing(d),
        "termination_wait_in_seconds": d.termination_wait_seconds,
    }
    if d.maximum_execution_timeout_seconds is not None:
        policy["maximum_execution_timeout_in_seconds"] = d.maximum_execution_timeout_seconds
    out: dict[str, Any] = {"blue_green_update_policy": policy}
    if d.auto_rollback and rollback_alarms:
        if len(rollback_alarms) > 10:
            raise ValueError(f"SageMaker rolls back on 10 alarms at most (got {len(rollback_alarms)})")
        out["auto_rollback_configuration"] = {"alarms": [{"alarm_name": a} for a in rollback_alarms]}
    return out


# --------------------------------------------------------------------------- autoscaling


def scaling_policy_config(cfg: SageMakerSettings) -> dict[str, Any]:
    a = cfg.autoscaling
    assert a is not None
    if a.metric == "concurrency":
        # application-autoscaling MetricType (botocore): the variant's ConcurrentRequestsPerModel,
        # emitted every 10 seconds ("HighResolution"), so scale-out follows a burst within a minute
        metric, target = "SageMakerVariantConcurrentRequestsPerModelHighResolution", a.concurrent_requests_per_model
    else:
        metric, target = "SageMakerVariantInvocationsPerInstance", a.invocations_per_instance
    return {
        "target_value": target,
        "predefined_metric_specification": {"predefined_metric_type": metric},
        "scale_in_cooldown": a.scale_in_cooldown_seconds,
        "scale_out_cooldown": a.scale_out_cooldown_seconds,
    }


# --------------------------------------------------------------------------- IAM


def assume_role_policy(account_id: str) -> dict[str, Any]:
    """Only SageMaker may assume the role, and only on behalf of this account (confused deputy)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            }
        ],
    }


def execution_policy(
    *,
    partition: str,
    region: str,
    account_id: str,
    endpoint: str,
    repository_arns: Sequence[str],
    data_capture: SageMakerDataCaptureSettings | None,
) -> dict[str, Any]:
    """The execution role's permissions, each scoped as far as IAM allows."""
    group = f"arn:{partition}:logs:{region}:{account_id}:log-group:{log_group_name(endpoint)}"
    statements: list[dict[str, Any]] = [
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {
            "Sid": "EcrPullModelImages",
            "Effect": "Allow",
            "Action": list(ECR_PULL_ACTIONS),
            "Resource": sorted(set(repository_arns)),
        },
        {
            "Sid": "EndpointLogs",
            "Effect": "Allow",
            "Action": list(LOG_ACTIONS),
            "Resource": [group, f"{group}:log-stream:*"],
        },
        {
            "Sid": "SageMakerMetrics",
            "Effect": "Allow",
            "Action": ["cloudwatch:PutMetricData"],
            "Resource": "*",
            "Condition": {"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", METRICS_NAMESPACE]}},
        },
    ]
    if data_capture is not None:
        prefix = f"{data_capture.prefix}/" if data_capture.prefix else ""
        statements.append(
            {
                "Sid": "DataCaptureWrite",
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": [f"arn:{partition}:s3:::{data_capture.bucket}/{prefix}*"],
            }
        )
        if data_capture.kms_key_arn:
            statements.append(
                {
                    "Sid": "DataCaptureEncrypt",
                    "Effect": "Allow",
                    "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
                    "Resource": [data_capture.kms_key_arn],
                }
            )
    return {"Version": "2012-10-17", "Statement": statements}


# --------------------------------------------------------------------------- the component


@dataclass
class SageMakerModelServiceArgs:
    model_name: str
    plan: TrafficPlan
    settings: SageMakerSettings
    models: dict[str, ResolvedModel] = field(default_factory=dict)
    """The resolved live versions (images are built from them unless ``images``/``image.uris``)."""
    image: ImageSettings = field(default_factory=ImageSettings)
    thresholds: AlertThresholds = field(default_factory=AlertThresholds)
    """``monitoring.thresholds``: the alarms' defaults."""
    dashboard: bool = True
    images: dict[str, pulumi.Input[str]] | None = None
    """Image reference per live version, if already known (skips ModelImage)."""
    drift: DriftSettings | None = None
    """``monitoring.drift`` when enabled: the scheduled monitor job, its alarms (sagemaker_quality.py)."""


class SageMakerModelService(pulumi.ComponentResource):
    """Outputs: ``endpoint_name``, ``endpoint_config_name``, ``invoke_url``, ``variants``,
    ``repository_url``, ``role_arn``, ``dashboard_url``, ``alarm_names``; ``exports`` is the stack
    output (what ``modelctl status`` compares the live endpoint with)."""

    def __init__(self, name: str, args: SageMakerModelServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        import pulumi_aws as aws

        cfg, plan, model = args.settings, args.plan, args.model_name
        base = base_name(model)
        endpoint = endpoint_name(model, cfg)
        partition = partition_of(cfg.region)
        variants = plan_variants(plan, cfg)

        provider = aws.Provider(
            f"{base}-aws",
            region=cfg.region,
            default_tags={"tags": {"mlflow-deploy:model": model, **cfg.tags}},
            opts=pulumi.ResourceOptions(parent=self),
        )
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        invoke_opts = pulumi.InvokeOutputOptions(parent=self, provider=provider)
        account_id = aws.get_caller_identity_output(opts=invoke_opts).account_id

        # --- registry and images
        repo = aws.ecr.Repository(
            f"{base}-ecr",
            name=ecr_repository_name(model, cfg),
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            opts=child,
        )
        images = dict(args.images) if args.images is not None else self._images(args, repo, invoke_opts)
        # monitoring.drift without sagemaker.dataCapture: capture to a bucket the stack owns
        from components.sagemaker_quality import declare_capture_bucket, effective_data_capture

        capture, capture_bucket = effective_data_capture(cfg.data_capture, args.drift, endpoint, cfg.region)
        cfg = cfg.model_copy(update={"data_capture": capture})
        capture_deps: list[pulumi.Resource] = []
        if capture_bucket is not None and args.drift is not None:
            capture_deps = declare_capture_bucket(base, capture_bucket, args.drift, child)
        missing = [v for v in plan.versions if v not in images]
        if missing:
            raise ValueError(f"no image for version(s) {', '.join(missing)}")
        prebuilt_arns = [
            arn
            for v in plan.versions
            if v in args.image.uris and (arn := ecr_repository_arn(args.image.uris[v], partition))
        ]

        # --- execution role
        log_group = aws.cloudwatch.LogGroup(
            f"{base}-sm-logs", name=log_group_name(endpoint), retention_in_days=cfg.log_retention_days, opts=child
        )
        role = aws.iam.Role(
            f"{base}-sm-execution",
            description=f"SageMaker execution role of endpoint {endpoint} (mlflow-deploy)",
            assume_role_policy=account_id.apply(lambda a: json.dumps(assume_role_policy(a))),
            opts=child,
        )
        policy = aws.iam.RolePolicy(
            f"{base}-sm-execution",
            role=role.id,
            policy=pulumi.Output.all(account_id, repo.arn).apply(
                lambda a: json.dumps(
                    execution_policy(
                        partition=partition,
                        region=cfg.region,
                        account_id=a[0],
                        endpoint=endpoint,
                        repository_arns=[a[1], *prebuilt_arns],
                        data_capture=cfg.data_capture,
                    )
                )
            ),
            opts=child,
        )

        # --- one Model per live version: its inputs never depend on the rollout
        self.models: dict[str, Any] = {}
        image_uris: dict[str, pulumi.Output[str]] = {}
        for version in plan.versions:
            image_uris[version] = pulumi.Output.from_input(images[version]).apply(sagemaker_image_uri)
            self.models[version] = aws.sagemaker.Model(
                f"sm-{version_name(model, version)}",
                execution_role_arn=role.arn,
                primary_container={
                    "image": image_uris[version],
                    "mode": "SingleModel",
                    "environment": container_environment(model, version, cfg),
                },
                enable_network_isolation=cfg.effective_network_isolation,
                # Kept in AWS with the retained EndpointConfigurations (docs/sagemaker.md): a config
                # names its Models (ProductionVariant.ModelName), DeleteModel does not refuse a
                # Model a config still names, and an endpoint SageMaker rolled back runs a config
                # whose Models Pulumi would otherwise delete after the "successful" update.
                opts=pulumi.ResourceOptions.merge(
                    child, pulumi.ResourceOptions(depends_on=[policy], retain_on_delete=cfg.retain_replaced_configs)
                ),
            )

        # --- endpoint config from the TrafficPlan
        production = [production_variant(v, self.models[v.version].name, cfg) for v in variants if not v.shadow]
        shadow = [production_variant(v, self.models[v.version].name, cfg) for v in variants if v.shadow]
        config = aws.sagemaker.EndpointConfiguration(
            f"{base}-sm-config",
            production_variants=production,
            shadow_production_variants=shadow or None,
            data_capture_config=data_capture_config(cfg.data_capture) if cfg.data_capture else None,
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(retain_on_delete=cfg.retain_replaced_configs, depends_on=capture_deps)
            ),
        )

        # --- rollback alarms, then the endpoint
        specs = alarm_specs(endpoint, cfg.alarms, args.thresholds)
        alarms = [aws.cloudwatch.MetricAlarm(s.resource_name, **s.args, opts=child) for s in specs]
        warning = baking_warning(cfg, args.thresholds)
        if warning:
            pulumi.log.warn(warning, resource=self)
        endpoint_res = aws.sagemaker.Endpoint(
            f"{base}-sm-endpoint",
            name=endpoint,
            endpoint_config_name=config.name,
            deployment_config=deployment_config(cfg.deployment, [s.name for s in specs]),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[policy, log_group, *alarms])),
        )

        # --- autoscaling per variant (after the endpoint exists)
        if cfg.autoscaling is not None:
            for v in variants:
                if not v.autoscaled:
                    continue
                target = aws.appautoscaling.Target(
                    f"{base}-sm-{v.name}-scaling",
                    service_namespace="sagemaker",
                    scalable_dimension=SCALABLE_DIMENSION,
                    resource_id=endpoint_res.name.apply(lambda n, vn=v.name: scaling_resource_id(n, vn)),
                    min_capacity=cfg.autoscaling.min_instances,
                    max_capacity=cfg.autoscaling.max_instances,
                    opts=child,
                )
                aws.appautoscaling.Policy(
                    f"{base}-sm-{v.name}-invocations",
                    name=f"{endpoint}-{v.name}-invocations-per-instance",
                    policy_type="TargetTrackingScaling",
                    service_namespace=target.service_namespace,
                    scalable_dimension=target.scalable_dimension,
                    resource_id=target.resource_id,
                    target_tracking_scaling_policy_configuration=scaling_policy_config(cfg),
                    opts=child,
                )

        # --- dashboard
        self.dashboard_url: pulumi.Output[str] | None = None
        if args.dashboard:
            board = aws.cloudwatch.Dashboard(
                f"{base}-sm-dashboard",
                dashboard_name=endpoint,
                dashboard_body=json.dumps(dashboard_body(endpoint, cfg.region, variants)),
                opts=child,
            )
            self.dashboard_url = board.dashboard_name.apply(lambda n: dashboard_url(cfg.region, n))

        # --- model quality (monitoring.drift): the scheduled monitor job over the data capture
        self.quality: Any = None
        if args.drift is not None and args.drift.enabled and cfg.data_capture is not None and args.drift.image:
            from components.sagemaker_quality import SageMakerModelQuality, SageMakerModelQualityArgs

            self.quality = SageMakerModelQuality(
                f"{base}-sm-quality",
                SageMakerModelQualityArgs(
                    model_name=model,
                    endpoint=endpoint,
                    region=cfg.region,
                    partition=partition,
                    account_id=account_id,
                    plan=plan,
                    variants=variants,
                    data_capture=cfg.data_capture,
                    drift=args.drift,
                    thresholds=args.thresholds,
                    image=args.drift.image,
                    dashboard=args.dashboard,
                ),
                opts=pulumi.ResourceOptions(parent=self, provider=provider),
            )

        self.endpoint_name = endpoint_res.name
        self.endpoint_config_name = config.name
        self.invoke_url = invoke_url(cfg.region, endpoint)
        self.repository_url = repo.repository_url
        self.role_arn = role.arn
        self.alarm_names = [s.name for s in specs]
        self.variants = [
            {
                "name": v.name,
                "version": v.version,
                "role": v.role,
                "weight": v.weight,
                "shadow": v.shadow,
                "instanceType": None if cfg.serverless is not None else cfg.instance_type,
                "instanceCount": None if cfg.serverless is not None else v.instance_count,
                "gpus": cfg.gpus,
                "model": self.models[v.version].name,
                "image": image_uris[v.version],
            }
            for v in variants
        ]
        self.exports: dict[str, Any] = {
            "region": cfg.region,
            "endpointName": self.endpoint_name,
            "endpointConfigName": self.endpoint_config_name,
            "invokeUrl": self.invoke_url,
            "variants": self.variants,
            "alarms": self.alarm_names,
            "repositoryUrl": self.repository_url,
            "dashboardUrl": self.dashboard_url,
        }
        if self.quality is not None:
            self.exports["quality"] = self.quality.exports
        self.register_outputs(dict(self.exports))

    def _images(
        self, args: SageMakerModelServiceArgs, repo: Any, invoke_opts: pulumi.InvokeOutputOptions
    ) -> dict[str, pulumi.Output[str]]:
        """Build (or pass through) one image per live version into the target's ECR repository."""
        import pulumi_aws as aws

        live = {v: args.models[v] for v in args.plan.versions if v in args.models}
        address = username = password = None
        if any(v not in args.image.uris for v in live):
            token = aws.ecr.get_authorization_token_output(registry_id=repo.registry_id, opts=invoke_opts)
            address = token.proxy_endpoint.apply(lambda e: e.removeprefix("https://"))
            username = token.user_name
            password = pulumi.Output.secret(token.password)
        return model_images(
            "sm",
            live,
            args.image,
            repo.repository_url,
            opts=pulumi.ResourceOptions(parent=self),
            registry_address=address,
            registry_username=username,
            registry_password=password,
            gpu=args.settings.gpus > 0,
        )
