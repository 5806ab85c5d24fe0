"""Azure ML target: the real program under the mock runtime, every strategy, rollback touching
routing only, both model sources, autoscale, alerts; and the pure builders behind them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime.mocks import MockMonitor

from components import azureml
from components.azureml_settings import AZUREML_MAX_MIRROR_PERCENT, AzureMlSettings
from components.image import CONTAINER_PORT
from components.rollout import plan_traffic
from components.settings import AlertThresholds, CandidateSettings, SettingsError, parse_settings
from modelctl.render import MOCK_IDS, Declared, Rendered
from modelctl.sample import SampleRegistry
from tests.conftest import base_config

ENDPOINT = "azure-native:machinelearningservices:OnlineEndpoint"
DEPLOYMENT = "azure-native:machinelearningservices:OnlineDeployment"
ENVIRONMENT = "azure-native:machinelearningservices:EnvironmentVersion"
MODEL_VERSION = "azure-native:machinelearningservices:ModelVersion"
BLOB = "azure-native:storage:Blob"
AUTOSCALE = "azure-native:monitor:AutoscaleSetting"
ALERT = "azure-native:monitor:MetricAlert"
DYNAMIC = "pulumi-python:dynamic:Resource"
IMAGE = "docker-build:index:Image"
AZ = {"resourceGroup": "ml-rg", "workspace": "ml-ws", "location": "westeurope"}
URIS = {v: f"acmeml.azurecr.io/prebuilt/fraud-detector:{v}" for v in ("1", "2", "3")}
ENDPOINT_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")


def cfg(
    registry: SampleRegistry,
    stable: str = "1",
    candidate: dict[str, Any] | None = None,
    az: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    extra.setdefault("image", {"uris": URIS})
    c = base_config(
        registry,
        kubernetes=None,
        model={"name": registry.name, "version": stable},
        azureml={**AZ, **(az or {})},
        **extra,
    )
    if candidate is not None:
        c["mlflow-deploy:candidate"] = candidate
    return c


@pytest.fixture
def registrations(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """What the engine is told beyond the inputs: dependencies, ignoreChanges, provider, by the
    name of each custom resource."""
    seen: dict[str, Any] = {}
    original = MockMonitor.RegisterResource

    def spy(self: Any, request: Any) -> Any:
        resp = original(self, request)
        if request.type == "pulumi:pulumi:Stack" or not request.custom:
            return resp  # components share names with their children (ModelImage azureml-<model>-v1)
        seen[request.name] = {
            "urn": resp.urn,
            "dependencies": set(request.dependencies),
            "property_dependencies": {k: set(v.urns) for k, v in request.propertyDependencies.items()},
            "ignore_changes": list(request.ignoreChanges),
            "provider": request.provider,
        }
        return resp

    monkeypatch.setattr(MockMonitor, "RegisterResource", spy)
    yield seen


def one(out: Rendered, typ: str) -> Declared:
    (r,) = out.of_type(typ)
    return r


def deployments(out: Rendered) -> dict[str, Declared]:
    """OnlineDeployments by the model version their Azure properties say they serve."""
    return {d.inputs["properties"]["properties"]["mlflow.model.version"]: d for d in out.of_type(DEPLOYMENT)}


def traffic_of(out: Rendered) -> tuple[dict[str, int], dict[str, int]]:
    t = one(out, DYNAMIC)
    return t.inputs["traffic"], t.inputs["mirrorTraffic"]


def mock_id(r: Declared) -> str:
    """The mock runtime's id for a resource: ``<name>-id``, or the ARM ID the Azure mocks make up."""
    fn = MOCK_IDS.get(r.type)
    return fn(r.name, r.inputs) if fn else f"{r.name}-id"


# --------------------------------------------------------------------------- one version


