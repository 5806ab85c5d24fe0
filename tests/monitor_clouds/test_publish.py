"""Publishers at the client boundary: CloudWatch through botocore's Stubber (the real
PutMetricData shapes), Azure Monitor and Cloud Monitoring through a recording transport."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest
from botocore.stub import Stubber

from monitor import publish
from monitor.publish import Point

T = 1764662400.0  # 2025-12-02T08:00:00Z
POINTS = [
    Point("model_drift_share", 0.75, {"model": "iris", "version": "3"}, T),
    Point("model_feature_drift_score", 0.01, {"model": "iris", "version": "3", "feature": "petal_width"}, T),
    Point("model_drift_share", 0.25, {"model": "iris", "version": "4"}, T),
]


def test_cloudwatch_put_metric_data_on_the_real_api_shape():
    client = boto3.client("cloudwatch", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")
    stamp = dt.datetime(2025, 12, 2, 8, tzinfo=dt.UTC)
    with Stubber(client) as stub:
        stub.add_response(
            "put_metric_data",
            {},
            {
                "Namespace": "mlflow-deploy",
                "MetricData": [
                    {
                        "MetricName": "model_drift_share",
                        "Dimensions": [{"Name": "model", "Value": "iris"}, {"Name": "version", "Value": "3"}],
                        "Timestamp": stamp,
                        "Value": 0.75,
                        "Unit": "None",
                    },
                    {
                        "MetricName": "model_feature_drift_score",
                        "Dimensions": [
                            {"Name": "feature", "Value": "petal_width"},
                            {"Name": "model", "Value": "iris"},
                            {"Name": "version", "Value": "3"},
                        ],
                        "Timestamp": stamp,
                        "Value": 0.01,
                        "Unit": "None",
                    },
                    {
                        "MetricName": "model_drift_share",
                        "Dimensions": [{"Name": "model", "Value": "iris"}, {"Name": "version", "Value": "4"}],
                        "Timestamp": stamp,
                        "Value": 0.25,
                        "Unit": "None",
                    },
                ],
            },
        )
        publish.CloudWatchPublisher("mlflow-deploy", client=client).publish(POINTS)
        stub.assert_no_pending_responses()


def test_cloudwatch_error_is_one_publish_error():
    client = boto3.client("cloudwatch", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(client) as stub:
        stub.add_client_error("put_metric_data", "AccessDenied", "not allowed in namespace", http_status_code=403)
        with pytest.raises(publish.PublishError, match="AccessDenied"):
            publish.CloudWatchPublisher("other", client=client).publish(POINTS[:1])


def test_cloudwatch_batches_at_the_api_limit():
    calls = []

    class Client:
        def put_metric_data(self, **kw):
            calls.append(len(kw["MetricData"]))

    many = [Point("model_feature_drift_score", 0.1, {"feature": str(i)}, T) for i in range(2500)]
    publish.CloudWatchPublisher("ns", client=Client()).publish(many)
    assert calls == [1000, 1000, 500]


def test_azure_monitor_custom_metrics_bodies():
    sent = []
    rid = (
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices"
        "/workspaces/ws/onlineEndpoints/iris"
    )
    p = publish.AzureMonitorPublisher(rid, "westeurope", transport=lambda url, body, headers: sent.append((url, body)))
    p.publish(POINTS)
    assert {url for url, _ in sent} == {f"https://westeurope.monitoring.azure.com{rid}/metrics"}
    shares = [b for _, b in sent if b["data"]["baseData"]["metric"] == "model_drift_share"]
    assert len(shares) == 1  # one request per metric: both versions are series of it
    assert shares[0] == {
        "time": "2025-12-02T08:00:00Z",
        "data": {
            "baseData": {
                "metric": "model_drift_share",
                "namespace": "mlflow-deploy",
                "dimNames": ["model", "version"],
                "series": [
                    {"dimValues": ["iris", "3"], "min": 0.75, "max": 0.75, "sum": 0.75, "count": 1},
                    {"dimValues": ["iris", "4"], "min": 0.25, "max": 0.25, "sum": 0.25, "count": 1},
                ],
            }
        },
    }


def test_cloud_monitoring_time_series():
    sent = []
    p = publish.CloudMonitoringPublisher("proj", transport=lambda url, body, headers: sent.append((url, body)))
    p.publish(POINTS)
    [(url, body)] = sent
    assert url == "https://monitoring.googleapis.com/v3/projects/proj/timeSeries"
    assert body["timeSeries"][1] == {
        "metric": {
            "type": "custom.googleapis.com/mlflow_deploy/model_feature_drift_score",
            "labels": {"model": "iris", "version": "3", "feature": "petal_width"},
        },
        "resource": {"type": "global", "labels": {"project_id": "proj"}},
        "metricKind": "GAUGE",
        "valueType": "DOUBLE",
        "points": [{"interval": {"endTime": "2025-12-02T08:00:00Z"}, "value": {"doubleValue": 0.01}}],
    }


def test_fake_publisher_appends_json_lines(tmp_path):
    out = tmp_path / "points.jsonl"
    publish.publisher(f"fake:{out}").publish(POINTS[:1])
    publish.publisher(f"fake:{out}").publish(POINTS[2:])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(p["name"], p["labels"]["version"], p["value"]) for p in lines] == [
        ("model_drift_share", "3", 0.75),
        ("model_drift_share", "4", 0.25),
    ]


@pytest.mark.parametrize(
    "target",
    [
        "cloudwatch",
        "cloudwatch:",
        "azuremonitor:/subscriptions/s",
        "azuremonitor:rg?region=x",
        "cloudmonitoring:",
        "statsd:x",
    ],
)
def test_bad_targets_are_refused(target):
    with pytest.raises(publish.PublishError):
        publish.publisher(target)
