"""The metrics sources of `modelctl analyze`: CloudWatch through botocore's Stubber (the real
GetMetricData / DescribeEndpoint shapes, request parameters validated against the service model),
Azure Monitor and Cloud Monitoring with fakes at their HTTP session."""

from __future__ import annotations

import datetime as dt
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from modelctl.sources import CloudWatchSource, SourceError
from modelctl.sources_cloud import AzureMonitorSource, CloudMonitoringSource

END = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
START = END - dt.timedelta(minutes=30)


def _results(values: dict[str, list[float]]) -> dict[str, Any]:
    return {
        "MetricDataResults": [
            {
                "Id": k,
                "Label": k,
                "Timestamps": [END - dt.timedelta(minutes=30)] * len(v),
                "Values": v,
                "StatusCode": "Complete",
            }
            for k, v in values.items()
        ],
        "Messages": [],
    }


def _cw(values: dict[str, list[float]]) -> tuple[Any, Stubber]:
    client = boto3.client("cloudwatch", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    source = CloudWatchSource("fraud-detector", "eu-west-1")
    stub.add_response(
        "get_metric_data",
        _results(values),
        {
            "MetricDataQueries": source.metric_queries(START, END),
            "StartTime": START,
            "EndTime": END,
            "ScanBy": "TimestampDescending",
        },
    )
    stub.activate()
    return client, stub


def test_cloudwatch_figures_per_variant() -> None:
    client, stub = _cw(
        {
            "stable_invocations": [9000.0],
            "stable_errors": [9.0],
            "stable_p99": [80_000.0],  # microseconds
            "candidate_invocations": [1000.0],
            "candidate_errors": [50.0],
            "candidate_p99": [240_000.0],
        }
    )
    f = CloudWatchSource("fraud-detector", "eu-west-1", cloudwatch=client).figures("7", "8", START, END)
    stub.assert_no_pending_responses()
    assert f.stable.requests == 9000 and f.stable.error_ratio == pytest.approx(0.001)
    assert f.candidate.error_ratio == pytest.approx(0.05) and f.candidate.p99_seconds == pytest.approx(0.24)
    assert f.rolled_back is None and "rollback check skipped" in f.notes[-1]


def test_cloudwatch_queries_name_the_variants_and_one_period() -> None:
    q = CloudWatchSource("ep", "eu-west-1").metric_queries(START, END)
    dims = {
        (x["Id"], d["Value"]) for x in q for d in x["MetricStat"]["Metric"]["Dimensions"] if d["Name"] == "VariantName"
    }
    assert ("candidate_errors", "candidate") in dims and ("stable_p99", "stable") in dims
    assert {x["MetricStat"]["Period"] for x in q} == {1800}
    assert CloudWatchSource.period(END - dt.timedelta(seconds=61), END) == 120


def test_cloudwatch_no_datapoints_is_missing_not_zero() -> None:
    """A candidate variant that served nothing: no Invocations datapoint -> requests None (hold)."""
    client, _ = _cw(
        {
            "stable_invocations": [100.0],
            "stable_errors": [],
            "stable_p99": [1000.0],
            "candidate_invocations": [],
            "candidate_errors": [],
            "candidate_p99": [],
        }
    )
    f = CloudWatchSource("fraud-detector", "eu-west-1", cloudwatch=client).figures("7", "8", START, END)
    assert f.stable.error_ratio == 0.0  # invocations but no 5XX datapoint: no errors
    assert f.candidate.requests is None and f.candidate.error_ratio is None and f.candidate.p99_seconds is None


def _sm(status: str, config: str) -> Any:
    client = boto3.client("sagemaker", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.add_response(
        "describe_endpoint",
        {
            "EndpointName": "fraud-detector",
            "EndpointArn": "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/fraud-detector",
            "EndpointConfigName": config,
            "EndpointStatus": status,
            "CreationTime": START,
            "LastModifiedTime": END,
        },
        {"EndpointName": "fraud-detector"},
    )
    stub.activate()
    return client


@pytest.mark.parametrize(
    ("status", "live", "rolled_back", "hold"),
    [
        ("InService", "fraud-detector-c8", None, None),
        ("InService", "fraud-detector-c7", "rolled the update back", None),
        ("RollingBack", "fraud-detector-c8", "RollingBack", None),
        ("Updating", "fraud-detector-c7", None, "in progress"),
    ],
)
def test_cloudwatch_sees_a_sagemaker_rollback(
    status: str, live: str, rolled_back: str | None, hold: str | None
) -> None:
    client, _ = _cw({"stable_invocations": [100.0], "candidate_invocations": [100.0]})
    src = CloudWatchSource(
        "fraud-detector",
        "eu-west-1",
        cloudwatch=client,
        sagemaker=_sm(status, live),
        expected={"endpointConfigName": "fraud-detector-c8"},
    )
    f = src.figures("7", "8", START, END)
    assert (rolled_back is None) == (f.rolled_back is None) and (rolled_back or "") in (f.rolled_back or "")
    assert (hold is None) == (f.hold is None) and (hold or "") in (f.hold or "")


def test_cloudwatch_errors_are_source_errors() -> None:
    client = boto3.client("cloudwatch", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.add_client_error("get_metric_data", "AccessDenied", "not authorized to perform cloudwatch:GetMetricData")
    stub.activate()
    with pytest.raises(SourceError, match=r"GetMetricData.*AccessDenied"):
        CloudWatchSource("ep", "eu-west-1", cloudwatch=client).figures("7", "8", START, END)


# --------------------------------------------------------------------------- fakes at the HTTP session


class Resp:
    def __init__(self, body: dict[str, Any], status: int = 200):
        self.body, self.status_code, self.text = body, status, str(body)

    def json(self) -> dict[str, Any]:
        return self.body


class FakeSession:
    def __init__(self, answer: Any):
        self.answer = answer
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get(self, url: str, params: dict[str, Any] | None = None, **_: Any) -> Resp:
        self.calls.append((url, dict(params or {})))
        return Resp(self.answer(url, dict(params or {})))


class Token:
    token = "t"


class Cred:
    def get_token(self, scope: str) -> Token:
        assert scope == "https://management.azure.com/.default"
        return Token()


def _azure_series(metric: str, dims: dict[str, str], values: list[float | None]) -> dict[str, Any]:
    return {
        "metadatavalues": [{"name": {"value": k, "localizedValue": k}, "value": v} for k, v in dims.items()],
        "data": [{"timeStamp": "2025-06-01T11:31:00Z", **({"average": v} if v is not None else {})} for v in values],
    }


def test_azure_monitor_figures_per_deployment() -> None:
    def answer(url: str, params: dict[str, Any]) -> dict[str, Any]:
        assert url.endswith(
            "/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/ep"
            "/providers/Microsoft.Insights/metrics"
        )
        assert params["timespan"] == "2025-06-01T11:30:00Z/2025-06-01T12:00:00Z" and params["interval"] == "PT1M"
        if params["metricnames"] == "RequestsPerMinute":
            assert params["$filter"] == "deployment eq '*' and statusCodeClass eq '*'"
            series = [
                _azure_series("r", {"deployment": "fd-v7", "statuscodeclass": "2xx"}, [600, 600]),
                _azure_series("r", {"deployment": "fd-v8", "statuscodeclass": "2xx"}, [90, 90]),
                _azure_series("r", {"deployment": "fd-v8", "statuscodeclass": "5xx"}, [10, 10]),
            ]
        else:
            series = [
                _azure_series("l", {"deployment": "fd-v7"}, [40.0, None, 60.0]),
                _azure_series("l", {"deployment": "fd-v8"}, [120.0]),
            ]
        return {"value": [{"name": {"value": params["metricnames"]}, "unit": "Count", "timeseries": series}]}

    session = FakeSession(answer)
    src = AzureMonitorSource("sub", "rg", "ws", "ep", {"7": "fd-v7", "8": "fd-v8"}, session=session, credential=Cred())
    f = src.figures("7", "8", START, END)
    assert f.stable.requests == 1200 and f.stable.error_ratio == 0 and f.stable.p99_seconds == pytest.approx(0.05)
    assert f.candidate.requests == 200 and f.candidate.error_ratio == pytest.approx(0.1)
    assert f.candidate.p99_seconds == pytest.approx(0.12)
    assert len(session.calls) == 2


def test_azure_monitor_no_series_is_missing() -> None:
    session = FakeSession(lambda url, params: {"value": [{"name": {"value": params["metricnames"]}, "timeseries": []}]})
    src = AzureMonitorSource("s", "rg", "ws", "ep", {"7": "a", "8": "b"}, session=session, credential=Cred())
    f = src.figures("7", "8", START, END)
    assert f.candidate.requests is None and f.candidate.error_ratio is None and f.candidate.p99_seconds is None


def _gcp_answer(url: str, params: dict[str, Any]) -> dict[str, Any]:
    if "aiplatform.googleapis.com/v1/" in url:
        assert url == "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/europe-west4/endpoints/fd"
        return {
            "deployedModels": [
                {"id": "1111111111", "model": "projects/p/locations/europe-west4/models/fraud-detector-v7-0a1b2c3d"},
                {"id": "2222222222", "model": "projects/p/locations/europe-west4/models/fraud-detector-v8-9f8e7d6c"},
            ]
        }
    assert url == "https://monitoring.googleapis.com/v3/projects/p/timeSeries"
    assert 'resource.labels.endpoint_id="fd"' in params["filter"]
    assert params["aggregation.alignmentPeriod"] == "1800s"
    assert params["aggregation.groupByFields"] == "metric.label.deployed_model_id"
    metric = params["filter"].split('"')[1].rsplit("/", 1)[-1]
    per = {
        "prediction_count": {"1111111111": {"int64Value": "5000"}, "2222222222": {"int64Value": "500"}},
        "error_count": {"2222222222": {"int64Value": "25"}},
        "prediction_latencies": {"1111111111": {"doubleValue": 80.0}, "2222222222": {"doubleValue": 100.0}},
    }[metric]
    if params.get("pageToken") is None and metric == "prediction_count":
        # two pages: the client must follow nextPageToken
        first = {k: v for k, v in per.items() if k == "1111111111"}
        return {"timeSeries": [_gcp_series(k, v) for k, v in first.items()], "nextPageToken": "p2"}
    if params.get("pageToken") == "p2":
        per = {k: v for k, v in per.items() if k != "1111111111"}
    return {"timeSeries": [_gcp_series(k, v) for k, v in per.items()]}


def _gcp_series(dm: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "metric": {"type": "x", "labels": {"deployed_model_id": dm}},
        "resource": {"type": "aiplatform.googleapis.com/Endpoint", "labels": {"endpoint_id": "fd"}},
        "metricKind": "DELTA",
        "points": [
            {"interval": {"startTime": "2025-06-01T11:30:00Z", "endTime": "2025-06-01T12:00:00Z"}, "value": value}
        ],
    }


def test_cloud_monitoring_figures_per_deployed_model() -> None:
    session = FakeSession(_gcp_answer)
    src = CloudMonitoringSource("p", "europe-west4", "fd", "fraud-detector", session=session)
    f = src.figures("7", "8", START, END)
    assert f.stable.requests == 5000 and f.stable.error_ratio == 0 and f.stable.p99_seconds == pytest.approx(0.08)
    assert f.candidate.requests == 500 and f.candidate.error_ratio == pytest.approx(0.05)
    assert f.candidate.p99_seconds == pytest.approx(0.1)


def test_cloud_monitoring_uses_the_stack_output_ids_and_flags_unknown_versions() -> None:
    session = FakeSession(_gcp_answer)
    src = CloudMonitoringSource(
        "p",
        "europe-west4",
        "fd",
        "fraud-detector",
        session=session,
        deployed_models={"7": "1111111111", "9": "2222222222"},
    )
    f = src.figures("7", "8", START, END)  # 8 is not in the output: the endpoint is read
    assert any("aiplatform.googleapis.com/v1/" in url for url, _ in session.calls)
    assert f.candidate.requests == 500
    src = CloudMonitoringSource("p", "europe-west4", "fd", "other-model", session=FakeSession(_gcp_answer))
    f = src.figures("7", "8", START, END)
    assert f.candidate.requests is None and "no deployed model found for version(s) 7, 8" in f.notes[-1]


def test_http_errors_are_source_errors() -> None:
    class Bad(FakeSession):
        def get(self, url: str, params: dict[str, Any] | None = None, **_: Any) -> Resp:
            return Resp({"error": {"message": "denied"}}, 403)

    with pytest.raises(SourceError, match="HTTP 403"):
        CloudMonitoringSource("p", "r", "fd", "m", session=Bad(None), deployed_models={"7": "1", "8": "2"}).figures(
            "7", "8", START, END
        )
    with pytest.raises(SourceError, match="HTTP 403"):
        AzureMonitorSource("s", "rg", "ws", "ep", {"7": "a", "8": "b"}, session=Bad(None), credential=Cred()).figures(
            "7", "8", START, END
        )


class _Prometheus:
    """Prometheus's HTTP API at the session boundary: one instant vector per query, picked by the
    series the query names; the monitor evaluated ``age`` seconds before the query time."""

    def __init__(self, age: float | None) -> None:
        self.age = age

    def get(self, url: str, params: dict[str, str], timeout: float) -> Any:
        query = params["query"]
        if "model_monitor_last_evaluation_timestamp_seconds" in query:
            value = None if self.age is None else self.age
        elif "model_drift_share" in query:
            value = 0.1
        elif "model_shadow_agreement_ratio" in query:
            value = 0.99
        else:
            value = 1.0
        result = [] if value is None else [{"metric": {}, "value": [float(params["time"]), str(value)]}]

        class Response:
            status_code = 200

            def json(self) -> dict[str, Any]:
                return {"status": "success", "data": {"resultType": "vector", "result": result}}

        return Response()


@pytest.mark.parametrize(("age", "fresh"), [(30.0, True), (4000.0, False), (None, False)])
def test_prometheus_drops_the_figures_of_a_monitor_that_stopped_evaluating(age: float | None, fresh: bool) -> None:
    """A gauge keeps its last value after the monitor stops: past the allowed age (or with no
    evaluation at all) the drift and agreement figures are missing, so analyze holds."""
    from modelctl.sources import PrometheusSource

    source = PrometheusSource(
        "http://prom:9090", "fraud-detector", "models", monitor=True, monitor_max_age=1260, session=_Prometheus(age)
    )
    figures = source.figures("7", "8", START, END)
    assert (figures.drift_share, figures.shadow_agreement) == ((0.1, 0.99) if fresh else (None, None))
    assert any("stale" in n for n in figures.notes) is not fresh
