"""The Vertex AI dynamic providers against an in-memory Vertex AI (tests/components/vertex_fake.py):
create, diff, update, delete, partial failures and re-runs that converge; the pure ID and
traffic-split decisions; the google-cloud-aiplatform adapter's requests; provider serialization."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from components.vertex import deployment_inputs
from components.vertex_provider import CPU_METRIC as CPU
from components.vertex_provider import REQUEST_COUNT_METRIC as REQUESTS
from components.vertex_provider import (
    AiplatformApi,
    ModelDeploymentProvider,
    TrafficSplitProvider,
    apportion,
    deployed_model_id_for,
    model_id_for,
    split_without,
)
from components.vertex_settings import VertexSettings
from tests.components.vertex_fake import PROJECT_NUMBER, FakeVertex, FakeVertexError

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "europe-west4-docker.pkg.dev/acme-ml/fraud-detector/fraud-detector:v{v}-abc"
CFG = VertexSettings(project="acme-ml", region="europe-west4", minReplicas=1, maxReplicas=3)


def props(version: str, cfg: VertexSettings = CFG, image: str | None = None) -> dict[str, Any]:
    return deployment_inputs("fraud-detector", version, image or IMAGE.format(v=version), cfg)



@pytest.fixture
def router(fake: FakeVertex) -> TrafficSplitProvider:
    return TrafficSplitProvider(api_factory=lambda region: fake)


def split_props(split: dict[str, int]) -> dict[str, Any]:
    p = props("1")
    return {"project": p["project"], "region": p["region"], "endpoint": p["endpoint"], "trafficSplit": split}


# --------------------------------------------------------------------------- pure decisions


def test_model_id_is_a_valid_vertex_id_and_follows_the_container() -> None:
    a = props("7")
    assert re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", a["modelId"])
    assert a["modelId"].startswith("fraud-detector-v7-")
    # same inputs, same ID (idempotent upload); another image or env, another model
    assert props("7")["modelId"] == a["modelId"]
    assert props("7", image=IMAGE.format(v="7") + "x")["modelId"] != a["modelId"]
    with_workers = VertexSettings(project="acme-ml", region="europe-west4", workers=4)
    assert props("7", with_workers)["modelId"] != a["modelId"]
    long = model_id_for("m" * 80, "123", a["container"])
    assert len(long) <= 63 and re.fullmatch(r"[a-z][a-z0-9_-]*", long)


def test_deployed_model_id_is_ten_digits_and_changes_with_immutable_fields_only() -> None:
    a = props("7")
    assert re.fullmatch(r"[1-9][0-9]{9}", a["deployedModelId"])
    bigger = VertexSettings(project="acme-ml", region="europe-west4", minReplicas=2, maxReplicas=9)
    assert props("7", bigger)["deployedModelId"] == a["deployedModelId"]  # replicas mutate in place
    other_machine = VertexSettings(project="acme-ml", region="europe-west4", machineType="e2-standard-8")
    assert props("7", other_machine)["deployedModelId"] != a["deployedModelId"]
    assert props("8")["deployedModelId"] != a["deployedModelId"]
    ids = {deployed_model_id_for("e", f"m{i}", {}) for i in range(2000)}
    assert len(ids) == 2000 and all(len(i) == 10 and i[0] != "0" for i in ids)


def test_split_without_moves_the_share_to_the_models_that_remain() -> None:
    assert split_without({"a": 90, "b": 10}, "b", ["a", "b"]) == {"a": 100}
    assert split_without({"a": 50, "b": 30, "c": 20}, "a", ["a", "b", "c"]) == {"b": 60, "c": 40}
    # the others take no traffic: they share it evenly
    assert split_without({"a": 100, "b": 0, "c": 0}, "a", ["a", "b", "c"]) == {"b": 50, "c": 50}
    # no traffic to move, or the last model: nothing to send
    assert split_without({"a": 100, "b": 0}, "b", ["a", "b"]) is None
    assert split_without({"a": 100}, "a", ["a"]) is None
    assert split_without({}, "a", ["a", "b"]) is None


@pytest.mark.parametrize("weights", [{"a": 1, "b": 1, "c": 1}, {"a": 2, "b": 7}, {"a": 33, "b": 33, "c": 1}])
def test_apportion_adds_up_to_the_total(weights: dict[str, int]) -> None:
    out = apportion(100, weights)
    assert sum(out.values()) == 100
    # never more than one point away from the exact share
    wsum = sum(weights.values())
    assert all(abs(out.get(k, 0) - 100 * w / wsum) < 1 for k, w in weights.items())


# --------------------------------------------------------------------------- create


def test_create_uploads_the_container_and_deploys_it_with_all_traffic(
    fake: FakeVertex, deployer: ModelDeploymentProvider
) -> None:
    p = props("1")
    result = deployer.create(p)
    [(_, (parent, model_id, spec))] = fake.writes("upload_model")
    assert parent == "projects/acme-ml/locations/europe-west4" and model_id == p["modelId"]
    c = spec.container  # type: ignore[attr-defined]
    assert (c.image_uri, c.port, c.predict_route, c.health_route) == (
        IMAGE.format(v="1"),
        8080,
        "/invocations",
        "/ping",
    )
    assert c.env["MODEL_VERSION"] == "1"
    dm = fake.endpoints["fraud-detector"].deployed[p["deployedModelId"]]
    assert (dm.machine_type, dm.min_replicas, dm.max_replicas) == ("n1-standard-2", 1, 3)
    assert fake.split("fraud-detector") == {p["deployedModelId"]: 100}  # the first model answers at once
    assert result.id == f"{p['endpoint']}/deployedModels/{p['deployedModelId']}"
    assert result.outs is not None and result.outs["modelName"].endswith(f"/models/{p['modelId']}")


def test_a_second_version_joins_at_zero_percent(fake: FakeVertex, deployer: ModelDeploymentProvider) -> None:
    one, two = props("1"), props("2")
    deployer.create(one)
    deployer.create(two)
    assert set(fake.endpoints["fraud-detector"].deployed) == {one["deployedModelId"], two["deployedModelId"]}
    assert fake.split("fraud-detector") == {one["deployedModelId"]: 100}


def test_create_again_is_a_no_op(fake: FakeVertex, deployer: ModelDeploymentProvider) -> None:
    deployer.create(props("1"))
    n = len(fake.writes())
    deployer.create(props("1"))
    assert len(fake.writes()) == n


def test_create_after_a_failed_deploy_converges_without_a_second_upload(
    fake: FakeVertex, deployer: ModelDeploymentProvider
) -> None:
    p = props("1")
    fake.fail("deploy_model")
    with pytest.raises(FakeVertexError):
        deployer.create(p)
    # half done: the model is uploaded, nothing is deployed
    assert p["modelId"] in fake.models and not fake.endpoints["fraud-detector"].deployed
    deployer.create(p)  # pulumi up again
    assert len(fake.writes("upload_model")) == 1
    assert fake.split("fraud-detector") == {p["deployedModelId"]: 100}
    assert fake.models[p["modelId"]].deployments[0][1] == p["deployedModelId"]


def test_create_refuses_a_deployed_model_changed_outside_the_stack(
    fake: FakeVertex, deployer: ModelDeploymentProvider
) -> None:
    p = props("1")
    deployer.create(p)
    other = {**p, "modelId": "someone-else", "container": {**p["container"], "imageUri": "x"}}
    with pytest.raises(RuntimeError, match="changed outside this stack"):
        deployer.create(other)


def test_create_needs_the_endpoint(deployer: ModelDeploymentProvider) -> None:
    p = {**props("1"), "endpoint": "projects/acme-ml/locations/europe-west4/endpoints/missing"}
    with pytest.raises(RuntimeError, match="does not exist"):
        deployer.create(p)


# --------------------------------------------------------------------------- diff


def test_diff_ignores_outputs_and_sees_what_changed(deployer: ModelDeploymentProvider) -> None:
    p = props("1")
    state = {**p, "modelName": f"projects/{PROJECT_NUMBER}/locations/x/models/m", "__provider": "blob"}
    same = deployer.diff("id", state, {**p, "__provider": "other blob"})
    assert same.changes is False and same.replaces == []

    scaled = VertexSettings(project="acme-ml", region="europe-west4", minReplicas=2, maxReplicas=6)
    d = deployer.diff("id", state, props("1", scaled))
    assert d.changes is True and d.replaces == []  # in place: mutate_deployed_model

    # a replacement is named by what changes the identity: the IDs the new container is hashed into
    d = deployer.diff("id", state, props("1", image=IMAGE.format(v="1") + "-rebuilt"))
    assert d.changes and set(d.replaces or []) == {"modelId", "deployedModelId"}
    assert d.delete_before_replace is False  # the new one is up before the old one goes

    machine = VertexSettings(
        project="acme-ml", region="europe-west4", minReplicas=1, maxReplicas=3, machineType="e2-standard-4"
    )
    d = deployer.diff("id", state, props("1", machine))
    assert set(d.replaces or []) == {"deployedModelId"}

    labelled = VertexSettings(project="acme-ml", region="europe-west4", minReplicas=1, maxReplicas=3, labels={"a": "b"})
    d = deployer.diff("id", state, props("1", labelled))
    assert d.changes is True and d.replaces == []  # in place: update_model


# --------------------------------------------------------------------------- update


def test_update_mutates_replicas_in_place_once(fake: FakeVertex, deployer: ModelDeploymentProvider) -> None:
    old = props("1")
    deployer.create(old)
    new = props(
        "1",
        VertexSettings(project="acme-ml", region="europe-west4", minReplicas=2, maxReplicas=6, targetCpuUtilization=75),
    )
    deployer.update("id", old, new)
    assert [c[1][1:] for c in fake.writes("mutate_deployed_model")] == [
        (old["deployedModelId"], 2, 6, {"aiplatform.googleapis.com/prediction/online/cpu/utilization": 75})
    ]
    assert not fake.writes("deploy_model")[1:] and len(fake.writes("upload_model")) == 1
    deployer.update("id", old, new)  # re-run: already there
    assert len(fake.writes("mutate_deployed_model")) == 1


def test_update_redeploys_what_went_missing(fake: FakeVertex, deployer: ModelDeploymentProvider) -> None:
    p = props("1")
    deployer.create(p)
    fake.undeploy_model(p["endpoint"], p["deployedModelId"], None)  # removed by hand in the console
    deployer.update("id", p, p)
    assert p["deployedModelId"] in fake.endpoints["fraud-detector"].deployed


# --------------------------------------------------------------------------- delete


def test_delete_moves_traffic_away_then_undeploys_and_deletes_the_model(
    fake: FakeVertex, deployer: ModelDeploymentProvider, router: TrafficSplitProvider
) -> None:
    one, two = props("1"), props("2")
    s1, s2 = deployer.create(one), deployer.create(two)
    router.create(split_props({one["deployedModelId"]: 90, two["deployedModelId"]: 10}))
    deployer.delete(s2.id, s2.outs or {})
    [(_, (_, dm_id, split))] = fake.writes("undeploy_model")
    assert dm_id == two["deployedModelId"] and split == {one["deployedModelId"]: 100}
    assert fake.split("fraud-detector") == {one["deployedModelId"]: 100}
    assert two["modelId"] not in fake.models and one["modelId"] in fake.models
    # delete again (a re-run after the state was not saved): nothing left to do, no error
    n = len(fake.writes())
    deployer.delete(s2.id, s2.outs or {})
    assert len(fake.writes()) == n
    # the last model goes with its traffic
    deployer.delete(s1.id, s1.outs or {})
    assert not fake.endpoints["fraud-detector"].deployed and fake.split("fraud-detector") == {}
    assert not fake.models


def test_delete_after_a_failed_model_delete_converges(fake: FakeVertex, deployer: ModelDeploymentProvider) -> None:
    p = props("1")
    state = deployer.create(p)
    fake.fail("delete_model")
    with pytest.raises(FakeVertexError):
        deployer.delete(state.id, state.outs or {})
    assert not fake.endpoints["fraud-detector"].deployed and p["modelId"] in fake.models  # half done
    deployer.delete(state.id, state.outs or {})  # pulumi up / destroy again
    assert len(fake.writes("undeploy_model")) == 1 and not fake.models


def test_replacement_keeps_the_model_the_new_deployment_still_serves(
    fake: FakeVertex, deployer: ModelDeploymentProvider, router: TrafficSplitProvider
) -> None:
    old = props("1")
    state = deployer.create(old)
    bigger = props("1", VertexSettings(project="acme-ml", region="europe-west4", machineType="n1-highmem-4"))
    assert bigger["modelId"] == old["modelId"] and bigger["deployedModelId"] != old["deployedModelId"]
    # create-before-delete, as the engine runs a replacement: new up, traffic moved, old deleted
    deployer.create(bigger)
    router.update("id", split_props({old["deployedModelId"]: 100}), split_props({bigger["deployedModelId"]: 100}))
    deployer.delete(state.id, state.outs or {})
    assert set(fake.endpoints["fraud-detector"].deployed) == {bigger["deployedModelId"]}
    assert old["modelId"] in fake.models and len(fake.writes("upload_model")) == 1


def test_read_reports_live_replicas_and_a_deployment_that_is_gone(
    fake: FakeVertex, deployer: ModelDeploymentProvider
) -> None:
    p = props("1")
    state = deployer.create(p)
    fake.mutate_deployed_model(p["endpoint"], p["deployedModelId"], 4, 8, {CPU: 60})  # scaled by hand
    r = deployer.read(state.id, state.outs or {})
    assert r.id == state.id and r.outs is not None and (r.outs["minReplicas"], r.outs["maxReplicas"]) == (4, 8)
    assert deployer.diff(state.id, r.outs, p).changes  # the next up puts the config back
    # switched to request-count scaling by hand: the refresh shows it, and the CPU target is gone
    fake.mutate_deployed_model(p["endpoint"], p["deployedModelId"], 1, 3, {REQUESTS: 900})
    r = deployer.read(state.id, state.outs or {})
    assert r.outs is not None and r.outs["targetRequestsPerMinute"] == 900 and "targetCpuUtilization" not in r.outs
    assert deployer.diff(state.id, r.outs, p).changes
    fake.undeploy_model(p["endpoint"], p["deployedModelId"], None)
    assert not deployer.read(state.id, state.outs or {}).id


# --------------------------------------------------------------------------- traffic split


def test_traffic_split_is_set_once_and_only_when_it_differs(
    fake: FakeVertex, deployer: ModelDeploymentProvider, router: TrafficSplitProvider
) -> None:
    one, two = props("1"), props("2")
    deployer.create(one)
    deployer.create(two)
    canary = split_props({one["deployedModelId"]: 90, two["deployedModelId"]: 10})
    router.create(canary)
    assert fake.split("fraud-detector") == canary["trafficSplit"]
    n = len(fake.writes("set_traffic_split"))
    router.update("id", canary, canary)  # re-run: already so
    assert len(fake.writes("set_traffic_split")) == n
    switched = split_props({two["deployedModelId"]: 100})
    d = router.diff("id", canary, switched)
    assert d.changes and d.replaces == []
    router.update("id", canary, switched)
    assert fake.split("fraud-detector") == {two["deployedModelId"]: 100}
    router.delete("id", switched)  # leaves the endpoint serving
    assert fake.split("fraud-detector") == {two["deployedModelId"]: 100}


def test_traffic_split_checks_its_input(
    fake: FakeVertex, deployer: ModelDeploymentProvider, router: TrafficSplitProvider
) -> None:
    one = props("1")
    deployer.create(one)
    bad = router.check({}, split_props({one["deployedModelId"]: 90}))
    assert [f.property for f in bad.failures] == ["trafficSplit"] and "100" in bad.failures[0].reason
    assert not router.check({}, split_props({one["deployedModelId"]: 100})).failures
    with pytest.raises(RuntimeError, match="not on"):
        router.create(split_props({"1234567890": 100}))
    # Vertex lists models at 0%: zeros are not a difference
    same = router.diff(
        "id", split_props({one["deployedModelId"]: 100, "42": 0}), split_props({one["deployedModelId"]: 100})
    )
    assert same.changes is False


def test_rollback_sequence_touches_only_the_candidate(
    fake: FakeVertex, deployer: ModelDeploymentProvider, router: TrafficSplitProvider
) -> None:
    stable, cand = props("1"), props("2")
    deployer.create(stable)
    state = deployer.create(cand)
    canary = split_props({stable["deployedModelId"]: 90, cand["deployedModelId"]: 10})
    router.create(canary)
    before = len(fake.calls)
    # what `pulumi up` runs when the candidate is dropped: the split update, then the delete
    router.update("id", canary, split_props({stable["deployedModelId"]: 100}))
    deployer.delete(state.id, state.outs or {})
    touched = [c for c in fake.calls[before:] if c[0] not in ("get_model", "get_endpoint")]
    assert [c[0] for c in touched] == ["set_traffic_split", "undeploy_model", "delete_model"]
    assert all(stable["deployedModelId"] not in (c[1][1] if len(c[1]) > 1 else "") for c in touched[1:])
    assert fake.endpoints["fraud-detector"].deployed.keys() == {stable["deployedModelId"]}


# --------------------------------------------------------------------------- the aiplatform adapter


class _Op:
    def __init__(self, result: Any = None) -> None:
        self._result = result

    def result(self, timeout: float | None = None) -> Any:
        return self._result


class _Client:
    """Stands in for the GAPIC clients: records typed requests, answers like the service."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.requests: list[tuple[str, Any]] = []
        self.answers = answers

    def __getattr__(self, method: str) -> Any:
        def call(request: Any = None, **kwargs: Any) -> Any:
            self.requests.append((method, request if request is not None else kwargs))
            answer = self.answers.get(method)
            if isinstance(answer, Exception):
                raise answer
            return answer

        return call


