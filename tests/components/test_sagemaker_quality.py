"""monitoring.drift on SageMaker: the scheduled monitor job (Processing job through EventBridge
Scheduler), its least-privilege roles, the alarms and dashboard; the requests validated against
botocore's API shapes."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from components.sagemaker_quality import NAMESPACE, PROCESSING_TARGET, schedule_expression
from modelctl.render import Rendered, run_program
from tests.components.sagemaker_cases import FULL_SAGEMAKER, SCENARIOS, sm_config
from tests.components.test_sagemaker_api_shapes import alarm_request, validate

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlflow-deploy-monitor:1.0"


def drift_config(registry, tmp_path, scenario: str = "shadow", **drift: Any) -> dict[str, Any]:
    ref = tmp_path / "reference.parquet"
    pd.DataFrame({"a": [1.0, 2.0, 3.0]}).to_parquet(ref)
    sm = {**FULL_SAGEMAKER, "alarms": {}}
    cfg = sm_config(registry, sm, **SCENARIOS[scenario])
    cfg["mlflow-deploy:monitoring"] = {
        "enabled": True,
        "drift": {"enabled": True, "reference": str(ref), "image": IMAGE, "interval": "15m", **drift},
    }
    return cfg


def policies(out: Rendered) -> dict[str, dict[str, Any]]:
    return {r.name: json.loads(r.inputs["policy"]) for r in out.of_type("aws:iam/rolePolicy:RolePolicy")}


@pytest.fixture(scope="module")
def shadow(registry, tmp_path_factory) -> Rendered:
    return run_program(drift_config(registry, tmp_path_factory.mktemp("ref")), stack="test")


def test_schedule_runs_the_monitor_as_a_processing_job(shadow: Rendered) -> None:
    [schedule] = shadow.of_type("aws:scheduler/schedule:Schedule")
    assert schedule.inputs["scheduleExpression"] == "rate(15 minutes)"
    target = schedule.inputs["target"]
    assert target["arn"] == PROCESSING_TARGET
    job = json.loads(target["input"])
    args = job["AppSpecification"]["ContainerEntrypoint"]
    assert args[:4] == ["python", "-m", "monitor", "run-once"]
    assert args[args.index("--source") + 1] == "s3://acme-ml-capture/fraud-detector/fraud-prod"
    assert args[args.index("--versions") + 1] == "stable=1,candidate=2"
    assert args[args.index("--publish") + 1] == f"cloudwatch:{NAMESPACE}?region=eu-west-1"
    assert args[args.index("--strategy") + 1] == "shadow"
    assert job["AppSpecification"]["ImageUri"] == IMAGE
    # the request Scheduler sends is a valid CreateProcessingJob (the job name is filled per run)
    request = {**job, "ProcessingJobName": "0f8fad5b-d9cb-469f-a165-70867728950e"}
    assert validate("sagemaker", "CreateProcessingJob", request) == []


def test_no_wildcard_actions_and_scoped_resources(shadow: Rendered) -> None:
    pol = policies(shadow)
    job = next(p for n, p in pol.items() if n.endswith("sm-monitor-job"))
    sched = next(p for n, p in pol.items() if n.endswith("sm-monitor-scheduler"))
    for doc in (job, sched):
        for st in doc["Statement"]:
            assert all("*" not in a for a in st["Action"]), st
    by_sid = {s["Sid"]: s for s in job["Statement"]}
    assert by_sid["PublishQualityMetrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": NAMESPACE}}
    assert by_sid["ReadCapture"]["Resource"] == ["arn:aws:s3:::acme-ml-capture/fraud-detector/fraud-prod/*"]
    assert by_sid["DecryptCapture"]["Action"] == ["kms:Decrypt"]
    assert "s3:PutObject" not in {a for s in job["Statement"] for a in s["Action"]}
    sched_sids = {s["Sid"]: s for s in sched["Statement"]}
    assert sched_sids["StartMonitorJob"]["Action"] == ["sagemaker:CreateProcessingJob"]
    assert sched_sids["PassJobRole"]["Condition"]["StringEquals"]["iam:PassedToService"] == "sagemaker.amazonaws.com"


def test_alarms_on_drift_per_version_and_shadow_agreement(shadow: Rendered) -> None:
    alarms = {
        r.inputs["name"]: r
        for r in shadow.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if NAMESPACE in json.dumps(r.inputs)
    }
    assert set(alarms) == {"fraud-prod-drift-v1", "fraud-prod-drift-v2", "fraud-prod-shadow-agreement"}
    assert alarms["fraud-prod-drift-v2"].inputs["threshold"] == 0.5
    assert alarms["fraud-prod-drift-v2"].inputs["comparisonOperator"] == "GreaterThanThreshold"
    agree = alarms["fraud-prod-shadow-agreement"].inputs
    assert agree["threshold"] == 0.95 and agree["comparisonOperator"] == "LessThanThreshold"
    queries = {q["id"]: q for q in agree["metricQueries"]}
    assert queries["agreement"]["metric"]["metricName"] == "model_shadow_agreement_ratio"
    assert queries["pairs"]["metric"]["metricName"] == "model_shadow_pairs_total"
    assert queries["pairs"]["metric"]["dimensions"] == {**queries["pairs"]["metric"]["dimensions"], "stable": "1",
                                                        "candidate": "2"}  # fmt: skip
    # shadowMinPairs (100 by default) gates the agreement: fewer pairs never breach
    assert queries["gated"]["expression"] == "IF(pairs >= 100, agreement, 1)"
    assert queries["gated"]["returnData"] is True
    assert [q["id"] for q in agree["metricQueries"] if q.get("returnData")] == ["gated"]
    for r in alarms.values():
        assert validate("cloudwatch", "PutMetricAlarm", alarm_request(r)) == []


def test_dashboard_has_drift_and_shadow_widgets(shadow: Rendered) -> None:
    board = next(
        r
        for r in shadow.of_type("aws:cloudwatch/dashboard:Dashboard")
        if r.inputs["dashboardName"].endswith("-quality")
    )
    titles = [w["properties"]["title"] for w in json.loads(board.inputs["dashboardBody"])["widgets"]]
    assert titles == ["Drift share per version", "Captured rows per evaluation", "Shadow agreement"]


def test_canary_has_no_agreement_alarm(registry, tmp_path) -> None:
    out = run_program(drift_config(registry, tmp_path, "canary"), stack="test")
    names = {
        r.inputs["name"]
        for r in out.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if NAMESPACE in json.dumps(r.inputs)
    }
    assert names == {"fraud-prod-drift-v1", "fraud-prod-drift-v2"}


def test_drift_off_declares_nothing(registry) -> None:
    out = run_program(sm_config(registry, FULL_SAGEMAKER), stack="test")
    assert out.of_type("aws:scheduler/schedule:Schedule") == []


def test_without_data_capture_the_stack_captures_to_its_own_bucket(registry, tmp_path) -> None:
    cfg = drift_config(registry, tmp_path, sample=0.3)
    cfg["mlflow-deploy:sagemaker"] = {k: v for k, v in cfg["mlflow-deploy:sagemaker"].items() if k != "dataCapture"}
    out = run_program(cfg, stack="test")
    [bucket] = out.of_type("aws:s3/bucket:Bucket")
    assert bucket.inputs["bucket"] == "fraud-prod-capture-eu-west-1"
    [config] = out.of_type("aws:sagemaker/endpointConfiguration:EndpointConfiguration")
    dc = config.inputs["dataCaptureConfig"]
    assert dc["destinationS3Uri"] == "s3://fraud-prod-capture-eu-west-1/data-capture"
    assert dc["initialSamplingPercentage"] == 30
    assert {o["captureMode"] for o in dc["captureOptions"]} == {"Input", "Output"}
    # the endpoint writes there, the monitor job reads there, nothing wider
    pol = policies(out)
    job = next(p for n, p in pol.items() if n.endswith("sm-monitor-job"))
    read = next(s for s in job["Statement"] if s["Sid"] == "ReadCapture")
    assert read["Resource"] == ["arn:aws:s3:::fraud-prod-capture-eu-west-1/data-capture/fraud-prod/*"]
    execution = next(p for n, p in pol.items() if n.endswith("sm-execution"))
    write = next(s for s in execution["Statement"] if s["Sid"] == "DataCaptureWrite")
    assert write["Resource"] == ["arn:aws:s3:::fraud-prod-capture-eu-west-1/data-capture/*"]
    [schedule] = out.of_type("aws:scheduler/schedule:Schedule")
    args = json.loads(schedule.inputs["target"]["input"])["AppSpecification"]["ContainerEntrypoint"]
    assert args[args.index("--source") + 1] == "s3://fraud-prod-capture-eu-west-1/data-capture/fraud-prod"


def test_the_monitor_image_is_required(registry, tmp_path) -> None:
    from components.settings import SettingsError

    cfg = drift_config(registry, tmp_path)
    cfg["mlflow-deploy:monitoring"]["drift"].pop("image")
    with pytest.raises(SettingsError, match=r"mlflow-deploy:monitoring\.drift\.image"):
        run_program(cfg, stack="test")


def test_schedule_expression() -> None:
    assert schedule_expression("10m") == "rate(10 minutes)"
    assert schedule_expression("1h") == "rate(1 hour)"
    assert schedule_expression("30s") == "rate(1 minute)"


# --------------------------------------------------------------------------- the stack's capture bucket

BUCKET = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
EXPIRY = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"


def own_bucket_config(registry, tmp_path, **drift: Any) -> dict[str, Any]:
    cfg = drift_config(registry, tmp_path, "canary", **drift)
    cfg["mlflow-deploy:sagemaker"] = {k: v for k, v in cfg["mlflow-deploy:sagemaker"].items() if k != "dataCapture"}
    return cfg


@pytest.fixture(scope="module")
def own_ref(tmp_path_factory):
    return tmp_path_factory.mktemp("own-ref")


@pytest.fixture(scope="module")
def own_bucket(registry, own_ref) -> Rendered:
    return run_program(own_bucket_config(registry, own_ref), stack="test")


def test_the_capture_bucket_is_private_encrypted_and_expires_the_capture(own_bucket: Rendered) -> None:
    [bucket] = own_bucket.of_type(BUCKET)
    [block] = own_bucket.of_type(PUBLIC_ACCESS)
    [sse] = own_bucket.of_type(ENCRYPTION)
    [expiry] = own_bucket.of_type(EXPIRY)
    name = bucket.inputs["bucket"]
    for r in (block, sse, expiry):
        assert r.inputs["bucket"] == name, r.name
        assert r.parent == bucket.parent, f"{r.name} is not a child of the SageMaker component"
    assert {k: block.inputs.get(k) for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                              "restrictPublicBuckets")} == dict.fromkeys(
        ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True
    )  # fmt: skip
    [rule] = sse.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    # the default monitoring.drift.retention (7d) as whole days, on the prefix SageMaker writes to
    [lc] = expiry.inputs["rules"]
    assert lc["status"] == "Enabled"
    assert lc["expiration"] == {"days": 7}
    [config] = own_bucket.of_type("aws:sagemaker/endpointConfiguration:EndpointConfiguration")
    destination = config.inputs["dataCaptureConfig"]["destinationS3Uri"]
    key_prefix = destination.removeprefix(f"s3://{name}/")
    assert key_prefix != destination
    assert f"{key_prefix}/".startswith(lc["filter"]["prefix"]) and lc["filter"]["prefix"].endswith("/")


def test_a_users_own_capture_bucket_is_left_alone(shadow: Rendered) -> None:
    """With sagemaker.dataCapture the bucket is the user's: the stack declares nothing on it."""
    assert shadow.of_type("aws:sagemaker/endpointConfiguration:EndpointConfiguration")[0].inputs["dataCaptureConfig"]
    assert [r.type for r in shadow.resources if r.type.startswith("aws:s3/")] == []


