"""Turn settings + TrafficPlan + resolved models into the target components.

Kept out of ``__main__.py`` so the program stays a short read, and so tests can declare one
target at a time. Each target is on when its config key is present.
"""

from __future__ import annotations

import os
from typing import Any

import pulumi

from components.names import base_name
from components.registry import ResolvedModel
from components.rollout import TrafficPlan
from components.settings import Settings


def apply_secrets(config: pulumi.Config) -> None:
    """The registry token is needed by this process (to resolve the model), not by a resource:
    hand it to MLflow through its environment variable."""
    token = config.get("mlflowTrackingToken")
    if token:
        os.environ.setdefault("MLFLOW_TRACKING_TOKEN", token)


def keda_prometheus_address(settings: Settings) -> str | None:
    """The Prometheus KEDA's triggers query, when the Kubernetes target autoscales on requests."""
    k = settings.kubernetes
    if k is None or k.autoscaling is None or not k.autoscaling.keda:
        return None
    from components.autoscaling import default_prometheus_address

    return k.autoscaling.prometheus_address or default_prometheus_address(settings.monitoring.stack_namespace)


def gpu_requests(settings: Settings) -> dict[str, str]:
    """Targets that serve on GPUs: target -> the config key of the request (what to change)."""
    out = {}
    if settings.kubernetes is not None and settings.kubernetes.gpu is not None:
        out["kubernetes"] = "kubernetes.gpu"
    if settings.sagemaker is not None and settings.sagemaker.gpus > 0:
        out["sagemaker"] = "sagemaker.gpu" if settings.sagemaker.gpu else "sagemaker.instanceType"
    if settings.azureml is not None and settings.azureml.model_source == "image" and settings.azureml.gpus > 0:
        out["azureml"] = "azureml.gpu" if settings.azureml.gpu else "azureml.instanceType"
    if settings.vertex is not None and settings.vertex.gpus > 0:
        out["vertex"] = "vertex.acceleratorType"
    return out


def check_gpu_images(settings: Settings, models: dict[str, ResolvedModel]) -> None:
    """SettingsError (naming the key) when a target asks for GPUs and a live version's image
    cannot use them (components/gpu.py): before any resource is declared."""
    from components.image import gpu_image_errors
    from components.settings_base import SettingsError

    errors: list[tuple[str, str]] = []
    for key in gpu_requests(settings).values():
        errors += [e for e in gpu_image_errors(models, settings.image, key) if e not in errors]
    if errors:
        raise SettingsError(errors)


