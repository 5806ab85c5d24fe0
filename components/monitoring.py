"""ModelMonitoring: Prometheus scraping, recording and alert rules, and a Grafana dashboard for a
model served on Kubernetes, every live version side by side.

Objects, for model ``fraud-detector`` in namespace ``models`` with stable 7 and a canary 8:

* ``Release kube-prometheus-stack`` (Helm, ``monitoring.installStack: true`` only): Prometheus
  Operator, Prometheus, Alertmanager, Grafana with the dashboard sidecar, kube-state-metrics.
  Without it an existing Prometheus Operator is assumed.
* ``PodMonitor fraud-detector``: scrapes ``/metrics`` on the port named ``metrics`` of every pod of
  every version, and copies the pod labels ``model`` and ``version`` onto every series, so each
  series says which version answered.
* ``PrometheusRule fraud-detector``: recording rules (requests/s, 5xx ratio, latency quantiles,
  in-flight, rows/s, CPU and memory, per version) and alerts (error ratio, p99 latency, no
  traffic while pods are up, restarting pods, and during a canary or shadow the candidate worse
  than stable by a configured margin).
* ``ConfigMap fraud-detector-dashboard``: the Grafana dashboard (built with
  grafana-foundation-sdk), labelled for the Grafana sidecar.

Everything is derived from the same TrafficPlan as the routing, so the rules change with the
rollout (a canary adds the comparison alerts; promote removes them). The builders are pure
functions; tests call them without Pulumi and check the rules with the real ``promtool``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.kubernetes import common_labels, pod_labels, selector_labels
from components.names import base_name, dns_label, version_name
from components.rollout import TrafficPlan
from components.settings import RATE_WINDOW, AlertThresholds, MonitoringSettings

# --------------------------------------------------------------------------- the metric contract

# What the serving runtime exposes on /metrics (serving/metrics.py). Change only together.
METRICS_PATH = "/metrics"
METRICS_PORT = "metrics"
"""The container port named for the runtime's separate metrics port (components/kubernetes.py)."""
REQUESTS_TOTAL = "model_requests_total"
REQUEST_DURATION = "model_request_duration_seconds"
IN_FLIGHT_GAUGE = "model_requests_in_flight"
PREDICTION_ROWS_TOTAL = "model_prediction_rows_total"
MODEL_INFO = "model_info"
PREDICTION_ROUTE = "/invocations"
"""Only prediction requests count for traffic, errors and latency: kubelet probes hit /ping and
/version every few seconds and would hide both a dead route and an error burst."""
CONTAINER = "model"
"""The serving container's name in every model pod (components/kubernetes.py)."""

POD_TARGET_LABELS = ("model", "version")
"""Pod labels the PodMonitor copies onto every scraped series (beside ``namespace``, ``pod``)."""

RESTART_WINDOW = "15m"
QUANTILES = (0.5, 0.95, 0.99)
ALERT_QUANTILE = 0.99

# recorded series (level:metric:operations), one series per namespace/model/version
REQUESTS_RATE = "model_version:model_requests:rate5m"
ERRORS_RATE = "model_version:model_request_errors:rate5m"
ERROR_RATIO = "model_version:model_request_error_ratio:rate5m"
LATENCY_QUANTILE = "model_version:model_request_duration_seconds:histogram_quantile5m"
"""Carries a ``quantile`` label: 0.5, 0.95, 0.99."""
IN_FLIGHT = "model_version:model_requests_in_flight:sum"
ROWS_RATE = "model_version:model_prediction_rows:rate5m"
CPU_RATE = "model_version:container_cpu_usage_seconds:rate5m"
MEMORY = "model_version:container_memory_working_set_bytes:sum"

# alerts
ALERT_ERROR_RATIO = "ModelErrorRatioHigh"
ALERT_LATENCY = "ModelLatencyP99High"
ALERT_NO_TRAFFIC = "ModelNoTraffic"
ALERT_RESTARTS = "ModelPodsRestarting"
ALERT_CANDIDATE_ERRORS = "ModelCandidateErrorRatioWorse"
ALERT_CANDIDATE_LATENCY = "ModelCandidateLatencyWorse"

