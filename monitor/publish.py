"""Where ``run-once`` writes its figures: the cloud's metrics service, or a file for tests.

``--publish`` targets:

* ``cloudwatch:<namespace>`` - CloudWatch ``PutMetricData`` (boto3; the job's role may put metrics
  in that namespace only: ``cloudwatch:namespace`` condition). Metric names are the monitor's
  (``model_drift_share`` ...), labels become dimensions (``model``, ``version``, ``feature`` ...).
* ``azuremonitor:<resource id>?region=<region>`` - Azure Monitor custom metrics (REST:
  ``POST https://<region>.monitoring.azure.com<resource id>/metrics``, token for
  ``https://monitoring.azure.com/``; the identity needs "Monitoring Metrics Publisher" on the
  resource). Namespace ``mlflow-deploy``.
* ``cloudmonitoring:<project>`` - Cloud Monitoring ``projects.timeSeries.create``, metric types
  ``custom.googleapis.com/mlflow_deploy/<name>`` on the ``global`` resource (the job's service
  account needs ``roles/monitoring.metricWriter``).
* ``fake:<path>`` - one JSON line per point appended to ``path`` (tests, dry runs); ``fake:`` keeps
  them in ``FAKE_PUBLISHED``.

Each publisher takes its client / HTTP transport as an argument, so tests put a fake at the
client boundary (botocore's Stubber for CloudWatch, on the real API shapes).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

AZURE_NAMESPACE = "mlflow-deploy"
GCP_PREFIX = "custom.googleapis.com/mlflow_deploy/"
CLOUDWATCH_BATCH = 1000  # PutMetricData: up to 1,000 metrics per request
GCP_BATCH = 200  # timeSeries.create: up to 200 time series per request

Transport = Callable[[str, dict[str, Any], dict[str, str]], None]
"""``(url, json body, headers)``: POSTs and raises on a non-2xx answer."""


class PublishError(Exception):
    pass


@dataclass(frozen=True)
class Point:
    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)
    ts: float = 0.0


FAKE_PUBLISHED: list[Point] = []


class Publisher:
    def publish(self, points: Sequence[Point]) -> None:
        raise NotImplementedError


class FakePublisher(Publisher):
    def __init__(self, path: str = "") -> None:
        self.path = path

    def publish(self, points: Sequence[Point]) -> None:
        if not self.path:
            FAKE_PUBLISHED.extend(points)
            return
        with open(self.path, "a", encoding="utf-8") as f:
            for p in points:
                f.write(json.dumps(asdict(p), sort_keys=True) + "\n")


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CloudWatchPublisher(Publisher):
    def __init__(self, namespace: str, client: Any = None, region: str | None = None) -> None:
        self.namespace = namespace
        if client is None:  # pragma: no cover - needs AWS
            import boto3

            client = boto3.client("cloudwatch", region_name=region)
        self.client = client

    @staticmethod
    def datum(p: Point) -> dict[str, Any]:
        return {
            "MetricName": p.name,
            "Dimensions": [{"Name": k, "Value": str(v)} for k, v in sorted(p.labels.items())],
            "Timestamp": dt.datetime.fromtimestamp(p.ts, dt.UTC),
            "Value": float(p.value),
            "Unit": "None",
        }

    def publish(self, points: Sequence[Point]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        data = [self.datum(p) for p in points]
        for i in range(0, len(data), CLOUDWATCH_BATCH):
            try:
                self.client.put_metric_data(Namespace=self.namespace, MetricData=data[i : i + CLOUDWATCH_BATCH])
            except (BotoCoreError, ClientError) as exc:
                raise PublishError(f"CloudWatch PutMetricData: {exc}") from None


class AzureMonitorPublisher(Publisher):
    """One POST per metric and timestamp: the custom metrics API takes one metric per request,
    with its dimension names and one series per dimension values."""

    def __init__(self, resource_id: str, region: str, transport: Transport | None = None) -> None:
        self.url = f"https://{region}.monitoring.azure.com{resource_id}/metrics"
        self.transport = transport or _azure_transport()

    def bodies(self, points: Sequence[Point]) -> list[dict[str, Any]]:
        grouped: dict[tuple[str, float, tuple[str, ...]], list[Point]] = {}
        for p in points:
            grouped.setdefault((p.name, p.ts, tuple(sorted(p.labels))), []).append(p)
        out = []
        for (name, ts, dims), group in grouped.items():
            series = [
                {
                    "dimValues": [str(p.labels[d]) for d in dims],
                    "min": p.value,
                    "max": p.value,
                    "sum": p.value,
                    "count": 1,
                }
                for p in group
            ]
            base = {"metric": name, "namespace": AZURE_NAMESPACE, "dimNames": list(dims), "series": series}
            out.append({"time": _iso(ts), "data": {"baseData": base}})
        return out

    def publish(self, points: Sequence[Point]) -> None:
        for body in self.bodies(points):
            self.transport(self.url, body, {"Content-Type": "application/json"})


class CloudMonitoringPublisher(Publisher):
    def __init__(self, project: str, transport: Transport | None = None) -> None:
        self.project = project
        self.url = f"https://monitoring.googleapis.com/v3/projects/{project}/timeSeries"
        self.transport = transport or _gcp_transport()

    def series(self, p: Point) -> dict[str, Any]:
        return {
            "metric": {"type": GCP_PREFIX + p.name, "labels": {k: str(v) for k, v in p.labels.items()}},
            "resource": {"type": "global", "labels": {"project_id": self.project}},
            "metricKind": "GAUGE",
            "valueType": "DOUBLE",
            "points": [{"interval": {"endTime": _iso(p.ts)}, "value": {"doubleValue": float(p.value)}}],
        }

    def publish(self, points: Sequence[Point]) -> None:
        # one point per time series per request: a series may appear once in a request
        series = [self.series(p) for p in points]
        for i in range(0, len(series), GCP_BATCH):
            self.transport(self.url, {"timeSeries": series[i : i + GCP_BATCH]}, {"Content-Type": "application/json"})


def _azure_transport() -> Transport:  # pragma: no cover - needs Azure
    def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        from azure.identity import DefaultAzureCredential

        token = DefaultAzureCredential().get_token("https://monitoring.azure.com/.default").token
        _post(url, body, {**headers, "Authorization": f"Bearer {token}"})

    return post


def _gcp_transport() -> Transport:  # pragma: no cover - needs GCP
    def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/monitoring.write"])
        answer = AuthorizedSession(creds).post(url, json=body, headers=headers, timeout=30)
        if answer.status_code // 100 != 2:
            raise PublishError(f"Cloud Monitoring answered {answer.status_code}: {answer.text[:200]}")

    return post


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> None:  # pragma: no cover
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30):
            pass
    except urllib.error.HTTPError as exc:
        raise PublishError(f"{url} answered {exc.code}: {exc.read()[:200]!r}") from None


def publisher(target: str) -> Publisher:
    """The publisher a ``--publish`` target names."""
    kind, sep, rest = target.partition(":")
    if not sep:
        raise PublishError(f"--publish {target!r}: expected <kind>:<destination>")
    parts = urlsplit(rest)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if kind == "fake":
        return FakePublisher(rest)
    if kind == "cloudwatch":
        if not parts.path:
            raise PublishError("--publish cloudwatch:<namespace>: the namespace is empty")
        return CloudWatchPublisher(parts.path, region=query.get("region"))
    if kind == "azuremonitor":
        if not parts.path.startswith("/subscriptions/") or "region" not in query:
            raise PublishError("--publish azuremonitor:/subscriptions/...?region=<region>")
        return AzureMonitorPublisher(parts.path, query["region"])
    if kind == "cloudmonitoring":
        if not parts.path:
            raise PublishError("--publish cloudmonitoring:<project>: the project is empty")
        return CloudMonitoringPublisher(parts.path)
    raise PublishError(f"--publish {target!r}: unknown kind {kind!r} (cloudwatch, azuremonitor, cloudmonitoring, fake)")
