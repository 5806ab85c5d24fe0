"""Stack configs the SageMaker tests render (shared by the test_sagemaker_* modules)."""

from __future__ import annotations

from typing import Any

from modelctl.sample import SampleRegistry
from tests.conftest import base_config

SM: dict[str, Any] = {"region": "eu-west-1", "instanceCount": 2}
"""A minimal SageMaker target."""

SCENARIOS: dict[str, dict[str, Any]] = {
    "none": {},
    "canary": {"candidate": {"version": "2", "strategy": "canary", "percent": 10}},
    "blue-green-0": {"candidate": {"version": "2", "strategy": "blue-green", "percent": 0}},
    "blue-green-100": {"candidate": {"version": "2", "strategy": "blue-green", "percent": 100}},
    "shadow": {"candidate": {"version": "2", "strategy": "shadow", "percent": 30}},
}
"""Every rollout strategy, stable version 1 and candidate 2."""

FULL_SAGEMAKER: dict[str, Any] = {
    "region": "eu-west-1",
    "endpointName": "fraud-prod",
    "instanceType": "ml.c5.xlarge",
    "instanceCount": 4,
    "candidateInstanceCount": 2,
    "workers": 2,
    "volumeSizeGb": 30,
    "dataCapture": {
        "destinationS3Uri": "s3://acme-ml-capture/fraud-detector/",
        "samplingPercent": 20,
        "kmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    },
    "deployment": {
        "type": "CANARY",
        "canarySize": {"type": "CAPACITY_PERCENT", "value": 25},
        "waitIntervalSeconds": 600,
        "terminationWaitSeconds": 300,
        "maximumExecutionTimeoutSeconds": 3600,
    },
    "autoscaling": {"minInstances": 2, "maxInstances": 8, "includeCandidate": True},
    "alarms": {"actions": ["arn:aws:sns:eu-west-1:123456789012:ml-oncall"]},
    "tags": {"team": "risk"},
}
"""Every option on."""


def sm_config(registry: SampleRegistry, sagemaker: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The SageMaker target alone (Kubernetes off), plus ``extra`` top-level keys."""
    cfg = base_config(registry, kubernetes=None, sagemaker=sagemaker or SM)
    for key, value in extra.items():
        cfg[f"mlflow-deploy:{key}"] = value
    return cfg


def full_config(registry: SampleRegistry) -> dict[str, Any]:
    """Every SageMaker option, a 25% canary, monitoring on, beside the Kubernetes target."""
    return base_config(
        registry,
        sagemaker=FULL_SAGEMAKER,
        candidate={"version": "2", "strategy": "canary", "percent": 25},
        monitoring={"enabled": True},
    )


def config(**sagemaker: Any) -> dict[str, Any]:
    """A stack config with the SageMaker target and these ``sagemaker`` keys (for settings tests)."""
    return {
        "mlflow-deploy:model": {"name": "fraud-detector", "version": "7"},
        "mlflow-deploy:sagemaker": {"region": "us-east-1", **sagemaker},
    }


def errors_of(cfg: dict[str, Any]) -> dict[str, str]:
    """key path -> message of the SettingsError the config raises."""
    import pytest

    from components.settings import SettingsError, parse_settings

    with pytest.raises(SettingsError) as info:
        parse_settings(cfg)
    return dict(info.value.errors)
