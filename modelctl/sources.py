"""Where ``modelctl analyze`` gets its figures: one small interface, one class per platform.

    source.figures(stable="7", candidate="8", start=..., end=...) -> analysis.Figures

* :class:`PrometheusSource` (Kubernetes): the Prometheus HTTP API over the project's own recording
  rules (components/monitoring.py) and the model monitor's series (monitoring.drift);
* :class:`CloudWatchSource` (SageMaker): ``GetMetricData`` on the ``AWS/SageMaker`` variant metrics,
  and ``DescribeEndpoint`` for a rollback SageMaker already made;
* Azure Monitor and Cloud Monitoring: :mod:`modelctl.sources_cloud`.

A figure the platform does not have is None (the decision holds on it); a source that cannot be
reached raises :class:`SourceError` (one line, exit code 1).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any, Protocol

from modelctl.analysis import Figures, VersionFigures

# the model monitor's series: its own names (monitor/metrics.py; prometheus-client, which the
# program already needs, is all that module imports)
from monitor.metrics import DRIFT_SHARE, LAST_EVALUATION, SHADOW_AGREEMENT


class SourceError(Exception):
    """The source could not be asked (unreachable, refused, malformed answer)."""


class Source(Protocol):
    name: str

    def figures(self, stable: str, candidate: str, start: dt.datetime, end: dt.datetime) -> Figures: ...


def _seconds(start: dt.datetime, end: dt.datetime) -> int:
    return max(1, round((end - start).total_seconds()))


# --------------------------------------------------------------------------- Prometheus


class PrometheusSource:
    """Figures from the recording rules, averaged over the window ending at ``end``.

    * requests: ``avg_over_time(model_version:model_requests:rate5m[W]) * W``;
    * error ratio: ``avg_over_time(model_version:model_request_error_ratio:rate5m[W])``;
    * p99: the recorded ``histogram_quantile`` (quantile 0.99) averaged over W, NaN samples (5m
      without a request) left out;
    * drift share / shadow agreement: the model monitor's series averaged over W.

    The recorded rates look 5 minutes back, so the first sample of the window also counts traffic
    from just before it.
    """

    name = "prometheus"

    def __init__(
        self,
        url: str,
        model: str,
        namespace: str,
        *,
        mlflow_name: str | None = None,
        monitor: bool = True,
        monitor_max_age: float | None = None,
        session: Any = None,
        timeout: float = 15.0,
    ):
        from components import monitoring as mon

        self.url = url.rstrip("/")
        self.model = model
        self.namespace = namespace
        self.mon = mon
        self.timeout = timeout
        self._session = session
        # the monitor labels its series with the registry model name; the pods' series carry the label
        names = {mon.model_label(model), mlflow_name or model}
        self.monitor_model = "|".join(sorted(_promql_regex_literal(n) for n in names))
        self.monitor = monitor
        """Ask for the model monitor's series (analysis.maxDriftShare / minShadowAgreement set)."""
        self.monitor_max_age = monitor_max_age
        """Seconds since the monitor's last evaluation beyond which its figures are stale (a gauge
        keeps its last value when evaluations stop): then they count as missing, and analyze holds."""

    def _http(self) -> Any:
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def query(self, expr: str, at: dt.datetime) -> list[dict[str, Any]]:
        try:
            resp = self._http().get(
                f"{self.url}/api/v1/query",
                params={"query": expr, "time": f"{at.timestamp():.3f}"},
                timeout=self.timeout,
            )
        except Exception as exc:  # requests' ConnectionError, Timeout, ...
            raise SourceError(f"Prometheus at {self.url}: {type(exc).__name__}: {exc}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
            err = body.get("error") if isinstance(body, dict) else resp.text[:300]
            raise SourceError(f"Prometheus at {self.url}: HTTP {resp.status_code} for {expr!r}: {err}")
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise SourceError(f"Prometheus at {self.url}: expected a vector for {expr!r}, got {data.get('resultType')}")
        result: list[dict[str, Any]] = data.get("result") or []
        return result

    def _value(self, expr: str, at: dt.datetime) -> float | None:
        samples = self.query(expr, at)
        if not samples:
            return None
        values = [float(s["value"][1]) for s in samples]
        finite = [v for v in values if not math.isnan(v)]
        return finite[0] if len(finite) == 1 else (sum(finite) / len(finite) if finite else None)

    def queries(self, stable: str, candidate: str, seconds: int) -> dict[str, str]:
        mon, w = self.mon, f"{seconds}s"

        def sel(v: str) -> str:
            return mon.series_selector(self.model, self.namespace, version=v)

        out: dict[str, str] = {}
        for role, v in (("stable", stable), ("candidate", candidate)):
            out[f"{role}.requests"] = f"avg_over_time({mon.REQUESTS_RATE}{{{sel(v)}}}[{w}]) * {seconds}"
            out[f"{role}.error_ratio"] = f"avg_over_time({mon.ERROR_RATIO}{{{sel(v)}}}[{w}])"
            out[f"{role}.p99_seconds"] = (
                f'avg_over_time(({mon.LATENCY_QUANTILE}{{{sel(v)},quantile="0.99"}} >= 0)[{w}:])'
            )
        if not self.monitor:
            return out
        mm = f'model=~"{self.monitor_model}"'
        out["drift_share"] = f'avg_over_time({DRIFT_SHARE}{{{mm},version="{candidate}"}}[{w}])'
        out["shadow_agreement"] = (
            f'avg_over_time({SHADOW_AGREEMENT}{{{mm},stable="{stable}",candidate="{candidate}"}}[{w}])'
        )
        out["monitor_age_seconds"] = f"time() - max({LAST_EVALUATION}{{{mm}}})"
        return out

    def figures(self, stable: str, candidate: str, start: dt.datetime, end: dt.datetime) -> Figures:
        seconds = _seconds(start, end)
        got = {k: self._value(q, end) for k, q in self.queries(stable, candidate, seconds).items()}

        def version(role: str) -> VersionFigures:
            return VersionFigures(got[f"{role}.requests"], got[f"{role}.error_ratio"], got[f"{role}.p99_seconds"])

        notes = [f"prometheus {self.url}, namespace {self.namespace}, window {seconds}s ending {end.isoformat()}"]
        drift, agreement = got.get("drift_share"), got.get("shadow_agreement")
        age = got.get("monitor_age_seconds")
        if self.monitor and self.monitor_max_age is not None and (age is None or age > self.monitor_max_age):
            # the monitor stopped evaluating (or never did): its gauges hold old values, not figures
            drift = agreement = None
            when = "never" if age is None else f"{age:.0f}s ago"
            notes.append(f"model monitor last evaluated {when} (stale beyond {self.monitor_max_age:.0f}s)")
        return Figures(
            version("stable"),
            version("candidate"),
            drift_share=drift,
            shadow_agreement=agreement,
            notes=tuple(notes),
        )


def _promql_regex_literal(text: str) -> str:
    """``text`` matched literally by a PromQL regex inside a double-quoted string (RE2 metacharacters
    escaped with a backslash, itself escaped for the string)."""
    return re.sub(r"([.+*?()\[\]{}|^$\\])", r"\\\\\1", text)


# --------------------------------------------------------------------------- CloudWatch (SageMaker)

SAGEMAKER_NAMESPACE = "AWS/SageMaker"
MAX_DATAPOINTS_PER_QUERY = 100_800  # GetMetricData: 100,800 data points per call


class CloudWatchSource:
    """``GetMetricData`` on the endpoint's variants (``VariantName`` is the role, ``stable`` or
    ``candidate``: components/sagemaker_plan.py). One period covering the whole window per query:

    * ``Invocations`` and ``Invocation5XXErrors``, Sum: requests and the 5xx ratio;
    * ``ModelLatency``, p99, in microseconds.

    ``expected`` (the stack output ``sagemaker``, when the Pulumi CLI can read it) adds
    ``DescribeEndpoint``: an endpoint RollingBack, or running another endpoint config than the stack
    applied (SageMaker rolled the update back by itself), is an abort; an update in progress is a hold.
    """

    name = "cloudwatch"

    def __init__(
        self,
        endpoint: str,
        region: str,
        *,
        cloudwatch: Any = None,
        sagemaker: Any = None,
        expected: Mapping[str, Any] | None = None,
    ):
        self.endpoint = endpoint
        self.region = region
        self._cw = cloudwatch
        self._sm = sagemaker
        self.expected = expected

    def _client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=self.region)

    @staticmethod
    def period(start: dt.datetime, end: dt.datetime) -> int:
        """One period over the window, a multiple of 60 s (GetMetricData's rule for periods)."""
        return max(60, math.ceil(_seconds(start, end) / 60) * 60)

    def metric_queries(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        from components.sagemaker_plan import CANDIDATE_VARIANT, STABLE_VARIANT

        period = self.period(start, end)
        out: list[dict[str, Any]] = []
        for role, variant in (("stable", STABLE_VARIANT), ("candidate", CANDIDATE_VARIANT)):
            dims = [{"Name": "EndpointName", "Value": self.endpoint}, {"Name": "VariantName", "Value": variant}]
            for qid, metric, stat in (
                ("invocations", "Invocations", "Sum"),
                ("errors", "Invocation5XXErrors", "Sum"),
                ("p99", "ModelLatency", "p99"),
            ):
                out.append(
                    {
                        "Id": f"{role}_{qid}",
                        "MetricStat": {
                            "Metric": {"Namespace": SAGEMAKER_NAMESPACE, "MetricName": metric, "Dimensions": dims},
                            "Period": period,
                            "Stat": stat,
                        },
                        "ReturnData": True,
                    }
                )
        return out

    def figures(self, stable: str, candidate: str, start: dt.datetime, end: dt.datetime) -> Figures:
        from botocore.exceptions import BotoCoreError, ClientError

        cw = self._cw or self._client("cloudwatch")
        period = self.period(start, end)
        start = end - dt.timedelta(seconds=period)
        values: dict[str, list[float]] = {}
        token: str | None = None
        try:
            while True:
                kwargs: dict[str, Any] = {
                    "MetricDataQueries": self.metric_queries(start, end),
                    "StartTime": start,
                    "EndTime": end,
                    "ScanBy": "TimestampDescending",
                }
                if token:
                    kwargs["NextToken"] = token
                resp = cw.get_metric_data(**kwargs)
                for r in resp.get("MetricDataResults", []):
                    values.setdefault(r["Id"], []).extend(float(v) for v in r.get("Values", []))
                token = resp.get("NextToken")
                if not token:
                    break
        except (ClientError, BotoCoreError) as exc:
            raise SourceError(f"CloudWatch GetMetricData ({self.region}): {exc}") from exc

        def version(role: str) -> VersionFigures:
            inv, err, p99 = (values.get(f"{role}_{k}") or [] for k in ("invocations", "errors", "p99"))
            requests = sum(inv) if inv else None
            # no 5XX datapoint while there were invocations: SageMaker reports no errors as 0 or not at all
            errors = sum(err) if err else (0.0 if requests else None)
            ratio = errors / requests if requests and errors is not None else None
            return VersionFigures(requests, ratio, max(p99) / 1_000_000 if p99 else None)

        rolled_back, hold, notes = self._endpoint_state()
        return Figures(
            version("stable"),
            version("candidate"),
            rolled_back=rolled_back,
            hold=hold,
            notes=(
                f"cloudwatch {self.region}: endpoint {self.endpoint}, one {period}s period ending {end.isoformat()}",
                *notes,
            ),
        )

    def _endpoint_state(self) -> tuple[str | None, str | None, tuple[str, ...]]:
        """(rolled back: why, hold: why, notes) from DescribeEndpoint and the stack's output."""
        if not self.expected:
            return None, None, ("rollback check skipped: needs the stack output 'sagemaker' (Pulumi CLI)",)
        from botocore.exceptions import BotoCoreError, ClientError

        from modelctl.sagemaker_status import IN_PROGRESS

        sm = self._sm or self._client("sagemaker")
        try:
            desc = sm.describe_endpoint(EndpointName=self.endpoint)
        except (ClientError, BotoCoreError) as exc:
            raise SourceError(f"SageMaker DescribeEndpoint {self.endpoint}: {exc}") from exc
        status = desc["EndpointStatus"]
        want = str(self.expected.get("endpointConfigName"))
        live = desc.get("EndpointConfigName")
        if status == "RollingBack":
            return (
                f"endpoint {self.endpoint} is RollingBack ({desc.get('FailureReason') or 'alarm or failed fleet'})",
                None,
                (),
            )
        if status in IN_PROGRESS:
            return None, f"endpoint {self.endpoint} is {status}: a deployment is in progress", ()
        if live != want:
            return (
                f"endpoint {self.endpoint} runs endpoint config {live}, the stack applied {want}: SageMaker "
                "rolled the update back (see `modelctl status`)",
                None,
                (),
            )
        return None, None, (f"endpoint {self.endpoint} is {status} on {live}, as the stack applied",)
