"""What a real `pulumi up` does with a change of a VertexModelDeployment / VertexTrafficSplit
input, played against the in-memory Vertex AI (tests/components/vertex_fake.py).

The engine's rule for a dynamic resource: ``diff`` decides update or replace; a replace is
create(new) then delete(old) (or delete first with ``delete_before_replace``). A replacement whose
new resource has the same identity as the old one is a disaster: create finds everything in
place, then delete undeploys and deletes that same, live model. So every input that replaces must
change the identity, and every other input must be updated in place."""

from __future__ import annotations

from typing import Any

import pytest

from components.settings import SettingsError, parse_settings
from components.vertex import deployment_inputs
from components.vertex_provider import (
    DEPLOYMENT_KEYS,
    TRAFFIC_KEYS,
    ModelDeploymentProvider,
    TrafficSplitProvider,
    deployment_identity,
    traffic_identity,
)
from components.vertex_settings import VertexSettings
from tests.components.vertex_fake import FakeVertex, FakeVertexError

IMAGE = "europe-west4-docker.pkg.dev/acme-ml/fraud-detector/fraud-detector:v{v}-abc"
CFG = VertexSettings(project="acme-ml", region="europe-west4", minReplicas=1, maxReplicas=3)
NETWORK = "projects/123456789012/global/networks/ml-vpc"


def props(version: str, cfg: VertexSettings = CFG, image: str | None = None) -> dict[str, Any]:
    return deployment_inputs("fraud-detector", version, image or IMAGE.format(v=version), cfg)


def up(provider: Any, id_: str, state: dict[str, Any], news: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """One resource's step of `pulumi up`, as the engine runs it: check, diff, then update in
    place or replace (create-before-delete unless the diff asks for delete-first)."""
    failures = provider.check(state, news).failures
    assert not failures, [(f.property, f.reason) for f in failures]
    d = provider.diff(id_, state, news)
    if not d.changes:
        return id_, state
    if d.replaces:
        if d.delete_before_replace:
            provider.delete(id_, state)
            created = provider.create(news)
        else:
            created = provider.create(news)
            provider.delete(id_, state)
        return created.id, created.outs or {}
    return id_, provider.update(id_, state, news).outs or {}


def _changed(value: Any) -> Any:
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, dict):
        return {**value, "extra": "x"}
    if value is None:
        return "changed"
    raise AssertionError(f"no change for {value!r}")


# --------------------------------------------------------------------------- the audit


@pytest.mark.parametrize("key", DEPLOYMENT_KEYS)
def test_no_deployment_input_replaces_without_changing_the_identity(
    key: str, deployer: ModelDeploymentProvider
) -> None:
    """Change one input alone (IDs kept): the provider either refuses the inconsistent inputs at
    check (an input the IDs are hashed from), updates in place, or replaces because the identity
    itself changed."""
    old = {**props("1"), "network": None}
    new = {**old, key: _changed(old.get(key))}  # an optional input (acceleratorType) may be absent
    failures = deployer.check(old, new).failures
    if failures:
        assert {f.property for f in failures} >= {key} or any(key in f.reason for f in failures)
        return
    d = deployer.diff("id", old, new)
    assert d.changes, f"a change of {key} is a change"
    if d.replaces:
        assert deployment_identity(new) != deployment_identity(old), f"{key} replaces with the same identity"


@pytest.mark.parametrize("key", TRAFFIC_KEYS)
def test_no_traffic_split_input_replaces_without_changing_the_identity(key: str) -> None:
    router = TrafficSplitProvider(api_factory=lambda region: FakeVertex())
    p = props("1")
    old = {"project": p["project"], "region": p["region"], "endpoint": p["endpoint"], "trafficSplit": {"1": 100}}
    new = {**old, key: _changed(old[key]) if key != "trafficSplit" else {"2": 100}}
    if router.check(old, new).failures:
        return
    d = router.diff("id", old, new)
    assert d.changes
    if d.replaces:
        assert traffic_identity(new) != traffic_identity(old)


