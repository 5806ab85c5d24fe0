"""The lifecycle matrix: every rollout walk on every target, judged by ``modelctl diff``.

Each walk renders the real program for each state of a stack's config and diffs consecutive
states as ``pulumi up`` would apply them (create / update / replace / delete, with the
providers' own replacement rules). What must hold on every edit:

* a version that serves before and after the edit is neither replaced nor restarted: its
  Kubernetes Deployment keeps its pod template, its SageMaker Model, Azure ML deployment and
  Vertex deployed model are untouched, its image is not rebuilt;
* the endpoints themselves (SageMaker Endpoint, Azure ML online endpoint, Vertex endpoint, the
  Kubernetes entry Service and HTTPRoute) are never replaced, and the SageMaker Endpoint's
  ``deploymentConfig`` is identical in every state;
* a tag/label-only edit is an in-place update everywhere.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from modelctl.diff import StackDiff, diff_renders, restarts
from modelctl.render import Rendered, read_stack_config, run_program
from modelctl.sample import SampleRegistry
from tests.conftest import base_config

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT_TYPES = {
    "aws:sagemaker/endpoint:Endpoint",
    "azure-native:machinelearningservices:OnlineEndpoint",
    "gcp:vertex/aiEndpoint:AiEndpoint",
    "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
    "kubernetes:networking.k8s.io/v1:Ingress",
}
SM_ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
SCALING_TYPES = {
    "kubernetes:apps/v1:Deployment",  # spec.replicas only: restarts() catches a pod-template change
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
    "kubernetes:keda.sh/v1alpha1:ScaledObject",
    "kubernetes:policy/v1:PodDisruptionBudget",
    "azure-native:monitor:AutoscaleSetting",
    "aws:appautoscaling/target:Target",
}

K8S_GATEWAY = {
    "namespace": "models",
    "replicas": 2,
    "router": "gateway",
    "gateway": {"name": "public", "namespace": "gateway-system"},
}
K8S_SERVICE = {"namespace": "models", "replicas": 3, "autoscaling": {"minReplicas": 3, "maxReplicas": 6}}
K8S_KEDA = {
    "namespace": "models",
    "replicas": 3,
    "autoscaling": {
        "metric": "requests",
        "minReplicas": 0,
        "maxReplicas": 6,
        "wakeQuery": 'sum(rate(nginx_ingress_controller_requests{service="fraud-detector"}[1m]))',
    },
}
SAGEMAKER = {"region": "eu-west-1", "instanceCount": 2, "tags": {"team": "risk"}}
AZUREML = {
    "resourceGroup": "ml-rg",
    "workspace": "ml-ws",
    "location": "westeurope",
    "containerRegistry": "acmeml.azurecr.io",
    "tags": {"team": "risk"},
}
VERTEX = {
    "project": "acme-ml",
    "region": "europe-west4",
    "minReplicas": 1,
    "maxReplicas": 3,
    "labels": {"team": "risk"},
}


def prod_example() -> dict[str, Any]:
    """Pulumi.prod.yaml as shipped: every target on, monitoring on."""
    return read_stack_config(ROOT / "Pulumi.prod.yaml")


TARGETS: dict[str, Callable[[], dict[str, Any]]] = {
    "kubernetes-gateway": lambda: {"kubernetes": K8S_GATEWAY, "monitoring": {"enabled": True}},
    "kubernetes-service": lambda: {"kubernetes": K8S_SERVICE},
    # monitoring.drift: the capture URL on every model pod and the monitor beside them
    "kubernetes-drift": lambda: {
        "kubernetes": K8S_GATEWAY,
        "monitoring": {"enabled": True, "drift": {"enabled": True, "reference": "models:/fraud-detector/1"}},
    },
    "kubernetes-keda": lambda: {"kubernetes": K8S_KEDA, "monitoring": {"enabled": True}},
    "sagemaker": lambda: {"kubernetes": None, "sagemaker": SAGEMAKER},
    "azureml": lambda: {"kubernetes": None, "azureml": AZUREML},
    "vertex": lambda: {"kubernetes": None, "vertex": VERTEX},
    "all-four": lambda: {"kubernetes": K8S_GATEWAY, "sagemaker": SAGEMAKER, "azureml": AZUREML, "vertex": VERTEX},
    "prod-example": prod_example,
}
CAN_MIRROR = {"kubernetes-gateway", "kubernetes-drift", "sagemaker", "azureml"}


def state(stable: str, strategy: str | None = None, percent: int | None = None, candidate: str = "2") -> dict[str, Any]:
    out: dict[str, Any] = {"model": {"name": "fraud-detector", "version": stable}}
    if strategy is not None:
        out["candidate"] = {"version": candidate, "strategy": strategy, "percent": percent}
    return out


STABLE1 = state("1")
WALKS: dict[str, list[dict[str, Any]]] = {
    "canary-promote-rollback": [
        STABLE1,
        state("1", "canary", 10),
        state("1", "canary", 50),
        state("1", "canary", 100),
        state("2"),  # promote --finish
        STABLE1,  # rollback --to 1
    ],
    "shadow-abort": [STABLE1, state("1", "shadow", 20), STABLE1],
    "blue-green": [STABLE1, state("1", "blue-green", 0), state("1", "blue-green", 100), state("2")],
    # an abort (rollback: drop the candidate) from every step
    "abort-canary-10": [STABLE1, state("1", "canary", 10), STABLE1],
    "abort-canary-50": [state("1", "canary", 50), STABLE1],
    "abort-canary-100": [state("1", "canary", 100), STABLE1],
    "abort-blue-green-0": [state("1", "blue-green", 0), STABLE1],
    "abort-blue-green-100": [state("1", "blue-green", 100), STABLE1],
}


def live(s: dict[str, Any]) -> set[str]:
    c = s.get("candidate")
    return {s["model"]["version"]} | ({c["version"]} if c else set())


class Renders:
    """Renders by config, each state rendered once per module (a render takes about a second)."""

    def __init__(self, registry: SampleRegistry) -> None:
        self.registry = registry
        self.cache: dict[str, Rendered] = {}

    def config(self, target: str, s: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        target_cfg = TARGETS[target]()
        if target == "prod-example":
            cfg = copy.deepcopy(target_cfg)
            cfg["mlflow-deploy:mlflow"] = {"trackingUri": self.registry.tracking_uri}
            cfg.pop("mlflow-deploy:candidate", None)
            for key, value in {**s, **(extra or {})}.items():
                cfg[f"mlflow-deploy:{key}"] = copy.deepcopy(value)
            return cfg
        return base_config(self.registry, **{**target_cfg, **s, **(extra or {})})

    def __call__(self, target: str, s: dict[str, Any], extra: dict[str, Any] | None = None) -> Rendered:
        cfg = self.config(target, s, extra)
        key = json.dumps(cfg, sort_keys=True)
        if key not in self.cache:
            self.cache[key] = run_program(cfg, stack="prod")
        return self.cache[key]


@pytest.fixture(scope="module")
def renders(registry: SampleRegistry, tmp_path_factory: pytest.TempPathFactory) -> Renders:
    from modelctl.sample import log_sample_references

    log_sample_references(registry, tmp_path_factory.mktemp("reference"))  # kubernetes-drift
    return Renders(registry)


def version_of(name: str) -> str | None:
    """The model version a per-version resource serves (names carry ``-v<version>``)."""
    m = re.search(r"-v(\d+)(?:-|$)", name)
    return m[1] if m else None


def check_transition(diff: StackDiff, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Every way this edit would disturb what serves: a list of readable violations."""
    problems: list[str] = []
    serving = live(before) & live(after)
    for c in diff.changes:
        v = version_of(c.name)
        if v in serving and c.action in ("replace", "delete"):
            problems.append(f"v{v} serves before and after, but {c.type} {c.name} is {c.action}d: {c.reason}")
        if v in serving and c.action == "update" and restarts(c):
            problems.append(f"v{v} serves before and after, but {c.name}: {restarts(c)} ({', '.join(c.paths)})")
        if v in serving and c.action == "update" and c.type not in SCALING_TYPES:
            # per-version serving resources (Model, deployment, deployed model, image) take no
            # rollout input at all; a Deployment may change its replica count only, and what
            # scales a version (HPA, PDB, autoscale setting) may follow its share of traffic
            problems.append(f"v{v} serves before and after, but {c.type} {c.name} is updated: {list(c.paths)}")
        if c.type in ENDPOINT_TYPES and c.action in ("replace", "delete"):
            problems.append(f"the endpoint {c.type} {c.name} is {c.action}d: {c.reason}")
        if c.type in ENDPOINT_TYPES and c.action == "update" and c.type != SM_ENDPOINT and restarts(c):
            problems.append(f"the endpoint {c.name} is updated in a way that restarts it: {restarts(c)}")
        # SageMaker's one expected update: a new endpoint config, deployed blue/green by SageMaker
        # itself (a new fleet, traffic shifted under the alarms); diff must say so
        sm_update = c.type == SM_ENDPOINT and c.action == "update"
        if sm_update and (c.paths != ("endpointConfigName",) or "blue/green" not in (restarts(c) or "")):
            problems.append(f"the SageMaker endpoint is updated beyond its config name: {list(c.paths)}")
        entry_service = c.type == "kubernetes:core/v1:Service" and version_of(c.name) is None
        if entry_service and "preview" not in c.name and c.action in ("replace", "delete"):
            problems.append(f"the entry Service {c.name} is {c.action}d: {c.reason}")
    return problems


