"""VertexModelService under the mock runtime: what every resource is declared with, for every
strategy Vertex supports, and what a rollback changes (routing only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from components.settings import SettingsError
from components.vertex_provider import ModelDeploymentProvider, TrafficSplitProvider
from modelctl.render import Declared, Rendered
from modelctl.sample import SampleRegistry
from tests.components.vertex_fake import FakeVertex
from tests.conftest import base_config

COMPONENT = "mlflow-deploy:index:VertexModelService"
DYNAMIC = "pulumi-python:dynamic:Resource"
ENDPOINT = "gcp:vertex/aiEndpoint:AiEndpoint"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"
IMAGE = "docker-build:index:Image"
NAME = "fraud-detector-vertex"
VERTEX = {"project": "acme-ml", "region": "europe-west4", "minReplicas": 1, "maxReplicas": 3}

Render = Callable[..., Rendered]


def vertex_config(registry: SampleRegistry, vertex: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    return base_config(registry, kubernetes=None, vertex={**VERTEX, **(vertex or {})}, **overrides)


def deployments(out: Rendered) -> dict[str, Declared]:
    """version -> its VertexModelDeployment."""
    return {r.inputs["version"]: r for r in out.of_type(DYNAMIC) if r.name.endswith("-deploy")}


def split(out: Rendered) -> dict[str, int]:
    """The declared traffic split, by version (through the deployments' IDs)."""
    by_id = {d.inputs["deployedModelId"]: v for v, d in deployments(out).items()}
    traffic = out.named(f"{NAME}-traffic").inputs["trafficSplit"]
    assert set(traffic) <= set(by_id), "the split names deployed models only"
    return {by_id[i]: pct for i, pct in traffic.items()}




@pytest.fixture
def stable_only(render: Render, registry: SampleRegistry) -> Rendered:
    return render(vertex_config(registry))


@pytest.fixture
def canary(render: Render, registry: SampleRegistry) -> Rendered:
    return render(vertex_config(registry, candidate={"version": "2", "strategy": "canary", "percent": 10}))


# --------------------------------------------------------------------------- what is declared


def test_stable_only_one_upload_and_deployment_taking_all_traffic(stable_only: Rendered) -> None:
    deps = deployments(stable_only)
    assert list(deps) == ["1"]
    d = deps["1"].inputs
    assert d["endpoint"] == "projects/acme-ml/locations/europe-west4/endpoints/fraud-detector"
    assert (d["machineType"], d["minReplicas"], d["maxReplicas"]) == ("n1-standard-2", 1, 3)
    assert split(stable_only) == {"1": 100}
    # every resource of the target is a child of the component
    comp = stable_only.of_type(COMPONENT)[0]
    for r in stable_only.resources:
        if r.type.startswith("gcp:") or r.type == DYNAMIC:
            assert r.parent == comp.name, r.name


def test_the_container_is_the_project_image_on_8080_with_the_serving_routes(stable_only: Rendered) -> None:
    c = deployments(stable_only)["1"].inputs["container"]
    assert (c["port"], c["predictRoute"], c["healthRoute"]) == (8080, "/invocations", "/ping")
    assert c["env"]["MODEL_NAME"] == "fraud-detector" and c["env"]["MODEL_VERSION"] == "1"
    # the image is the one built for version 1 and pushed to the stack's Artifact Registry repository
    repo = stable_only.named(f"{NAME}-images").inputs
    assert (repo["format"], repo["location"], repo["project"]) == ("DOCKER", "europe-west4", "acme-ml")
    assert repo["dockerConfig"] == {"immutableTags": True}
    pushed = f"europe-west4-docker.pkg.dev/acme-ml/{repo['repositoryId']}/fraud-detector"
    [image] = [i for i in stable_only.of_type(IMAGE) if i.parent == "vertex-fraud-detector-v1"]
    assert image.inputs["push"] is True and image.inputs["tags"] == [c["imageUri"]]
    assert c["imageUri"].startswith(f"{pushed}:v1-")
    assert stable_only.outputs["vertex"]["imageRepository"] == pushed


def test_the_endpoint_ignores_traffic_split_changes(
    render: Render, registry: SampleRegistry, requests: list[Any]
) -> None:
    out = render(vertex_config(registry))
    ep = out.named(f"{NAME}-endpoint").inputs
    assert (ep["name"], ep["location"], ep["project"]) == ("fraud-detector", "europe-west4", "acme-ml")
    assert "trafficSplit" not in ep
    [reg] = [r for r in requests if r.type == ENDPOINT]
    assert list(reg.ignoreChanges) == ["trafficSplit"]


def test_canary_two_deployments_and_a_weighted_split(canary: Rendered) -> None:
    assert set(deployments(canary)) == {"1", "2"}
    assert split(canary) == {"1": 90, "2": 10}
    assert canary.outputs["vertex"]["traffic"] == {"1": 90, "2": 10}
    ids = {v: d.inputs["deployedModelId"] for v, d in deployments(canary).items()}
    assert canary.outputs["vertex"]["deployedModels"] == ids and len(set(ids.values())) == 2


def test_versions_deploy_one_after_the_other_and_the_split_after_both(
    render: Render, registry: SampleRegistry, requests: list[Any]
) -> None:
    out = render(vertex_config(registry, candidate={"version": "2", "percent": 25}))
    deps = deployments(out)
    reg = {r.name: r for r in requests}
    assert deps["1"].urn in reg[deps["2"].name].dependencies
    traffic_deps = set(reg[f"{NAME}-traffic"].dependencies)
    assert {deps["1"].urn, deps["2"].urn} <= traffic_deps


@pytest.mark.parametrize(("percent", "expected"), [(0, {"1": 100}), (100, {"2": 100})])
def test_blue_green_keeps_both_deployed_and_switches_the_split(
    render: Render, registry: SampleRegistry, percent: int, expected: dict[str, int]
) -> None:
    out = render(vertex_config(registry, candidate={"version": "2", "strategy": "blue-green", "percent": percent}))
    assert set(deployments(out)) == {"1", "2"}  # the idle colour stays warm
    assert split(out) == expected


def test_shadow_fails_before_any_resource(render: Render, registry: SampleRegistry, requests: list[Any]) -> None:
    with pytest.raises(SettingsError, match=r"mlflow-deploy:candidate\.strategy: Vertex AI endpoints cannot mirror"):
        render(vertex_config(registry, candidate={"version": "2", "strategy": "shadow", "percent": 20}))
    assert [r.type for r in requests if r.type != "pulumi:pulumi:Stack"] == []


# --------------------------------------------------------------------------- rollback / promote


def test_rollback_changes_the_split_and_drops_the_candidate_only(
    canary: Rendered, stable_only: Rendered, registry: SampleRegistry
) -> None:
    before, after = deployments(canary)["1"], deployments(stable_only)["1"]
    assert before.name == after.name and before.inputs == after.inputs
    # the provider agrees: no update, no replacement of the stable deployment
    assert ModelDeploymentProvider().diff("id", before.inputs, after.inputs).changes is False
    assert "2" not in deployments(stable_only)
    traffic_before = canary.named(f"{NAME}-traffic").inputs
    traffic_after = stable_only.named(f"{NAME}-traffic").inputs
    d = TrafficSplitProvider().diff("id", traffic_before, traffic_after)
    assert d.changes and d.replaces == []


def test_rollback_applied_to_vertex_touches_only_routing_and_the_candidate(
    canary: Rendered, stable_only: Rendered
) -> None:
    """Apply the canary render to an in-memory Vertex AI the way the engine would, then the
    rollback render: the stable version is never uploaded, deployed or mutated again."""
    fake = FakeVertex(project="acme-ml", region="europe-west4")
    fake.add_endpoint("fraud-detector")
    deployer = ModelDeploymentProvider(api_factory=lambda region: fake)
    router = TrafficSplitProvider(api_factory=lambda region: fake)
    states = {v: deployer.create(d.inputs) for v, d in deployments(canary).items()}
    router.create(canary.named(f"{NAME}-traffic").inputs)
    stable_id = deployments(canary)["1"].inputs["deployedModelId"]
    cand_id = deployments(canary)["2"].inputs["deployedModelId"]
    assert fake.split("fraud-detector") == {stable_id: 90, cand_id: 10}

    mark = len(fake.calls)
    # pulumi up with the rollback config: stable unchanged (diff says so), split updated, candidate deleted
    stable_after = deployments(stable_only)["1"].inputs
    assert not deployer.diff("id", states["1"].outs or {}, stable_after).changes
    router.update("id", canary.named(f"{NAME}-traffic").inputs, stable_only.named(f"{NAME}-traffic").inputs)
    deployer.delete(states["2"].id, states["2"].outs or {})
    writes = [c for c in fake.calls[mark:] if c[0] not in ("get_model", "get_endpoint")]
    assert [c[0] for c in writes] == ["set_traffic_split", "undeploy_model", "delete_model"]
    assert fake.split("fraud-detector") == {stable_id: 100}
    assert set(fake.endpoints["fraud-detector"].deployed) == {stable_id}


def test_promote_does_not_redeploy_the_candidate(render: Render, registry: SampleRegistry, canary: Rendered) -> None:
    promoted = render(vertex_config(registry, model={"name": registry.name, "version": "2"}))
    assert deployments(promoted)["2"].inputs == deployments(canary)["2"].inputs
    assert split(promoted) == {"2": 100}


# --------------------------------------------------------------------------- options


def test_alert_policies_follow_the_shared_thresholds(render: Render, registry: SampleRegistry) -> None:
    channel = "projects/acme-ml/notificationChannels/42"
    monitoring = {"enabled": True, "thresholds": {"errorRatio": 0.02, "p99LatencySeconds": 2.5, "for": "90s"}}
    out = render(vertex_config(registry, {"notificationChannels": [channel]}, monitoring=monitoring))
    errors, latency = out.named(f"{NAME}-errors").inputs, out.named(f"{NAME}-latency").inputs
    for policy in (errors, latency):
        assert policy["notificationChannels"] == [channel] and policy["project"] == "acme-ml"
        [cond] = policy["conditions"]
        t = cond["conditionThreshold"]
        assert 'resource.labels.endpoint_id="fraud-detector"' in t["filter"]
        assert t["duration"] == "120s"  # 90s, rounded up to whole minutes
        assert t["aggregations"][0]["groupByFields"] == ["metric.label.deployed_model_id"]
    e = errors["conditions"][0]["conditionThreshold"]
    assert "prediction/online/error_count" in e["filter"]
    assert "prediction/online/prediction_count" in e["denominatorFilter"]
    assert e["thresholdValue"] == pytest.approx(0.02) and e["comparison"] == "COMPARISON_GT"
    lat = latency["conditions"][0]["conditionThreshold"]
    assert "prediction/online/prediction_latencies" in lat["filter"]
    assert lat["thresholdValue"] == pytest.approx(2500)  # the metric is in milliseconds
    assert lat["aggregations"][0]["perSeriesAligner"] == "ALIGN_PERCENTILE_99"


def test_no_alerts_when_monitoring_is_off(stable_only: Rendered) -> None:
    assert stable_only.of_type(ALERT) == []


def test_prebuilt_image_is_used_as_is_and_nothing_is_built(render: Render, registry: SampleRegistry) -> None:
    uri = "europe-west4-docker.pkg.dev/acme-ml/shared/fraud-detector:1"
    out = render(vertex_config(registry, image={"uris": {"1": uri}}))
    assert deployments(out)["1"].inputs["container"]["imageUri"] == uri
    assert out.of_type(IMAGE) == [] and out.of_type(REPOSITORY) == []


def test_existing_repository(render: Render, registry: SampleRegistry) -> None:
    out = render(vertex_config(registry, {"createRepository": False, "repositoryId": "models"}))
    assert out.of_type(REPOSITORY) == []
    image = deployments(out)["1"].inputs["container"]["imageUri"]
    assert image.startswith("europe-west4-docker.pkg.dev/acme-ml/models/fraud-detector:v1-")


def test_private_service_connect_endpoint_has_no_public_url(render: Render, registry: SampleRegistry) -> None:
    out = render(vertex_config(registry, {"privateServiceConnect": {"projectAllowlist": ["acme-apps"]}}))
    psc = out.named(f"{NAME}-endpoint").inputs["privateServiceConnectConfig"]
    assert psc == {"enablePrivateServiceConnect": True, "projectAllowlists": ["acme-apps"]}
    assert out.outputs["vertex"].get("predictUrl") is None  # None exports are dropped


def test_network_endpoint_and_public_url(render: Render, registry: SampleRegistry, stable_only: Rendered) -> None:
    out = render(vertex_config(registry, {"network": "projects/123/global/networks/ml", "endpointId": "1234567890"}))
    ep = out.named(f"{NAME}-endpoint").inputs
    assert ep["network"] == "projects/123/global/networks/ml" and ep["name"] == "1234567890"
    assert deployments(out)["1"].inputs["endpoint"].endswith("/endpoints/1234567890")
    assert stable_only.outputs["vertex"]["predictUrl"] == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme-ml/locations/europe-west4"
        "/endpoints/fraud-detector:predict"
    )


