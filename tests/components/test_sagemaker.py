"""SageMaker target: settings validation and the pure decisions (variants, environment, alarms,
deployment config, dashboard), without Pulumi."""

from __future__ import annotations

from typing import Any

import pytest

from components.rollout import plan_traffic
from components.sagemaker import (
    container_environment,
    deployment_config,
    ecr_repository_arn,
    invoke_url,
    partition_of,
    plan_variants,
    sagemaker_image_uri,
)
from components.sagemaker_monitoring import alarm_specs, baking_warning, dashboard_body, evaluation_periods
from components.sagemaker_plan import CANDIDATE_VARIANT, STABLE_VARIANT
from components.sagemaker_settings import SageMakerAlarmSettings, SageMakerSettings
from components.settings import AlertThresholds, CandidateSettings, parse_settings
from tests.components.sagemaker_cases import config, errors_of

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/models/fraud"



def sm(**keys: Any) -> SageMakerSettings:
    s = parse_settings(config(**keys)).sagemaker
    assert s is not None
    return s


# --------------------------------------------------------------------------- settings


def test_sagemaker_alone_is_a_target_with_defaults() -> None:
    s = parse_settings(config())
    assert s.targets == ["sagemaker"]
    assert s.sagemaker is not None
    assert s.sagemaker.instance_type == "ml.m5.large"
    assert s.sagemaker.deployment.type == "ALL_AT_ONCE"
    assert s.sagemaker.deployment.auto_rollback is True


@pytest.mark.parametrize(
    ("keys", "path", "fragment"),
    [
        ({"region": "Europe"}, "sagemaker.region", "not an AWS region"),
        ({"instanceType": "ml.m5.huge"}, "sagemaker.instanceType", "not a SageMaker real-time instance type"),
        ({"instanceCount": 0}, "sagemaker.instanceCount", "greater than or equal to 1"),
        ({"requestTimeoutSeconds": 90}, "sagemaker.requestTimeoutSeconds", "less than or equal to 60"),
        ({"endpointName": "-bad-"}, "sagemaker.endpointName", "alphanumeric at both ends"),
        ({"logRetentionDays": 10}, "sagemaker.logRetentionDays", "one of"),
        ({"endpoint": "x"}, "sagemaker.endpoint", "unknown key"),
        ({"deployment": {"type": "BLUE"}}, "sagemaker.deployment.type", "ALL_AT_ONCE"),
        ({"deployment": {"type": "CANARY"}}, "sagemaker.deployment", "needs canarySize"),
        ({"deployment": {"type": "LINEAR"}}, "sagemaker.deployment", "needs linearStepSize"),
        (
            {"deployment": {"type": "ALL_AT_ONCE", "canarySize": {"value": 10}}},
            "sagemaker.deployment",
            "canarySize is for type CANARY",
        ),
        (
            {"deployment": {"type": "CANARY", "canarySize": {"type": "CAPACITY_PERCENT", "value": 60}}},
            "sagemaker.deployment",
            "at most 50%",
        ),
        (
            {"deployment": {"type": "LINEAR", "linearStepSize": {"value": 5}}},
            "sagemaker.deployment",
            "10-50%",
        ),
        ({"deployment": {"waitIntervalSeconds": 4000}}, "sagemaker.deployment.waitIntervalSeconds", "3600"),
        (
            {"deployment": {"waitIntervalSeconds": 600, "maximumExecutionTimeoutSeconds": 600}},
            "sagemaker.deployment",
            "must exceed",
        ),
        (
            {
                "instanceCount": 2,
                "deployment": {"type": "CANARY", "canarySize": {"type": "INSTANCE_COUNT", "value": 2}},
            },
            "sagemaker.deployment.canarySize",
            "not 0-50% of a variant with 2",
        ),
        (
            {"autoscaling": {"minInstances": 2, "maxInstances": 4}, "instanceCount": 1},
            "sagemaker.instanceCount",
            "outside autoscaling's 2-4",
        ),
        (
            {
                "autoscaling": {"minInstances": 1, "maxInstances": 2, "includeCandidate": True},
                "candidateInstanceCount": 3,
            },
            "sagemaker.candidateInstanceCount",
            "outside autoscaling's 1-2",
        ),
        ({"autoscaling": {"minInstances": 3, "maxInstances": 2}}, "sagemaker.autoscaling", "greater than"),
        ({"dataCapture": {"destinationS3Uri": "bucket/prefix"}}, "sagemaker.dataCapture.destinationS3Uri", ""),
        (
            {"dataCapture": {"destinationS3Uri": "s3://b-1/p", "samplingPercent": 101}},
            "sagemaker.dataCapture.samplingPercent",
            "100",
        ),
        ({"alarms": {"errorRatio": 2}}, "sagemaker.alarms.errorRatio", "less than or equal to 1"),
        ({"alarms": {"actions": ["my-topic"]}}, "sagemaker.alarms.actions", "ARNs"),
    ],
)
def test_bad_sagemaker_config_names_the_key(keys: dict[str, Any], path: str, fragment: str) -> None:
    errors = errors_of(config(**keys))
    key = f"mlflow-deploy:{path}"
    assert key in errors, errors
    assert fragment in errors[key]