def test_a_new_retention_updates_the_expiry_in_place(registry, own_ref, own_bucket: Rendered) -> None:
    from modelctl.diff import diff_renders

    longer = run_program(own_bucket_config(registry, own_ref, retention="36h"), stack="test")
    [lc] = longer.of_type(EXPIRY)[0].inputs["rules"]
    assert lc["expiration"] == {"days": 2}  # S3 counts whole days: 36h is kept for 2
    diff = diff_renders(own_bucket, longer)
    assert [(c.type, c.action) for c in diff.changes] == [(EXPIRY, "update")], [
        (c.type, c.name, c.action, c.reason) for c in diff.changes
    ]


@pytest.mark.parametrize(
    ("retention", "why"),
    [("0d", "as they arrive"), ("30m", "pattern"), ("7x", "pattern"), ("12", "pattern")],
)
def test_a_bad_retention_fails_before_any_resource(registry, tmp_path, retention: str, why: str) -> None:
    from components.settings import SettingsError

    with pytest.raises(SettingsError, match=r"mlflow-deploy:monitoring\.drift\.retention") as err:
        run_program(own_bucket_config(registry, tmp_path, retention=retention), stack="test")
    assert why == "pattern" or why in str(err.value)


def test_a_retention_shorter_than_the_window_fails(registry, tmp_path) -> None:
    from components.settings import SettingsError

    with pytest.raises(SettingsError, match=r"mlflow-deploy:monitoring\.drift\.retention: 2h is shorter than"):
        run_program(own_bucket_config(registry, tmp_path, retention="2h", window="3h"), stack="test")


@pytest.mark.parametrize(("retention", "days"), [("24h", 1), ("25h", 2), ("1d", 1), ("30d", 30), ("2w", 14)])
def test_capture_expiry_days_rounds_up_to_whole_days(retention: str, days: int) -> None:
    from components.sagemaker_quality import capture_expiry_days

    assert capture_expiry_days(retention) == days