# kube-prometheus-stack (installStack)
STACK_CHART = "kube-prometheus-stack"
STACK_REPO = "https://prometheus-community.github.io/helm-charts"
STACK_RELEASE = "kube-prometheus-stack"
STACK_TIMEOUT_SECONDS = 900
DASHBOARD_LABEL_VALUE = "1"
FOLDER_ANNOTATION = "grafana_folder"

# pods of Deployment <name> are <name>-<pod-template-hash>-<suffix>
_POD_SUFFIX = "-[a-z0-9]+-[a-z0-9]+"
_VERSION_FROM_POD = ".+-v([0-9]+)" + _POD_SUFFIX
_VERSION_FROM_DEPLOYMENT = ".+-v([0-9]+)"


# --------------------------------------------------------------------------- pure decisions


def model_label(model: str) -> str:
    """The value of the ``model`` label on the model's pods (and so on its series)."""
    return common_labels(model)["model"]


def scrape_labels(model: str, version: str, namespace: str) -> dict[str, str]:
    """The target labels every series scraped from a pod of ``version`` carries: ``namespace``
    (added by the operator) and the pod labels in :data:`POD_TARGET_LABELS`."""
    labels = pod_labels(model, version)
    return {"namespace": namespace, **{k: labels[k] for k in POD_TARGET_LABELS}}


def series_selector(model: str, namespace: str, **extra: str) -> str:
    """PromQL label matchers for this model's series (``namespace="models",model="…"``)."""
    matchers = {"namespace": namespace, "model": model_label(model), **extra}
    return ",".join(f'{k}="{v}"' for k, v in matchers.items())


def traffic_versions(plan: TrafficPlan) -> list[str]:
    """Versions that must see requests: a share of live traffic, or the shadow's mirror.

    A blue-green preview or a 0% canary is idle by design and gets no no-traffic alert.
    """
    mirrored = plan.mirror.version if plan.mirror is not None and plan.mirror.percent > 0 else None
    return [b.version for b in plan.backends if b.weight > 0 or b.version == mirrored]


def compared_versions(plan: TrafficPlan) -> tuple[str, str] | None:
    """``(stable, candidate)`` when the candidate serves (canary) or sees mirrored (shadow)
    requests beside stable, so their error ratio and latency can be compared; else None."""
    if plan.candidate is None:
        return None
    if plan.strategy == "canary" or (plan.strategy == "shadow" and plan.mirror is not None):
        return plan.stable, plan.candidate
    return None


def _num(x: float) -> str:
    return repr(float(x))


def _pods_regex(model: str, versions: Sequence[str]) -> str:
    names = "|".join(version_name(model, v) for v in versions)
    return f"({names}){_POD_SUFFIX}"


def recording_rules(model: str, namespace: str, plan: TrafficPlan) -> list[dict[str, Any]]:
    """Per-version series the dashboard and the alerts read. Evaluated in order, so later rules
    read earlier ones."""
    by = "namespace, model, version"
    sel = series_selector(model, namespace)
    req = series_selector(model, namespace, route=PREDICTION_ROUTE)
    rules: list[dict[str, Any]] = [
        {"record": REQUESTS_RATE, "expr": f"sum by ({by}) (rate({REQUESTS_TOTAL}{{{req}}}[{RATE_WINDOW}]))"},
        {
            "record": ERRORS_RATE,
            "expr": f'sum by ({by}) (rate({REQUESTS_TOTAL}{{{req},status=~"5.."}}[{RATE_WINDOW}]))',
        },
        {
            # no 5xx series yet means a ratio of 0, not "no data"; no requests at all stays empty
            "record": ERROR_RATIO,
            "expr": (
                f"({ERRORS_RATE}{{{sel}}} or {REQUESTS_RATE}{{{sel}}} * 0) "
                f"/ ({REQUESTS_RATE}{{{sel}}} > 0)"
            ),
        },
    ]
    for q in QUANTILES:
        rules.append(
            {
                "record": LATENCY_QUANTILE,
                "expr": (
                    f"histogram_quantile({_num(q)}, sum by ({by}, le) "
                    f"(rate({REQUEST_DURATION}_bucket{{{req}}}[{RATE_WINDOW}])))"
                ),
                "labels": {"quantile": _num(q)},
            }
        )
    pods = _pods_regex(model, plan.versions)
    container_sel = f'namespace="{namespace}",container="{CONTAINER}",pod=~"{pods}"'
    rules += [
        {"record": IN_FLIGHT, "expr": f"sum by ({by}) ({IN_FLIGHT_GAUGE}{{{sel}}})"},
        {
            "record": ROWS_RATE,
            "expr": f"sum by ({by}) (rate({PREDICTION_ROWS_TOTAL}{{{sel}}}[{RATE_WINDOW}]))",
        },
        {
            "record": CPU_RATE,
            "expr": (
                "sum by (namespace, version) (label_replace("
                f"rate(container_cpu_usage_seconds_total{{{container_sel}}}[{RATE_WINDOW}]), "
                f'"version", "$1", "pod", "{_VERSION_FROM_POD}"))'
            ),
            "labels": {"model": model_label(model)},
        },
        {
            "record": MEMORY,
            "expr": (
                "sum by (namespace, version) (label_replace("
                f"container_memory_working_set_bytes{{{container_sel}}}, "
                f'"version", "$1", "pod", "{_VERSION_FROM_POD}"))'
            ),
            "labels": {"model": model_label(model)},
        },
    ]
    return rules


