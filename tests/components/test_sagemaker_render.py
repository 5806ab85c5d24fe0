"""The SageMaker target under Pulumi's mock runtime: the real program, every rollout strategy,
asserting on the inputs each resource is declared with."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.names import version_name
from components.settings import SettingsError
from modelctl.mocks_aws import autoname
from modelctl.render import Declared, Rendered, run_program
from modelctl.sagemaker_status import ExpectedEndpoint
from modelctl.sample import SampleRegistry
from tests.components.sagemaker_cases import SCENARIOS, full_config, sm_config

MODEL = "aws:sagemaker/model:Model"
CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TARGET = "aws:appautoscaling/target:Target"
POLICY = "aws:appautoscaling/policy:Policy"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
REPO = "aws:ecr/repository:Repository"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
IMAGE = "docker-build:index:Image"
COMPONENT = "fraud-detector-sagemaker"
PROVIDER = "fraud-detector-aws"
ECR_PREBUILT = "210987654321.dkr.ecr.eu-west-1.amazonaws.com/shared/fraud"


@pytest.fixture(scope="module")
def rendered(registry: SampleRegistry) -> dict[str, Rendered]:
    return {name: run_program(sm_config(registry, **extra), stack="test") for name, extra in SCENARIOS.items()}


@pytest.fixture(scope="module")
def full(registry: SampleRegistry) -> Rendered:
    """Every option on, beside the Kubernetes target, with monitoring enabled."""
    return run_program(full_config(registry), stack="test")


def model_of_version(out: Rendered, version: str) -> Declared:
    (m,) = [m for m in out.of_type(MODEL) if m.inputs["primaryContainer"]["environment"]["MODEL_VERSION"] == version]
    return m


def model_name_of(out: Rendered, version: str) -> str:
    """The physical name the Model of ``version`` gets (auto-named from its logical name)."""
    return autoname(model_of_version(out, version).name)


def the(out: Rendered, type_: str) -> Declared:
    (r,) = out.of_type(type_)
    return r


def variants(out: Rendered, key: str = "productionVariants") -> dict[str, dict[str, Any]]:
    return {v["variantName"]: v for v in the(out, CONFIG).inputs.get(key) or []}


# --------------------------------------------------------------------------- strategies


def test_no_candidate_one_stable_variant(rendered: dict[str, Rendered]) -> None:
    out = rendered["none"]
    prod = variants(out)
    assert list(prod) == ["stable"]
    assert prod["stable"]["modelName"] == model_name_of(out, "1")
    assert prod["stable"]["initialVariantWeight"] == 100
    assert prod["stable"]["initialInstanceCount"] == 2
    assert prod["stable"]["instanceType"] == "ml.m5.large"
    assert "shadowProductionVariants" not in the(out, CONFIG).inputs
    assert len(out.of_type(MODEL)) == 1


def test_canary_two_production_variants_weighted(rendered: dict[str, Rendered]) -> None:
    out = rendered["canary"]
    prod = variants(out)
    assert {n: (v["modelName"], v["initialVariantWeight"]) for n, v in prod.items()} == {
        "stable": (model_name_of(out, "1"), 90),
        "candidate": (model_name_of(out, "2"), 10),
    }
    assert "shadowProductionVariants" not in the(out, CONFIG).inputs
    assert out.outputs["traffic"] == {"1": 90, "2": 10}


@pytest.mark.parametrize(("scenario", "weights"), [("blue-green-0", (100, 0)), ("blue-green-100", (0, 100))])
def test_blue_green_is_a_weight_switch(rendered: dict[str, Rendered], scenario: str, weights: tuple[int, int]) -> None:
    out = rendered[scenario]
    prod = variants(out)
    assert (prod["stable"]["initialVariantWeight"], prod["candidate"]["initialVariantWeight"]) == weights
    assert prod["stable"]["modelName"] == model_name_of(out, "1")
    assert prod["candidate"]["modelName"] == model_name_of(out, "2")
    # both colours run a full fleet, so the switch needs no scale-up
    assert prod["stable"]["initialInstanceCount"] == prod["candidate"]["initialInstanceCount"] == 2


def test_shadow_one_production_and_one_shadow_variant(rendered: dict[str, Rendered]) -> None:
    out = rendered["shadow"]
    prod = variants(out)
    shadow = variants(out, "shadowProductionVariants")
    assert list(prod) == ["stable"] and list(shadow) == ["candidate"]
    assert prod["stable"]["modelName"] == model_name_of(out, "1")
    assert shadow["candidate"]["modelName"] == model_name_of(out, "2")
    # 30% of requests are copied to the shadow: its weight relative to production's
    ratio = shadow["candidate"]["initialVariantWeight"] / prod["stable"]["initialVariantWeight"]
    assert ratio == pytest.approx(0.30)
    assert out.outputs["mirror"] == {"version": "2", "percent": 30}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_endpoint_points_at_the_config_with_guarded_updates(rendered: dict[str, Rendered], scenario: str) -> None:
    out = rendered[scenario]
    ep = the(out, ENDPOINT)
    config = the(out, CONFIG)
    assert ep.inputs["name"] == "fraud-detector"
    assert ep.inputs["endpointConfigName"] == autoname(config.name)
    dc = ep.inputs["deploymentConfig"]
    assert dc["blueGreenUpdatePolicy"]["trafficRoutingConfiguration"] == {
        "type": "ALL_AT_ONCE",
        "waitIntervalInSeconds": 300,
    }
    # auto-rollback on exactly the alarms declared here: 5XX ratio and p99 latency for both variant
    # roles in every state (a candidate's alarms exist before it does: the list never changes,
    # because a change of deployment_config replaces the endpoint)
    alarm_names = {a.inputs["name"] for a in out.of_type(ALARM)}
    assert {a["alarmName"] for a in dc["autoRollbackConfiguration"]["alarms"]} == alarm_names
    live = set(variants(out)) | set(variants(out, "shadowProductionVariants"))
    roles = {"stable", "candidate"}
    assert live <= roles
    assert alarm_names == {f"fraud-detector-{v}-{k}" for v in roles for k in ("5xx-ratio", "p99-latency")}
    for a in out.of_type(ALARM):
        dims = a.inputs.get("dimensions") or a.inputs["metricQueries"][0]["metric"]["dimensions"]
        assert dims["EndpointName"] == "fraud-detector" and dims["VariantName"] in roles
    # the endpoint is declared after what it needs: the role's policy, the alarms, the log group
    assert set(ep.depends_on) >= {"fraud-detector-sm-execution", "fraud-detector-sm-logs"} | {
        a.name for a in out.of_type(ALARM)
    }


def test_endpoint_inputs_are_identical_in_every_rollout_state(rendered: dict[str, Rendered]) -> None:
    """Every input of the Endpoint but the config it points at is the same whatever the candidate:
    ``deployment_config`` and ``name`` force a (delete-first) replacement of the live endpoint."""
    shapes = {
        scenario: {k: v for k, v in the(out, ENDPOINT).inputs.items() if k != "endpointConfigName"}
        for scenario, out in rendered.items()
    }
    assert len({json.dumps(s, sort_keys=True) for s in shapes.values()}) == 1, shapes
    assert len(rendered) >= 5


def test_stable_model_identical_with_and_without_a_candidate(rendered: dict[str, Rendered]) -> None:
    """A rollback (dropping the candidate) touches routing only: the stable Model is the same."""
    stable = {name: model_of_version(out, "1") for name, out in rendered.items()}
    reference = stable["none"]
    for name, m in stable.items():
        assert m.name == reference.name, name
        assert m.inputs == reference.inputs, name
    # and so are the repository, the role and its policy
    for type_ in (REPO, ROLE, ROLE_POLICY):
        inputs = {name: the(out, type_).inputs for name, out in rendered.items()}
        assert all(i == inputs["none"] for i in inputs.values()), type_


def test_models_carry_the_serving_runtime_and_the_execution_role(rendered: dict[str, Rendered]) -> None:
    out = rendered["canary"]
    role_arn = f"arn:aws:iam::123456789012:role/{autoname(the(out, ROLE).name)}"
    repo_url = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlflow-deploy/fraud-detector"
    for version in ("1", "2"):
        m = model_of_version(out, version)
        assert m.name == f"sm-{version_name('fraud-detector', version)}"
        assert m.inputs["executionRoleArn"] == role_arn
        assert m.inputs["enableNetworkIsolation"] is True
        c = m.inputs["primaryContainer"]
        assert c["image"].startswith(f"{repo_url}:v{version}-")
        assert c["mode"] == "SingleModel"
        assert c["environment"]["SERVING_PORT"] == "8080"
        assert c["environment"]["MODEL_NAME"] == "fraud-detector"


def test_images_are_built_into_the_ecr_repository(rendered: dict[str, Rendered]) -> None:
    out = rendered["canary"]
    repo = the(out, REPO)
    assert repo.inputs["name"] == "mlflow-deploy/fraud-detector"
    assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    images = out.of_type(IMAGE)
    assert len(images) == 2
    for img in images:
        (tag,) = img.inputs["tags"]
        assert tag.startswith("123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlflow-deploy/fraud-detector:v")
        # the ECR login (from ecr.getAuthorizationToken) is handed over, as a secret
        assert img.inputs["registries"] == "[secret]"
        assert img.inputs["push"] is True
    # each Model runs the image built for its version
    built = {img.inputs["labels"]["org.opencontainers.image.version"]: img.inputs["tags"][0] for img in images}
    for version, tag in built.items():
        assert model_of_version(out, version).inputs["primaryContainer"]["image"] == tag


def test_every_aws_resource_is_a_child_of_the_component_on_its_regional_provider(
    rendered: dict[str, Rendered],
) -> None:
    out = rendered["shadow"]
    (provider,) = out.of_type("pulumi:providers:aws")
    assert provider.inputs["region"] == "eu-west-1"
    assert provider.parent == COMPONENT
    aws = [r for r in out.resources if r.type.startswith("aws:")]
    assert len(aws) >= 10
    for r in aws:
        assert r.parent == COMPONENT, r.name
        assert r.provider == PROVIDER, r.name


def test_no_autoscaling_or_dashboard_unless_configured(rendered: dict[str, Rendered]) -> None:
    out = rendered["canary"]  # monitoring disabled in base_config, no autoscaling key
    assert out.of_type(TARGET) == [] and out.of_type(POLICY) == []
    assert out.of_type(DASHBOARD) == []


def test_exports_are_what_the_drift_check_reads(rendered: dict[str, Rendered]) -> None:
    out = rendered["shadow"]
    exp = ExpectedEndpoint.from_stack_output(out.outputs["sagemaker"])
    assert exp.name == "fraud-detector"
    assert exp.region == "eu-west-1"
    assert exp.config_name == the(out, ENDPOINT).inputs["endpointConfigName"]
    by_name = {v.name: v for v in exp.variants}
    assert (by_name["stable"].version, by_name["stable"].shadow) == ("1", False)
    assert (by_name["candidate"].version, by_name["candidate"].shadow) == ("2", True)
    assert by_name["candidate"].image == model_of_version(out, "2").inputs["primaryContainer"]["image"]
    assert out.outputs["sagemaker"]["invokeUrl"] == (
        "https://runtime.sagemaker.eu-west-1.amazonaws.com/endpoints/fraud-detector/invocations"
    )


# --------------------------------------------------------------------------- every option


def test_full_config_endpoint_config(full: Rendered) -> None:
    cfg = the(full, CONFIG).inputs
    prod = {v["variantName"]: v for v in cfg["productionVariants"]}
    assert {n: (v["initialInstanceCount"], v["initialVariantWeight"]) for n, v in prod.items()} == {
        "stable": (4, 75),
        "candidate": (2, 25),
    }
    assert {v["instanceType"] for v in prod.values()} == {"ml.c5.xlarge"}
    assert {v["volumeSizeInGb"] for v in prod.values()} == {30}
    capture = cfg["dataCaptureConfig"]
    assert capture["destinationS3Uri"] == "s3://acme-ml-capture/fraud-detector"
    assert capture["initialSamplingPercentage"] == 20
    assert [o["captureMode"] for o in capture["captureOptions"]] == ["Input", "Output"]
    assert capture["kmsKeyId"].startswith("arn:aws:kms:eu-west-1:")
    for m in full.of_type(MODEL):
        assert m.inputs["primaryContainer"]["environment"]["SERVING_WORKERS"] == "2"


def test_full_config_endpoint_canary_deployment(full: Rendered) -> None:
    ep = the(full, ENDPOINT).inputs
    assert ep["name"] == "fraud-prod"
    policy = ep["deploymentConfig"]["blueGreenUpdatePolicy"]
    assert policy == {
        "maximumExecutionTimeoutInSeconds": 3600,
        "terminationWaitInSeconds": 300,
        "trafficRoutingConfiguration": {
            "canarySize": {"type": "CAPACITY_PERCENT", "value": 25},
            "type": "CANARY",
            "waitIntervalInSeconds": 600,
        },
    }
    for a in full.of_type(ALARM):
        assert a.inputs["alarmActions"] == ["arn:aws:sns:eu-west-1:123456789012:ml-oncall"]


def test_full_config_autoscaling_per_variant(full: Rendered) -> None:
    targets = {t.inputs["resourceId"]: t.inputs for t in full.of_type(TARGET)}
    assert set(targets) == {"endpoint/fraud-prod/variant/stable", "endpoint/fraud-prod/variant/candidate"}
    for t in targets.values():
        assert (t["minCapacity"], t["maxCapacity"]) == (2, 8)
        assert t["serviceNamespace"] == "sagemaker"
        assert t["scalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    policies = {p.inputs["resourceId"]: p.inputs for p in full.of_type(POLICY)}
    assert set(policies) == set(targets)
    for p in policies.values():
        assert p["policyType"] == "TargetTrackingScaling"
        spec = p["targetTrackingScalingPolicyConfiguration"]
        assert spec["predefinedMetricSpecification"] == {
            "predefinedMetricType": "SageMakerVariantInvocationsPerInstance"
        }
        assert spec["targetValue"] == 1000
    # a scaling target can only be registered once the endpoint's variants exist
    for t in full.of_type(TARGET):
        assert "fraud-detector-sm-endpoint" in t.depends_on


def test_full_config_dashboard(full: Rendered) -> None:
    board = the(full, DASHBOARD)
    assert board.inputs["dashboardName"] == "fraud-prod"
    body = json.loads(board.inputs["dashboardBody"])
    metrics = [m for w in body["widgets"] if w["type"] == "metric" for m in w["properties"]["metrics"]]
    assert {(m[1], m[5]) for m in metrics} >= {
        ("Invocations", "stable"),
        ("Invocations", "candidate"),
        ("Invocation5XXErrors", "candidate"),
        ("ModelLatency", "stable"),
        ("CPUUtilization", "candidate"),
        ("MemoryUtilization", "stable"),
    }
    assert {m[3] for m in metrics} == {"fraud-prod"}
    assert full.outputs["sagemaker"]["dashboardUrl"].endswith("#dashboards/dashboard/fraud-prod")


def test_full_config_lives_beside_kubernetes(full: Rendered) -> None:
    assert full.of_type("kubernetes:apps/v1:Deployment")
    assert set(full.outputs) >= {"kubernetes", "sagemaker"}
    # default tags on the provider carry the model and the configured tags
    (provider,) = full.of_type("pulumi:providers:aws")
    assert json.loads(provider.inputs["defaultTags"])["tags"] == {
        "mlflow-deploy:model": "fraud-detector",
        "team": "risk",
    }


# --------------------------------------------------------------------------- prebuilt images


def test_prebuilt_ecr_images_are_used_as_is(registry: SampleRegistry) -> None:
    digest = "sha256:" + "b" * 64
    out = run_program(
        sm_config(
            registry,
            image={"uris": {"1": f"{ECR_PREBUILT}:v1@{digest}", "2": f"{ECR_PREBUILT}:v2"}},
            candidate={"version": "2", "percent": 10},
        ),
        stack="test",
    )
    assert out.of_type(IMAGE) == []
    assert model_of_version(out, "1").inputs["primaryContainer"]["image"] == f"{ECR_PREBUILT}@{digest}"
    assert model_of_version(out, "2").inputs["primaryContainer"]["image"] == f"{ECR_PREBUILT}:v2"
    doc = json.loads(the(out, ROLE_POLICY).inputs["policy"])
    (pull,) = [s for s in doc["Statement"] if s["Sid"] == "EcrPullModelImages"]
    assert "arn:aws:ecr:eu-west-1:210987654321:repository/shared/fraud" in pull["Resource"]


def test_non_ecr_prebuilt_image_fails_before_any_resource(registry: SampleRegistry) -> None:
    with pytest.raises(SettingsError) as info:
        run_program(sm_config(registry, image={"uris": {"1": "ghcr.io/acme/fraud:1"}}), stack="test")
    assert "mlflow-deploy:image.uris.1" in dict(info.value.errors)