def test_instance_count_canary_within_half_of_every_variant() -> None:
    ok = sm(instanceCount=4, deployment={"type": "CANARY", "canarySize": {"type": "INSTANCE_COUNT", "value": 2}})
    assert ok.deployment.canary_size is not None and ok.deployment.canary_size.value == 2
    # the candidate's variant is smaller: 2 of its 2 instances is more than half
    errors = errors_of(
        config(
            instanceCount=4,
            candidateInstanceCount=2,
            deployment={"type": "CANARY", "canarySize": {"type": "INSTANCE_COUNT", "value": 2}},
        )
    )
    assert "variant with 2 instance(s)" in errors["mlflow-deploy:sagemaker.deployment.canarySize"]


def test_image_uris_must_be_ecr_for_live_versions() -> None:
    cfg = config()
    cfg["mlflow-deploy:image"] = {"uris": {"7": "ghcr.io/acme/fraud:7", "3": "ghcr.io/acme/fraud:3"}}
    errors = errors_of(cfg)
    assert "ECR only" in errors["mlflow-deploy:image.uris.7"]
    assert "mlflow-deploy:image.uris.3" not in errors  # not live: not pulled by SageMaker
    cfg["mlflow-deploy:image"] = {"uris": {"7": f"{ECR}:v7"}}
    assert parse_settings(cfg).image.uris["7"].endswith(":v7")


def test_graviton_instances_need_an_arm64_image() -> None:
    errors = errors_of(config(instanceType="ml.c7g.xlarge"))
    assert "arm64" in errors["mlflow-deploy:image.platform"]
    cfg = config(instanceType="ml.c7g.xlarge")
    cfg["mlflow-deploy:image"] = {"platform": "linux/arm64"}
    assert parse_settings(cfg).image.platform == "linux/arm64"
    # a GPU family whose name starts with g is not Graviton
    assert sm(instanceType="ml.g5.xlarge").instance_type == "ml.g5.xlarge"


def test_shadow_is_accepted_on_sagemaker() -> None:
    cfg = config()
    cfg["mlflow-deploy:candidate"] = {"version": "8", "strategy": "shadow", "percent": 30}
    s = parse_settings(cfg)
    assert s.candidate is not None and s.candidate.strategy == "shadow"


# --------------------------------------------------------------------------- variants


def test_no_candidate_is_one_stable_variant() -> None:
    vs = plan_variants(plan_traffic("7", None), sm(instanceCount=3))
    assert [(v.name, v.version, v.weight, v.instance_count, v.shadow) for v in vs] == [
        (STABLE_VARIANT, "7", 100.0, 3, False)
    ]


def test_canary_is_two_weighted_production_variants() -> None:
    plan = plan_traffic("7", CandidateSettings(version="8", strategy="canary", percent=15))
    vs = plan_variants(plan, sm(instanceCount=4, candidateInstanceCount=1))
    assert {v.name: (v.version, v.weight, v.instance_count, v.shadow) for v in vs} == {
        STABLE_VARIANT: ("7", 85.0, 4, False),
        CANDIDATE_VARIANT: ("8", 15.0, 1, False),
    }


@pytest.mark.parametrize(("percent", "stable_w", "cand_w"), [(0, 100.0, 0.0), (100, 0.0, 100.0)])
def test_blue_green_switch_is_a_weight_flip(percent: int, stable_w: float, cand_w: float) -> None:
    plan = plan_traffic("7", CandidateSettings(version="8", strategy="blue-green", percent=percent))
    vs = {v.name: v for v in plan_variants(plan, sm(instanceCount=2))}
    assert (vs[STABLE_VARIANT].weight, vs[CANDIDATE_VARIANT].weight) == (stable_w, cand_w)
    # the idle colour keeps its full fleet so that the switch is instant
    assert vs[STABLE_VARIANT].instance_count == vs[CANDIDATE_VARIANT].instance_count == 2