def adapter(models: dict[str, Any] | None = None, endpoints: dict[str, Any] | None = None) -> AiplatformApi:
    from google.cloud import aiplatform_v1

    api = AiplatformApi.__new__(AiplatformApi)  # no credentials: the clients are stand-ins
    api._v1 = aiplatform_v1
    api._models = _Client(models or {})  # type: ignore[assignment]
    api._endpoints = _Client(endpoints or {})  # type: ignore[assignment]
    api._timeout = 5
    return api


def test_adapter_builds_real_aiplatform_requests() -> None:
    from google.cloud import aiplatform_v1 as v1

    from components.vertex_provider import ContainerSpec, DeploySpec, ModelSpec

    api = adapter(
        models={"upload_model": _Op(v1.UploadModelResponse(model="projects/1/locations/r/models/m1"))},
        endpoints={"deploy_model": _Op(), "mutate_deployed_model": _Op(), "update_endpoint": v1.Endpoint()},
    )
    spec = ModelSpec(
        "fraud-detector-v1", ContainerSpec("img:1", 8080, "/invocations", "/ping", {"A": "1"}), {"model": "m"}
    )
    assert api.upload_model("projects/p/locations/r", "m1", spec) == "projects/1/locations/r/models/m1"
    [(_, up)] = api._models.requests  # type: ignore[attr-defined]
    assert isinstance(up, v1.UploadModelRequest) and up.model_id == "m1"
    cs = up.model.container_spec
    assert (cs.image_uri, [p.container_port for p in cs.ports], cs.predict_route, cs.health_route) == (
        "img:1",
        [8080],
        "/invocations",
        "/ping",
    )
    assert [(e.name, e.value) for e in cs.env] == [("A", "1")]

    api.deploy_model(
        "ep",
        DeploySpec("1234567890", "projects/p/models/m1", "v1", "n1-standard-2", 1, 3, {CPU: 60}, "sa@x"),
        {"0": 100},
    )
    api.mutate_deployed_model("ep", "1234567890", 2, 4, {REQUESTS: 600})
    api.set_traffic_split("ep", {"1234567890": 100})
    (_, dep), (_, mut), (_, upd) = api._endpoints.requests  # type: ignore[attr-defined]
    assert isinstance(dep, v1.DeployModelRequest) and dict(dep.traffic_split) == {"0": 100}
    res = dep.deployed_model.dedicated_resources
    assert (dep.deployed_model.id, res.machine_spec.machine_type, res.min_replica_count, res.max_replica_count) == (
        "1234567890",
        "n1-standard-2",
        1,
        3,
    )
    assert [(s.metric_name, s.target) for s in res.autoscaling_metric_specs] == [(CPU, 60)]
    assert dep.deployed_model.service_account == "sa@x"
    assert (
        isinstance(mut, v1.MutateDeployedModelRequest) and mut.deployed_model.dedicated_resources.min_replica_count == 2
    )
    # the mutation sends the whole list: the CPU spec is gone, the request count one replaces it
    mut_specs = mut.deployed_model.dedicated_resources.autoscaling_metric_specs
    assert [(s.metric_name, s.target) for s in mut_specs] == [(REQUESTS, 600)]
    assert set(mut.update_mask.paths) == {
        "dedicated_resources.min_replica_count",
        "dedicated_resources.max_replica_count",
        "dedicated_resources.autoscaling_metric_specs",
    }
    assert list(upd["update_mask"].paths) == ["traffic_split"] and dict(upd["endpoint"].traffic_split) == {
        "1234567890": 100
    }