def sm_deployment_configs(rendered: Rendered) -> list[str]:
    return [json.dumps(r.inputs["deploymentConfig"], sort_keys=True) for r in rendered.of_type(SM_ENDPOINT)]


CASES = [
    (target, walk)
    for target in TARGETS
    for walk in WALKS
    if not ("shadow" in walk and target not in CAN_MIRROR)
]


@pytest.mark.parametrize(("target", "walk"), CASES, ids=[f"{t}:{w}" for t, w in CASES])
def test_rollout_walk_never_disturbs_what_serves(renders: Renders, target: str, walk: str) -> None:
    states = WALKS[walk]
    problems: list[str] = []
    for before, after in itertools.pairwise(states):
        diff = diff_renders(renders(target, before), renders(target, after))
        problems += [f"{describe(before)} -> {describe(after)}: {p}" for p in check_transition(diff, before, after)]
    assert not problems, "\n".join(problems)


def describe(s: dict[str, Any]) -> str:
    c = s.get("candidate")
    return f"v{s['model']['version']}" + (f" + {c['strategy']} {c['percent']}% v{c['version']}" if c else "")


@pytest.mark.parametrize("target", ["sagemaker", "all-four", "prod-example"])
def test_the_sagemaker_endpoint_deployment_config_is_identical_in_every_state(renders: Renders, target: str) -> None:
    seen = {
        describe(s): sm_deployment_configs(renders(target, s))
        for walk, states in WALKS.items()
        for s in states
        if not ("shadow" in walk and target not in CAN_MIRROR)
    }
    assert all(len(v) == 1 for v in seen.values())
    assert len({v[0] for v in seen.values()}) == 1, seen