def _alert(
    name: str, expr: str, severity: str, summary: str, description: str, model: str, for_: str | None
) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_ is not None:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, "model": model_label(model)}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule


def alert_rules(
    model: str, namespace: str, plan: TrafficPlan, thresholds: AlertThresholds
) -> list[dict[str, Any]]:
    """The alerts, thresholds from config. Every alert carries ``model`` and ``version``."""
    t = thresholds
    sel = series_selector(model, namespace)
    who = "{{ $labels.model }} v{{ $labels.version }}"
    rules = [
        _alert(
            ALERT_ERROR_RATIO,
            f"{ERROR_RATIO}{{{sel}}} > {_num(t.error_ratio)}",
            "critical",
            f"{who}: {{{{ $value | humanizePercentage }}}} of predictions fail (5xx)",
            f"More than {t.error_ratio:.2%} of {PREDICTION_ROUTE} requests to {who} in namespace "
            f"{{{{ $labels.namespace }}}} answered 5xx over {RATE_WINDOW}.",
            model,
            t.for_,
        ),
        _alert(
            ALERT_LATENCY,
            f'{LATENCY_QUANTILE}{{{sel},quantile="{_num(ALERT_QUANTILE)}"}} > {_num(t.p99_latency_seconds)}',
            "warning",
            f"{who}: p99 latency {{{{ $value | humanizeDuration }}}}",
            f"The 99th percentile of {PREDICTION_ROUTE} latency of {who} is above "
            f"{t.p99_latency_seconds:g}s over {RATE_WINDOW}.",
            model,
            t.for_,
        ),
    ]
    live = traffic_versions(plan)
    if live:
        deployments = "|".join(version_name(model, v) for v in live)
        rules.append(
            _alert(
                ALERT_NO_TRAFFIC,
                "label_replace(max by (namespace, deployment) (kube_deployment_status_replicas_available"
                f'{{namespace="{namespace}",deployment=~"{deployments}"}}) > 0, '
                f'"version", "$1", "deployment", "{_VERSION_FROM_DEPLOYMENT}") '
                f"unless on (namespace, version) ({REQUESTS_RATE}{{{sel}}} > 0)",
                "warning",
                f"{who}: pods are up but no prediction requests arrive",
                f"{{{{ $labels.deployment }}}} has available replicas and should take traffic, but "
                f"received no {PREDICTION_ROUTE} requests over {RATE_WINDOW}: check the routing "
                "(Service selector, HTTPRoute, Ingress) and the clients.",
                model,
                t.for_,
            )
        )
    pods = _pods_regex(model, plan.versions)
    rules.append(
        _alert(
            ALERT_RESTARTS,
            "label_replace(increase(kube_pod_container_status_restarts_total"
            f'{{namespace="{namespace}",container="{CONTAINER}",pod=~"{pods}"}}[{RESTART_WINDOW}]), '
            f'"version", "$1", "pod", "{_VERSION_FROM_POD}") >= {t.restarts}',
            "warning",
            f"{who}: pod {{{{ $labels.pod }}}} restarted {{{{ $value | humanize }}}} times "
            f"in {RESTART_WINDOW}",
            f"The model container of {{{{ $labels.pod }}}} restarted at least {t.restarts} times in "
            f"{RESTART_WINDOW} (crash loop, OOM kill or failing liveness probe).",
            model,
            None,
        )
    )
    pair = compared_versions(plan)
    if pair is not None:
        stable, candidate = pair
        cand = series_selector(model, namespace, version=candidate)
        stab = series_selector(model, namespace, version=stable)
        q = _num(ALERT_QUANTILE)
        for rule in (
            _alert(
                ALERT_CANDIDATE_ERRORS,
                f"{ERROR_RATIO}{{{cand}}} "
                f"> ignoring (version) group_left () "
                f"({ERROR_RATIO}{{{stab}}} + {_num(t.candidate_error_ratio_margin)})",
                "critical",
                f"{plan.strategy} candidate {who} fails more than stable v{stable}",
                f"The candidate's 5xx ratio ({{{{ $value | humanizePercentage }}}}) exceeds stable "
                f"v{stable}'s by more than {t.candidate_error_ratio_margin:.2%}: consider rolling back "
                "(drop `candidate` from the stack config).",
                model,
                t.for_,
            ),
            _alert(
                ALERT_CANDIDATE_LATENCY,
                f'{LATENCY_QUANTILE}{{{cand},quantile="{q}"}} '
                f'> ignoring (version) group_left () ({LATENCY_QUANTILE}{{{stab},quantile="{q}"}} * '
                f"{_num(t.candidate_latency_margin)})",
                "warning",
                f"{plan.strategy} candidate {who} is slower than stable v{stable}",
                f"The candidate's p99 latency ({{{{ $value | humanizeDuration }}}}) exceeds stable "
                f"v{stable}'s by more than a factor {t.candidate_latency_margin:g}.",
                model,
                t.for_,
            ),
        ):
            rule["labels"].update({"rollout": str(plan.strategy), "stable_version": stable})
            rules.append(rule)
    return rules


