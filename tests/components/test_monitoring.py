"""ModelMonitoring: pure decisions, and what the component declares under the mock runtime.

The rules' behaviour (when each alert fires) is checked with the real promtool in
test_monitoring_rules.py; the end-to-end path (serving runtime -> Prometheus -> rules) in
test_monitoring_e2e.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from components import monitoring as mon
from components.rollout import plan_traffic
from components.settings import AlertThresholds, CandidateSettings, MonitoringSettings, SettingsError
from modelctl.render import Rendered
from modelctl.sample import SampleRegistry
from tests.conftest import base_config

COMPONENT = "mlflow-deploy:index:ModelMonitoring"
K8S_COMPONENT = "mlflow-deploy:index:KubernetesModelService"
POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
RELEASE = "kubernetes:helm.sh/v3:Release"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def cand(version: str = "8", strategy: str = "canary", percent: int | None = None) -> CandidateSettings:
    return CandidateSettings(version=version, strategy=strategy, percent=percent)  # type: ignore[arg-type]


def alert_names(plan: Any, thresholds: AlertThresholds | None = None) -> list[str]:
    rules = mon.alert_rules("fraud-detector", "models", plan, thresholds or AlertThresholds())
    return [r["alert"] for r in rules]


# --------------------------------------------------------------------------- pure decisions


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (None, ["7"]),
        (cand(percent=10), ["7", "8"]),
        (cand(percent=0), ["7"]),  # an idle canary is no outage
        (cand(percent=100), ["8"]),  # stable drained on purpose
        (cand(strategy="blue-green", percent=0), ["7"]),  # the preview gets no live traffic
        (cand(strategy="blue-green", percent=100), ["8"]),
        (cand(strategy="shadow", percent=30), ["7", "8"]),  # the shadow sees mirrored requests
        (cand(strategy="shadow", percent=0), ["7"]),
    ],
)
def test_versions_that_must_see_traffic_follow_the_plan(candidate: Any, expected: list[str]) -> None:
    assert mon.traffic_versions(plan_traffic("7", candidate)) == expected


def test_candidate_comparison_only_while_both_serve() -> None:
    assert mon.compared_versions(plan_traffic("7", cand(percent=10))) == ("7", "8")
    assert mon.compared_versions(plan_traffic("7", cand(strategy="shadow", percent=50))) == ("7", "8")
    assert mon.compared_versions(plan_traffic("7", None)) is None
    assert mon.compared_versions(plan_traffic("7", cand(strategy="blue-green"))) is None
    assert mon.compared_versions(plan_traffic("7", cand(strategy="shadow", percent=0))) is None


def test_canary_adds_the_comparison_alerts_and_promotion_removes_them() -> None:
    base = {mon.ALERT_ERROR_RATIO, mon.ALERT_LATENCY, mon.ALERT_NO_TRAFFIC, mon.ALERT_RESTARTS}
    comparison = {mon.ALERT_CANDIDATE_ERRORS, mon.ALERT_CANDIDATE_LATENCY}
    assert set(alert_names(plan_traffic("7", cand(percent=10)))) == base | comparison
    assert set(alert_names(plan_traffic("8", None))) == base
    assert set(alert_names(plan_traffic("7", cand(strategy="blue-green")))) == base


def test_rule_names_are_unique_per_model_and_namespace() -> None:
    plan = plan_traffic("7", None)
    a = mon.rule_groups("fraud-detector", "models", plan, AlertThresholds())
    b = mon.rule_groups("churn", "models", plan, AlertThresholds())
    c = mon.rule_groups("fraud-detector", "staging", plan, AlertThresholds())
    names = [g["name"] for groups in (a, b, c) for g in groups]
    assert len(names) == len(set(names)) == 6


def test_every_series_selector_is_scoped_to_the_model_and_namespace() -> None:
    """Two models (or two stacks) in one cluster must not read each other's series."""
    plan = plan_traffic("7", cand(percent=10))
    for group in mon.rule_groups("fraud-detector", "models", plan, AlertThresholds()):
        for rule in group["rules"]:
            expr = rule["expr"]
            assert 'namespace="models"' in expr, rule
            assert 'model="fraud-detector"' in expr or "fraud-detector-v7" in expr, rule