def test_a_canary_start_replaces_only_the_endpoint_config_and_creates_the_candidate(renders: Renders) -> None:
    """The walk's checks are only as good as the diff: on one known edit, say exactly what it is."""
    diff = diff_renders(renders("all-four", STABLE1), renders("all-four", state("1", "canary", 10)))
    replaced = {(c.type, c.name) for c in diff.of("replace")}
    assert replaced == {("aws:sagemaker/endpointConfiguration:EndpointConfiguration", "fraud-detector-sm-config")}
    created = {c.name for c in diff.of("create")}
    assert {"fraud-detector-v2", "sm-fraud-detector-v2", "azureml-fraud-detector-v2",
            "fraud-detector-vertex-v2-deploy"} <= created
    assert not diff.of("delete")
    endpoint = diff.find("fraud-detector-sm-endpoint")
    assert endpoint is not None and endpoint.action == "update" and endpoint.paths == ("endpointConfigName",)
    route = diff.find("fraud-detector-route")
    assert route is not None and route.action == "update"
    assert all(p.startswith("spec.rules") for p in route.paths)


def test_the_checks_catch_a_replaced_endpoint(renders: Renders) -> None:
    """Guards the matrix: an edit that does replace a live endpoint is reported as such."""
    before = renders("sagemaker", STABLE1)
    after = renders("sagemaker", STABLE1, {"sagemaker": {**SAGEMAKER, "endpointName": "fraud-detector-2"}})
    diff = diff_renders(before, after)
    endpoint = diff.find("fraud-detector-sm-endpoint")
    assert endpoint is not None and endpoint.action == "replace" and endpoint.delete_first
    assert any("is replaced" in p for p in check_transition(diff, STABLE1, STABLE1))


TAG_EDITS: dict[str, dict[str, Any]] = {
    "sagemaker": {"sagemaker": {**SAGEMAKER, "tags": {"team": "fraud", "cost-center": "ml"}}},
    "azureml": {"azureml": {**AZUREML, "tags": {"team": "fraud", "cost-center": "ml"}}},
    "vertex": {"vertex": {**VERTEX, "labels": {"team": "fraud", "cost-center": "ml"}}},
}