def rule_group_prefix(model: str, namespace: str) -> str:
    return f"{namespace}.{base_name(model)}"


def rule_groups(
    model: str,
    namespace: str,
    plan: TrafficPlan,
    thresholds: AlertThresholds,
    extra_alerts: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The rule groups: the body of a PrometheusRule and of a Prometheus rule file alike.
    ``extra_alerts``: more alerts in the alert group (the model-quality ones,
    components/monitoring_quality.py)."""
    prefix = rule_group_prefix(model, namespace)
    return [
        {"name": f"{prefix}.recording", "rules": recording_rules(model, namespace, plan)},
        {"name": f"{prefix}.alerts", "rules": [*alert_rules(model, namespace, plan, thresholds), *extra_alerts]},
    ]


def prometheus_rule_spec(
    model: str,
    namespace: str,
    plan: TrafficPlan,
    thresholds: AlertThresholds,
    extra_alerts: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    return {"groups": rule_groups(model, namespace, plan, thresholds, extra_alerts)}


def pod_monitor_spec(model: str, namespace: str, scrape_interval: str) -> dict[str, Any]:
    """Scrape every version's pods (one target per pod, whatever Services select them)."""
    return {
        "selector": {"matchLabels": selector_labels(model)},
        "namespaceSelector": {"matchNames": [namespace]},
        "jobLabel": "app",
        "podTargetLabels": list(POD_TARGET_LABELS),
        "podMetricsEndpoints": [
            {
                "port": METRICS_PORT,
                "path": METRICS_PATH,
                "interval": scrape_interval,
                "scheme": "http",
            }
        ],
    }


def release_label(cfg: MonitoringSettings) -> str | None:
    """The ``release`` label the operator's selectors want, if any."""
    if cfg.release_label:
        return cfg.release_label
    return STACK_RELEASE if cfg.install_stack else None


def monitor_labels(model: str, cfg: MonitoringSettings) -> dict[str, str]:
    labels = dict(common_labels(model))
    rel = release_label(cfg)
    if rel:
        labels["release"] = rel
    return labels


def _resources(r: Any) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for kind in ("requests", "limits"):
        q = getattr(r, kind)
        vals = {k: v for k, v in (("cpu", q.cpu), ("memory", q.memory)) if v is not None}
        if vals:
            out[kind] = vals
    return out


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def stack_values(cfg: MonitoringSettings) -> dict[str, Any]:
    """Helm values for kube-prometheus-stack: retention and resources from config; every
    PodMonitor/ServiceMonitor/PrometheusRule in the cluster selected (not only the chart's own);
    Grafana's sidecar loading dashboards from ConfigMaps in every namespace."""
    values: dict[str, Any] = {
        "prometheus": {
            "prometheusSpec": {
                "retention": cfg.retention,
                "resources": _resources(cfg.prometheus_resources),
                "scrapeInterval": cfg.scrape_interval,
                "podMonitorSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
            }
        },
        "alertmanager": {
            "alertmanagerSpec": {
                "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
            }
        },
        "grafana": {
            "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": cfg.dashboard_label,
                    "labelValue": DASHBOARD_LABEL_VALUE,
                    "searchNamespace": "ALL",
                    "folderAnnotation": FOLDER_ANNOTATION,
                    "provider": {"foldersFromFilesStructure": True},
                }
            },
        },
    }
    return deep_merge(values, cfg.stack_values)