def test_rules_pass_promtool_check_for_every_rollout_shape(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; scripts/test.sh installs it)")
    shapes = [
        None,
        cand(percent=10),
        cand(percent=0),
        cand(strategy="blue-green"),
        cand(strategy="blue-green", percent=100),
        cand(strategy="shadow", percent=20),
    ]
    for i, c in enumerate(shapes):
        f = tmp_path / f"rules{i}.yml"
        spec = mon.prometheus_rule_spec("fraud-detector", "models", plan_traffic("7", c), AlertThresholds())
        f.write_text(yaml.safe_dump(spec))
        proc = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True)
        assert proc.returncode == 0, (c, proc.stdout, proc.stderr)


def test_deep_merge_keeps_siblings_and_replaces_leaves() -> None:
    base = {"a": {"b": 1, "c": {"d": 2}}, "l": [1, 2]}
    out = mon.deep_merge(base, {"a": {"c": {"e": 3}}, "l": [9]})
    assert out == {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "l": [9]}
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "l": [1, 2]}  # the input is not modified


def test_stack_values_come_from_config() -> None:
    cfg = MonitoringSettings.model_validate(
        {
            "installStack": True,
            "retention": "15d",
            "prometheusResources": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
            "dashboardLabel": "my_dashboards",
            "stackValues": {"grafana": {"adminPassword": "s3cret"}, "prometheus": {"prometheusSpec": {"replicas": 2}}},
        }
    )
    v = mon.stack_values(cfg)
    spec = v["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "15d"
    assert spec["resources"] == {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}
    assert spec["replicas"] == 2  # from stackValues, beside the generated keys
    # our PodMonitor/PrometheusRule carry no chart label: the stack must select every one
    assert spec["podMonitorSelectorNilUsesHelmValues"] is False
    assert spec["ruleSelectorNilUsesHelmValues"] is False
    sidecar = v["grafana"]["sidecar"]["dashboards"]
    assert sidecar["enabled"] is True and sidecar["label"] == "my_dashboards"
    assert sidecar["searchNamespace"] == "ALL"  # the dashboard lives in the model's namespace
    assert v["grafana"]["adminPassword"] == "s3cret" and "resources" in v["grafana"]


# --------------------------------------------------------------------------- dashboard


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return mon.build_dashboard("fraud-detector", "models", AlertThresholds(error_ratio=0.07))


def panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in d["panels"] if p["type"] != "row"]


