"""Turn settings + TrafficPlan + resolved models into the target components.

Kept out of ``__main__.py`` so the program stays a short read, and so tests can declare one
target at a time. Each target is on when its config key is present.
"""

from __future__ import annotations

import os
from typing import Any

import pulumi

from components.image import ModelImage, ModelImageArgs
from components.names import base_name, version_name
from components.registry import ResolvedModel
from components.rollout import TrafficPlan
from components.settings import ImageSettings, Settings


def apply_secrets(config: pulumi.Config) -> None:
    """The registry token is needed by this process (to resolve the model), not by a resource:
    hand it to MLflow through its environment variable."""
    token = config.get("mlflowTrackingToken")
    if token:
        os.environ.setdefault("MLFLOW_TRACKING_TOKEN", token)


def model_images(
    prefix: str,
    models: dict[str, ResolvedModel],
    image: ImageSettings,
    repository: pulumi.Input[str] | None,
    opts: pulumi.ResourceOptions | None = None,
    registry_address: pulumi.Input[str] | None = None,
    registry_username: pulumi.Input[str] | None = None,
    registry_password: pulumi.Input[str] | None = None,
) -> dict[str, pulumi.Output[str]]:
    """One ModelImage per live version; ``image.uris`` versions are prebuilt, the rest built."""
    out: dict[str, pulumi.Output[str]] = {}
    for version, model in models.items():
        img = ModelImage(
            f"{prefix}-{version_name(model.name, version)}",
            ModelImageArgs(
                model=model,
                repository=repository,
                prebuilt_uri=image.uris.get(version),
                base_image=image.base_image,
                platform=image.platform,
                push=image.push,
                registry_address=registry_address,
                registry_username=registry_username,
                registry_password=registry_password,
            ),
            opts=opts,
        )
        out[version] = img.ref
    return out


def declare(
    settings: Settings,
    plan: TrafficPlan,
    models: dict[str, ResolvedModel],
    config: pulumi.Config,
) -> dict[str, Any]:
    """Declare every enabled target (and its monitoring); return the stack exports."""
    exports: dict[str, Any] = {}
    name = settings.model.name
    base = base_name(name)

    if settings.kubernetes is not None:
        from components.kubernetes import KubernetesModelService, KubernetesModelServiceArgs

        repo = settings.image.repository
        password = config.get_secret("imageRegistryPassword")
        images = model_images(
            "k8s",
            models,
            settings.image,
            f"{repo.rstrip('/')}/{base}" if repo else None,
            registry_address=repo.split("/")[0] if repo else None,
            registry_username=settings.image.registry_username,
            registry_password=password,
        )
        k8s_svc = KubernetesModelService(
            base,
            KubernetesModelServiceArgs(model_name=name, plan=plan, images=images, settings=settings.kubernetes),
        )
        exports["kubernetes"] = {
            "url": k8s_svc.url,
            "serviceDns": k8s_svc.service_dns,
            "namespace": k8s_svc.namespace,
            "liveVersions": k8s_svc.live_versions,
        }
        # monitoring for Kubernetes: see components/monitoring.py (issue 5)

    # sagemaker: components/sagemaker.py (issue 6)
    # azureml: components/azureml.py (issue 7)
    # vertex: components/vertex.py (issue 8)
    return exports
