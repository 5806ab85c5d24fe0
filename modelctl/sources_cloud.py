"""``modelctl analyze`` sources for Azure ML (Azure Monitor metrics) and Vertex AI (Cloud Monitoring).

Both speak REST through one session object (``requests.Session`` with an azure-identity token;
``google.auth``'s ``AuthorizedSession``), the boundary the tests put a fake at.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from modelctl.analysis import Figures, VersionFigures
from modelctl.sources import SourceError, _seconds

# --------------------------------------------------------------------------- Azure Monitor

ARM = "https://management.azure.com"
METRICS_API_VERSION = "2023-10-01"
"""Microsoft.Insights/metrics REST api-version (``Metrics - List``)."""
REQUESTS_METRIC = "RequestsPerMinute"
"""onlineEndpoints metric, Count, dimensions deployment, statusCode, statusCodeClass, modelStatusCode."""
LATENCY_METRIC = "RequestLatency_P99"
"""onlineEndpoints metric, Milliseconds, Average, dimension deployment."""


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AzureMonitorSource:
    """Per deployment (``fraud-detector-v8``: components/azureml.py) of the online endpoint, at one
    minute grain over the window: requests (the per-minute counts summed), the 5xx share of them
    (split by ``statusCodeClass``), and ``RequestLatency_P99`` averaged over the minutes that
    have one."""

    name = "azure-monitor"

    def __init__(
        self,
        subscription: str,
        resource_group: str,
        workspace: str,
        endpoint: str,
        deployments: Mapping[str, str],
        *,
        session: Any = None,
        credential: Any = None,
    ):
        self.resource = (
            f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{workspace}/onlineEndpoints/{endpoint}"
        )
        self.deployments = dict(deployments)
        self._session = session
        self._credential = credential

    def _get(self, params: dict[str, str]) -> dict[str, Any]:
        if self._session is None:
            import requests

            self._session = requests.Session()
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        url = f"{ARM}{self.resource}/providers/Microsoft.Insights/metrics"
        try:
            token = self._credential.get_token(f"{ARM}/.default").token
            resp = self._session.get(
                url,
                params={"api-version": METRICS_API_VERSION, **params},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
        except Exception as exc:
            raise SourceError(f"Azure Monitor {url}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise SourceError(f"Azure Monitor {url}: HTTP {resp.status_code}: {resp.text[:300]}")
        body: dict[str, Any] = resp.json()
        return body

    @staticmethod
    def _series(body: Mapping[str, Any], metric: str) -> list[tuple[dict[str, str], list[dict[str, Any]]]]:
        out = []
        for m in body.get("value") or []:
            if str((m.get("name") or {}).get("value", "")).lower() != metric.lower():
                continue
            for ts in m.get("timeseries") or []:
                dims = {
                    str((d.get("name") or {}).get("value", "")).lower(): str(d.get("value", ""))
                    for d in ts.get("metadatavalues") or []
                }
                out.append((dims, list(ts.get("data") or [])))
        return out

    def figures(self, stable: str, candidate: str, start: dt.datetime, end: dt.datetime) -> Figures:
        span = f"{_iso(start)}/{_iso(end)}"
        common = {"timespan": span, "interval": "PT1M", "aggregation": "Average"}
        reqs = self._get(
            {**common, "metricnames": REQUESTS_METRIC, "$filter": "deployment eq '*' and statusCodeClass eq '*'"}
        )
        lat = self._get({**common, "metricnames": LATENCY_METRIC, "$filter": "deployment eq '*'"})

        def version(v: str) -> VersionFigures:
            name = self.deployments[v]
            total = errors = 0.0
            seen = False
            for dims, data in self._series(reqs, REQUESTS_METRIC):
                if dims.get("deployment") != name:
                    continue
                n = sum(float(p["average"]) for p in data if p.get("average") is not None)
                seen = seen or any(p.get("average") is not None for p in data)
                total += n
                if dims.get("statuscodeclass", "").lower() == "5xx":
                    errors += n
            p99s = [
                float(p["average"])
                for dims, data in self._series(lat, LATENCY_METRIC)
                if dims.get("deployment") == name
                for p in data
                if p.get("average") is not None
            ]
            requests = total if seen else None
            return VersionFigures(
                requests,
                errors / total if total > 0 else None,
                sum(p99s) / len(p99s) / 1000 if p99s else None,
            )

        return Figures(
            version(stable),
            version(candidate),
            notes=(f"azure monitor {self.resource}, PT1M over {span}",),
        )


# --------------------------------------------------------------------------- Cloud Monitoring (Vertex AI)

MONITORING = "https://monitoring.googleapis.com/v3"
PREDICTIONS = "aiplatform.googleapis.com/prediction/online/prediction_count"
ERRORS = "aiplatform.googleapis.com/prediction/online/error_count"
LATENCIES = "aiplatform.googleapis.com/prediction/online/prediction_latencies"
ENDPOINT_RESOURCE = "aiplatform.googleapis.com/Endpoint"


class CloudMonitoringSource:
    """Per deployed model of the Vertex endpoint (the ``deployed_model_id`` metric label), one
    alignment period over the whole window: predictions and errors (``ALIGN_DELTA``, summed; the
    ratio the project's alert policy uses), and p99 of ``prediction_latencies`` (ms;
    ``ALIGN_PERCENTILE_99``, the max over its latency types, as the alert policy reads it).

    ``deployed_models`` maps version -> deployed model ID (the stack output ``vertex.deployedModels``);
    without it the endpoint is read (``GET .../endpoints/<id>``) and a deployed model is matched to a
    version by its model ID, ``<model>-v<version>-<hash>`` (components/vertex_provider.py).
    """

    name = "cloud-monitoring"

    def __init__(
        self,
        project: str,
        region: str,
        endpoint_id: str,
        model: str,
        *,
        deployed_models: Mapping[str, str] | None = None,
        session: Any = None,
    ):
        self.project = project
        self.region = region
        self.endpoint_id = endpoint_id
        self.model = model
        self.deployed_models = dict(deployed_models or {})
        self._session = session

    def _http(self) -> Any:
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
            self._session = AuthorizedSession(creds)
        return self._session

    def _get(self, url: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        try:
            resp = self._http().get(url, params=dict(params or {}), timeout=30)
        except Exception as exc:
            raise SourceError(f"GCP {url}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise SourceError(f"GCP {url}: HTTP {resp.status_code}: {resp.text[:300]}")
        body: dict[str, Any] = resp.json()
        return body

    def resolve(self, versions: list[str]) -> dict[str, str]:
        """version -> deployed model ID."""
        from components.names import version_name

        if all(v in self.deployed_models for v in versions):
            return {v: self.deployed_models[v] for v in versions}
        name = f"projects/{self.project}/locations/{self.region}/endpoints/{self.endpoint_id}"
        ep = self._get(f"https://{self.region}-aiplatform.googleapis.com/v1/{name}")
        found: dict[str, str] = {}
        for dm in ep.get("deployedModels") or []:
            model_id = str(dm.get("model", "")).rsplit("/", 1)[-1]
            for v in versions:
                if model_id.startswith(version_name(self.model, v, max_len=63 - 9) + "-"):
                    found[v] = str(dm["id"])
        return found

    def _series(
        self, metric: str, seconds: int, start: dt.datetime, end: dt.datetime, aligner: str, reducer: str
    ) -> dict[str, float]:
        params = {
            "filter": (
                f'metric.type="{metric}" AND resource.type="{ENDPOINT_RESOURCE}" '
                f'AND resource.labels.endpoint_id="{self.endpoint_id}"'
            ),
            "interval.startTime": _iso(start),
            "interval.endTime": _iso(end),
            "aggregation.alignmentPeriod": f"{seconds}s",
            "aggregation.perSeriesAligner": aligner,
            "aggregation.crossSeriesReducer": reducer,
            "aggregation.groupByFields": "metric.label.deployed_model_id",
        }
        out: dict[str, float] = {}
        token = None
        while True:
            body = self._get(
                f"{MONITORING}/projects/{self.project}/timeSeries",
                {**params, **({"pageToken": token} if token else {})},
            )
            for ts in body.get("timeSeries") or []:
                dm = str(((ts.get("metric") or {}).get("labels") or {}).get("deployed_model_id", ""))
                for p in ts.get("points") or []:
                    val = p.get("value") or {}
                    x = val.get("int64Value", val.get("doubleValue"))
                    if x is not None:
                        out[dm] = (
                            out.get(dm, 0.0) + float(x) if reducer == "REDUCE_SUM" else max(out.get(dm, 0.0), float(x))
                        )
            token = body.get("nextPageToken")
            if not token:
                return out

    def figures(self, stable: str, candidate: str, start: dt.datetime, end: dt.datetime) -> Figures:
        seconds = _seconds(start, end)
        ids = self.resolve([stable, candidate])
        preds = self._series(PREDICTIONS, seconds, start, end, "ALIGN_DELTA", "REDUCE_SUM")
        errs = self._series(ERRORS, seconds, start, end, "ALIGN_DELTA", "REDUCE_SUM")
        p99 = self._series(LATENCIES, seconds, start, end, "ALIGN_PERCENTILE_99", "REDUCE_MAX")

        def version(v: str) -> VersionFigures:
            dm = ids.get(v)
            if dm is None:
                return VersionFigures()
            n = preds.get(dm)
            e = errs.get(dm, 0.0 if n else None)
            return VersionFigures(n, e / n if n and e is not None else None, p99[dm] / 1000 if dm in p99 else None)

        missing = [v for v in (stable, candidate) if v not in ids]
        notes = [f"cloud monitoring {self.project}: endpoint {self.endpoint_id}, one {seconds}s period"]
        if missing:
            notes.append(f"no deployed model found for version(s) {', '.join(missing)}")
        return Figures(version(stable), version(candidate), notes=tuple(notes))