def test_single_version_endpoint_and_deployment(
    registry: SampleRegistry, render: Callable[..., Rendered], registrations: dict[str, Any]
) -> None:
    out = render(cfg(registry, az={"instanceCount": 3, "instanceType": "Standard_F8s_v2", "requestTimeoutSeconds": 90}))
    ep = one(out, ENDPOINT)
    assert ep.inputs["resourceGroupName"] == "ml-rg" and ep.inputs["workspaceName"] == "ml-ws"
    assert ep.inputs["properties"]["authMode"] == "Key"
    assert ep.inputs["properties"]["publicNetworkAccess"] == "Enabled"
    assert "traffic" not in ep.inputs["properties"], "traffic is the traffic resource's, not the endpoint's"
    assert set(registrations[ep.name]["ignore_changes"]) >= {"properties.traffic", "properties.mirrorTraffic"}
    assert ENDPOINT_RE.match(ep.inputs["endpointName"])

    (dep,) = out.of_type(DEPLOYMENT)
    p = dep.inputs["properties"]
    assert dep.inputs["endpointName"] == ep.inputs["endpointName"]
    assert dep.inputs["sku"]["capacity"] == 3
    assert p["endpointComputeType"] == "Managed" and p["instanceType"] == "Standard_F8s_v2"
    assert p["requestSettings"]["requestTimeout"] == "PT90S"
    assert p["environmentVariables"]["SERVING_TIMEOUT_SECONDS"] == "90"
    assert {"livenessProbe", "readinessProbe"} <= set(p)
    assert "model" not in p

    env = one(out, ENVIRONMENT)
    assert p["environmentId"] == mock_id(env)
    assert env.inputs["properties"]["image"] == URIS["1"]
    routes = env.inputs["properties"]["inferenceConfig"]
    assert routes["readinessRoute"] == routes["startupRoute"] == {"path": "/ping", "port": CONTAINER_PORT}
    assert routes["livenessRoute"] == {"path": "/version", "port": CONTAINER_PORT}  # answers during the load
    assert routes["scoringRoute"] == {"path": "/invocations", "port": CONTAINER_PORT}
    assert env.inputs["version"].startswith("1-")

    traffic, mirror = traffic_of(out)
    assert traffic == {dep.inputs["deploymentName"]: 100} and mirror == {}
    # every Azure resource belongs to the component
    component = [r for r in out.resources if r.type == "mlflow-deploy:index:AzureMlModelEndpoint"]
    assert len(component) == 1
    assert all(r.parent == component[0].name for r in out.resources if r.type.startswith("azure-native:"))

    exported = out.outputs["azureml"]
    assert exported["endpointName"] == ep.inputs["endpointName"]
    assert ep.inputs["endpointName"] in exported["scoringUri"] and "westeurope" in exported["scoringUri"]
    assert exported["liveVersions"] == ["1"] and exported["traffic"] == traffic


def test_traffic_is_set_after_the_deployments(
    registry: SampleRegistry, render: Callable[..., Rendered], registrations: dict[str, Any]
) -> None:
    out = render(cfg(registry, candidate={"version": "2", "strategy": "canary", "percent": 10}))
    t = one(out, DYNAMIC)
    deps = registrations[t.name]["dependencies"]
    for d in out.of_type(DEPLOYMENT):
        assert registrations[d.name]["urn"] in deps, f"traffic does not wait for {d.name}"
    ep = one(out, ENDPOINT)
    assert registrations[ep.name]["urn"] in registrations[t.name]["property_dependencies"]["endpointId"]
    assert t.inputs["endpointId"] == mock_id(ep)
    for d in out.of_type(DEPLOYMENT):  # and each deployment waits for the endpoint
        assert registrations[ep.name]["urn"] in registrations[d.name]["dependencies"]


# --------------------------------------------------------------------------- strategies


@pytest.mark.parametrize(
    "strategy,percent",
    [
        ("canary", 10),
        ("canary", 50),
        ("canary", 0),
        ("blue-green", 0),
        ("blue-green", 100),
        ("shadow", 25),
        ("shadow", AZUREML_MAX_MIRROR_PERCENT),
    ],
)
def test_every_strategy_routes_by_the_plan(
    registry: SampleRegistry, render: Callable[..., Rendered], strategy: str, percent: int
) -> None:
    out = render(cfg(registry, stable="1", candidate={"version": "3", "strategy": strategy, "percent": percent}))
    deps = deployments(out)
    assert set(deps) == {"1", "3"}, "both versions are deployed"
    name = {v: d.inputs["deploymentName"] for v, d in deps.items()}
    traffic, mirror = traffic_of(out)
    assert set(traffic) | set(mirror) <= set(name.values())
    if strategy == "shadow":
        assert traffic == {name["1"]: 100}
        assert mirror == {name["3"]: percent}
    else:
        assert mirror == {}
        assert traffic == {name["1"]: 100 - percent, name["3"]: percent}
    assert out.outputs["azureml"]["mirrorTraffic"] == mirror