def test_adapter_updates_model_labels_and_display_name_at_model_level() -> None:
    from google.cloud import aiplatform_v1 as v1

    api = adapter(models={"update_model": v1.Model()})
    api.update_model("projects/1/locations/r/models/m1@2", "fraud-detector-v1", {"team": "risk"})
    [(method, req)] = api._models.requests  # type: ignore[attr-defined]
    assert method == "update_model"
    assert req["model"].name == "projects/1/locations/r/models/m1"  # no "@": the model, not a version
    assert (req["model"].display_name, dict(req["model"].labels)) == ("fraud-detector-v1", {"team": "risk"})
    assert sorted(req["update_mask"].paths) == ["display_name", "labels"]


def test_adapter_reads_endpoints_and_maps_not_found_and_already_exists() -> None:
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1 as v1

    endpoint = v1.Endpoint(
        name="projects/1/locations/r/endpoints/e",
        traffic_split={"111": 100},
        deployed_models=[
            v1.DeployedModel(
                id="111",
                model="projects/1/locations/r/models/m1",
                dedicated_resources=v1.DedicatedResources(
                    machine_spec=v1.MachineSpec(machine_type="n1-standard-2"),
                    min_replica_count=1,
                    max_replica_count=3,
                    autoscaling_metric_specs=[
                        v1.AutoscalingMetricSpec(
                            metric_name="aiplatform.googleapis.com/prediction/online/cpu/utilization", target=60
                        ),
                        v1.AutoscalingMetricSpec(
                            metric_name="aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle",
                            target=80,
                        ),
                    ],
                ),
            )
        ],
    )
    state = adapter(endpoints={"get_endpoint": endpoint}).get_endpoint("e")
    assert state is not None and state.traffic_split == {"111": 100}
    dm = state.deployed_models["111"]
    assert (dm.machine_type, dm.min_replicas, dm.max_replicas) == ("n1-standard-2", 1, 3)
    assert dm.autoscaling == {CPU: 60, "aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle": 80}

    gone = adapter(
        models={"get_model": exceptions.NotFound("x"), "delete_model": exceptions.NotFound("x")},
        endpoints={"get_endpoint": exceptions.NotFound("x"), "undeploy_model": exceptions.NotFound("x")},
    )
    assert gone.get_model("m") is None and gone.get_endpoint("e") is None
    gone.delete_model("m")
    gone.undeploy_model("e", "1", None)
    exists = adapter(models={"upload_model": exceptions.AlreadyExists("x")})
    from components.vertex_provider import ContainerSpec, ModelSpec

    assert exists.upload_model(
        "projects/p/locations/r", "m1", ModelSpec("d", ContainerSpec("i", 8080, "/a", "/b"))
    ) == ("projects/p/locations/r/models/m1")


# --------------------------------------------------------------------------- serialization


@pytest.mark.parametrize("cls", [ModelDeploymentProvider, TrafficSplitProvider])
def test_provider_survives_pulumi_serialization_into_a_fresh_interpreter(cls: type) -> None:
    """What `pulumi up` does: the program pickles the provider into the state, the dynamic
    provider host (another process, in the project directory) unpickles it."""
    from pulumi.dynamic.dynamic import serialize_provider

    blob = serialize_provider(cls())
    code = (
        "import base64, sys, dill; p = dill.loads(base64.b64decode(sys.stdin.read())); "
        "print(type(p).__module__, type(p).__name__, p._api_factory)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=blob, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["components.vertex_provider", cls.__name__, "None"]
    # pickled by reference: the state does not freeze the provider's code
    assert b"def create" not in base64.b64decode(blob) and len(blob) < 2000
