"""An in-memory Vertex AI that behaves like the real one where the providers depend on it.

It keeps the rules the real service enforces (and that the providers must respect): a deployed
model ID is unique per endpoint, a split names deployed models only and adds up to 100, a model
with traffic cannot be undeployed unless the request's split takes its traffic away (or it is the
last one), a model still deployed cannot be deleted, names come back with the project *number*;
a VPC-peered private endpoint (``add_endpoint(..., network=...)``) holds one deployed model and
takes no traffic split (Google: "Only support one model per private endpoint"; the SDK refuses a
split for it); autoscaling metric specs name one of the three online-prediction metrics, CPU and
duty-cycle targets are percent (1-100), and a duty-cycle target needs accelerators (aiplatform_v1
AutoscalingMetricSpec; the SDK's deploy: "Must also set accelerator_type and accelerator_count").
Every write is logged; ``fail`` makes the next call(s) of a method raise, to simulate a failure
half-way through a provider operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import pytest

from components.vertex_provider import (
    CPU_METRIC,
    DUTY_CYCLE_METRIC,
    NEW_DEPLOYED_MODEL,
    REQUEST_COUNT_METRIC,
    DeployedModelState,
    DeploySpec,
    EndpointState,
    ModelDeploymentProvider,
    ModelSpec,
    ModelState,
)

PROJECT_NUMBER = "123456789012"


class FakeVertexError(RuntimeError):
    pass


@dataclass
class _Endpoint:
    deployed: dict[str, DeployedModelState] = field(default_factory=dict)
    split: dict[str, int] = field(default_factory=dict)
    network: str | None = None
    accelerators: dict[str, str | None] = field(default_factory=dict)  # deployed model ID -> type


class FakeVertex:
    def __init__(self, project: str = "acme-ml", region: str = "europe-west4") -> None:
        self.project, self.region = project, region
        self.models: dict[str, ModelState] = {}  # model ID -> state
        self.specs: dict[str, ModelSpec] = {}
        self.endpoints: dict[str, _Endpoint] = {}  # endpoint ID -> state
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self._fail: dict[str, int] = {}

    # -- test helpers

    def add_endpoint(self, endpoint_id: str, network: str | None = None) -> str:
        self.endpoints[endpoint_id] = _Endpoint(network=network)
        return f"projects/{self.project}/locations/{self.region}/endpoints/{endpoint_id}"

    def fail(self, method: str, times: int = 1) -> None:
        self._fail[method] = times

    def writes(self, method: str | None = None) -> list[tuple[str, tuple[object, ...]]]:
        reads = ("get_model", "get_endpoint")
        return [c for c in self.calls if c[0] not in reads and (method is None or c[0] == method)]

    def split(self, endpoint_id: str) -> dict[str, int]:
        return dict(self.endpoints[endpoint_id].split)

    # -- internals

    def _call(self, method: str, *args: object) -> None:
        self.calls.append((method, args))
        left = self._fail.get(method, 0)
        if left:
            self._fail[method] = left - 1
            raise FakeVertexError(f"{method}: injected failure")

    @staticmethod
    def _id(name: str) -> str:
        return name.rsplit("/", 1)[-1].split("@", 1)[0]

    def _model_name(self, model_id: str) -> str:
        return f"projects/{PROJECT_NUMBER}/locations/{self.region}/models/{model_id}"

    def _endpoint(self, name: str) -> _Endpoint:
        ep = self.endpoints.get(self._id(name))
        if ep is None:
            raise FakeVertexError(f"404 endpoint {name}")
        return ep

    def _check_split(self, ep: _Endpoint, split: dict[str, int]) -> None:
        unknown = set(split) - set(ep.deployed)
        if unknown:
            raise FakeVertexError(f"400 traffic split names models not deployed: {sorted(unknown)}")
        if split and sum(split.values()) != 100:
            raise FakeVertexError(f"400 traffic split must add up to 100: {split}")

    @staticmethod
    def _check_autoscaling(autoscaling: Mapping[str, int], accelerator_type: str | None) -> None:
        for metric, target in autoscaling.items():
            if metric not in (CPU_METRIC, DUTY_CYCLE_METRIC, REQUEST_COUNT_METRIC):
                raise FakeVertexError(f"400 unsupported autoscaling metric {metric}")
            if metric != REQUEST_COUNT_METRIC and not 1 <= target <= 100:
                raise FakeVertexError(f"400 {metric} target is a percentage 1-100, got {target}")
            if target < 1:
                raise FakeVertexError(f"400 {metric} target must be positive, got {target}")
        if DUTY_CYCLE_METRIC in autoscaling and accelerator_type is None:
            raise FakeVertexError("400 an accelerator duty cycle target needs accelerators")

    # -- VertexApi

    def get_model(self, name: str) -> ModelState | None:
        self.calls.append(("get_model", (name,)))
        return self.models.get(self._id(name))

    def upload_model(self, parent: str, model_id: str, spec: ModelSpec) -> str:
        self._call("upload_model", parent, model_id, spec)
        if model_id in self.models:
            raise FakeVertexError(f"409 model {model_id} already exists")
        name = self._model_name(model_id)
        self.models[model_id] = ModelState(
            name=name, image_uri=spec.container.image_uri, display_name=spec.display_name, labels=dict(spec.labels)
        )
        self.specs[model_id] = spec
        return name

    def update_model(self, name: str, display_name: str, labels: Mapping[str, str]) -> None:
        self._call("update_model", name, display_name, dict(labels))
        m = self.models.get(self._id(name))
        if m is None:
            raise FakeVertexError(f"404 model {name}")
        self.models[self._id(name)] = replace(m, display_name=display_name, labels=dict(labels))

    def delete_model(self, name: str) -> None:
        self._call("delete_model", name)
        m = self.models.get(self._id(name))
        if m is None:
            return
        if m.deployments:
            raise FakeVertexError(f"400 model {name} is deployed: {m.deployments}")
        del self.models[self._id(name)]

    def get_endpoint(self, name: str) -> EndpointState | None:
        self.calls.append(("get_endpoint", (name,)))
        ep = self.endpoints.get(self._id(name))
        if ep is None:
            return None
        full = f"projects/{PROJECT_NUMBER}/locations/{self.region}/endpoints/{self._id(name)}"
        return EndpointState(name=full, deployed_models=dict(ep.deployed), traffic_split=dict(ep.split))

    def deploy_model(self, endpoint: str, spec: DeploySpec, traffic_split: dict[str, int] | None) -> None:
        self._call("deploy_model", endpoint, spec, traffic_split)
        ep = self._endpoint(endpoint)
        model = self.models.get(self._id(spec.model))
        if model is None:
            raise FakeVertexError(f"404 model {spec.model}")
        if spec.deployed_model_id in ep.deployed:
            raise FakeVertexError(f"409 deployed model {spec.deployed_model_id} exists")
        if not spec.deployed_model_id.isdigit() or len(spec.deployed_model_id) > 10:
            raise FakeVertexError(f"400 bad deployed model id {spec.deployed_model_id}")
        if ep.network is not None and ep.deployed:
            raise FakeVertexError("400 a private endpoint holds one deployed model")
        if ep.network is not None and traffic_split:
            raise FakeVertexError("400 traffic split is not supported for a private endpoint")
        self._check_autoscaling(spec.autoscaling, spec.accelerator_type)
        ep.deployed[spec.deployed_model_id] = DeployedModelState(
            id=spec.deployed_model_id,
            model=self._model_name(self._id(spec.model)),
            machine_type=spec.machine_type,
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
            autoscaling=dict(spec.autoscaling),
        )
        ep.accelerators[spec.deployed_model_id] = spec.accelerator_type
        if traffic_split:
            new = {(spec.deployed_model_id if k == NEW_DEPLOYED_MODEL else k): v for k, v in traffic_split.items()}
            self._check_split(ep, new)
            ep.split = new
        ref = (
            f"projects/{PROJECT_NUMBER}/locations/{self.region}/endpoints/{self._id(endpoint)}",
            spec.deployed_model_id,
        )
        self.models[model.name.rsplit("/", 1)[-1]] = replace(model, deployments=(*model.deployments, ref))

    def mutate_deployed_model(
        self,
        endpoint: str,
        deployed_model_id: str,
        min_replicas: int,
        max_replicas: int,
        autoscaling: Mapping[str, int],
    ) -> None:
        self._call(
            "mutate_deployed_model", endpoint, deployed_model_id, min_replicas, max_replicas, dict(autoscaling)
        )
        ep = self._endpoint(endpoint)
        dm = ep.deployed[deployed_model_id]
        self._check_autoscaling(autoscaling, ep.accelerators.get(deployed_model_id))
        ep.deployed[deployed_model_id] = replace(
            dm, min_replicas=min_replicas, max_replicas=max_replicas, autoscaling=dict(autoscaling)
        )

    def undeploy_model(self, endpoint: str, deployed_model_id: str, traffic_split: dict[str, int] | None) -> None:
        self._call("undeploy_model", endpoint, deployed_model_id, traffic_split)
        ep = self._endpoint(endpoint)
        dm = ep.deployed.get(deployed_model_id)
        if dm is None:
            raise FakeVertexError(f"404 deployed model {deployed_model_id}")
        last = len(ep.deployed) == 1
        split = dict(traffic_split) if traffic_split else dict(ep.split)
        if split.get(deployed_model_id, 0) > 0 and not last:
            raise FakeVertexError(f"400 deployed model {deployed_model_id} has traffic: {split}")
        del ep.deployed[deployed_model_id]
        ep.accelerators.pop(deployed_model_id, None)
        split.pop(deployed_model_id, None)
        ep.split = {} if last else split
        self._check_split(ep, ep.split)
        mid = self._id(dm.model)
        m = self.models[mid]
        self.models[mid] = replace(m, deployments=tuple(r for r in m.deployments if r[1] != deployed_model_id))

    def set_traffic_split(self, endpoint: str, traffic_split: dict[str, int]) -> None:
        self._call("set_traffic_split", endpoint, traffic_split)
        ep = self._endpoint(endpoint)
        if ep.network is not None:
            raise FakeVertexError("400 traffic split is not supported for a private endpoint")
        self._check_split(ep, traffic_split)
        ep.split = dict(traffic_split)


@pytest.fixture
def fake() -> FakeVertex:
    """A fake Vertex AI with the endpoint ``fraud-detector``."""
    f = FakeVertex()
    f.add_endpoint("fraud-detector")
    return f


@pytest.fixture
def deployer(fake: FakeVertex) -> ModelDeploymentProvider:
    """The real deployment provider, talking to the fake."""
    return ModelDeploymentProvider(api_factory=lambda region: fake)