@pytest.mark.parametrize("target", list(TAG_EDITS))
@pytest.mark.parametrize("s", [STABLE1, state("1", "canary", 10)], ids=["stable", "canary"])
def test_a_tag_or_label_edit_updates_in_place(renders: Renders, target: str, s: dict[str, Any]) -> None:
    diff = diff_renders(renders(target, s), renders(target, s, TAG_EDITS[target]))
    assert diff.changes, "the edit changed nothing: the test proves nothing"
    assert not diff.of("replace"), [(c.name, c.reason) for c in diff.of("replace")]
    assert not diff.of("create") and not diff.of("delete")
    assert all(c.action == "update" for c in diff.changes)


# --------------------------------------------------------------------------- monitoring.drift on

DRIFT_TARGETS: dict[str, dict[str, Any]] = {
    # no sagemaker.dataCapture: the stack's own capture bucket (the default)
    "sagemaker": {"kubernetes": None, "sagemaker": SAGEMAKER},
    "azureml": {"kubernetes": None, "azureml": {**AZUREML, "monitor": {
        "storageAccountId": "/subscriptions/0000-sub/resourceGroups/ml-rg/providers/Microsoft.Storage/"
                            "storageAccounts/acmemlstore",
        "container": "azureml-blobstore-1234"}}},
    "vertex": {"kubernetes": None, "vertex": VERTEX},
}  # fmt: skip
DRIFT_IMAGES = {
    "sagemaker": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlflow-deploy-monitor:1.0",
    "azureml": "acmeml.azurecr.io/mlflow-deploy-monitor:1.0",
    "vertex": "europe-west4-docker.pkg.dev/acme-ml/tools/mlflow-deploy-monitor:1.0",
}


@pytest.fixture(scope="module")
def drift_reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    import pandas as pd

    ref = tmp_path_factory.mktemp("drift") / "reference.parquet"
    pd.DataFrame({"a": [1.0, 2.0, 3.0]}).to_parquet(ref)
    return str(ref)


def drift_monitoring(target: str, reference: str, enabled: bool = True) -> dict[str, Any]:
    return {"enabled": True, "drift": {"enabled": enabled, "reference": reference, "image": DRIFT_IMAGES[target]}}


MONITOR_TYPE_PARTS = (
    "scheduler",
    "app:Job",
    "app:ManagedEnvironment",
    "authorization:RoleAssignment",
    "managedidentity",
    "cloudrunv2/job",
    "serviceaccount",
    "iAMMember",
    "s3/bucket",
    "bigquery",
    "metricDescriptor",
)

DRIFT_CASES = [
    (target, walk)
    for target in DRIFT_TARGETS
    for walk in ("canary-promote-rollback", "shadow-abort", "blue-green")
    if not (walk == "shadow-abort" and target == "vertex")
]


@pytest.mark.parametrize(("target", "walk"), DRIFT_CASES, ids=[f"{t}:{w}" for t, w in DRIFT_CASES])
def test_rollout_walk_with_drift_on_never_disturbs_what_serves(
    registry: SampleRegistry, drift_reference: str, target: str, walk: str
) -> None:
    """With drift on, a rollout moves the monitor job's version map and the alarms, never the
    capture (SageMaker's data capture rides the endpoint config SageMaker already replaces blue/green;
    Azure ML's data collector and Vertex's request-response logging are rollout-independent)."""
    cache: dict[str, Rendered] = {}

    def render(s: dict[str, Any]) -> Rendered:
        key = json.dumps(s, sort_keys=True)
        if key not in cache:
            cfg = base_config(registry, **{**DRIFT_TARGETS[target], **s,
                                           "monitoring": drift_monitoring(target, drift_reference)})  # fmt: skip
            cache[key] = run_program(cfg, stack="prod")
        return cache[key]

    problems: list[str] = []
    job_updates = 0
    for before, after in itertools.pairwise(WALKS[walk]):
        diff = diff_renders(render(before), render(after))
        job_updates += sum(
            c.action == "update" and any(k in c.type for k in ("scheduler/schedule", "app:Job", "cloudrunv2/job"))
            for c in diff.changes
        )
        problems += [f"{describe(before)} -> {describe(after)}: {p}" for p in check_transition(diff, before, after)]
        # the scheduled job, its identity and grants, the capture storage and the metric
        # descriptors are updated at most, never replaced
        for c in diff.changes:
            if c.action in ("replace", "delete") and any(k in c.type for k in MONITOR_TYPE_PARTS):
                problems.append(f"{describe(before)} -> {describe(after)}: {c.type} {c.name} is {c.action}d")
    assert not problems, "\n".join(problems)
    # the job's version map moved with the rollout, as an update (the check above would otherwise
    # pass on a walk that never touched the job)
    assert job_updates, f"{target} {walk}: the monitor job was never updated"