@pytest.mark.parametrize("candidate", [{"strategy": "shadow", "percent": 60}, {"strategy": "shadow"}])
def test_shadow_above_the_azure_cap_fails_before_any_resource(
    registry: SampleRegistry,
    render: Callable[..., Rendered],
    registrations: dict[str, Any],
    candidate: dict[str, Any],
) -> None:
    with pytest.raises(SettingsError) as err:
        render(cfg(registry, candidate={"version": "2", **candidate}))
    assert "mlflow-deploy:candidate.percent" in str(err.value)
    assert f"at most {AZUREML_MAX_MIRROR_PERCENT}%" in str(err.value)
    assert registrations == {}, "nothing was declared"


@pytest.mark.parametrize(
    "candidate",
    [
        {"version": "2", "strategy": "canary", "percent": 30},
        {"version": "2", "strategy": "blue-green", "percent": 0},
        {"version": "2", "strategy": "blue-green", "percent": 100},
        {"version": "2", "strategy": "shadow", "percent": 20},
    ],
)
def test_rollback_touches_routing_only(
    registry: SampleRegistry, render: Callable[..., Rendered], candidate: dict[str, Any]
) -> None:
    """Dropping the candidate leaves every resource of the stable version as it was; only the
    traffic resource changes (and the candidate's resources go)."""
    extra = {"az": {"autoscale": {"minInstances": 2, "maxInstances": 4}}}
    with_candidate = render(cfg(registry, stable="1", candidate=candidate, **extra))
    without = render(cfg(registry, stable="1", **extra))

    def of_version(out: Rendered, version: str) -> dict[str, dict[str, Any]]:
        prefix = f"azureml-fraud-detector-v{version}"
        # custom resources only: the version's ModelImage component shares its deployment's name
        return {
            r.name: r.inputs
            for r in out.resources
            if r.custom and (r.name == prefix or r.name.startswith(prefix + "-"))
        }

    stable_before, stable_after = of_version(with_candidate, "1"), of_version(without, "1")
    assert {n.rsplit("-", 1)[-1] for n in stable_after} >= {"v1", "env", "autoscale"}
    assert stable_before == stable_after
    assert one(with_candidate, ENDPOINT).inputs == one(without, ENDPOINT).inputs
    assert of_version(without, "2") == {}
    assert traffic_of(with_candidate) != traffic_of(without)


def test_promote_keeps_the_candidate_deployment_as_it_was(
    registry: SampleRegistry, render: Callable[..., Rendered]
) -> None:
    trial = render(cfg(registry, stable="1", candidate={"version": "2", "strategy": "canary", "percent": 50}))
    promoted = render(cfg(registry, stable="2"))
    assert deployments(trial)["2"].inputs == deployments(promoted)["2"].inputs
    assert set(deployments(promoted)) == {"2"}
    (name,) = [d.inputs["deploymentName"] for d in promoted.of_type(DEPLOYMENT)]
    assert traffic_of(promoted) == ({name: 100}, {})


# --------------------------------------------------------------------------- settings on the endpoint


def test_aad_token_and_private_endpoint(registry: SampleRegistry, render: Callable[..., Rendered]) -> None:
    out = render(cfg(registry, az={"authMode": "aad_token", "publicNetworkAccess": False, "endpointName": "fraud-x"}))
    ep = one(out, ENDPOINT)
    assert ep.inputs["properties"]["authMode"] == "AADToken"
    assert ep.inputs["properties"]["publicNetworkAccess"] == "Disabled"
    assert ep.inputs["endpointName"] == "fraud-x"
    assert out.outputs["azureml"]["endpointName"] == "fraud-x"


def test_a_subscription_gets_its_own_provider(
    registry: SampleRegistry, render: Callable[..., Rendered], registrations: dict[str, Any]
) -> None:
    sub = "11111111-2222-3333-4444-555555555555"
    out = render(cfg(registry, az={"subscriptionId": sub}))
    (prov,) = out.of_type("pulumi:providers:azure-native")
    assert prov.inputs["subscriptionId"] == sub
    for r in out.resources:
        if r.type.startswith("azure-native:"):
            assert registrations[r.name]["provider"].startswith(registrations[prov.name]["urn"]), r.name


def test_endpoint_changes_re_apply_the_traffic(registry: SampleRegistry, render: Callable[..., Rendered]) -> None:
    """An update of the endpoint is followed by a write of the traffic (its revision changes)."""
    a = one(render(cfg(registry)), DYNAMIC).inputs["revision"]
    b = one(render(cfg(registry, az={"publicNetworkAccess": False})), DYNAMIC).inputs["revision"]
    c = one(render(cfg(registry)), DYNAMIC).inputs["revision"]
    assert a != b and a == c


