"""VertexModelService: a model's versions served on a GCP Vertex AI endpoint, routed by the
TrafficPlan.

Objects, for model ``fraud-detector`` with stable 7 and a candidate 8 (Pulumi names):

* ``gcp.artifactregistry.Repository vertex-fraud-detector-images`` (format DOCKER, immutable
  tags): where each version's image is pushed, ``<region>-docker.pkg.dev/<project>/<repo>/fraud-detector``
  (``vertex.createRepository: false`` pushes to an existing repository; ``image.uris`` skips the
  build for a version).
* ``gcp.vertex.AiEndpoint vertex-fraud-detector-endpoint``: endpoint ID ``fraud-detector``, public,
  dedicated, VPC-peered (``network``) or Private Service Connect. It ignores changes to
  ``traffic_split``: the split is owned by the VertexTrafficSplit below.
* ``VertexModelDeployment vertex-fraud-detector-v7-deploy`` and ``…-v8-deploy`` (dynamic
  resources, see :mod:`components.vertex_provider`): upload the version's model and deploy it with
  the machine type and replica range. Their inputs do not depend on the plan's weights or roles,
  so a routing change (canary percent, promote, rollback) never redeploys a version.
* ``VertexTrafficSplit vertex-fraud-detector-traffic``: deployed model ID -> percent, from the plan.

A VPC-peered endpoint (``network``) holds one deployed model and has no traffic split: there the
deployment is one resource ``vertex-fraud-detector-deploy`` whatever the version (a promotion
replaces it delete-first), no VertexTrafficSplit is declared, and a candidate is refused by the
settings.
* ``gcp.monitoring.AlertPolicy vertex-fraud-detector-errors`` / ``-latency`` (when
  ``monitoring.enabled``): prediction error ratio and p99 latency per deployed model, thresholds
  from ``monitoring.thresholds``.

Vertex endpoints cannot mirror traffic: shadow is refused by the settings, before any resource.
The pure builders below are tested without Pulumi; the component only declares them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from components.image import CONTAINER_PORT, model_images, serving_env
from components.names import base_name, version_name
from components.registry import ResolvedModel
from components.rollout import TrafficPlan
from components.settings import AlertThresholds, DriftSettings, ImageSettings
from components.vertex_provider import (
    VertexModelDeployment,
    VertexTrafficSplit,
    deployed_model_id_for,
    machine_fields,
    model_id_for,
)
from components.vertex_settings import VertexSettings

PREDICT_ROUTE = "/invocations"
HEALTH_ROUTE = "/ping"
PART_OF = "mlflow-deploy"
ENDPOINT_RESOURCE_TYPE = "aiplatform.googleapis.com/Endpoint"
ERROR_METRIC = "aiplatform.googleapis.com/prediction/online/error_count"
PREDICTION_METRIC = "aiplatform.googleapis.com/prediction/online/prediction_count"
LATENCY_METRIC = "aiplatform.googleapis.com/prediction/online/prediction_latencies"
APIS = ("aiplatform.googleapis.com", "artifactregistry.googleapis.com", "monitoring.googleapis.com")


# --------------------------------------------------------------------------- pure builders


def endpoint_id(model: str, cfg: VertexSettings) -> str:
    """The endpoint's ID: ``vertex.endpointId`` or the model's base name (``fraud-detector``)."""
    return cfg.endpoint_id or base_name(model)


def endpoint_resource_name(model: str, cfg: VertexSettings) -> str:
    return f"projects/{cfg.project}/locations/{cfg.region}/endpoints/{endpoint_id(model, cfg)}"


def repository_id(model: str, cfg: VertexSettings) -> str:
    return cfg.repository_id or base_name(model)


def image_repository(model: str, cfg: VertexSettings, repo_id: str | None = None) -> str:
    """Where a version's image is pushed: ``<region>-docker.pkg.dev/<project>/<repo>/<model>``."""
    return f"{cfg.region}-docker.pkg.dev/{cfg.project}/{repo_id or repository_id(model, cfg)}/{base_name(model)}"


def common_labels(model: str, cfg: VertexSettings) -> dict[str, str]:
    """Labels on every GCP resource of the model (GCP label syntax: lowercase, '-', '_')."""
    return {**cfg.labels, "model": base_name(model), "part-of": PART_OF, "managed-by": "pulumi"}