@pytest.mark.parametrize("target", list(DRIFT_TARGETS))
def test_turning_drift_on_updates_the_serving_endpoint_in_place(
    registry: SampleRegistry, drift_reference: str, target: str
) -> None:
    """Enabling capture on a live endpoint: SageMaker gets a new endpoint config (deployed blue/green
    by an in-place UpdateEndpoint), Azure ML updates each deployment's dataCollector, Vertex PATCHes
    the endpoint's predictRequestResponseLoggingConfig. Nothing that serves is replaced."""
    s = state("1", "canary", 10)

    def render(enabled: bool) -> Rendered:
        cfg = base_config(registry, **{**DRIFT_TARGETS[target], **s,
                                       "monitoring": drift_monitoring(target, drift_reference, enabled)})  # fmt: skip
        return run_program(cfg, stack="prod")

    diff = diff_renders(render(False), render(True))
    assert diff.changes, "turning drift on changed nothing: the test proves nothing"
    endpoints = [c for c in diff.changes if c.type in ENDPOINT_TYPES]
    assert all(c.action == "update" for c in endpoints), [(c.name, c.action, c.reason) for c in endpoints]
    endpoint = endpoints[0] if endpoints else None
    replaced = {(c.type, c.name) for c in diff.of("replace")}
    if target == "sagemaker":
        # the immutable config is replaced create-first; the endpoint moves to it in place
        assert replaced == {("aws:sagemaker/endpointConfiguration:EndpointConfiguration", "fraud-detector-sm-config")}
        assert endpoint is not None and endpoint.paths == ("endpointConfigName",)
    else:
        assert not replaced, replaced
    if target == "azureml":
        assert endpoint is None  # the collector is the deployments'
        updated = {c.name for c in diff.of("update") if c.type.endswith("OnlineDeployment")}
        assert updated == {"azureml-fraud-detector-v1", "azureml-fraud-detector-v2"}
        assert all(p.startswith("properties.dataCollector") for c in diff.of("update")
                   if c.type.endswith("OnlineDeployment") for p in c.paths)  # fmt: skip
    if target == "vertex":
        assert endpoint is not None and endpoint.paths == ("predictRequestResponseLoggingConfig",)
    assert not diff.of("delete")


def test_the_shipped_prod_example_yaml_is_what_the_matrix_walks() -> None:
    """The prod-example target reads the real file, so a change there is walked too."""
    data = YAML(typ="safe").load((ROOT / "Pulumi.prod.yaml").read_text())
    assert {"mlflow-deploy:kubernetes", "mlflow-deploy:sagemaker", "mlflow-deploy:azureml",
            "mlflow-deploy:vertex"} <= set(data["config"])


@pytest.mark.parametrize(
    "s",
    [STABLE1, state("1", "canary", 50), state("1", "shadow", 20), state("1", "blue-green", 0)],
    ids=["stable", "canary-50", "shadow-20", "blue-green-0"],
)
def test_turning_drift_on_and_off_rolls_versions_in_place(renders: Renders, s: dict[str, Any]) -> None:
    """monitoring.drift adds the capture URL to every model pod: each live version's pods roll in
    place (RollingUpdate), no version's Deployment or Service is replaced or deleted, either way."""
    off = renders("kubernetes-gateway", s)
    on = renders("kubernetes-drift", s)
    for before, after in ((off, on), (on, off)):
        diff = diff_renders(before, after)
        for c in diff.changes:
            if version_of(c.name) in live(s):
                assert c.action == "update", (c.name, c.action, c.reason)
                assert c.type == "kubernetes:apps/v1:Deployment", c.name
                assert all(p.startswith("spec.template.spec.containers") for p in c.paths), c.paths
            assert not (c.type in ENDPOINT_TYPES and c.action in ("replace", "delete")), c.name
        rolled = {c.name for c in diff.of("update") if restarts(c)}
        assert {f"fraud-detector-v{v}" for v in live(s)} <= rolled