@pytest.mark.parametrize(
    ("key", "settings", "image"),
    [
        ("container", {}, IMAGE.format(v="1") + "-rebuilt"),
        ("container", {"workers": 4}, None),
        ("machineType", {"machineType": "e2-standard-8"}, None),
        ("serviceAccount", {"serviceAccount": "sa@acme-ml.iam.gserviceaccount.com"}, None),
        ("project", {"project": "acme-ml-2"}, None),
        ("region", {"region": "us-central1"}, None),
        ("endpoint", {"endpointId": "fraud-v2"}, None),
    ],
)
def test_every_setting_that_cannot_change_in_place_changes_the_identity(
    key: str, settings: dict[str, Any], image: str | None
) -> None:
    """The builder's side: what can only be had by a new model or deployed model (container,
    machine, service account, project, region, endpoint) is part of the IDs."""
    old = props("1")
    cfg = VertexSettings(
        **{"project": "acme-ml", "region": "europe-west4", "minReplicas": 1, "maxReplicas": 3, **settings}
    )
    new = props("1", cfg, image)
    assert new[key] != old[key]
    assert deployment_identity(new) != deployment_identity(old)
    assert not ModelDeploymentProvider().check(old, new).failures


# --------------------------------------------------------------------------- autoscaling metric (issue 18)

CPU = "aiplatform.googleapis.com/prediction/online/cpu/utilization"
DUTY = "aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle"
REQUESTS = "aiplatform.googleapis.com/prediction/online/request_count"
GPU = {"machineType": "g2-standard-8", "acceleratorType": "NVIDIA_L4"}


def _vertex(**settings: Any) -> VertexSettings:
    return VertexSettings(
        **{"project": "acme-ml", "region": "europe-west4", "minReplicas": 1, "maxReplicas": 3, **settings}
    )


def test_a_cpu_deployment_keeps_the_inputs_it_had_before_metrics_were_selectable() -> None:
    """Upgrading the program must not touch an existing CPU deployment: only the CPU target."""
    p = props("1")
    assert p["targetCpuUtilization"] == 60
    assert "targetDutyCycle" not in p and "targetRequestsPerMinute" not in p


@pytest.mark.parametrize(
    ("before", "after", "live"),
    [
        ({}, {"autoscalingMetric": "requests", "targetRequestsPerMinute": 900}, {REQUESTS: 900}),
        ({"autoscalingMetric": "requests", "targetRequestsPerMinute": 900}, {}, {CPU: 60}),
        (GPU, {**GPU, "autoscalingMetric": "gpu", "targetDutyCycle": 75}, {CPU: 60, DUTY: 75}),
        (
            {**GPU, "autoscalingMetric": "gpu"},
            {**GPU, "autoscalingMetric": "requests", "targetRequestsPerMinute": 300},
            {REQUESTS: 300},
        ),
    ],
)
def test_switching_the_autoscaling_metric_mutates_the_live_deployment_in_place(
    before: dict[str, Any],
    after: dict[str, Any],
    live: dict[str, int],
    fake: FakeVertex,
    deployer: ModelDeploymentProvider,
) -> None:
    """A metric or target change is a MutateDeployedModel of the specs: the same deployed model
    keeps serving, nothing is redeployed or undeployed, and the live specs are the new ones."""
    old = props("1", _vertex(**before))
    created = deployer.create(old)
    new = props("1", _vertex(**after))
    id_, state = up(deployer, created.id, created.outs or {}, new)
    assert id_ == created.id and new["deployedModelId"] == old["deployedModelId"]
    ep = fake.endpoints["fraud-detector"]
    assert set(ep.deployed) == {old["deployedModelId"]}
    assert dict(ep.deployed[old["deployedModelId"]].autoscaling) == live
    assert len(fake.writes("deploy_model")) == 1 and not fake.writes("undeploy_model")
    assert len(fake.writes("mutate_deployed_model")) == 1
    # the refreshed state matches the config: the next up is a no-op
    refreshed = deployer.read(id_, state).outs or {}
    assert not deployer.diff(id_, refreshed, new).changes