def test_enable_apis_never_disables_them_on_destroy(render: Render, registry: SampleRegistry) -> None:
    out = render(vertex_config(registry, {"enableApis": True}, monitoring={"enabled": True}))
    services = out.of_type("gcp:projects/service:Service")
    assert sorted(s.inputs["service"] for s in services) == [
        "aiplatform.googleapis.com",
        "artifactregistry.googleapis.com",
        "monitoring.googleapis.com",
    ]
    assert all(s.inputs["disableOnDestroy"] is False for s in services)


def test_vertex_beside_kubernetes(render: Render, registry: SampleRegistry) -> None:
    out = render(base_config(registry, vertex=VERTEX, candidate={"version": "2", "percent": 30}))
    assert split(out) == {"1": 70, "2": 30}
    assert out.of_type("kubernetes:apps/v1:Deployment")  # the other target is still there
    assert out.outputs["vertex"]["liveVersions"] == ["1", "2"]


# --------------------------------------------------------------------------- the container contract, for real


def test_serving_runtime_answers_vertex_predict_requests(registry: SampleRegistry) -> None:
    """Vertex forwards ``{"instances": [...], "parameters": {...}}`` to the predict route and
    wants ``{"predictions": [...]}`` back, after the health route answers 200: run the project's
    serving runtime on the registry model and send it exactly that."""
    import httpx

    from components.settings import VertexSettings
    from components.vertex import HEALTH_ROUTE, PREDICT_ROUTE, container_env
    from modelctl.sample import sample_frame
    from serving.local import run_local

    env = container_env(registry.name, "1", VertexSettings(project="acme-ml"))
    env.pop("SERVING_PORT")  # the test server picks a free port
    features, _ = sample_frame(rows=3)
    body = {"instances": features.to_dict(orient="records"), "parameters": {"confidence": 0.5}}
    server_env = {**env, "MLFLOW_TRACKING_URI": registry.tracking_uri, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}
    with run_local(f"models:/{registry.name}/1", env=server_env) as url:
        assert httpx.get(f"{url}{HEALTH_ROUTE}", timeout=30).status_code == 200
        response = httpx.post(f"{url}{PREDICT_ROUTE}", json=body, timeout=60)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 3 and all(p in (0, 1) for p in predictions)