# --------------------------------------------------------------------------- autoscale


def test_autoscale_on_each_deployment(
    registry: SampleRegistry, render: Callable[..., Rendered], registrations: dict[str, Any]
) -> None:
    az = {"instanceCount": 6, "autoscale": {"minInstances": 2, "maxInstances": 5, "targetUtilization": 60}}
    out = render(cfg(registry, candidate={"version": "2", "strategy": "canary", "percent": 10}, az=az))
    deps = {d.name: d for d in out.of_type(DEPLOYMENT)}
    scales = out.of_type(AUTOSCALE)
    assert {s.inputs["targetResourceUri"] for s in scales} == {mock_id(d) for d in deps.values()}
    for s in scales:
        (profile,) = s.inputs["profiles"]
        assert profile["capacity"] == {"minimum": "2", "maximum": "5", "default": "5"}
        rules = {r["scaleAction"]["direction"]: r for r in profile["rules"]}
        up, down = rules["Increase"]["metricTrigger"], rules["Decrease"]["metricTrigger"]
        assert up["metricName"] == down["metricName"] == "CpuUtilizationPercentage"
        assert up["metricResourceUri"] == s.inputs["targetResourceUri"]
        assert up["operator"] == "GreaterThan" and up["threshold"] == 60
        assert down["operator"] == "LessThan" and 0 < down["threshold"] < 60
    for d in deps.values():
        assert d.inputs["sku"]["capacity"] == 5, "instanceCount is kept within the autoscale bounds"
        assert "sku.capacity" in registrations[d.name]["ignore_changes"], "autoscale owns the count"


def test_without_autoscale_the_count_is_managed(
    registry: SampleRegistry, render: Callable[..., Rendered], registrations: dict[str, Any]
) -> None:
    out = render(cfg(registry, az={"instanceCount": 2}))
    assert out.of_type(AUTOSCALE) == []
    (d,) = out.of_type(DEPLOYMENT)
    assert d.inputs["sku"]["capacity"] == 2 and "sku.capacity" not in registrations[d.name]["ignore_changes"]


# --------------------------------------------------------------------------- alerts


def test_alerts_follow_the_monitoring_thresholds(registry: SampleRegistry, render: Callable[..., Rendered]) -> None:
    group = "/subscriptions/0000/resourceGroups/ops/providers/microsoft.insights/actionGroups/oncall"
    monitoring = {"enabled": True, "thresholds": {"errorRatio": 0.1, "p99LatencySeconds": 2.5, "for": "10m"}}
    az = {"actionGroupId": group, "expectedRequestsPerMinute": 300}
    out = render(cfg(registry, az=az, monitoring=monitoring))
    ep = one(out, ENDPOINT)
    alerts = {a.inputs["criteria"]["allOf"][0]["metricName"]: a for a in out.of_type(ALERT)}
    assert set(alerts) == {"RequestLatency_P99", "RequestsPerMinute"}
    for a in alerts.values():
        assert a.inputs["scopes"] == [mock_id(ep)]
        assert a.inputs["actions"] == [{"actionGroupId": group}]
        assert a.inputs["windowSize"] == "PT15M", "10m is not an Azure window: the next larger one"
        (crit,) = a.inputs["criteria"]["allOf"]
        assert {"name": "deployment", "operator": "Include", "values": ["*"]} in crit["dimensions"]
    latency = alerts["RequestLatency_P99"].inputs["criteria"]["allOf"][0]
    assert latency["threshold"] == pytest.approx(2.5 * 1000)  # the metric is in milliseconds
    errors = alerts["RequestsPerMinute"].inputs["criteria"]["allOf"][0]
    assert errors["threshold"] == pytest.approx(0.1 * 300)
    assert {"name": "statusCodeClass", "operator": "Include", "values": ["5xx"]} in errors["dimensions"]


def test_no_alerts_when_monitoring_is_off(registry: SampleRegistry, render: Callable[..., Rendered]) -> None:
    assert render(cfg(registry, monitoring={"enabled": False})).of_type(ALERT) == []


# --------------------------------------------------------------------------- model sources