def test_the_fake_refuses_a_duty_cycle_target_without_accelerators(
    fake: FakeVertex, deployer: ModelDeploymentProvider
) -> None:
    """As the API does (the SDK: "Must also set accelerator_type and accelerator_count"), so a
    provider that sent one for a CPU machine would fail here."""
    p = props("1")
    deployer.create(p)
    with pytest.raises(FakeVertexError, match="needs accelerators"):
        fake.mutate_deployed_model(p["endpoint"], p["deployedModelId"], 1, 3, {DUTY: 60})


def test_a_gpu_metric_without_accelerators_is_refused_before_any_resource() -> None:
    config = {
        "mlflow-deploy:model": {"name": "fraud-detector", "version": "1"},
        "mlflow-deploy:image": {"repository": "ghcr.io/acme/models"},
        "mlflow-deploy:vertex": {"project": "acme-ml", "autoscalingMetric": "gpu"},
    }
    with pytest.raises(SettingsError) as exc:
        parse_settings(config)
    assert "mlflow-deploy:vertex.autoscalingMetric" in str(exc.value)


# --------------------------------------------------------------------------- labels (issue 11)


def test_a_labels_change_updates_the_model_in_place_and_keeps_it_deployed(
    fake: FakeVertex, deployer: ModelDeploymentProvider
) -> None:
    old = props("1")
    created = deployer.create(old)
    relabelled = props(
        "1",
        VertexSettings(project="acme-ml", region="europe-west4", minReplicas=1, maxReplicas=3, labels={"team": "risk"}),
    )
    assert relabelled["labels"] != old["labels"]
    assert deployment_identity(relabelled) == deployment_identity(old)

    up(deployer, created.id, created.outs or {}, relabelled)

    ep = fake.endpoints["fraud-detector"]
    assert set(ep.deployed) == {old["deployedModelId"]}, "the live deployed model is still there"
    assert fake.split("fraud-detector") == {old["deployedModelId"]: 100}
    assert fake.models[old["modelId"]].labels["team"] == "risk"
    assert not fake.writes("undeploy_model") and not fake.writes("delete_model")
    assert len(fake.writes("upload_model")) == 1 and len(fake.writes("deploy_model")) == 1


def test_a_display_name_change_is_in_place_too(fake: FakeVertex, deployer: ModelDeploymentProvider) -> None:
    old = props("1")
    created = deployer.create(old)
    up(deployer, created.id, created.outs or {}, {**old, "displayName": "fraud-detector-v1-renamed"})
    assert fake.models[old["modelId"]].display_name == "fraud-detector-v1-renamed"
    assert set(fake.endpoints["fraud-detector"].deployed) == {old["deployedModelId"]}


def test_a_new_image_is_a_new_model_beside_the_old_one_then_the_old_one_goes(
    fake: FakeVertex, deployer: ModelDeploymentProvider
) -> None:
    old = props("1")
    created = deployer.create(old)
    rebuilt = props("1", image=IMAGE.format(v="1") + "-rebuilt")
    up(deployer, created.id, created.outs or {}, rebuilt)
    assert set(fake.endpoints["fraud-detector"].deployed) == {rebuilt["deployedModelId"]}
    assert fake.split("fraud-detector") == {rebuilt["deployedModelId"]: 100}
    assert set(fake.models) == {rebuilt["modelId"]}


# --------------------------------------------------------------------------- private (VPC-peered) endpoints


def psa_props(version: str, **settings: Any) -> dict[str, Any]:
    return props(version, VertexSettings(project="acme-ml", region="europe-west4", network=NETWORK, **settings))


