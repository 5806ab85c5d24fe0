"""AzureMlModelEndpoint: a model's versions on an Azure ML managed online endpoint, routed by the
TrafficPlan.

Resources, for model ``fraud-detector`` with stable 7 and a candidate 8 (Pulumi names start
``azureml-``; Azure names in brackets):

* ``OnlineEndpoint`` [``fraud-detector-<stack>``, or ``azureml.endpointName``]: auth by key or
  Microsoft Entra (AAD) token, public network access from config, a system-assigned identity
  (which Azure grants pull on the workspace's registry and read on its storage). Declared
  *without* traffic, and ignoring changes of ``traffic``/``mirrorTraffic``: those belong to
* ``EndpointTraffic`` (components/azureml_traffic.py): a small dynamic resource that writes the
  endpoint's ``traffic`` (canary, blue-green) and ``mirror_traffic`` (shadow, at most 50%) once
  the deployments exist. See docs/azureml.md for why and how the ordering works.
* per live version, ``OnlineDeployment`` [``fraud-detector-v7``]: managed compute, instance type,
  instance count as the sku capacity, liveness/readiness probes, request settings; with
  ``autoscale``, an Azure Monitor ``AutoscaleSetting`` on the deployment's CPU utilization.
* per live version, what it serves:
  - ``modelSource: image`` (default): an ``EnvironmentVersion`` [``fraud-detector`` /
    ``7-<image hash>``] of the project's image with inference routes ``/ping`` (liveness,
    readiness) and ``/invocations`` (scoring) on port 8080: the same container as every target;
  - ``modelSource: mlflow_model``: the registry artifacts uploaded as blobs to the workspace's
    datastore and a ``ModelVersion`` [``fraud-detector`` / ``7``] of type ``mlflow_model``,
    served by Azure's own MLflow runtime (no-code deployment).
* ``MetricAlert`` x2 on the endpoint, per deployment: p99 request latency and 5xx responses,
  thresholds from ``monitoring.thresholds``, notifying ``azureml.actionGroupId``.

A deployment's inputs depend only on its own version and the target settings, never on the
other version or the strategy: dropping a candidate (rollback) or changing a percent touches the
traffic resource only.

The spec builders are pure functions (tests call them without Pulumi); the component declares.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_azure_native as azure_native
import pulumi_azure_native.machinelearningservices as ml
import pulumi_azure_native.monitor as monitor
import pulumi_azure_native.storage as storage

from components.azureml_alerts import metric_alert, window_size
from components.azureml_settings import AzureMlSettings
from components.azureml_traffic import API_VERSION, EndpointTraffic, traffic_problems
from components.image import CONTAINER_PORT, PROJECT_ROOT, registry_images, serving_env
from components.names import base_name, dns_label, version_name
from components.registry import ResolvedModel, download_model
from components.rollout import TrafficPlan
from components.settings import AlertThresholds, DriftSettings, ImageSettings

ENDPOINT_NAME_MAX = 32
DEPLOYMENT_NAME_MAX = 32
ENDPOINT_METRICS = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
DEPLOYMENT_METRICS = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments"
_AUTH_MODES = {"key": "Key", "aad_token": "AADToken"}


# --------------------------------------------------------------------------- pure builders


def endpoint_name(model: str, stack: str, cfg: AzureMlSettings) -> str:
    """The Azure endpoint name: the configured one, else ``<model>-<stack>`` as a 3-32 character
    name starting with a letter (endpoint names are unique per region, so the stack is in it)."""
    if cfg.endpoint_name:
        return cfg.endpoint_name
    name = dns_label(f"{base_name(model)}-{stack}", ENDPOINT_NAME_MAX)
    if name[0].isdigit():  # dns_label prefixes "m-", keep it a letter
        name = dns_label(f"m{name}", ENDPOINT_NAME_MAX)
    return name if len(name) >= 3 else f"{name}-ep"


def deployment_name(model: str, version: str) -> str:
    """``fraud-detector-v7``: 32 characters at most (Azure's limit)."""
    return version_name(model, version, DEPLOYMENT_NAME_MAX)


def traffic_maps(model: str, plan: TrafficPlan) -> tuple[dict[str, int], dict[str, int]]:
    """``(traffic, mirror_traffic)`` for the endpoint. Every live deployment is in ``traffic``
    (0 for a blue-green preview or an idle canary) except a shadow, which is only mirrored to."""
    mirror = {deployment_name(model, plan.mirror.version): plan.mirror.percent} if plan.mirror else {}
    traffic = {
        deployment_name(model, b.version): b.weight
        for b in plan.backends
        if not (plan.strategy == "shadow" and b.role == "candidate")
    }
    problems = traffic_problems(traffic, mirror)
    if problems:
        key = "candidate.percent"
        raise ValueError(f"mlflow-deploy:{key}: " + "; ".join(r for _, r in problems))
    return traffic, mirror


def endpoint_properties(cfg: AzureMlSettings, model: str) -> dict[str, Any]:
    """OnlineEndpointProperties (snake_case, as the SDK takes them). No traffic: see EndpointTraffic."""
    return {
        "auth_mode": _AUTH_MODES[cfg.auth_mode],
        "public_network_access": "Enabled" if cfg.public_network_access else "Disabled",
        "description": f"MLflow registry model {model}, managed by mlflow-deploy (Pulumi)",
    }


def endpoint_revision(spec: dict[str, Any]) -> str:
    """A digest of what the endpoint is declared with. The traffic resource carries it, so any
    update of the endpoint is followed by a re-apply of the traffic maps."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def iso_seconds(seconds: int | float) -> str:
    """An ISO 8601 duration (``PT60S``), as Azure ML wants its probe and timeout settings."""
    return f"PT{int(seconds)}S"


PROBE_PERIOD_SECONDS = 10


def probe(kind: str, cfg: AzureMlSettings) -> dict[str, Any]:
    """ProbeSettings of one probe, as on Kubernetes (components/kubernetes.py):

    * ``startup`` (on ``/ping``, 503 until the model is loaded): probes every 10 s for up to
      ``containerStartupTimeoutSeconds``; the other probes wait until it has passed. A
      ManagedOnlineDeployment takes ``startupProbe`` and an environment's inference config a
      ``startupRoute`` at the api-version azure-native 3.x manages them with (2025-12-01:
      ``ManagedOnlineDeploymentArgs.startup_probe``, ``InferenceContainerPropertiesArgs.startup_route``).
    * ``liveness`` (on ``/version``, which answers while the model loads): three misses in a row
      restart the container. On ``/ping`` a slow load would be restarted forever.
    * ``readiness`` (on ``/ping``): out of rotation while it fails, never restarted.
    * ``liveness`` with Azure's own MLflow runtime (``modelSource: mlflow_model``: its routes, no
      startup probe of ours): waits ``containerStartupTimeoutSeconds`` before its first probe.
    """
    period = PROBE_PERIOD_SECONDS
    base = {"period": iso_seconds(period), "timeout": "PT5S", "success_threshold": 1}
    if kind == "startup":
        tries = math.ceil(cfg.container_startup_timeout_seconds / period)
        return {**base, "initial_delay": "PT0S", "failure_threshold": tries}
    if kind == "liveness":
        return {**base, "initial_delay": "PT10S", "failure_threshold": 3}
    if kind == "mlflow_liveness":
        return {**base, "initial_delay": iso_seconds(cfg.container_startup_timeout_seconds), "failure_threshold": 3}
    return {**base, "initial_delay": "PT10S", "failure_threshold": 3}


def environment_variables(model: str, version: str, cfg: AzureMlSettings) -> dict[str, str]:
    workers = cfg.workers if cfg.workers is not None else (cfg.gpus or None)
    return serving_env(
        model,
        version,
        workers=workers,
        gpus=cfg.gpus,
        timeout_seconds=cfg.request_timeout_seconds,
        batch_max_size=cfg.batch_max_size,
        batch_max_wait_ms=cfg.batch_max_wait_ms,
    )


def deployment_properties(
    model: str,
    version: str,
    cfg: AzureMlSettings,
    *,
    environment_id: Any = None,
    model_id: Any = None,
    data_collector: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """ManagedOnlineDeployment properties for one version (snake_case, as the SDK takes them).

    Image mode gives ``environment_id`` (the project's container carries the model); mlflow_model
    mode gives ``model_id`` (Azure supplies the MLflow runtime). Depends on nothing but the
    version and the settings, so the stable deployment is the same with or without a candidate.
    """
    if (environment_id is None) == (model_id is None):
        raise ValueError("exactly one of environment_id (image mode) or model_id (mlflow_model mode)")
    props: dict[str, Any] = {
        "endpoint_compute_type": "Managed",
        "description": f"{model} version {version}",
        "instance_type": cfg.instance_type,
        "app_insights_enabled": cfg.app_insights,
        "egress_public_network_access": "Enabled",
        "liveness_probe": probe("liveness" if environment_id is not None else "mlflow_liveness", cfg),
        "readiness_probe": probe("readiness", cfg),
        "request_settings": {
            "request_timeout": iso_seconds(cfg.request_timeout_seconds),
            "max_concurrent_requests_per_instance": cfg.max_concurrent_requests_per_instance,
        },
        "properties": {"mlflow.model.name": model, "mlflow.model.version": version},
    }
    if environment_id is not None:
        props["environment_id"] = environment_id
        props["environment_variables"] = environment_variables(model, version, cfg)
        props["startup_probe"] = probe("startup", cfg)
    else:
        props["model"] = model_id
    if data_collector is not None:
        # monitoring.drift: payload logging (components/azureml_quality.py); in place on a live deployment
        props["data_collector"] = data_collector
    return props


def deployment_capacity(cfg: AzureMlSettings) -> int:
    """The sku capacity a deployment is created with: ``instanceCount``, kept inside the
    autoscale bounds when autoscale is on (autoscale then owns it)."""
    a = cfg.autoscale
    if a is None:
        return cfg.instance_count
    return max(a.min_instances, min(cfg.instance_count, a.max_instances))


def inference_config() -> dict[str, Any]:
    """The custom container's routes on 8080: liveness ``/version`` (answers while the model
    loads), startup and readiness ``/ping`` (200 once it is loaded), scoring ``/invocations``."""
    return {
        "liveness_route": {"path": "/version", "port": CONTAINER_PORT},
        "readiness_route": {"path": "/ping", "port": CONTAINER_PORT},
        "startup_route": {"path": "/ping", "port": CONTAINER_PORT},
        "scoring_route": {"path": "/invocations", "port": CONTAINER_PORT},
    }


def environment_version(version: str, image_ref: str) -> str:
    """An environment version per image and inference config: ``7-<12 hex>``. Azure environment
    versions are immutable, so a rebuilt image of version 7, or new routes, is a new environment
    version (never an update of the existing one, nor a same-named replacement)."""
    digest = hashlib.sha256(json.dumps([image_ref, inference_config()], sort_keys=True).encode())
    return f"{version}-{digest.hexdigest()[:12]}"


def environment_properties(model: str, version: str, image_ref: Any) -> dict[str, Any]:
    return {
        "image": image_ref,
        "os_type": "Linux",
        "inference_config": inference_config(),
        "description": f"mlflow-deploy serving image of {model} version {version}",
        "tags": {"mlflow.model.name": model, "mlflow.model.version": version},
    }


def model_store_path(cfg: AzureMlSettings, asset: str, version: str) -> str:
    """Blob path prefix of a version's artifacts: ``<pathPrefix>/<asset>/v<version>`` (``asset``:
    the endpoint name, so two stacks sharing a workspace never share blobs)."""
    store = cfg.model_store
    assert store is not None
    parts = [p for p in (store.path_prefix.strip("/"), asset, f"v{version}") if p]
    return "/".join(parts)


def model_version_properties(cfg: AzureMlSettings, model: ResolvedModel, asset: str) -> dict[str, Any]:
    """A ModelVersion of type mlflow_model pointing at the uploaded artifacts on the datastore."""
    store = cfg.model_store
    assert store is not None
    tags = {"mlflow.model.name": model.name, "mlflow.model.version": model.version, "mlflow.source": model.source}
    if model.run_id:
        tags["mlflow.run_id"] = model.run_id
    return {
        "model_type": "mlflow_model",
        "model_uri": f"azureml://datastores/{store.datastore}/paths/{model_store_path(cfg, asset, model.version)}/",
        "description": f"MLflow registry model {model.name} version {model.version}",
        "tags": tags,
        "flavors": {f: {"data": {}} for f in model.flavors},
    }


def scale_in_threshold(target: int) -> int:
    """Remove an instance when CPU is below half the target (hysteresis: never flaps between the
    two rules, since one instance less at < target/2 stays below target with two or more)."""
    return max(1, target // 2)


def autoscale_profile(
    cfg: AzureMlSettings, deployment_id: Any, endpoint_id: Any = None, deployment_name: str | None = None
) -> dict[str, Any]:
    """The Azure Monitor autoscale profile of one deployment (managed online deployments scale
    with Azure Monitor autoscale; ``TargetUtilizationScaleSettings`` are for Kubernetes online
    deployments only).

    ``cpu``: target-utilization rules on the deployment's ``CpuUtilizationPercentage``.
    ``requests``: the endpoint's ``RequestsPerMinute`` filtered to this deployment (its
    ``deployment`` dimension) and divided per instance (MetricTrigger ``dividePerInstance``,
    Azure Monitor autoscale REST API 2022-10-01), so the threshold is per instance."""
    a = cfg.autoscale
    assert a is not None
    requests = a.metric == "requests"
    if requests and (endpoint_id is None or deployment_name is None):
        raise ValueError("autoscale on requests needs the endpoint id and the deployment name")
    target = a.requests_per_minute_per_instance if requests else a.target_utilization

    def rule(operator: str, threshold: int, direction: str, window: str, cooldown: str) -> dict[str, Any]:
        trigger: dict[str, Any] = {
            "metric_name": "CpuUtilizationPercentage",
            "metric_namespace": DEPLOYMENT_METRICS,
            "metric_resource_uri": deployment_id,
            "operator": operator,
            "statistic": "Average",
            "threshold": threshold,
            "time_aggregation": "Average",
            "time_grain": "PT1M",
            "time_window": window,
        }
        if requests:
            trigger.update(
                metric_name="RequestsPerMinute",
                metric_namespace=ENDPOINT_METRICS,
                metric_resource_uri=endpoint_id,
                time_aggregation="Total",
                divide_per_instance=True,
                dimensions=[{"dimension_name": "deployment", "operator": "Equals", "values": [deployment_name]}],
            )
        return {
            "metric_trigger": trigger,
            "scale_action": {"direction": direction, "type": "ChangeCount", "value": "1", "cooldown": cooldown},
        }

    return {
        "name": "requests-per-instance" if requests else "cpu-target-utilization",
        "capacity": {
            "minimum": str(a.min_instances),
            "maximum": str(a.max_instances),
            "default": str(deployment_capacity(cfg)),
        },
        "rules": [
            rule("GreaterThan", target, "Increase", "PT5M", "PT5M"),
            rule("LessThan", scale_in_threshold(target), "Decrease", "PT10M", "PT10M"),
        ],
    }


def error_threshold_per_minute(thresholds: AlertThresholds, cfg: AzureMlSettings) -> float:
    """5xx responses a minute that stand for ``errorRatio`` at the expected traffic. Azure
    metric alerts compare one metric with a static number (no metric math), so the ratio is
    turned into a rate: ``errorRatio`` x ``expectedRequestsPerMinute``, at least 1."""
    return max(1.0, round(thresholds.error_ratio * cfg.expected_requests_per_minute, 2))


def alert_specs(endpoint: str, thresholds: AlertThresholds, cfg: AzureMlSettings) -> dict[str, dict[str, Any]]:
    """The endpoint's metric alerts (by short name): p99 latency and 5xx, split by deployment
    (``deployment`` dimension ``*``) so a failing canary fires on its own."""
    per_deployment = {"name": "deployment", "operator": "Include", "values": ["*"]}
    window = window_size(thresholds.for_)
    return {
        "p99-latency": {
            "description": (f"{endpoint}: p99 request latency above {thresholds.p99_latency_seconds}s for {window}"),
            "severity": 2,
            "window_size": window,
            "criterion": {
                "criterion_type": "StaticThresholdCriterion",
                "name": "p99-latency",
                "metric_namespace": ENDPOINT_METRICS,
                "metric_name": "RequestLatency_P99",
                "operator": "GreaterThan",
                "threshold": round(thresholds.p99_latency_seconds * 1000, 3),  # the metric is in ms
                "time_aggregation": "Average",
                "dimensions": [per_deployment],
            },
        },
        "5xx": {
            "description": (
                f"{endpoint}: 5xx responses above {thresholds.error_ratio:.0%} of "
                f"{cfg.expected_requests_per_minute} requests/min for {window}"
            ),
            "severity": 1,
            "window_size": window,
            "criterion": {
                "criterion_type": "StaticThresholdCriterion",
                "name": "5xx",
                "metric_namespace": ENDPOINT_METRICS,
                "metric_name": "RequestsPerMinute",
                "operator": "GreaterThan",
                "threshold": error_threshold_per_minute(thresholds, cfg),
                "time_aggregation": "Average",
                "dimensions": [
                    per_deployment,
                    {"name": "statusCodeClass", "operator": "Include", "values": ["5xx"]},
                ],
            },
        },
    }


def artifact_blobs(root: Path) -> dict[str, Path]:
    """The files of a downloaded model directory by a resource-name-safe key (sorted, stable):
    ``MLmodel`` -> ``mlmodel``, ``model.pkl`` -> ``model-pkl``; two paths that map to one key
    both get a short hash of their path."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    keys = [dns_label(p.relative_to(root).as_posix(), 40) for p in files]
    out: dict[str, Path] = {}
    for key, p in zip(keys, files, strict=True):
        if keys.count(key) > 1:
            key = f"{key}-{hashlib.sha256(p.relative_to(root).as_posix().encode()).hexdigest()[:6]}"
        out[key] = p
    return out