def test_mlflow_model_source_uploads_the_registry_artifacts(
    registry: SampleRegistry, render: Callable[..., Rendered], registrations: dict[str, Any], tmp_path: Path
) -> None:
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    store = {"storageAccount": "acmemlws", "container": "azureml-blobstore-1234", "resourceGroup": "data-rg"}
    out = render(cfg(registry, az={"modelSource": "mlflow_model", "modelStore": store}))
    assert out.of_type(ENVIRONMENT) == [] and out.of_type(IMAGE) == []

    mv = one(out, MODEL_VERSION)
    assert mv.inputs["version"] == "1"
    assert mv.inputs["properties"]["modelType"] == "mlflow_model"
    uri = mv.inputs["properties"]["modelUri"]
    assert uri.startswith("azureml://datastores/workspaceblobstore/paths/")
    path = uri.split("/paths/", 1)[1].rstrip("/")

    # the blobs are exactly the files MLflow serves for version 1, under the model's path
    src = MlflowClient(registry.tracking_uri).get_model_version_download_uri(registry.name, "1")
    local = Path(download_artifacts(artifact_uri=src, dst_path=str(tmp_path)))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert "MLmodel" in files
    blobs = out.of_type(BLOB)
    assert {b.inputs["blobName"] for b in blobs} == {f"{path}/{f}" for f in files}
    for b in blobs:
        assert b.inputs["accountName"] == "acmemlws" and b.inputs["containerName"] == "azureml-blobstore-1234"
        assert b.inputs["resourceGroupName"] == "data-rg"
        assert registrations[b.name]["urn"] in registrations[mv.name]["dependencies"]

    (dep,) = out.of_type(DEPLOYMENT)
    assert dep.inputs["properties"]["model"] == mock_id(mv)
    assert "environmentId" not in dep.inputs["properties"]


def test_image_source_builds_into_the_workspace_registry(
    registry: SampleRegistry, render: Callable[..., Rendered]
) -> None:
    out = render(cfg(registry, az={"containerRegistry": "acmeml.azurecr.io"}, image={"repository": None}))
    images = out.of_type(IMAGE)
    assert len(images) == 1
    (tag,) = images[0].inputs["tags"]
    assert tag.startswith("acmeml.azurecr.io/fraud-detector:v1-")
    env = one(out, ENVIRONMENT)
    assert env.inputs["properties"]["image"] == tag  # no digest in a preview: the tag


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "az,key",
    [
        ({"modelSource": "mlflow_model"}, "azureml.modelStore"),
        ({"endpointName": "7-fraud"}, "azureml.endpointName"),
        ({"endpointName": "x" * 33}, "azureml.endpointName"),
        ({"autoscale": {"minInstances": 4, "maxInstances": 2}}, "azureml.autoscale"),
        ({"requestTimeoutSeconds": 600}, "azureml.requestTimeoutSeconds"),
        ({"authMode": "aml_token"}, "azureml.authMode"),
        ({"instanceCount": 0}, "azureml.instanceCount"),
        ({"workspce": "typo"}, "azureml.workspce"),
        (
            {"modelSource": "mlflow_model", "modelStore": {"storageAccount": "acct", "container": "models"},
             "batchMaxSize": 8},
            "azureml.batchMaxSize",
        ),
        ({"batchMaxSize": 2000}, "azureml.batchMaxSize"),
    ],
)
def test_settings_errors_name_the_key(az: dict[str, Any], key: str) -> None:
    with pytest.raises(SettingsError) as err:
        parse_settings({"model": {"name": "m", "version": "1"}, "image": {"uris": URIS}, "azureml": {**AZ, **az}})
    assert f"mlflow-deploy:{key}" in [p for p, _ in err.value.errors]


def test_a_built_image_needs_a_registry_the_workspace_pulls_from() -> None:
    with pytest.raises(SettingsError) as err:
        parse_settings({"model": {"name": "m", "version": "1"}, "azureml": AZ})
    assert [p for p, _ in err.value.errors] == ["mlflow-deploy:azureml.containerRegistry"]
    # a prebuilt image, an ACR, or image.repository will do
    for extra in ({"image": {"uris": {"1": "x/y:1"}}}, {"image": {"repository": "ghcr.io/acme"}}):
        parse_settings({"model": {"name": "m", "version": "1"}, "azureml": AZ, **extra})
    parse_settings({"model": {"name": "m", "version": "1"}, "azureml": {**AZ, "containerRegistry": "a.azurecr.io"}})


# --------------------------------------------------------------------------- pure builders


