"""Settings of the Azure ML target (``mlflow-deploy:azureml``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from components.gpu import azureml_gpus
from components.settings_base import (
    _KeyedError,
    _Model,
)

# --------------------------------------------------------------------------- azure ml

# Online endpoint names: 3-32 characters, a letter first, letters/digits/'-' (unique per region).
_AZUREML_ENDPOINT = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
AZUREML_MAX_MIRROR_PERCENT = 50
"""Azure ML mirrors at most 50% of an endpoint's traffic (sum of ``mirror_traffic``)."""


class AzureMlAutoscaleSettings(_Model):
    """Azure Monitor autoscale per deployment: on its CPU utilization (``metric: cpu``) or on the
    requests a minute it answers per instance (``metric: requests``: the endpoint's
    ``RequestsPerMinute`` for that deployment, divided per instance)."""

    metric: Literal["cpu", "requests"] = "cpu"
    min_instances: int = Field(default=1, ge=1)
    max_instances: int = Field(default=3, ge=1)
    target_utilization: int = Field(default=70, ge=10, le=95)
    """``cpu``: average CPU percent: above it an instance is added, well below it one is removed."""
    requests_per_minute_per_instance: int = Field(default=600, ge=1)
    """``requests``: requests a minute per instance: above it an instance is added, below half of
    it one is removed."""

    @model_validator(mode="after")
    def _min_le_max(self) -> AzureMlAutoscaleSettings:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"minInstances ({self.min_instances}) is greater than maxInstances ({self.max_instances})"
            )
        return self


class AzureMlModelStoreSettings(_Model):
    """``modelSource: mlflow_model``: where the registry's artifacts are uploaded for Azure ML.

    The storage account/container behind ``datastore`` (by default the workspace's
    ``workspaceblobstore``); the ModelVersion points at ``azureml://datastores/<datastore>/paths/…``.
    """

    storage_account: str = Field(min_length=3)
    container: str = Field(min_length=3)
    datastore: str = Field(default="workspaceblobstore", min_length=1)
    resource_group: str | None = None
    """The storage account's resource group; default ``azureml.resourceGroup``."""
    path_prefix: str = "mlflow-deploy"


class AzureMlMonitorSettings(_Model):
    """``monitoring.drift`` on Azure ML: where the deployments' data collection lands and what the
    scheduled monitor job (a Container Apps job) runs in. See docs/quality.md."""

    storage_account_id: str = Field(
        pattern=r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Storage/storageAccounts/[a-z0-9]{3,24}$"
    )
    """ARM id of the workspace's default storage account (the ``workspaceblobstore`` datastore's
    account), where data collection writes ``modelDataCollector/<endpoint>/<deployment>/...``."""
    container: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
    """The ``workspaceblobstore`` container (``azureml-blobstore-<workspace id>``)."""
    environment_id: str | None = Field(
        default=None,
        pattern=r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.App/managedEnvironments/[^/]+$",
    )
    """An existing Container Apps environment for the monitor job; default: the stack declares one."""
    registry_id: str | None = Field(
        default=None,
        pattern=r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerRegistry/registries/[^/]+$",
    )
    """ARM id of the ACR holding ``monitoring.drift.image``: the job's identity gets AcrPull there
    and pulls with it. Unset: the image must be pullable without credentials."""

    @property
    def storage_account(self) -> str:
        return self.storage_account_id.rsplit("/", 1)[1]


