"""Vertex AI model upload, deployment and traffic split, as Pulumi dynamic resources.

No Pulumi or Terraform resource uploads a custom-container model to Vertex AI or deploys it to an
endpoint (terraform-provider-google issues 25152 and 15303), so this module provides two:

* :class:`VertexModelDeployment` (one per live model version): uploads the version's model
  (container spec: the project's image, port 8080, ``/invocations``, ``/ping``) and deploys it to
  the endpoint with its machine type and replica range.
* :class:`VertexTrafficSplit` (one per endpoint): sets the endpoint's traffic split from the
  TrafficPlan. The ``gcp.vertex.AiEndpoint`` ignores changes to ``traffic_split`` so the two
  don't fight.

Both providers talk to Vertex AI through :class:`VertexApi`, a small protocol over the handful of
aiplatform calls they use; :class:`AiplatformApi` implements it with google-cloud-aiplatform
(imported lazily, so rendering the program and the tests need no credentials), and tests hand the
providers a fake.

Idempotency: the IDs are derived from the inputs, not assigned by Vertex: the model ID is
``<model>-v<version>-<hash of the container spec>`` and the deployed model ID a 10-digit number
hashed from the endpoint, the model ID and the immutable deployment fields. Every operation first
reads what exists and does only what is missing, so re-running ``pulumi up`` after a partial
failure (model uploaded, deploy failed; undeployed, model delete failed) converges instead of
duplicating or failing on "already exists".

Replacement rule: a replacement is create(new) then delete(old). If the new resource had the
old one's identity, create would find everything in place and delete would then undeploy and
delete that same live model. So the diff replaces only when the identity changes (``IDENTITY_KEYS``:
project, region, endpoint, model ID, deployed model ID), every input that cannot change in place
is hashed into those IDs (``HASHED_KEYS``: container -> model ID; machine type and service account ->
deployed model ID; ``check`` refuses inputs whose IDs do not match them), and everything else is
updated in place: min/max replicas and the autoscaling targets (``mutate_deployed_model``), the model's
labels and display name (``update_model``), the version and network marks (state only).
Public and PSC endpoints replace create-before-delete: Pulumi deploys the new one, moves traffic to
it (the VertexTrafficSplit depends on it), then undeploys the old one. A VPC-peered private
endpoint (``network``) holds one deployed model: there the replacement is delete-first.

The providers are pickled into the state by reference to this module (not by value), so a fix
here applies to existing resources. ``pulumi`` runs the dynamic provider host in the project
directory, where ``components`` is importable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pulumi
import pulumi.dynamic as dyn
from pulumi.runtime import rpc

from components.names import version_name

CPU_METRIC = "aiplatform.googleapis.com/prediction/online/cpu/utilization"
DUTY_CYCLE_METRIC = "aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle"
REQUEST_COUNT_METRIC = "aiplatform.googleapis.com/prediction/online/request_count"
TARGET_KEYS = {
    "targetCpuUtilization": CPU_METRIC,
    "targetDutyCycle": DUTY_CYCLE_METRIC,
    "targetRequestsPerMinute": REQUEST_COUNT_METRIC,
}
"""Autoscaling inputs -> the AutoscalingMetricSpec.metric_name each sets (the three "Supported
metrics: For Online Prediction" of aiplatform_v1/types/machine_resources.py AutoscalingMetricSpec).
CPU and duty cycle targets are percent (1-100); the request count target is requests per minute
per replica (google-cloud-aiplatform 2.7.0, aiplatform/models.py ``Endpoint._deploy_call``:
"autoscaling_target_request_count_per_minute (int): Optional. Target request count per minute per
instance", sent as ``AutoscalingMetricSpec(metric_name=".../request_count", target=...)``). A key
is present only when its metric is used, so a CPU deployment has the inputs it always had."""
OPERATION_TIMEOUT_SECONDS = 3600
"""A deploy can take 20-30 minutes (replicas start, image pulled, health route answers)."""
NEW_DEPLOYED_MODEL = "0"
"""In a deploy request's traffic split, the key that stands for the model being deployed."""

MUTABLE_KEYS = frozenset({"minReplicas", "maxReplicas", *TARGET_KEYS})
"""Mutated on the deployed model (MutateDeployedModelRequest: "Only the following fields can be
mutated: min_replica_count, max_replica_count, ... autoscaling_metric_specs", google-cloud-aiplatform
aiplatform_v1/types/endpoint_service.py)."""
MODEL_KEYS = frozenset({"labels", "displayName"})
"""Updated on the model (ModelService.UpdateModel, REST ``models.patch`` with an update mask:
"Supported model fields: display_name, description ... Labels are supported", aiplatform_v1
ModelServiceClient.update_model). A DeployedModel has no labels of its own (its only label map,
``system_labels``, is Google's, for Model Garden), so nothing is redeployed for them."""
STATE_KEYS = frozenset({"version", "network"})
"""Recorded, nothing to call: the version is part of the model ID (its name and its container env);
``network`` marks a VPC-peered private endpoint (replacements there are delete-first)."""
IDENTITY_KEYS = ("project", "region", "endpoint", "modelId", "deployedModelId")
"""What names the live objects: a change of any of these, and only these, is a replacement."""
HASHED_KEYS = {
    "container": "modelId",
    "machineType": "deployedModelId",
    "serviceAccount": "deployedModelId",
    "acceleratorType": "deployedModelId",
    "acceleratorCount": "deployedModelId",
}
"""Inputs that cannot change in place, and the ID each is hashed into (checked by ``check``)."""
DEPLOYMENT_KEYS = (
    "project",
    "region",
    "endpoint",
    "modelId",
    "deployedModelId",
    "displayName",
    "version",
    "container",
    "labels",
    "machineType",
    "serviceAccount",
    "acceleratorType",
    "acceleratorCount",
    "minReplicas",
    "maxReplicas",
    "targetCpuUtilization",
    "targetDutyCycle",
    "targetRequestsPerMinute",
    "network",
)
TRAFFIC_KEYS = ("project", "region", "endpoint", "trafficSplit")


# --------------------------------------------------------------------------- pure decisions


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def model_id_for(model_name: str, version: str, container: Mapping[str, Any]) -> str:
    """The Vertex model ID of a version's upload: ``fraud-detector-v7-<8 hex>``.

    The hash covers the container spec (image, port, routes, env), so a rebuilt image or a new
    env var is a new model, while the same inputs always name the same one (idempotent upload).
    Vertex model IDs: at most 63 of ``[a-z0-9_-]``, not starting with a digit or '-'.
    """
    return f"{version_name(model_name, version, max_len=63 - 9)}-{_digest(dict(container))[:8]}"


def deployed_model_id_for(endpoint: str, model_id: str, machine: Mapping[str, Any]) -> str:
    """The DeployedModel ID: 10 digits (Vertex allows 1-10 of ``[0-9]``), no leading zero.

    Derived from the endpoint, the model ID and the deployment fields that cannot be mutated
    (machine type, service account), so a change of any of them is a new deployed model beside
    the old one (create-before-delete), and a re-run finds the one it deployed before.
    """
    n = int(_digest({"endpoint": endpoint, "model": model_id, "machine": dict(machine)}), 16)
    return str(1_000_000_000 + n % 9_000_000_000)


def machine_fields(
    machine_type: Any, service_account: Any, accelerator_type: Any = None, accelerator_count: Any = None
) -> dict[str, Any]:
    """The deployment fields Vertex cannot change in place, as hashed into the deployed model ID.

    MachineSpec's ``acceleratorType`` is "Immutable" (REST v1 MachineSpec), and a DeployedModel's
    dedicated resources other than the replica counts and autoscaling metric specs cannot be
    mutated: a GPU change is a new deployed model. The accelerator keys are present only when an
    accelerator is set, so a CPU deployment keeps the ID it always had."""
    out = {"machineType": machine_type, "serviceAccount": service_account}
    if accelerator_type is not None:
        out["acceleratorType"] = accelerator_type
        out["acceleratorCount"] = accelerator_count
    return out


def metric_targets(props: Mapping[str, Any]) -> dict[str, int]:
    """The AutoscalingMetricSpecs (metric name -> target) a deployment's inputs ask for."""
    return {metric: int(props[key]) for key, metric in TARGET_KEYS.items() if props.get(key) is not None}


def deployment_identity(props: Mapping[str, Any]) -> tuple[str, str, str]:
    """What a VertexModelDeployment's live objects are named by: (model resource name, endpoint,
    deployed model ID). Two inputs with the same identity are the same objects in Vertex."""
    parent = f"projects/{props.get('project')}/locations/{props.get('region')}"
    return (f"{parent}/models/{props.get('modelId')}", str(props.get("endpoint")), str(props.get("deployedModelId")))


def traffic_identity(props: Mapping[str, Any]) -> str:
    """What a VertexTrafficSplit is: the split of one endpoint."""
    return str(props.get("endpoint"))


def id_problems(props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Inputs whose IDs do not follow from them, as ``(property, reason)``: a container, machine
    type or service account that changed while the ID hashed from it did not would otherwise be
    "updated" without anything changing in Vertex. Unknown values (a preview) are not checked."""
    problems: list[tuple[str, str]] = []
    model_id, container = props.get("modelId"), props.get("container")
    if _known(model_id) and _known(container) and isinstance(container, Mapping):
        want = _digest(dict(container))[:8]
        if not str(model_id).endswith(f"-{want}"):
            problems.append(("container", f"modelId {model_id} is not hashed from this container (want -{want})"))
    endpoint, dm_id = props.get("endpoint"), props.get("deployedModelId")
    machine = machine_fields(
        props.get("machineType"),
        props.get("serviceAccount"),
        props.get("acceleratorType"),
        props.get("acceleratorCount"),
    )
    if all(_known(v) for v in (endpoint, model_id, dm_id, *machine.values())):
        want = deployed_model_id_for(str(endpoint), str(model_id), machine)
        if str(dm_id) != want:
            problems.append(
                (
                    "machineType",
                    f"deployedModelId {dm_id} is not hashed from this endpoint, modelId, machineType, "
                    f"serviceAccount, acceleratorType and acceleratorCount (want {want})",
                )
            )
    project, region = props.get("project"), props.get("region")
    parent = f"projects/{project}/locations/{region}"
    if all(_known(v) for v in (endpoint, project, region)) and not str(endpoint).startswith(f"{parent}/endpoints/"):
        problems.append(("endpoint", f"{endpoint} is not an endpoint of this project and region ({parent})"))
    return problems


def _known(v: Any) -> bool:
    """A value known at this point (a preview hands unknowns over as a sentinel string)."""
    if isinstance(v, Mapping):
        return all(_known(x) for x in v.values())
    return v != rpc.UNKNOWN


def live_split(split: Mapping[str, Any]) -> dict[str, int]:
    """A traffic split without its zero entries (Vertex lists zeros, the plan omits them)."""
    return {str(k): int(v) for k, v in split.items() if int(v) > 0}


def check_split(split: Mapping[str, int]) -> None:
    if split and sum(split.values()) != 100:
        raise ValueError(f"a traffic split adds up to 100 (got {dict(split)})")
    if any(v < 0 for v in split.values()):
        raise ValueError(f"a traffic split has no negative shares (got {dict(split)})")


def apportion(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder; ties by key)."""
    wsum = sum(weights.values())
    if wsum <= 0:
        raise ValueError("weights must have a positive sum")
    exact = {k: total * w / wsum for k, w in weights.items()}
    out = {k: int(x) for k, x in exact.items()}
    rest = total - sum(out.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - int(exact[k])), k))[:rest]:
        out[k] += 1
    return {k: v for k, v in out.items() if v > 0}


def split_without(current: Mapping[str, int], deployed_id: str, deployed: Iterable[str]) -> dict[str, int] | None:
    """The traffic split to send with the undeploy of ``deployed_id``.

    ``None`` when nothing must change: it takes no traffic, or it is the last deployed model
    (Vertex then empties the split itself). Otherwise its share goes to the remaining deployed
    models in proportion to their current shares (evenly if they have none), so the endpoint
    keeps answering while the model is removed.
    """
    current = live_split(current)
    rest = sorted(d for d in deployed if d != deployed_id)
    if current.get(deployed_id, 0) == 0 or not rest:
        return None
    weights = {d: current.get(d, 0) for d in rest}
    if sum(weights.values()) == 0:
        weights = dict.fromkeys(rest, 1)
    return apportion(100, weights)


def _unversioned(name: str) -> str:
    """``.../models/m@2`` -> ``.../models/m`` (a model-level, not a version-level, resource name)."""
    return name.split("@", 1)[0]


def _last_segment(name: str) -> str:
    """``projects/123/locations/x/models/m@2`` -> ``m`` (Vertex answers with project numbers)."""
    return name.rsplit("/", 1)[-1].split("@", 1)[0]


# --------------------------------------------------------------------------- the API the providers use


@dataclass(frozen=True)
class ContainerSpec:
    image_uri: str
    port: int
    predict_route: str
    health_route: str
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_props(cls, c: Mapping[str, Any]) -> ContainerSpec:
        return cls(
            image_uri=str(c["imageUri"]),
            port=int(c["port"]),
            predict_route=str(c["predictRoute"]),
            health_route=str(c["healthRoute"]),
            env={str(k): str(v) for k, v in (c.get("env") or {}).items()},
        )


@dataclass(frozen=True)
class ModelSpec:
    display_name: str
    container: ContainerSpec
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploySpec:
    deployed_model_id: str
    model: str
    display_name: str
    machine_type: str
    min_replicas: int
    max_replicas: int
    autoscaling: Mapping[str, int] = field(default_factory=dict)
    """AutoscalingMetricSpecs: metric name -> target."""
    service_account: str | None = None
    accelerator_type: str | None = None
    accelerator_count: int | None = None


@dataclass(frozen=True)
class ModelState:
    name: str
    image_uri: str
    deployments: tuple[tuple[str, str], ...] = ()
    """(endpoint resource name, deployed model ID) of every deployment of this model."""
    display_name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeployedModelState:
    id: str
    model: str
    machine_type: str
    min_replicas: int
    max_replicas: int
    autoscaling: Mapping[str, int] = field(default_factory=dict)
    """The live AutoscalingMetricSpecs: metric name -> target."""


@dataclass(frozen=True)
class EndpointState:
    name: str
    deployed_models: dict[str, DeployedModelState]
    traffic_split: dict[str, int]


class VertexApi(Protocol):
    """The aiplatform calls the providers make. Getters return None for what does not exist;
    deletes of what does not exist succeed."""

    def get_model(self, name: str) -> ModelState | None: ...

    def upload_model(self, parent: str, model_id: str, spec: ModelSpec) -> str:
        """Upload; return the model's resource name (also when it already existed)."""
        ...

    def update_model(self, name: str, display_name: str, labels: Mapping[str, str]) -> None:
        """Set the model's display name and labels (the model-level ones)."""
        ...

    def delete_model(self, name: str) -> None: ...

    def get_endpoint(self, name: str) -> EndpointState | None: ...

    def deploy_model(self, endpoint: str, spec: DeploySpec, traffic_split: dict[str, int] | None) -> None: ...

    def mutate_deployed_model(
        self,
        endpoint: str,
        deployed_model_id: str,
        min_replicas: int,
        max_replicas: int,
        autoscaling: Mapping[str, int],
    ) -> None:
        """Set the replica range and the autoscaling metric specs (the whole list)."""
        ...

    def undeploy_model(self, endpoint: str, deployed_model_id: str, traffic_split: dict[str, int] | None) -> None: ...

    def set_traffic_split(self, endpoint: str, traffic_split: dict[str, int]) -> None: ...


class AiplatformApi:
    """:class:`VertexApi` over google-cloud-aiplatform's v1 GAPIC clients (regional endpoint).

    Credentials are Application Default Credentials (``gcloud auth application-default login``,
    a workload identity in CI), the same the Pulumi GCP provider uses.
    """

    def __init__(self, region: str, timeout: float = OPERATION_TIMEOUT_SECONDS):
        from google.cloud import aiplatform_v1

        options = {"api_endpoint": f"{region}-aiplatform.googleapis.com"}
        self._v1 = aiplatform_v1
        self._models = aiplatform_v1.ModelServiceClient(client_options=options)
        self._endpoints = aiplatform_v1.EndpointServiceClient(client_options=options)
        self._timeout = timeout

    def get_model(self, name: str) -> ModelState | None:
        from google.api_core import exceptions

        try:
            m = self._models.get_model(name=name)
        except exceptions.NotFound:
            return None
        return ModelState(
            name=m.name,
            image_uri=m.container_spec.image_uri,
            deployments=tuple((r.endpoint, r.deployed_model_id) for r in m.deployed_models),
            display_name=m.display_name,
            labels=dict(m.labels),
        )

    def upload_model(self, parent: str, model_id: str, spec: ModelSpec) -> str:
        from google.api_core import exceptions

        v1 = self._v1
        c = spec.container
        model = v1.Model(
            display_name=spec.display_name,
            labels=spec.labels,
            container_spec=v1.ModelContainerSpec(
                image_uri=c.image_uri,
                ports=[v1.Port(container_port=c.port)],
                predict_route=c.predict_route,
                health_route=c.health_route,
                env=[v1.EnvVar(name=k, value=v) for k, v in sorted(c.env.items())],
            ),
        )
        request = v1.UploadModelRequest(parent=parent, model_id=model_id, model=model)
        try:
            result = self._models.upload_model(request=request).result(timeout=self._timeout)
        except exceptions.AlreadyExists:
            return f"{parent}/models/{model_id}"
        return str(result.model)

    def update_model(self, name: str, display_name: str, labels: Mapping[str, str]) -> None:
        # ModelService.UpdateModel (REST models.patch): a name without "@" is a model-level update;
        # "Supported model fields: display_name, description ... Labels are supported in both
        # scenarios" (aiplatform_v1 ModelServiceClient.update_model).
        from google.protobuf import field_mask_pb2

        model = self._v1.Model(name=_unversioned(name), display_name=display_name, labels=dict(labels))
        self._models.update_model(
            model=model, update_mask=field_mask_pb2.FieldMask(paths=["display_name", "labels"]), timeout=self._timeout
        )

    def delete_model(self, name: str) -> None:
        from google.api_core import exceptions

        with contextlib.suppress(exceptions.NotFound):
            self._models.delete_model(name=name).result(timeout=self._timeout)

    def get_endpoint(self, name: str) -> EndpointState | None:
        from google.api_core import exceptions

        try:
            ep = self._endpoints.get_endpoint(name=name)
        except exceptions.NotFound:
            return None
        deployed: dict[str, DeployedModelState] = {}
        for dm in ep.deployed_models:
            res = dm.dedicated_resources
            deployed[dm.id] = DeployedModelState(
                id=dm.id,
                model=dm.model,
                machine_type=res.machine_spec.machine_type,
                min_replicas=res.min_replica_count,
                max_replicas=res.max_replica_count,
                autoscaling={s.metric_name: s.target for s in res.autoscaling_metric_specs},
            )
        return EndpointState(name=ep.name, deployed_models=deployed, traffic_split=dict(ep.traffic_split))

    def _resources(
        self,
        min_replicas: int,
        max_replicas: int,
        autoscaling: Mapping[str, int],
        machine_type: str | None,
        accelerator_type: str | None = None,
        accelerator_count: int | None = None,
    ) -> Any:
        v1 = self._v1
        res = v1.DedicatedResources(
            min_replica_count=min_replicas,
            max_replica_count=max_replicas,
            autoscaling_metric_specs=[
                v1.AutoscalingMetricSpec(metric_name=m, target=t) for m, t in sorted(autoscaling.items())
            ],
        )
        if machine_type is not None:
            res.machine_spec = v1.MachineSpec(machine_type=machine_type)
            if accelerator_type is not None:
                res.machine_spec.accelerator_type = v1.AcceleratorType[accelerator_type]
                res.machine_spec.accelerator_count = accelerator_count or 1
        return res

    def deploy_model(self, endpoint: str, spec: DeploySpec, traffic_split: dict[str, int] | None) -> None:
        v1 = self._v1
        deployed = v1.DeployedModel(
            id=spec.deployed_model_id,
            model=spec.model,
            display_name=spec.display_name,
            dedicated_resources=self._resources(
                spec.min_replicas,
                spec.max_replicas,
                spec.autoscaling,
                spec.machine_type,
                spec.accelerator_type,
                spec.accelerator_count,
            ),
            service_account=spec.service_account or "",
        )
        request = v1.DeployModelRequest(endpoint=endpoint, deployed_model=deployed, traffic_split=traffic_split or {})
        self._endpoints.deploy_model(request=request).result(timeout=self._timeout)

    def mutate_deployed_model(
        self,
        endpoint: str,
        deployed_model_id: str,
        min_replicas: int,
        max_replicas: int,
        autoscaling: Mapping[str, int],
    ) -> None:
        # MutateDeployedModelRequest: "Only the following fields can be mutated: min_replica_count,
        # max_replica_count, required_replica_count, autoscaling_metric_specs" (aiplatform_v1
        # types/endpoint_service.py); the mask path replaces the whole list of specs.
        from google.protobuf import field_mask_pb2

        v1 = self._v1
        request = v1.MutateDeployedModelRequest(
            endpoint=endpoint,
            deployed_model=v1.DeployedModel(
                id=deployed_model_id,
                dedicated_resources=self._resources(min_replicas, max_replicas, autoscaling, None),
            ),
            update_mask=field_mask_pb2.FieldMask(
                paths=[
                    "dedicated_resources.min_replica_count",
                    "dedicated_resources.max_replica_count",
                    "dedicated_resources.autoscaling_metric_specs",
                ]
            ),
        )
        self._endpoints.mutate_deployed_model(request=request).result(timeout=self._timeout)

    def undeploy_model(self, endpoint: str, deployed_model_id: str, traffic_split: dict[str, int] | None) -> None:
        from google.api_core import exceptions

        request = self._v1.UndeployModelRequest(
            endpoint=endpoint, deployed_model_id=deployed_model_id, traffic_split=traffic_split or {}
        )
        with contextlib.suppress(exceptions.NotFound):
            self._endpoints.undeploy_model(request=request).result(timeout=self._timeout)

    def set_traffic_split(self, endpoint: str, traffic_split: dict[str, int]) -> None:
        from google.protobuf import field_mask_pb2

        ep = self._v1.Endpoint(name=endpoint, traffic_split=traffic_split)
        self._endpoints.update_endpoint(
            endpoint=ep, update_mask=field_mask_pb2.FieldMask(paths=["traffic_split"]), timeout=self._timeout
        )


ApiFactory = Callable[[str], VertexApi]
"""region -> client. The default makes an :class:`AiplatformApi`; tests pass a fake."""


def _default_api(region: str) -> VertexApi:
    return AiplatformApi(region)


class _Provider(dyn.ResourceProvider):
    def __init__(self, api_factory: ApiFactory | None = None):
        self._api_factory = api_factory

    def _api(self, props: Mapping[str, Any]) -> VertexApi:
        return (self._api_factory or _default_api)(str(props["region"]))


def _changed(olds: Mapping[str, Any], news: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    return [k for k in keys if olds.get(k) != news.get(k)]


# --------------------------------------------------------------------------- model upload + deploy


class ModelDeploymentProvider(_Provider):
    """Upload one model version and deploy it to an endpoint.

    Inputs (camelCase): ``project``, ``region``, ``endpoint`` (resource name), ``modelId``,
    ``deployedModelId``, ``displayName``, ``version``, ``container`` (``imageUri``, ``port``,
    ``predictRoute``, ``healthRoute``, ``env``), ``labels``, ``machineType``, ``serviceAccount``,
    ``acceleratorType`` / ``acceleratorCount`` (only with a GPU), ``minReplicas``, ``maxReplicas``,
    ``targetCpuUtilization`` / ``targetDutyCycle`` / ``targetRequestsPerMinute`` (the autoscaling
    metric specs, each present only when used), ``network`` (set: the endpoint is
    VPC-peered). Outputs add ``modelName``.
    """

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        return dyn.CheckResult(news, [dyn.CheckFailure(k, reason) for k, reason in id_problems(news)])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        changed = _changed(olds, news, DEPLOYMENT_KEYS)
        # Only an identity change replaces (see the module docs); the hashed inputs reach here
        # together with the ID hashed from them (check), so they are replaced through it.
        replaces = [k for k in changed if k in IDENTITY_KEYS]
        # A VPC-peered private endpoint holds one deployed model ("Only support one model per
        # private endpoint", cloud.google.com/vertex-ai/docs/predictions/using-private-endpoints;
        # the SDK's PrivateEndpoint.deploy: "A maximum of one model can be deployed to each private
        # Endpoint"): the new one can only be deployed once the old one is gone.
        private = bool(olds.get("network") or news.get("network"))
        delete_first = private and bool(replaces)
        return dyn.DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=delete_first)

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        api = self._api(props)
        model_name = self._ensure_model(api, props)
        self._ensure_deployed(api, props, model_name)
        return dyn.CreateResult(
            id_=f"{props['endpoint']}/deployedModels/{props['deployedModelId']}",
            outs={**props, "modelName": model_name},
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        # Only what is not part of the identity reaches update (replicas, CPU target, labels,
        # display name); converge the same way as create, so an update also repairs a model or
        # deployment that went missing.
        api = self._api(news)
        model_name = self._ensure_model(api, news)
        self._ensure_deployed(api, news, model_name)
        return dyn.UpdateResult(outs={**news, "modelName": model_name})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        api = self._api(props)
        endpoint, dm_id = str(props["endpoint"]), str(props["deployedModelId"])
        ep = api.get_endpoint(endpoint)
        if ep is not None and dm_id in ep.deployed_models:
            api.undeploy_model(endpoint, dm_id, split_without(ep.traffic_split, dm_id, ep.deployed_models))
        # The model goes too, unless something else still serves it (a create-before-delete
        # replacement that kept the model, or a deployment outside this stack).
        model = api.get_model(props.get("modelName") or _model_name(props))
        if model is not None:
            others = [
                (e, d) for e, d in model.deployments if not (_last_segment(e) == _last_segment(endpoint) and d == dm_id)
            ]
            if not others:
                api.delete_model(model.name)

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        """Refresh: the live replica range; a deployment that is gone reads as deleted."""
        api = self._api(props)
        ep = api.get_endpoint(str(props["endpoint"]))
        dm = ep.deployed_models.get(str(props["deployedModelId"])) if ep is not None else None
        if dm is None:
            return dyn.ReadResult("", {})
        outs = {k: v for k, v in props.items() if k not in TARGET_KEYS}
        outs.update(minReplicas=dm.min_replicas, maxReplicas=dm.max_replicas)
        outs.update({key: dm.autoscaling[m] for key, m in TARGET_KEYS.items() if m in dm.autoscaling})
        return dyn.ReadResult(id_, outs)

    # -- steps, each a no-op when already done

    def _ensure_model(self, api: VertexApi, props: Mapping[str, Any]) -> str:
        name = _model_name(props)
        display_name = str(props["displayName"])
        labels = {str(k): str(v) for k, v in (props.get("labels") or {}).items()}
        existing = api.get_model(name)
        if existing is not None:
            if (existing.display_name, dict(existing.labels)) != (display_name, labels):
                api.update_model(existing.name, display_name, labels)
            return existing.name
        spec = ModelSpec(
            display_name=display_name,
            container=ContainerSpec.from_props(props["container"]),
            labels=labels,
        )
        return api.upload_model(_parent(props), str(props["modelId"]), spec)

    def _ensure_deployed(self, api: VertexApi, props: Mapping[str, Any], model_name: str) -> None:
        endpoint, dm_id = str(props["endpoint"]), str(props["deployedModelId"])
        lo, hi, targets = int(props["minReplicas"]), int(props["maxReplicas"]), metric_targets(props)
        ep = api.get_endpoint(endpoint)
        if ep is None:
            raise RuntimeError(f"Vertex AI endpoint {endpoint} does not exist")
        dm = ep.deployed_models.get(dm_id)
        if dm is None:
            # A fresh endpoint takes no traffic until a split names a model: give the first model
            # everything so it answers at once; later ones start at 0% (VertexTrafficSplit moves it).
            # A VPC-peered private endpoint takes no split at all (the SDK sends none: "Traffic
            # split is not supported for PSA based PrivateEndpoint"); its one model takes it all.
            first = None if props.get("network") or live_split(ep.traffic_split) else {NEW_DEPLOYED_MODEL: 100}
            api.deploy_model(
                endpoint,
                DeploySpec(
                    deployed_model_id=dm_id,
                    model=model_name,
                    display_name=str(props["displayName"]),
                    machine_type=str(props["machineType"]),
                    min_replicas=lo,
                    max_replicas=hi,
                    autoscaling=targets,
                    service_account=props.get("serviceAccount") or None,
                    accelerator_type=props.get("acceleratorType") or None,
                    accelerator_count=int(props["acceleratorCount"]) if props.get("acceleratorCount") else None,
                ),
                first,
            )
            return
        if _last_segment(dm.model) != _last_segment(model_name):
            raise RuntimeError(
                f"deployed model {dm_id} on {endpoint} serves {dm.model}, not {model_name}; "
                "it was changed outside this stack: undeploy it and run again"
            )
        if (dm.min_replicas, dm.max_replicas, dict(dm.autoscaling)) != (lo, hi, targets):
            api.mutate_deployed_model(endpoint, dm_id, lo, hi, targets)


def _parent(props: Mapping[str, Any]) -> str:
    return f"projects/{props['project']}/locations/{props['region']}"


def _model_name(props: Mapping[str, Any]) -> str:
    return f"{_parent(props)}/models/{props['modelId']}"


# --------------------------------------------------------------------------- traffic split


class TrafficSplitProvider(_Provider):
    """Set an endpoint's traffic split: ``trafficSplit`` maps deployed model IDs to percent
    (adding up to 100; IDs not listed take no traffic)."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        failures = [dyn.CheckFailure(k, r) for k, r in id_problems(news) if k == "endpoint"]
        split = news.get("trafficSplit")
        if isinstance(split, dict) and all(isinstance(v, int | float) for v in split.values()):
            try:
                check_split(live_split(split))
            except ValueError as exc:
                failures.append(dyn.CheckFailure("trafficSplit", str(exc)))
        return dyn.CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        changed = [k for k in TRAFFIC_KEYS if k != "trafficSplit" and olds.get(k) != news.get(k)]
        if _split_or_none(olds.get("trafficSplit")) != _split_or_none(news.get("trafficSplit")):
            changed.append("trafficSplit")
        # the endpoint is the identity (check keeps project/region inside it); delete is a no-op
        replaces = ["endpoint"] if "endpoint" in changed else []
        return dyn.DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        self._apply(props)
        return dyn.CreateResult(id_=f"{props['endpoint']}/trafficSplit", outs=dict(props))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        self._apply(news)
        return dyn.UpdateResult(outs=dict(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Nothing to undo: the split goes with the endpoint, and each deployment's delete moves
        its own share to the models that remain."""

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        ep = self._api(props).get_endpoint(str(props["endpoint"]))
        if ep is None:
            return dyn.ReadResult("", {})
        return dyn.ReadResult(id_, {**props, "trafficSplit": live_split(ep.traffic_split)})

    def _apply(self, props: Mapping[str, Any]) -> None:
        endpoint = str(props["endpoint"])
        want = live_split(props.get("trafficSplit") or {})
        check_split(want)
        api = self._api(props)
        ep = api.get_endpoint(endpoint)
        if ep is None:
            raise RuntimeError(f"Vertex AI endpoint {endpoint} does not exist")
        missing = sorted(set(want) - set(ep.deployed_models))
        if missing:
            raise RuntimeError(f"deployed model(s) {', '.join(missing)} are not on {endpoint}")
        if live_split(ep.traffic_split) != want:
            api.set_traffic_split(endpoint, want)


def _split_or_none(v: Any) -> Any:
    return live_split(v) if isinstance(v, dict) and all(isinstance(x, int | float) for x in v.values()) else v


# --------------------------------------------------------------------------- the resources


class VertexModelDeployment(dyn.Resource):
    """One model version uploaded and deployed to a Vertex AI endpoint (see module docs)."""

    deployedModelId: pulumi.Output[str]  # noqa: N815 - the engine's (camelCase) property name
    modelId: pulumi.Output[str]  # noqa: N815

    def __init__(
        self,
        name: str,
        props: dict[str, Any],
        opts: pulumi.ResourceOptions | None = None,
        provider: ModelDeploymentProvider | None = None,
    ):
        super().__init__(provider or ModelDeploymentProvider(), name, props, opts)


class VertexTrafficSplit(dyn.Resource):
    """A Vertex AI endpoint's traffic split (deployed model ID -> percent)."""

    trafficSplit: pulumi.Output[dict[str, int]]  # noqa: N815

    def __init__(
        self,
        name: str,
        props: dict[str, Any],
        opts: pulumi.ResourceOptions | None = None,
        provider: TrafficSplitProvider | None = None,
    ):
        super().__init__(provider or TrafficSplitProvider(), name, props, opts)