@pytest.mark.parametrize("percent", [0, 25, 100])
def test_shadow_variant_samples_the_mirror_percent(percent: int) -> None:
    plan = plan_traffic("7", CandidateSettings(version="8", strategy="shadow", percent=percent))
    vs = plan_variants(plan, sm())
    prod = [v for v in vs if not v.shadow]
    shadow = [v for v in vs if v.shadow]
    assert [(v.name, v.version) for v in prod] == [(STABLE_VARIANT, "7")]
    assert [(v.name, v.version) for v in shadow] == [(CANDIDATE_VARIANT, "8")]
    # sampling is the shadow's weight relative to the production variant's
    assert shadow[0].weight / prod[0].weight == pytest.approx(percent / 100)


def test_candidate_autoscaling_is_opt_in() -> None:
    plan = plan_traffic("7", CandidateSettings(version="8", percent=10))
    off = {v.name: v.autoscaled for v in plan_variants(plan, sm(autoscaling={}))}
    assert off == {STABLE_VARIANT: True, CANDIDATE_VARIANT: False}
    on = {v.name: v.autoscaled for v in plan_variants(plan, sm(autoscaling={"includeCandidate": True}))}
    assert on == {STABLE_VARIANT: True, CANDIDATE_VARIANT: True}
    none = {v.name: v.autoscaled for v in plan_variants(plan, sm())}
    assert none == {STABLE_VARIANT: False, CANDIDATE_VARIANT: False}


def test_container_environment_is_the_serving_runtimes() -> None:
    from serving.config import parse_settings as serving_settings

    env = container_environment("fraud-detector", "7", sm(workers=3, requestTimeoutSeconds=30))
    # the serving runtime reads exactly these variables
    s = serving_settings(["serve"], env)
    assert (s.port, s.workers, s.timeout) == (8080, 3, 30)
    assert (s.model_name, s.model_version) == ("fraud-detector", "7")
    assert "SERVING_WORKERS" not in container_environment("m", "1", sm())


# --------------------------------------------------------------------------- names / URIs


def test_digest_pinned_refs_drop_the_tag_for_sagemaker() -> None:
    digest = "sha256:" + "a" * 64
    assert sagemaker_image_uri(f"{ECR}:v7-abc@{digest}") == f"{ECR}@{digest}"
    assert sagemaker_image_uri(f"{ECR}:v7-abc") == f"{ECR}:v7-abc"
    # a registry port is not a tag
    assert sagemaker_image_uri(f"localhost:5000/fraud@{digest}") == f"localhost:5000/fraud@{digest}"


def test_partitions_and_urls() -> None:
    assert partition_of("us-east-1") == "aws"
    assert partition_of("cn-north-1") == "aws-cn"
    assert partition_of("us-gov-west-1") == "aws-us-gov"
    assert invoke_url("cn-north-1", "e").startswith("https://runtime.sagemaker.cn-north-1.amazonaws.com.cn/")
    assert ecr_repository_arn(f"{ECR}:v7", "aws") == "arn:aws:ecr:us-east-1:123456789012:repository/models/fraud"
    assert ecr_repository_arn("ghcr.io/acme/fraud:7", "aws") is None


# --------------------------------------------------------------------------- alarms / deployment


def test_alarm_thresholds_follow_monitoring_unless_overridden() -> None:
    thresholds = AlertThresholds(error_ratio=0.02, p99_latency_seconds=0.25, **{"for": "3m"})
    specs = alarm_specs("ep", SageMakerAlarmSettings(), thresholds)
    assert {(s.variant, s.kind) for s in specs} == {
        (v, k) for v in (STABLE_VARIANT, CANDIDATE_VARIANT) for k in ("errors", "latency")
    }
    for s in specs:
        assert s.args["evaluation_periods"] == 3
        assert s.args["treat_missing_data"] == "notBreaching"
        if s.kind == "errors":
            assert s.args["threshold"] == 0.02
            ids = {q["id"]: q for q in s.args["metric_queries"]}
            assert ids["errors"]["metric"]["metric_name"] == "Invocation5XXErrors"
            assert ids["errors"]["metric"]["dimensions"] == {"EndpointName": "ep", "VariantName": s.variant}
            assert [q["id"] for q in s.args["metric_queries"] if q["return_data"]] == ["ratio"]
        else:
            # ModelLatency is reported in microseconds
            assert s.args["threshold"] == pytest.approx(250_000)
            assert (s.args["metric_name"], s.args["extended_statistic"]) == ("ModelLatency", "p99")
    over = alarm_specs(
        "ep", SageMakerAlarmSettings(error_ratio=0.1, p99_latency_seconds=2, evaluation_minutes=7), thresholds
    )
    assert {s.args["threshold"] for s in over} == {0.1, 2_000_000}
    assert {s.args["evaluation_periods"] for s in over} == {7}