def version_labels(model: str, version: str, cfg: VertexSettings) -> dict[str, str]:
    return {**common_labels(model, cfg), "version": version}


def container_env(model: str, version: str, cfg: VertexSettings) -> dict[str, str]:
    workers = cfg.workers if cfg.workers is not None else (cfg.gpus or None)
    return serving_env(
        model,
        version,
        workers=workers,
        gpus=cfg.gpus,
        batch_max_size=cfg.batch_max_size,
        batch_max_wait_ms=cfg.batch_max_wait_ms,
    )


def container_spec(image_uri: str, model: str, version: str, cfg: VertexSettings) -> dict[str, Any]:
    """The model's container: the project's image, port 8080, ``/invocations`` and ``/ping``."""
    return {
        "imageUri": image_uri,
        "port": CONTAINER_PORT,
        "predictRoute": PREDICT_ROUTE,
        "healthRoute": HEALTH_ROUTE,
        "env": container_env(model, version, cfg),
    }


def machine_spec(cfg: VertexSettings) -> dict[str, Any]:
    """The deployment fields Vertex cannot change in place (a change is a new deployed model)."""
    return machine_fields(cfg.machine_type, cfg.service_account, *cfg.accelerator)


_TARGET_INPUTS = {"cpu": "targetCpuUtilization", "gpu": "targetDutyCycle", "requests": "targetRequestsPerMinute"}


def autoscaling_inputs(cfg: VertexSettings) -> dict[str, int]:
    """The deployment's autoscaling target inputs (``vertex.autoscalingMetric``): only the ones in
    use, so a CPU-scaled deployment's inputs are what they were before metrics were selectable.
    Mutated in place (``MutateDeployedModel`` takes ``autoscaling_metric_specs``, see
    components.vertex_provider.MUTABLE_KEYS): switching metric never redeploys."""
    return {_TARGET_INPUTS[m]: t for m, t in cfg.autoscaling_targets.items()}


def deployment_inputs(model: str, version: str, image_uri: str, cfg: VertexSettings) -> dict[str, Any]:
    """The inputs of one version's VertexModelDeployment, for a known image URI.

    Nothing here depends on the TrafficPlan (weights, roles), so the stable version is declared
    identically with and without a candidate: a rollback changes the split, not the deployment.
    """
    container = container_spec(image_uri, model, version, cfg)
    model_id = model_id_for(model, version, container)
    return {
        "project": cfg.project,
        "region": cfg.region,
        "endpoint": endpoint_resource_name(model, cfg),
        "modelId": model_id,
        "deployedModelId": deployed_model_id_for(endpoint_resource_name(model, cfg), model_id, machine_spec(cfg)),
        "displayName": version_name(model, version),
        "version": version,
        "container": container,
        "labels": version_labels(model, version, cfg),
        **machine_spec(cfg),
        "minReplicas": cfg.min_replicas,
        "maxReplicas": cfg.max_replicas,
        **autoscaling_inputs(cfg),
        # a VPC-peered endpoint holds one deployed model: the provider replaces delete-first there
        "network": cfg.network,
    }


def deployment_resource_name(component: str, version: str, cfg: VertexSettings) -> tuple[str, list[pulumi.Alias]]:
    """The Pulumi name of a version's VertexModelDeployment, and the aliases it answers to.

    Public and PSC endpoints: one resource per version (``…-v7-deploy``), so a promotion deploys
    the new version beside the old one before the old one goes. A VPC-peered endpoint
    (``vertex.network``) holds one deployed model, so its deployment is one resource
    (``…-deploy``) whatever the version: a promotion replaces it, and the provider does that
    delete-first (docs/vertex.md states the downtime). Its alias keeps a stack that named it after
    its version from replacing it for the rename alone.
    """
    per_version = f"{version_name(component, version)}-deploy"
    if cfg.network is None:
        return per_version, []
    return f"{component}-deploy", [pulumi.Alias(name=per_version)]


def _inputs_for_image(model: str, version: str, cfg: VertexSettings, image_uri: str) -> dict[str, Any]:
    return deployment_inputs(model, version, image_uri, cfg)


def traffic_split(plan: TrafficPlan, deployed_ids: dict[str, str]) -> dict[str, int]:
    """The endpoint's traffic split: deployed model ID -> percent, versions at 0% left out
    (Vertex: an ID not listed takes no traffic)."""
    return {deployed_ids[b.version]: b.weight for b in plan.backends if b.weight > 0}