# --------------------------------------------------------------------------- the dashboard


def dashboard_uid(model: str, namespace: str) -> str:
    """Grafana uids are at most 40 characters."""
    return dns_label(f"{namespace}-{base_name(model)}", max_len=40)


@dataclass(frozen=True)
class PanelSpec:
    """One dashboard panel: title, unit and its queries (PromQL, legend)."""

    title: str
    unit: str
    queries: tuple[tuple[str, str], ...]
    description: str = ""
    threshold: float | None = None
    min_zero: bool = True


def dashboard_panels(
    model: str, namespace: str, thresholds: AlertThresholds
) -> list[tuple[str, list[PanelSpec]]]:
    """Rows of panels. Every query is per version, filtered by the ``$version`` variable, so the
    versions show side by side (one series each, legend ``v<version>``)."""
    sel = series_selector(model, namespace) + ',version=~"$version"'
    legend = "v{{version}}"

    def q(series: str) -> str:
        return f"sum by (version) ({series}{{{sel}}})"

    return [
        (
            "Traffic and errors",
            [
                PanelSpec(
                    "Requests/s",
                    "reqps",
                    ((q(REQUESTS_RATE), legend),),
                    f"{PREDICTION_ROUTE} requests per second, per version (probes excluded).",
                ),
                PanelSpec(
                    "Error ratio (5xx)",
                    "percentunit",
                    ((f"{ERROR_RATIO}{{{sel}}}", legend),),
                    "Share of prediction requests answered 5xx; the line is the alert threshold.",
                    threshold=thresholds.error_ratio,
                ),
            ],
        ),
        (
            "Latency",
            [
                PanelSpec(
                    "Latency p50 / p95 / p99",
                    "s",
                    tuple(
                        (
                            f'{LATENCY_QUANTILE}{{{sel},quantile="{_num(x)}"}}',
                            f"{legend} p{round(x * 100)}",
                        )
                        for x in QUANTILES
                    ),
                    "Prediction latency quantiles per version, from the request-duration histogram; "
                    "the line is the p99 alert threshold.",
                    threshold=thresholds.p99_latency_seconds,
                ),
                PanelSpec(
                    "In-flight requests",
                    "short",
                    ((q(IN_FLIGHT), legend),),
                    "Requests being processed right now, summed over the version's pods.",
                ),
            ],
        ),
        (
            "Resources",
            [
                PanelSpec(
                    "CPU (cores)",
                    "short",
                    ((q(CPU_RATE), legend),),
                    "CPU used by the model containers of each version (cAdvisor).",
                ),
                PanelSpec(
                    "Memory (working set)",
                    "bytes",
                    ((q(MEMORY), legend),),
                    "Working-set memory of the model containers of each version (what the OOM killer sees).",
                ),
                PanelSpec(
                    "Prediction rows/s",
                    "short",
                    ((q(ROWS_RATE), legend),),
                    "Input rows scored per second (a batch request scores many rows).",
                ),
            ],
        ),
    ]