class AzureMlSettings(_Model):
    """Azure ML managed online endpoint (the target is on when the key is present)."""

    subscription_id: str | None = None
    """Default: the azure-native provider's (``azure-native:subscriptionId`` / az CLI login)."""
    resource_group: str = Field(min_length=1)
    workspace: str = Field(min_length=1)
    location: str = Field(min_length=1)
    """The workspace's region, e.g. ``westeurope``."""
    endpoint_name: str | None = None
    """Default ``<model>-<stack>`` (cut to 32 characters). Unique within the region."""
    model_source: Literal["image", "mlflow_model"] = "image"
    """``image``: the project's image per version (an EnvironmentVersion, /ping and /invocations on
    8080), as on every other target. ``mlflow_model``: a ModelVersion of type mlflow_model uploaded
    from the registry artifacts, served by Azure's own MLflow runtime."""
    container_registry: str | None = None
    """Image mode: login server the image is pushed to and the workspace pulls from, e.g. the
    workspace's ACR ``acmeml.azurecr.io``; default ``image.repository``."""
    model_store: AzureMlModelStoreSettings | None = None
    instance_type: str = Field(default="Standard_DS3_v2", min_length=1)
    instance_count: int = Field(default=1, ge=1)
    """Instances per deployment (the deployment's sku capacity); Azure advises 3+ in production."""
    auth_mode: Literal["key", "aad_token"] = "key"
    public_network_access: bool = True
    request_timeout_seconds: int = Field(default=60, ge=1, le=180)
    container_startup_timeout_seconds: int = Field(default=600, ge=60, le=3600)
    """How long a new instance may take to load the model and answer /ping (the startup probe's
    budget; liveness is on /version, which answers during the load)."""
    max_concurrent_requests_per_instance: int = Field(default=2, ge=1)
    workers: int | None = Field(default=None, ge=1)
    """Serving workers per instance (image mode); default: one per GPU on a GPU size, else the
    instance's CPU count."""
    gpu: bool | None = None
    """Serve on the VM size's GPUs (CUDA image, one worker per GPU). Default: on exactly when
    ``instanceType`` is a GPU size (``Standard_NC*``/``ND*``); ``true`` with a CPU size is an error."""
    batch_max_size: int = Field(default=0, ge=0, le=1024)
    """Adaptive batching: concurrent requests merged into one predict, at most this many
    (``SERVING_BATCH_MAX_SIZE``); 0 = off. Only for models that predict rows independently."""
    batch_max_wait_ms: float | None = Field(default=None, ge=0, le=1000)
    """Adaptive batching: longest a request waits for others (``SERVING_BATCH_MAX_WAIT_MS``);
    default: the runtime's (2 ms)."""
    app_insights: bool = False
    autoscale: AzureMlAutoscaleSettings | None = None
    action_group_id: str | None = None
    """ARM id of an existing Azure Monitor action group the alerts notify."""
    expected_requests_per_minute: int = Field(default=600, ge=1)
    """Traffic the 5xx alert is scaled to: it fires above ``errorRatio`` x this many 5xx a minute."""
    tags: dict[str, str] = Field(default_factory=dict)
    monitor: AzureMlMonitorSettings | None = None
    """``monitoring.drift``: the data collection's storage and the monitor job's environment."""

    @field_validator("endpoint_name")
    @classmethod
    def _endpoint_name(cls, v: str | None) -> str | None:
        if v is not None and not _AZUREML_ENDPOINT.match(v):
            raise ValueError(
                f"an online endpoint name is 3-32 letters, digits or '-', starting with a letter (got {v!r})"
            )
        return v

    @property
    def gpus(self) -> int:
        """GPUs per instance the serving container uses (0: CPU serving)."""
        return 0 if self.gpu is False else azureml_gpus(self.instance_type)

    @model_validator(mode="after")
    def _gpu(self) -> AzureMlSettings:
        try:
            n = azureml_gpus(self.instance_type)
        except ValueError as exc:
            raise _KeyedError("azureml.instanceType", str(exc)) from None
        if self.gpu and n == 0:
            raise _KeyedError(
                "azureml.gpu",
                f"{self.instance_type} has no GPU; pick a GPU size (Standard_NC4as_T4_v3, "
                "Standard_NC6s_v3, Standard_NC24ads_A100_v4, ...)",
            )
        return self

    @model_validator(mode="after")
    def _combinations(self) -> AzureMlSettings:
        if self.model_source == "mlflow_model" and self.model_store is None:
            raise _KeyedError(
                "azureml.modelStore",
                "modelSource 'mlflow_model' needs 'modelStore' (the storage account/container the "
                "registry artifacts are uploaded to)"
            )
        if self.model_source == "mlflow_model" and (self.batch_max_size or self.batch_max_wait_ms is not None):
            key = "azureml.batchMaxSize" if self.batch_max_size else "azureml.batchMaxWaitMs"
            raise _KeyedError(
                key,
                "adaptive batching is the serving runtime's: it needs modelSource 'image' (Azure's own "
                "MLflow server does not batch)",
            )
        return self