def predict_url(model: str, cfg: VertexSettings, dedicated_dns: str | None = None) -> str | None:
    """The REST predict URL, or None for a private endpoint (reached through the VPC / PSC)."""
    if cfg.network is not None or cfg.private_service_connect is not None:
        return None
    host = dedicated_dns if cfg.dedicated_endpoint and dedicated_dns else f"{cfg.region}-aiplatform.googleapis.com"
    return f"https://{host}/v1/{endpoint_resource_name(model, cfg)}:predict"


def alert_duration(for_: str) -> str:
    """``monitoring.thresholds.for`` as a Cloud Monitoring duration: whole minutes, at least one."""
    m = re.fullmatch(r"([0-9]+)([smh])", for_)
    if m is None:
        raise ValueError(f"not a duration: {for_!r}")
    seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
    minutes = max(1, -(-seconds // 60))
    return f"{minutes * 60}s"


def _endpoint_filter(metric: str, ep_id: str) -> str:
    return (
        f'metric.type="{metric}" AND resource.type="{ENDPOINT_RESOURCE_TYPE}" AND resource.labels.endpoint_id="{ep_id}"'
    )


def _per_deployed_model(aligner: str, reducer: str) -> list[dict[str, Any]]:
    return [
        {
            "alignmentPeriod": "60s",
            "perSeriesAligner": aligner,
            "crossSeriesReducer": reducer,
            "groupByFields": ["metric.label.deployed_model_id"],
        }
    ]


def alert_policies(model: str, cfg: VertexSettings, thresholds: AlertThresholds) -> dict[str, dict[str, Any]]:
    """Cloud Monitoring alert policies (suffix -> AlertPolicy args, camelCase as sent).

    * ``errors``: prediction errors / predictions above ``thresholds.errorRatio``;
    * ``latency``: p99 prediction latency above ``thresholds.p99LatencySeconds``.

    Both are evaluated per deployed model (grouped by ``deployed_model_id``), so a bad canary
    alerts on its own even when its 10% share barely moves the endpoint's totals.
    """
    ep_id = endpoint_id(model, cfg)
    duration = alert_duration(thresholds.for_)
    name = base_name(model)
    runbook = (
        f"Vertex AI endpoint `{ep_id}` ({cfg.project}, {cfg.region}) serving MLflow model `{model}`.\n\n"
        "The `deployed_model_id` label names the deployed model; the stack output "
        "`vertex.deployedModels` maps it to the registry version. A candidate misbehaving: "
        "`python -m modelctl rollback --stack <stack>` (drops the candidate: a traffic split change)."
    )
    common = {
        "project": cfg.project,
        "combiner": "OR",
        "notificationChannels": list(cfg.notification_channels),
        "userLabels": common_labels(model, cfg),
        "documentation": {"content": runbook, "mimeType": "text/markdown"},
        "alertStrategy": {"autoClose": "1800s"},
    }
    errors = {
        **common,
        "displayName": f"{name}: Vertex AI prediction error ratio above {thresholds.error_ratio:g}",
        "severity": "ERROR",
        "conditions": [
            {
                "displayName": f"prediction errors / predictions > {thresholds.error_ratio:g} for {duration}",
                "conditionThreshold": {
                    "filter": _endpoint_filter(ERROR_METRIC, ep_id),
                    "aggregations": _per_deployed_model("ALIGN_DELTA", "REDUCE_SUM"),
                    "denominatorFilter": _endpoint_filter(PREDICTION_METRIC, ep_id),
                    "denominatorAggregations": _per_deployed_model("ALIGN_DELTA", "REDUCE_SUM"),
                    "comparison": "COMPARISON_GT",
                    "thresholdValue": thresholds.error_ratio,
                    "duration": duration,
                    "trigger": {"count": 1},
                },
            }
        ],
    }
    latency_ms = thresholds.p99_latency_seconds * 1000
    latency = {
        **common,
        "displayName": f"{name}: Vertex AI p99 prediction latency above {latency_ms:g} ms",
        "severity": "WARNING",
        "conditions": [
            {
                "displayName": f"p99 prediction latency > {latency_ms:g} ms for {duration}",
                "conditionThreshold": {
                    # prediction_latencies is a distribution in ms, one series per latency_type
                    # (model, overhead, total); the max over them is the total's p99.
                    "filter": _endpoint_filter(LATENCY_METRIC, ep_id),
                    "aggregations": _per_deployed_model("ALIGN_PERCENTILE_99", "REDUCE_MAX"),
                    "comparison": "COMPARISON_GT",
                    "thresholdValue": latency_ms,
                    "duration": duration,
                    "trigger": {"count": 1},
                },
            }
        ],
    }
    return {"errors": errors, "latency": latency}


def _snake(d: Any) -> Any:
    """camelCase dict keys -> the SDK's snake_case argument names (values untouched)."""
    if isinstance(d, dict):
        return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): _snake(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_snake(x) for x in d]
    return d


# --------------------------------------------------------------------------- the component


@dataclass
class VertexModelServiceArgs:
    model_name: str
    plan: TrafficPlan
    models: dict[str, ResolvedModel]
    """The resolved model of every live version (images are built from them)."""
    settings: VertexSettings
    image: ImageSettings
    thresholds: AlertThresholds | None = None
    """Alert thresholds; None: no alert policies (``monitoring.enabled: false``)."""
    drift: DriftSettings | None = None
    """``monitoring.drift`` when enabled: request-response logging, the scheduled monitor job, alerts
    (components/vertex_quality.py)."""


class VertexModelService(pulumi.ComponentResource):
    """Outputs: ``endpoint_id``, ``endpoint_name``, ``predict_url``, ``live_versions``,
    ``traffic`` (version -> percent), ``deployed_models`` (version -> deployed model ID),
    ``image_repository``."""

    def __init__(self, name: str, args: VertexModelServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-deploy:index:VertexModelService", name, None, opts)
        cfg, plan, model = args.settings, args.plan, args.model_name
        missing = [v for v in plan.versions if v not in args.models]
        if missing:
            raise ValueError(f"no resolved model for version(s) {', '.join(missing)}")
        if plan.mirror is not None:
            raise ValueError("mlflow-deploy:candidate.strategy: Vertex AI endpoints cannot mirror traffic")
        child = pulumi.ResourceOptions(parent=self)

        apis: list[pulumi.Resource] = []
        drift = args.drift if args.drift is not None and args.drift.enabled else None
        if cfg.enable_apis:
            from components.vertex_quality import DRIFT_APIS

            wanted = (APIS if args.thresholds is not None or drift else APIS[:2]) + (DRIFT_APIS if drift else ())
            for api in wanted:
                apis.append(
                    gcp.projects.Service(
                        f"{name}-api-{api.split('.')[0]}",
                        project=cfg.project,
                        service=api,
                        disable_on_destroy=False,
                        opts=child,
                    )
                )
        after_apis = pulumi.ResourceOptions(parent=self, depends_on=apis)

        # -- images: one per version, in the stack's Artifact Registry repository
        repo_id: pulumi.Input[str] = repository_id(model, cfg)
        builds = [v for v in plan.versions if v not in args.image.uris]
        if cfg.create_repository and builds:
            repo = gcp.artifactregistry.Repository(
                f"{name}-images",
                project=cfg.project,
                location=cfg.region,
                repository_id=repository_id(model, cfg),
                format="DOCKER",
                description=f"mlflow-deploy: serving images of MLflow model {model}",
                docker_config={"immutable_tags": True},
                labels=common_labels(model, cfg),
                opts=after_apis,
            )
            repo_id = repo.repository_id  # the dependency: push after the repository exists
        repository = pulumi.Output.from_input(repo_id).apply(lambda r: image_repository(model, cfg, r))
        images = model_images(
            "vertex",
            {v: args.models[v] for v in plan.versions},
            args.image,
            repository,
            opts=pulumi.ResourceOptions(parent=self),
            gpu=cfg.gpus > 0,
        )

        # -- monitoring.drift: the request-response logging table, before the endpoint names it
        request_log = None
        logging_config = None
        if drift is not None:
            from components.vertex_quality import VertexRequestLog
            from components.vertex_quality import logging_config as _logging_config

            request_log = VertexRequestLog(f"{name}-request-log", model, cfg, opts=after_apis)
            # an in-place PATCH of a live endpoint (vertex_quality.py docstring; replacements.py)
            logging_config = _logging_config(model, cfg, drift)

        # -- endpoint; the traffic split is VertexTrafficSplit's, not the endpoint's
        ep_id = endpoint_id(model, cfg)
        psc = cfg.private_service_connect
        endpoint = gcp.vertex.AiEndpoint(
            f"{name}-endpoint",
            name=ep_id,
            display_name=base_name(model),
            description=f"mlflow-deploy: MLflow model {model}",
            project=cfg.project,
            location=cfg.region,
            region=cfg.region,
            labels=common_labels(model, cfg),
            network=cfg.network,
            private_service_connect_config=(
                {"enable_private_service_connect": True, "project_allowlists": list(psc.project_allowlist)}
                if psc is not None
                else None
            ),
            dedicated_endpoint_enabled=True if cfg.dedicated_endpoint else None,
            predict_request_response_logging_config=logging_config,
            opts=pulumi.ResourceOptions.merge(
                after_apis,
                pulumi.ResourceOptions(
                    ignore_changes=["trafficSplit"], depends_on=[request_log.table] if request_log else []
                ),
            ),
        )
        endpoint_name = pulumi.Output.concat(
            "projects/", cfg.project, "/locations/", cfg.region, "/endpoints/", endpoint.name
        )

        # -- one upload + deployment per version; each after the previous one (a Vertex endpoint
        #    takes one deploy/undeploy at a time), stable first
        self.deployments: dict[str, VertexModelDeployment] = {}
        previous: list[pulumi.Resource] = []
        for b in plan.backends:
            v = b.version
            res_name, aliases = deployment_resource_name(name, v, cfg)
            # plain inputs stay plain (known in a preview); the image-derived ones follow the image
            props = deployment_inputs(model, v, "", cfg)
            derived = images[v].apply(functools.partial(_inputs_for_image, model, v, cfg))
            props["container"] = {**props["container"], "imageUri": images[v]}
            props["modelId"] = derived.apply(lambda d: d["modelId"])
            props["deployedModelId"] = derived.apply(lambda d: d["deployedModelId"])
            props["endpoint"] = endpoint_name  # carries the dependency on the endpoint
            dep = VertexModelDeployment(
                res_name,
                props,
                opts=pulumi.ResourceOptions(parent=self, depends_on=previous, aliases=aliases or None),
            )
            self.deployments[v] = dep
            previous = [dep]

        ids = {v: dep.deployedModelId for v, dep in self.deployments.items()}
        if cfg.network is None:
            split = pulumi.Output.all(**ids).apply(lambda resolved: traffic_split(plan, dict(resolved)))
            VertexTrafficSplit(
                f"{name}-traffic",
                {"project": cfg.project, "region": cfg.region, "endpoint": endpoint_name, "trafficSplit": split},
                opts=child,
            )
        # else: a VPC-peered endpoint has no traffic split (its one deployed model takes it all)

        # -- alerts
        if args.thresholds is not None:
            for suffix, spec in alert_policies(model, cfg, args.thresholds).items():
                gcp.monitoring.AlertPolicy(f"{name}-{suffix}", **_snake(spec), opts=after_apis)

        self.quality: Any = None
        if drift is not None and request_log is not None:
            from components.vertex_quality import VertexModelQuality, VertexModelQualityArgs

            self.quality = VertexModelQuality(
                f"{name}-quality",
                VertexModelQualityArgs(
                    model_name=model, plan=plan, settings=cfg, drift=drift,
                    thresholds=args.thresholds or AlertThresholds(), deployed_models=ids, request_log=request_log,
                ),
                opts=after_apis,
            )  # fmt: skip

        self.endpoint_id = ep_id
        self.endpoint_name = endpoint_name
        self.predict_url: pulumi.Output[str | None] = endpoint.dedicated_endpoint_dns.apply(
            lambda dns: predict_url(model, cfg, dns)
        )
        self.live_versions = list(plan.versions)
        self.traffic = dict(plan.weights)
        self.deployed_models: dict[str, pulumi.Output[str]] = ids
        self.image_repository = repository
        self.register_outputs(
            {
                "endpointId": ep_id,
                "endpointName": endpoint_name,
                "predictUrl": self.predict_url,
                "liveVersions": self.live_versions,
                "traffic": self.traffic,
                "deployedModels": ids,
                "imageRepository": repository,
            }
        )