Rows = Sequence[tuple[str, Sequence[PanelSpec]]]


def build_dashboard(
    model: str, namespace: str, thresholds: AlertThresholds, extra_rows: Rows = ()
) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model, built with grafana-foundation-sdk. ``extra_rows``
    follow the serving rows (the model-quality rows, components/monitoring_quality.py)."""
    from grafana_foundation_sdk.builders import common as gcommon
    from grafana_foundation_sdk.builders import dashboard as gdash
    from grafana_foundation_sdk.builders import prometheus as gprom
    from grafana_foundation_sdk.builders import timeseries as gts
    from grafana_foundation_sdk.models import common as cmodels
    from grafana_foundation_sdk.models import dashboard as dmodels

    ds = dmodels.DataSourceRef(type_val="prometheus", uid="${datasource}")
    name = base_name(model)
    builder = (
        gdash.Dashboard(f"Model {name} ({namespace})")
        .uid(dashboard_uid(model, namespace))
        .description(
            f"Every served version of {model} side by side: traffic, errors, latency, saturation. "
            "Generated by mlflow-deploy (components/monitoring.py)."
        )
        .tags(["mlflow-deploy", "model-serving", name])
        .timezone("browser")
        .refresh("30s")
        .time("now-3h", "now")
        .tooltip(dmodels.DashboardCursorSync.CROSSHAIR)
        .with_variable(gdash.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            gdash.QueryVariable("version")
            .label("Version")
            .datasource(ds)
            .query(f"label_values({MODEL_INFO}{{{series_selector(model, namespace)}}}, version)")
            .refresh(dmodels.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dmodels.VariableSort.NUMERICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(dmodels.VariableOption(selected=True, text="All", value="$__all"))
        )
    )
    panel_id = 0
    for row_title, panels in [*dashboard_panels(model, namespace, thresholds), *extra_rows]:
        panel_id += 1
        builder = builder.with_row(gdash.Row(row_title).id(panel_id))
        width = 24 // len(panels)
        for p in panels:
            panel_id += 1
            panel = (
                gts.Panel()
                .id(panel_id)
                .title(p.title)
                .description(p.description)
                .unit(p.unit)
                .datasource(ds)
                .span(width)
                .height(8)
                .fill_opacity(10)
                .legend(
                    gcommon.VizLegendOptions()
                    .display_mode(cmodels.LegendDisplayMode.TABLE)
                    .placement(cmodels.LegendPlacement.BOTTOM)
                    .show_legend(True)
                    .calcs(["mean", "max", "lastNotNull"])
                )
                .tooltip(
                    gcommon.VizTooltipOptions()
                    .mode(cmodels.TooltipDisplayMode.MULTI)
                    .sort(cmodels.SortOrder.DESCENDING)
                )
            )
            if p.min_zero:
                panel = panel.min(0)
            if p.threshold is not None:
                panel = panel.thresholds(
                    gdash.ThresholdsConfig()
                    .mode(dmodels.ThresholdsMode.ABSOLUTE)
                    .steps(
                        [
                            dmodels.Threshold(value=None, color="green"),
                            dmodels.Threshold(value=p.threshold, color="red"),
                        ]
                    )
                ).thresholds_style(
                    gcommon.GraphThresholdsStyleConfig().mode(cmodels.GraphThresholdsStyleMode.DASHED)
                )
            for i, (expr, legend_format) in enumerate(p.queries):
                query = gprom.Dataquery().expr(expr).legend_format(legend_format)
                panel = panel.with_target(query.ref_id(chr(ord("A") + i)).range())
            builder = builder.with_panel(panel)
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    result: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return result


def dashboard_json(model: str, namespace: str, thresholds: AlertThresholds, extra_rows: Rows = ()) -> str:
    return json.dumps(build_dashboard(model, namespace, thresholds, extra_rows), indent=2, sort_keys=True)


def dashboard_configmap_name(model: str) -> str:
    return dns_label(f"{base_name(model)}-dashboard")


# --------------------------------------------------------------------------- the component


@dataclass
class ModelMonitoringArgs:
    model_name: str
    plan: TrafficPlan
    namespace: str
    """The model's namespace: the PodMonitor, PrometheusRule and dashboard ConfigMap live there."""
    settings: MonitoringSettings
    after: list[pulumi.Resource] = field(default_factory=list)
    """Resources the objects in the model's namespace must wait for (that namespace, if the
    Kubernetes target declares it: pass the target's Deployments)."""
    extra_alerts: list[dict[str, Any]] = field(default_factory=list)
    """More alerts for the PrometheusRule (``monitoring.drift``: components/monitoring_quality.py)."""
    extra_rows: list[tuple[str, list[PanelSpec]]] = field(default_factory=list)
    """More dashboard rows, after the serving ones."""