def declare(
    settings: Settings,
    plan: TrafficPlan,
    models: dict[str, ResolvedModel],
    config: pulumi.Config,
) -> dict[str, Any]:
    """Declare every enabled target (and its monitoring); return the stack exports."""
    check_gpu_images(settings, models)
    exports: dict[str, Any] = {}
    name = settings.model.name
    base = base_name(name)
    drift = settings.monitoring.drift
    reference = None
    if drift.enabled:
        # before any resource, on every target: a reference that cannot be loaded is a config error
        from components.quality import load_reference

        reference = load_reference(drift, settings.mlflow.tracking_uri)

    if settings.kubernetes is not None:
        from components.kubernetes import KubernetesModelService, KubernetesModelServiceArgs

        capture = None
        if drift.enabled:
            from components.quality import capture_target

            capture = capture_target(name, settings.kubernetes.namespace, drift)
        metrics_ns = settings.monitoring.stack_namespace if settings.monitoring.enabled else None

        k8s_svc = KubernetesModelService(
            base,
            KubernetesModelServiceArgs(
                model_name=name,
                plan=plan,
                models=models,
                settings=settings.kubernetes,
                image=settings.image,
                registry_password=config.get_secret("imageRegistryPassword"),
                metrics_namespace=metrics_ns,
                capture=capture,
                keda_prometheus_address=keda_prometheus_address(settings),
            ),
        )
        exports["kubernetes"] = {
            "url": k8s_svc.url,
            "serviceDns": k8s_svc.service_dns,
            "namespace": k8s_svc.namespace,
            "liveVersions": k8s_svc.live_versions,
        }
        k8s_mon = None
        if settings.monitoring.enabled:
            from components.monitoring import ModelMonitoring, ModelMonitoringArgs

            extra_alerts, extra_rows = [], []
            thresholds = settings.monitoring.thresholds
            if drift.enabled:
                from components.monitoring_quality import quality_alert_rules, quality_rows

                extra_alerts = quality_alert_rules(name, settings.kubernetes.namespace, plan, thresholds, drift)
                extra_rows = quality_rows(name, settings.kubernetes.namespace, thresholds)
            if settings.kubernetes.gpu is not None:
                from components.monitoring_gpu import gpu_alert_rules, gpu_rows

                extra_alerts += gpu_alert_rules(name, settings.kubernetes.namespace, thresholds)
                extra_rows += gpu_rows(name, settings.kubernetes.namespace)
            k8s_mon = ModelMonitoring(
                f"{base}-monitoring",
                ModelMonitoringArgs(
                    model_name=name,
                    plan=plan,
                    namespace=k8s_svc.namespace,
                    settings=settings.monitoring,
                    after=list(k8s_svc.deployments.values()),
                    extra_alerts=extra_alerts,
                    extra_rows=extra_rows,
                ),
                opts=k8s_svc.child_opts,
            )
            exports["kubernetes"]["monitoring"] = k8s_mon.exports
        if drift.enabled:
            from components.quality import ModelQualityMonitor, ModelQualityMonitorArgs

            quality = ModelQualityMonitor(
                f"{base}-quality",
                ModelQualityMonitorArgs(
                    model_name=name,
                    plan=plan,
                    namespace=k8s_svc.namespace,
                    drift=drift,
                    kubernetes=settings.kubernetes,
                    service_account=k8s_svc.service_name,
                    reference=reference,
                    repository=settings.image.repository,
                    platform=settings.image.platform,
                    push=settings.image.push,
                    registry_username=settings.image.registry_username,
                    registry_password=config.get_secret("imageRegistryPassword"),
                    tracking_uri=settings.mlflow.tracking_uri,
                    metrics_namespace=metrics_ns,
                    pod_monitor=k8s_mon.labels if k8s_mon is not None else None,
                    scrape_interval=settings.monitoring.scrape_interval,
                    drift_share=settings.monitoring.thresholds.drift_share,
                    after=list(k8s_svc.deployments.values()),
                    crd_deps=k8s_mon.crd_deps if k8s_mon is not None else [],
                ),
                opts=k8s_svc.child_opts,
            )
            exports["kubernetes"]["quality"] = {
                "monitorService": quality.service_name,
                "captureUrl": quality.capture_url,
            }

    if settings.sagemaker is not None:
        from components.sagemaker import SageMakerModelService, SageMakerModelServiceArgs

        sm_svc = SageMakerModelService(
            f"{base}-sagemaker",
            SageMakerModelServiceArgs(
                model_name=name,
                plan=plan,
                settings=settings.sagemaker,
                models=models,
                image=settings.image,
                thresholds=settings.monitoring.thresholds,
                dashboard=settings.monitoring.enabled,
                drift=settings.monitoring.drift if settings.monitoring.drift.enabled else None,
            ),
        )
        exports["sagemaker"] = sm_svc.exports
    if settings.azureml is not None:
        from components.azureml import AzureMlModelEndpoint, AzureMlModelEndpointArgs

        az_svc = AzureMlModelEndpoint(
            f"{base}-azureml",
            AzureMlModelEndpointArgs(
                model_name=name,
                plan=plan,
                settings=settings.azureml,
                stack=pulumi.get_stack(),
                models=models,
                image=settings.image,
                registry_password=config.get_secret("imageRegistryPassword"),
                thresholds=settings.monitoring.thresholds if settings.monitoring.enabled else None,
                drift=settings.monitoring.drift if settings.monitoring.drift.enabled else None,
            ),
        )
        exports["azureml"] = {
            "endpointName": az_svc.endpoint_name,
            "scoringUri": az_svc.scoring_uri,
            "deployments": az_svc.deployment_names,
            "liveVersions": az_svc.live_versions,
            "traffic": az_svc.traffic,
            "mirrorTraffic": az_svc.mirror_traffic,
        }
        if az_svc.quality is not None:
            exports["azureml"]["quality"] = az_svc.quality.exports
    if settings.vertex is not None:
        from components.vertex import VertexModelService, VertexModelServiceArgs

        vx_svc = VertexModelService(
            f"{base}-vertex",
            VertexModelServiceArgs(
                model_name=name,
                plan=plan,
                models=models,
                settings=settings.vertex,
                image=settings.image,
                thresholds=settings.monitoring.thresholds if settings.monitoring.enabled else None,
                drift=settings.monitoring.drift if settings.monitoring.drift.enabled else None,
            ),
        )
        exports["vertex"] = {
            "endpointId": vx_svc.endpoint_id,
            "endpointName": vx_svc.endpoint_name,
            "predictUrl": vx_svc.predict_url,
            "liveVersions": vx_svc.live_versions,
            "traffic": vx_svc.traffic,
            "deployedModels": vx_svc.deployed_models,
            "imageRepository": vx_svc.image_repository,
        }
        if vx_svc.quality is not None:
            exports["vertex"]["quality"] = vx_svc.quality.exports
    return exports