# --------------------------------------------------------------------------- the component


@dataclass
class AzureMlModelEndpointArgs:
    model_name: str
    plan: TrafficPlan
    settings: AzureMlSettings
    stack: str
    models: Mapping[str, ResolvedModel]
    """The resolved registry model of every live version: built into images (``modelSource:
    image``) or uploaded as artifacts (``mlflow_model``)."""
    image: ImageSettings
    registry_password: pulumi.Input[str] | None = None
    """Login for ``image.repository`` when the images go there rather than to the workspace's ACR."""
    thresholds: AlertThresholds | None = None
    """Alert thresholds; None: no alerts (monitoring disabled)."""
    drift: DriftSettings | None = None
    """``monitoring.drift`` when enabled: data collection, the scheduled monitor job, its alerts."""
    build_root: Path | None = None
    """Where mlflow_model artifacts are downloaded before upload; default ``$MLFLOW_DEPLOY_BUILD_DIR``
    or ``./build``."""


class AzureMlModelEndpoint(pulumi.ComponentResource):
    """Outputs: ``endpoint_name``, ``scoring_uri``, ``deployments`` (version -> Azure name),
    ``live_versions``, ``traffic``, ``mirror_traffic``."""

    def __init__(self, name: str, args: AzureMlModelEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-deploy:index:AzureMlModelEndpoint", name, None, opts)
        cfg, plan, model = args.settings, args.plan, args.model_name
        image_mode = cfg.model_source == "image"
        missing = [v for v in plan.versions if v not in args.models]
        if missing:
            raise ValueError(f"no resolved model for version(s) {', '.join(missing)}")
        images: Mapping[str, pulumi.Input[str]] = {}
        if image_mode:
            # the workspace pulls from its own ACR (pushed with the local `az acr login`), or
            # from image.repository with the image registry login
            own_acr = cfg.container_registry is not None
            images = registry_images(
                "azureml",
                {v: args.models[v] for v in plan.versions},
                args.image,
                cfg.container_registry or args.image.repository,
                opts=pulumi.ResourceOptions(parent=self),
                registry_username=None if own_acr else args.image.registry_username,
                registry_password=None if own_acr else args.registry_password,
                gpu=cfg.gpus > 0,
            )
        traffic, mirror = traffic_maps(model, plan)

        base = base_name(model)
        prefix = f"azureml-{base}"
        child = pulumi.ResourceOptions(parent=self)
        if cfg.subscription_id:
            provider = azure_native.Provider(
                f"{prefix}-provider", subscription_id=cfg.subscription_id, location=cfg.location, opts=child
            )
            child = pulumi.ResourceOptions(parent=self, provider=provider)
        ws = {"resource_group_name": cfg.resource_group, "workspace_name": cfg.workspace}
        tags = {"managed-by": "mlflow-deploy", "mlflow-model": model, **cfg.tags}

        ep_name = endpoint_name(model, args.stack, cfg)
        collector = None
        if args.drift is not None and args.drift.enabled:
            from components.azureml_quality import data_collector

            collector = data_collector(args.drift)
        ep_props = endpoint_properties(cfg, model)
        endpoint = ml.OnlineEndpoint(
            prefix,
            endpoint_name=ep_name,
            location=cfg.location,
            identity={"type": "SystemAssigned"},
            properties=ml.OnlineEndpointPropertiesArgs(**ep_props),
            tags=tags,
            **ws,
            opts=pulumi.ResourceOptions.merge(
                child,
                # EndpointTraffic owns these; the endpoint must not reset them on its next update
                pulumi.ResourceOptions(ignore_changes=["properties.traffic", "properties.mirrorTraffic"]),
            ),
        )

        self.deployments: dict[str, ml.OnlineDeployment] = {}
        for v in plan.versions:
            dname = deployment_name(model, v)
            rname = f"azureml-{version_name(model, v)}"
            if image_mode:
                ref = pulumi.Output.from_input(images[v])
                env = ml.EnvironmentVersion(
                    f"{rname}-env",
                    name=ep_name,
                    version=ref.apply(functools.partial(environment_version, v)),
                    properties=ml.EnvironmentVersionPropertiesArgs(**environment_properties(model, v, ref)),
                    **ws,
                    opts=child,
                )
                props = deployment_properties(model, v, cfg, environment_id=env.id, data_collector=collector)
            else:
                resolved = args.models[v]
                blobs = self._upload_artifacts(rname, resolved, cfg, ep_name, args.build_root, child)
                mv = ml.ModelVersion(
                    f"{rname}-model",
                    name=ep_name,
                    version=v,
                    properties=ml.ModelVersionPropertiesArgs(**model_version_properties(cfg, resolved, ep_name)),
                    **ws,
                    opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=blobs)),
                )
                props = deployment_properties(model, v, cfg, model_id=mv.id, data_collector=collector)
            dep_opts = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[endpoint]))
            if cfg.autoscale is not None:
                # the autoscale setting owns the instance count from here on
                dep_opts = pulumi.ResourceOptions.merge(
                    dep_opts, pulumi.ResourceOptions(ignore_changes=["sku.capacity"])
                )
            deployment = ml.OnlineDeployment(
                rname,
                endpoint_name=ep_name,
                deployment_name=dname,
                location=cfg.location,
                sku={"name": "Default", "capacity": deployment_capacity(cfg)},
                properties=ml.ManagedOnlineDeploymentArgs(**props),
                tags=tags,
                **ws,
                opts=dep_opts,
            )
            self.deployments[v] = deployment
            if cfg.autoscale is not None:
                profile = autoscale_profile(cfg, deployment.id, endpoint.id, dname)
                monitor.AutoscaleSetting(
                    f"{rname}-autoscale",
                    autoscale_setting_name=f"{ep_name}-{dname}-autoscale",
                    resource_group_name=cfg.resource_group,
                    location=cfg.location,
                    enabled=True,
                    target_resource_uri=deployment.id,
                    profiles=[profile],
                    tags=tags,
                    opts=child,
                )

        self.traffic_resource = EndpointTraffic(
            f"{prefix}-traffic",
            endpoint_id=endpoint.id,
            traffic=traffic,
            mirror_traffic=mirror,
            revision=endpoint_revision({**ep_props, "tags": tags, "endpointName": ep_name}),
            # the api-version azure-native manages the endpoint with: a GET/PUT at another one would
            # drop (or reset) every property that version does not know
            api_version=endpoint.azure_api_version.apply(lambda v: v or API_VERSION),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.deployments.values())),
        )

        if args.thresholds is not None:
            for short, spec in alert_specs(ep_name, args.thresholds, cfg).items():
                metric_alert(
                    f"{prefix}-{short}-alert",
                    rule_name=f"{ep_name}-{short}",
                    cfg=cfg,
                    spec=spec,
                    criteria=[spec["criterion"]],
                    scope=endpoint.id,
                    evaluation_frequency="PT1M",
                    tags=tags,
                    opts=child,
                )

        self.quality: Any = None
        if args.drift is not None and args.drift.enabled:
            from components.azureml_quality import AzureMlModelQuality, AzureMlModelQualityArgs

            self.quality = AzureMlModelQuality(
                f"{prefix}-quality",
                AzureMlModelQualityArgs(
                    model_name=model, plan=plan, settings=cfg, drift=args.drift,
                    thresholds=args.thresholds or AlertThresholds(),
                    endpoint_name=ep_name, endpoint_id=endpoint.id,
                    deployments={v: deployment_name(model, v) for v in plan.versions}, tags=tags,
                    after=list(self.deployments.values()),
                ),
                opts=child,
            )  # fmt: skip

        self.endpoint = endpoint
        self.endpoint_name = ep_name
        self.scoring_uri: pulumi.Output[str] = endpoint.properties.apply(_scoring_uri)
        self.deployment_names = {v: deployment_name(model, v) for v in plan.versions}
        self.live_versions = list(plan.versions)
        self.traffic = traffic
        self.mirror_traffic = mirror
        self.register_outputs(
            {
                "endpointName": ep_name,
                "scoringUri": self.scoring_uri,
                "deployments": self.deployment_names,
                "liveVersions": self.live_versions,
                "traffic": traffic,
                "mirrorTraffic": mirror,
            }
        )

    def _upload_artifacts(
        self,
        rname: str,
        model: ResolvedModel,
        cfg: AzureMlSettings,
        asset: str,
        build_root: Path | None,
        child: pulumi.ResourceOptions,
    ) -> list[pulumi.Resource]:
        """Download the registry artifacts (at preview, like an image build context) and declare
        one block blob per file under the datastore path the ModelVersion points at."""
        store = cfg.model_store
        assert store is not None
        root = build_root or Path(os.environ.get("MLFLOW_DEPLOY_BUILD_DIR", PROJECT_ROOT / "build"))
        local = download_model(model, root / "azureml" / version_name(model.name, model.version))
        prefix = model_store_path(cfg, asset, model.version)
        blobs: list[pulumi.Resource] = []
        for rel, f in artifact_blobs(local).items():
            blobs.append(
                storage.Blob(
                    f"{rname}-artifact-{rel}",
                    account_name=store.storage_account,
                    container_name=store.container,
                    resource_group_name=store.resource_group or cfg.resource_group,
                    blob_name=f"{prefix}/{f.relative_to(local).as_posix()}",
                    type=storage.BlobType.BLOCK,
                    source=pulumi.FileAsset(str(f)),
                    opts=child,
                )
            )
        return blobs


def _scoring_uri(props: Any) -> str:
    uri = getattr(props, "scoring_uri", None)
    if not uri and isinstance(props, dict):
        uri = props.get("scoring_uri") or props.get("scoringUri")
    return str(uri) if uri else "(assigned by Azure when the endpoint is created)"