class ModelMonitoring(pulumi.ComponentResource):
    """Outputs: ``dashboard_uid``, ``dashboard_path`` (append to the Grafana URL), ``alerts``,
    ``rule_name``, ``stack_release``."""

    def __init__(
        self, name: str, args: ModelMonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlflow-deploy:index:ModelMonitoring", name, None, opts)
        cfg, plan, model, ns = args.settings, args.plan, args.model_name, args.namespace
        base = base_name(model)
        child = pulumi.ResourceOptions(parent=self)

        crd_deps: list[pulumi.Resource] = []
        self.stack_release: str | None = None
        if cfg.install_stack:
            release = k8s.helm.v3.Release(
                f"{base}-monitoring-stack",
                name=STACK_RELEASE,
                chart=STACK_CHART,
                version=cfg.chart_version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=STACK_REPO),
                namespace=cfg.stack_namespace,
                create_namespace=True,
                values=stack_values(cfg),
                timeout=STACK_TIMEOUT_SECONDS,
                opts=child,
            )
            crd_deps.append(release)  # the PodMonitor and PrometheusRule CRDs come with the chart
            self.stack_release = STACK_RELEASE

        labels = monitor_labels(model, cfg)
        in_ns = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(args.after)))
        with_crds = pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=crd_deps))
        k8s.apiextensions.CustomResource(
            f"{base}-podmonitor",
            api_version="monitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata={"name": base, "namespace": ns, "labels": labels},
            spec=pod_monitor_spec(model, ns, cfg.scrape_interval),
            opts=with_crds,
        )
        rule_spec = prometheus_rule_spec(model, ns, plan, cfg.thresholds, args.extra_alerts)
        k8s.apiextensions.CustomResource(
            f"{base}-rules",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata={"name": base, "namespace": ns, "labels": labels},
            spec=rule_spec,
            opts=with_crds,
        )
        cm_name = dashboard_configmap_name(model)
        k8s.core.v1.ConfigMap(
            f"{base}-dashboard",
            metadata={
                "name": cm_name,
                "namespace": ns,
                "labels": {**common_labels(model), cfg.dashboard_label: DASHBOARD_LABEL_VALUE},
                "annotations": {FOLDER_ANNOTATION: cfg.dashboard_folder},
            },
            data={f"{cm_name}.json": dashboard_json(model, ns, cfg.thresholds, args.extra_rows)},
            opts=in_ns,
        )

        self.labels = labels
        """The labels the operator's selectors want (``release``), for more monitors beside these."""
        self.crd_deps = crd_deps
        """What a PodMonitor or PrometheusRule must wait for (the stack's Helm release)."""
        self.dashboard_uid = dashboard_uid(model, ns)
        self.dashboard_path = f"/d/{self.dashboard_uid}"
        self.rule_name = base
        # one name may have several rules (ModelMonitorStale): each alert once
        self.alerts = list(dict.fromkeys(r["alert"] for g in rule_spec["groups"] for r in g["rules"] if "alert" in r))
        self.register_outputs(
            {
                "dashboardUid": self.dashboard_uid,
                "dashboardPath": self.dashboard_path,
                "ruleName": self.rule_name,
                "alerts": self.alerts,
                "stackRelease": self.stack_release,
            }
        )

    @property
    def exports(self) -> dict[str, Any]:
        return {
            "dashboard": self.dashboard_path,
            "alerts": self.alerts,
            "prometheusRule": self.rule_name,
            "stackRelease": self.stack_release,
        }