@pytest.mark.parametrize(
    "model,stack",
    [("fraud-detector", "prod"), ("Fraud_Detector v2", "dev"), ("x" * 80, "production-eu"), ("7up", "s"), ("a", "b")],
)
def test_endpoint_names_are_valid_azure_names(model: str, stack: str) -> None:
    name = azureml.endpoint_name(model, stack, AzureMlSettings(**AZ))
    assert ENDPOINT_RE.match(name), name
    assert azureml.endpoint_name(model, stack, AzureMlSettings(**AZ)) == name, "deterministic"
    assert azureml.endpoint_name(model, "other", AzureMlSettings(**AZ)) != name, "the stack is part of it"


def test_deployment_names_fit_and_differ_per_version() -> None:
    names = {v: azureml.deployment_name("a-very-long-model-name-for-fraud-detection", v) for v in ("1", "12", "123")}
    assert len(set(names.values())) == 3
    assert all(len(n) <= azureml.DEPLOYMENT_NAME_MAX and n.endswith(f"-v{v}") for v, n in names.items())


@pytest.mark.parametrize("strategy", ["canary", "blue-green", "shadow"])
def test_traffic_maps_always_satisfy_azure(strategy: str) -> None:
    percents = [0, 100] if strategy == "blue-green" else range(0, 51 if strategy == "shadow" else 101, 5)
    for pct in percents:
        plan = plan_traffic("7", CandidateSettings(version="8", strategy=strategy, percent=pct))
        traffic, mirror = azureml.traffic_maps("fd", plan)
        assert sum(traffic.values()) == 100
        assert sum(mirror.values()) == (pct if strategy == "shadow" else 0)
        assert not set(k for k, v in mirror.items() if v) & set(k for k, v in traffic.items() if v)


def test_traffic_maps_refuse_a_mirror_above_the_cap() -> None:
    plan = plan_traffic("7", CandidateSettings(version="8", strategy="shadow", percent=80))
    with pytest.raises(ValueError, match=r"candidate\.percent"):
        azureml.traffic_maps("fd", plan)


@pytest.mark.parametrize(
    "for_,window",
    [
        ("30s", "PT1M"),
        ("1m", "PT1M"),
        ("5m", "PT5M"),
        ("6m", "PT15M"),
        ("45m", "PT1H"),
        ("2h", "PT6H"),
        ("48h", "PT24H"),
    ],
)
def test_window_size(for_: str, window: str) -> None:
    assert azureml.window_size(for_) == window


def test_error_threshold_is_at_least_one_request() -> None:
    tiny = AlertThresholds(error_ratio=0.01)
    assert azureml.error_threshold_per_minute(tiny, AzureMlSettings(**AZ, expected_requests_per_minute=10)) == 1.0
    assert azureml.error_threshold_per_minute(tiny, AzureMlSettings(**AZ, expected_requests_per_minute=5000)) == 50


@pytest.mark.parametrize("target", [10, 50, 70, 95])
def test_scale_in_below_scale_out(target: int) -> None:
    t = azureml.scale_in_threshold(target)
    assert 0 < t < target
    # with n >= 2 instances below t, one instance less stays below the scale-out target
    for n in range(2, 10):
        assert t * n / (n - 1) <= target


def test_environment_version_changes_with_the_image_only() -> None:
    a = azureml.environment_version("7", "acr.io/m:v7-aaa")
    assert a == azureml.environment_version("7", "acr.io/m:v7-aaa")
    assert a != azureml.environment_version("7", "acr.io/m:v7-bbb")
    assert a.startswith("7-") and re.fullmatch(r"[0-9A-Za-z._-]+", a)


def test_deployment_properties_need_exactly_one_source() -> None:
    cfg_ = AzureMlSettings(**AZ)
    with pytest.raises(ValueError):
        azureml.deployment_properties("m", "1", cfg_)
    with pytest.raises(ValueError):
        azureml.deployment_properties("m", "1", cfg_, environment_id="e", model_id="m")


def test_the_prod_example_renders(registry: SampleRegistry, render: Callable[..., Rendered]) -> None:
    from modelctl.render import read_stack_config

    prod = read_stack_config(Path(__file__).resolve().parents[2] / "Pulumi.prod.yaml")["mlflow-deploy:azureml"]
    az = AzureMlSettings.model_validate(prod)
    assert az.instance_count >= 3 and az.action_group_id and az.autoscale is not None
    out = render(cfg(registry, az=prod, monitoring={"enabled": True}))
    (dep,) = out.of_type(DEPLOYMENT)
    assert dep.inputs["sku"]["capacity"] == az.instance_count
    assert one(out, ENDPOINT).inputs["endpointName"] == az.endpoint_name
    assert len(out.of_type(ALERT)) == 2 and len(out.of_type(AUTOSCALE)) == 1