def test_dashboard_has_the_panels_the_operators_need(dashboard: dict[str, Any]) -> None:
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels(dashboard)}
    wanted = {
        "requests": mon.REQUESTS_RATE,
        "errors": mon.ERROR_RATIO,
        "latency": mon.LATENCY_QUANTILE,
        "in flight": mon.IN_FLIGHT,
        "cpu": mon.CPU_RATE,
        "memory": mon.MEMORY,
    }
    for what, series in wanted.items():
        assert any(series in e for e in exprs.values()), what
    latency = next(p for p in panels(dashboard) if mon.LATENCY_QUANTILE in p["targets"][0]["expr"])
    quantiles = {t["expr"].split('quantile="')[1].split('"')[0] for t in latency["targets"]}
    assert quantiles == {"0.5", "0.95", "0.99"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_shows_versions_side_by_side_with_a_version_variable(dashboard: dict[str, Any]) -> None:
    var = next(v for v in dashboard["templating"]["list"] if v["name"] == "version")
    assert var["type"] == "query" and var["multi"] is True and var["includeAll"] is True
    assert "label_values(" in var["query"] and var["query"].rstrip(")").endswith("version")
    for p in panels(dashboard):
        for t in p["targets"]:
            assert 'version=~"$version"' in t["expr"], p["title"]
            assert "{{version}}" in t["legendFormat"], p["title"]  # one series per version
            # aggregations keep the version apart
            if t["expr"].startswith("sum"):
                assert t["expr"].startswith("sum by (version)")


def test_dashboard_reads_only_series_the_rules_record(dashboard: dict[str, Any]) -> None:
    recorded = {r["record"] for r in mon.recording_rules("fraud-detector", "models", plan_traffic("7", None))}
    for p in panels(dashboard):
        for t in p["targets"]:
            used = {s for s in recorded if s in t["expr"]}
            assert used, (p["title"], t["expr"])


def test_dashboard_queries_are_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    exprs = [t["expr"].replace("$version", ".*") for p in panels(dashboard) for t in p["targets"]]
    rules = {"groups": [{"name": "dash", "rules": [{"record": f"dash:q{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    f = tmp_path / "dash.yml"
    f.write_text(yaml.safe_dump(rules))
    proc = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_error_panel_draws_the_configured_threshold(dashboard: dict[str, Any]) -> None:
    errors = next(p for p in panels(dashboard) if mon.ERROR_RATIO in p["targets"][0]["expr"])
    steps = errors["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert 0.07 in [s["value"] for s in steps]
    assert errors["fieldConfig"]["defaults"]["unit"] == "percentunit"


# --------------------------------------------------------------------------- the component


def monitored(registry: SampleRegistry, monitoring: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    return base_config(registry, monitoring={"enabled": True, **(monitoring or {})}, **over)


@pytest.fixture
def canary(render, registry: SampleRegistry) -> Rendered:  # type: ignore[no-untyped-def]
    return render(
        monitored(
            registry,
            {"releaseLabel": "prom", "thresholds": {"errorRatio": 0.1, "for": "10m"}},
            candidate={"version": "2", "strategy": "canary", "percent": 20},
        )
    )


def test_monitoring_off_declares_nothing(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    out = render(base_config(registry))  # conftest's base config has monitoring.enabled false
    assert not out.of_type(COMPONENT)
    assert not [r for r in out.resources if "monitoring.coreos.com" in r.type]


def test_children_parented_under_the_kubernetes_target(canary: Rendered) -> None:
    comp = canary.of_type(COMPONENT)
    assert len(comp) == 1
    assert comp[0].parent == canary.of_type(K8S_COMPONENT)[0].name
    children = [r for r in canary.resources if r.parent == comp[0].name]
    assert {r.type for r in children} == {POD_MONITOR, RULE, CONFIGMAP}  # no Helm release by default
    for r in children:
        assert r.inputs["metadata"]["namespace"] == "models"


def test_pod_monitor_selects_every_versions_pods_and_keeps_the_version(canary: Rendered) -> None:
    pm = canary.of_type(POD_MONITOR)[0].inputs
    assert pm["metadata"]["labels"]["release"] == "prom"  # what the operator's selector wants
    spec = pm["spec"]
    selector = spec["selector"]["matchLabels"]
    pods = [d.inputs["spec"]["template"]["metadata"]["labels"] for d in canary.of_type(DEPLOYMENT)]
    assert len(pods) == 2
    for labels in pods:
        assert selector.items() <= labels.items()  # both versions' pods are scraped
        for key in spec["podTargetLabels"]:
            assert key in labels  # copied onto the series
    assert "version" in spec["podTargetLabels"]
    assert {labels["version"] for labels in pods} == {"1", "2"}
    assert spec["namespaceSelector"] == {"matchNames": ["models"]}
    (ep,) = spec["podMetricsEndpoints"]
    container = canary.of_type(DEPLOYMENT)[0].inputs["spec"]["template"]["spec"]["containers"][0]
    assert ep["port"] in {p["name"] for p in container["ports"]}
    assert ep["path"] == "/metrics" and ep["interval"] == "30s"


def test_prometheus_rule_carries_config_thresholds_and_the_canary(canary: Rendered) -> None:
    rule = canary.of_type(RULE)[0].inputs
    assert rule["metadata"]["labels"]["release"] == "prom"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert alerts[mon.ALERT_ERROR_RATIO]["expr"].endswith("> 0.1")
    assert alerts[mon.ALERT_ERROR_RATIO]["for"] == "10m"
    assert 'version="2"' in alerts[mon.ALERT_CANDIDATE_ERRORS]["expr"]
    assert alerts[mon.ALERT_CANDIDATE_ERRORS]["labels"]["stable_version"] == "1"
    # the exported alert list is what was declared
    assert sorted(canary.outputs["kubernetes"]["monitoring"]["alerts"]) == sorted(alerts)


def test_dashboard_configmap_is_labelled_for_the_sidecar(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    out = render(monitored(registry, {"dashboardLabel": "team_dashboards", "dashboardFolder": "Fraud"}))
    (cm,) = out.of_type(CONFIGMAP)
    meta = cm.inputs["metadata"]
    assert meta["labels"]["team_dashboards"] == "1"
    assert meta["annotations"]["grafana_folder"] == "Fraud"
    (body,) = cm.inputs["data"].values()
    board = json.loads(body)
    assert board["uid"] == out.outputs["kubernetes"]["monitoring"]["dashboard"].removeprefix("/d/")
    manifest = next(m for m in out.kubernetes_manifests() if m["kind"] == "ConfigMap")
    kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)


def test_install_stack_declares_a_pinned_helm_release_first(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    out = render(
        monitored(
            registry,
            {"installStack": True, "retention": "3d", "chartVersion": "87.15.1"},
            kubernetes={"namespace": "models", "replicas": 1, "kubeContext": "kind-kind"},
        )
    )
    (rel,) = out.of_type(RELEASE)
    assert rel.parent == out.of_type(COMPONENT)[0].name
    i = rel.inputs
    assert i["chart"] == "kube-prometheus-stack" and i["version"] == "87.15.1"
    assert i["repositoryOpts"]["repo"].startswith("https://")
    assert i["namespace"] == "monitoring" and i["createNamespace"] is True
    assert i["values"]["prometheus"]["prometheusSpec"]["retention"] == "3d"
    # the PodMonitor and PrometheusRule CRDs come with the chart: wait for it
    for t in (POD_MONITOR, RULE):
        (r,) = out.of_type(t)
        assert rel.name in r.depends_on
        assert r.inputs["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # the release waits for nothing of the model's; the model's objects wait for its Deployments
    deployments = {d.name for d in out.of_type(DEPLOYMENT)}
    assert not deployments & set(rel.depends_on)
    for t in (POD_MONITOR, RULE, CONFIGMAP):
        assert deployments <= set(out.of_type(t)[0].depends_on)
    # the kube context's provider reaches every child
    provider = out.of_type(DEPLOYMENT)[0].provider
    assert provider is not None
    for t in (RELEASE, POD_MONITOR, RULE, CONFIGMAP):
        assert out.of_type(t)[0].provider == provider


def test_install_stack_needs_the_kubernetes_target_and_fails_before_any_resource(
    render, registry: SampleRegistry  # type: ignore[no-untyped-def]
) -> None:
    cfg = monitored(registry, {"installStack": True}, kubernetes=None, vertex={"project": "p", "region": "us-central1"})
    with pytest.raises(SettingsError) as err:
        render(cfg)
    assert "mlflow-deploy:monitoring.installStack" in str(err.value)


def test_stack_values_without_install_stack_is_a_config_error(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SettingsError) as err:
        render(monitored(registry, {"stackValues": {"grafana": {"enabled": False}}}))
    assert "mlflow-deploy:monitoring.stackValues" in str(err.value)


def test_bad_threshold_names_its_key(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SettingsError) as err:
        render(monitored(registry, {"thresholds": {"errorRatio": 2}, "scrapeInterval": "often"}))
    msg = str(err.value)
    assert "mlflow-deploy:monitoring.thresholds.errorRatio" in msg
    assert "mlflow-deploy:monitoring.scrapeInterval" in msg