def test_baking_shorter_than_the_alarm_window_is_warned() -> None:
    five = AlertThresholds(**{"for": "5m"})
    assert baking_warning(sm(deployment={"waitIntervalSeconds": 300}), five) is None
    warning = baking_warning(sm(deployment={"waitIntervalSeconds": 120}), five)
    assert warning is not None and "(120s)" in warning and "(300s)" in warning
    # without auto-rollback the alarms decide nothing
    assert baking_warning(sm(deployment={"waitIntervalSeconds": 0, "autoRollback": False}), five) is None
    assert baking_warning(sm(deployment={"waitIntervalSeconds": 120}, alarms={"evaluationMinutes": 2}), five) is None


@pytest.mark.parametrize(("duration", "periods"), [("30s", 1), ("5m", 5), ("90s", 2), ("1h", 60)])
def test_evaluation_periods_round_up_to_minutes(duration: str, periods: int) -> None:
    assert evaluation_periods(SageMakerAlarmSettings(), AlertThresholds(**{"for": duration})) == periods


def test_deployment_config_canary_with_rollback_alarms() -> None:
    d = sm(
        deployment={
            "type": "CANARY",
            "canarySize": {"type": "CAPACITY_PERCENT", "value": 20},
            "waitIntervalSeconds": 600,
            "terminationWaitSeconds": 120,
            "maximumExecutionTimeoutSeconds": 3600,
        }
    ).deployment
    out = deployment_config(d, ["a1", "a2"])
    policy = out["blue_green_update_policy"]
    assert policy["traffic_routing_configuration"] == {
        "type": "CANARY",
        "wait_interval_in_seconds": 600,
        "canary_size": {"type": "CAPACITY_PERCENT", "value": 20},
    }
    assert (policy["termination_wait_in_seconds"], policy["maximum_execution_timeout_in_seconds"]) == (120, 3600)
    assert out["auto_rollback_configuration"] == {"alarms": [{"alarm_name": "a1"}, {"alarm_name": "a2"}]}


def test_deployment_config_linear_and_no_rollback() -> None:
    d = sm(deployment={"type": "LINEAR", "linearStepSize": {"value": 25}, "autoRollback": False}).deployment
    out = deployment_config(d, ["a1"])
    assert out["blue_green_update_policy"]["traffic_routing_configuration"]["linear_step_size"] == {
        "type": "CAPACITY_PERCENT",
        "value": 25,
    }
    assert "canary_size" not in out["blue_green_update_policy"]["traffic_routing_configuration"]
    assert "auto_rollback_configuration" not in out
    with pytest.raises(ValueError, match="10 alarms at most"):
        deployment_config(sm().deployment, [f"a{i}" for i in range(11)])


# --------------------------------------------------------------------------- dashboard


def test_dashboard_has_every_metric_per_variant() -> None:
    vs = plan_variants(plan_traffic("7", CandidateSettings(version="8", percent=10)), sm())
    body = dashboard_body("fraud", "eu-west-1", vs)
    lines = [m for w in body["widgets"] if w["type"] == "metric" for m in w["properties"]["metrics"]]
    seen = {(m[0], m[1], m[5]) for m in lines}
    for variant in (STABLE_VARIANT, CANDIDATE_VARIANT):
        for ns, metric in [
            ("AWS/SageMaker", "Invocations"),
            ("AWS/SageMaker", "Invocation4XXErrors"),
            ("AWS/SageMaker", "Invocation5XXErrors"),
            ("AWS/SageMaker", "ModelLatency"),
            ("/aws/sagemaker/Endpoints", "CPUUtilization"),
            ("/aws/sagemaker/Endpoints", "MemoryUtilization"),
        ]:
            assert (ns, metric, variant) in seen, (ns, metric, variant)
    assert all(m[2:5] == ["EndpointName", "fraud", "VariantName"] for m in lines)
    assert {w["properties"]["region"] for w in body["widgets"] if w["type"] == "metric"} == {"eu-west-1"}
    # widgets do not overlap on the 24-column grid
    cells = set()
    for w in body["widgets"]:
        for x in range(w["x"], w["x"] + w["width"]):
            for y in range(w["y"], w["y"] + w["height"]):
                assert (x, y) not in cells
                cells.add((x, y))
        assert w["x"] + w["width"] <= 24