def test_the_fake_keeps_googles_one_model_rule_for_private_endpoints() -> None:
    """The rule the providers must respect (a create-before-delete cannot work there)."""
    fake = FakeVertex()
    fake.add_endpoint("fraud-detector", network=NETWORK)
    psa = ModelDeploymentProvider(api_factory=lambda region: fake)
    psa.create(psa_props("1"))
    with pytest.raises(FakeVertexError, match="one deployed model"):
        psa.create(psa_props("2"))  # what a create-before-delete would do first
    with pytest.raises(FakeVertexError, match="traffic split"):
        fake.set_traffic_split(psa_props("1")["endpoint"], {psa_props("1")["deployedModelId"]: 100})


def test_a_version_change_on_a_private_endpoint_is_delete_first(deployer: ModelDeploymentProvider) -> None:
    fake = FakeVertex()
    fake.add_endpoint("fraud-detector", network=NETWORK)
    psa = ModelDeploymentProvider(api_factory=lambda region: fake)
    old = psa_props("1")
    created = psa.create(old)
    assert fake.split("fraud-detector") == {}, "no traffic split is sent to a private endpoint"
    new = psa_props("2")
    d = psa.diff(created.id, created.outs or {}, new)
    assert d.replaces and d.delete_before_replace is True

    up(psa, created.id, created.outs or {}, new)

    assert set(fake.endpoints["fraud-detector"].deployed) == {new["deployedModelId"]}
    assert [c[0] for c in fake.writes()][-3:] == ["delete_model", "upload_model", "deploy_model"]


def test_a_public_endpoint_replacement_stays_create_before_delete(deployer: ModelDeploymentProvider) -> None:
    d = deployer.diff("id", props("1"), props("1", image=IMAGE.format(v="1") + "-rebuilt"))
    assert d.replaces and d.delete_before_replace is False


@pytest.mark.parametrize("strategy", ["canary", "blue-green"])
def test_a_candidate_on_a_private_endpoint_is_refused_before_any_resource(strategy: str) -> None:
    config = {
        "model": {"name": "fraud-detector", "version": "1"},
        "candidate": {"version": "2", "strategy": strategy, "percent": 10 if strategy == "canary" else None},
        "vertex": {"project": "acme-ml", "network": NETWORK},
    }
    config["candidate"] = {k: v for k, v in config["candidate"].items() if v is not None}
    with pytest.raises(SettingsError) as err:
        parse_settings(config)
    [(key, message)] = err.value.errors
    assert key == "mlflow-deploy:candidate"
    assert "vertex.network" in message and "one deployed model" in message
    # Private Service Connect endpoints split traffic: a candidate is fine there
    config["vertex"] = {"project": "acme-ml", "privateServiceConnect": {"projectAllowlist": ["acme-ml"]}}
    assert parse_settings(config).candidate is not None


def test_a_private_endpoint_has_one_deployment_resource_whatever_the_version(render: Any, registry: Any) -> None:
    """Under the mock runtime: on a VPC-peered endpoint the deployment's Pulumi name does not
    carry the version (a promotion is a replacement of that one resource, which the provider does
    delete-first), and no traffic split is declared (private endpoints have none)."""
    from tests.conftest import base_config

    def render_version(version: str) -> Any:
        vertex = {"project": "acme-ml", "region": "europe-west4", "network": NETWORK}
        return render(
            base_config(registry, kubernetes=None, vertex=vertex, model={"name": registry.name, "version": version})
        )

    one, two = render_version("1"), render_version("2")
    names = [{r.name for r in out.of_type("pulumi-python:dynamic:Resource")} for out in (one, two)]
    assert names[0] == names[1] == {"fraud-detector-vertex-deploy"}
    dep = one.named("fraud-detector-vertex-deploy").inputs
    assert dep["network"] == NETWORK and dep["version"] == "1"
    assert two.named("fraud-detector-vertex-deploy").inputs["version"] == "2"
    assert one.outputs["vertex"]["traffic"] == {"1": 100}
