"""The generated Prometheus rules, run by the real ``promtool test rules``.

For every alert: input series that must fire it (with the labels an operator routes on) and
series that must not. The series carry exactly the labels a scrape through the generated
PodMonitor gives them (``monitoring.scrape_labels``) and the request-duration buckets of the
serving runtime (``serving.metrics.DURATION_BUCKETS``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import monitoring as mon
from components.rollout import TrafficPlan, plan_traffic
from components.settings import AlertThresholds, CandidateSettings
from serving.metrics import DURATION_BUCKETS

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package prometheus; scripts/test.sh installs it)"
)

MODEL, NS = "fraud-detector", "models"
MINUTES = 40  # every input series runs this long, one sample a minute


# --------------------------------------------------------------------------- series builders


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def counter(per_min: float, minutes: int = MINUTES, start: int = 0) -> str:
    """A counter growing by ``per_min`` every minute from minute ``start`` (flat before)."""
    if start == 0:
        return f"0+{per_min:g}x{minutes}"
    return f"0x{start - 1} 0+{per_min:g}x{minutes - start + 1}"


def requests(
    version: str, per_min: float, status: str = "200", route: str = "/invocations", **kw: Any
) -> dict[str, str]:
    labels = {**mon.scrape_labels(MODEL, version, NS), "route": route, "status": status}
    return {"series": f"{mon.REQUESTS_TOTAL}{_labels(labels)}", "values": counter(per_min, **kw)}


def latency(version: str, per_min: float, seconds: float, route: str = "/invocations") -> list[dict[str, str]]:
    """Histogram buckets of ``per_min`` requests a minute, every one taking ``seconds``."""
    base = {**mon.scrape_labels(MODEL, version, NS), "route": route, "status": "200"}
    out = []
    for le in [*DURATION_BUCKETS, float("inf")]:
        n = per_min if seconds <= le else 0
        le_text = "+Inf" if le == float("inf") else repr(le)
        out.append(
            {"series": f"{mon.REQUEST_DURATION}_bucket{_labels({**base, 'le': le_text})}", "values": counter(n)}
        )
    return out


def available(version: str, replicas: int) -> dict[str, str]:
    labels = {"namespace": NS, "deployment": f"{MODEL}-v{version}"}
    return {"series": f"kube_deployment_status_replicas_available{_labels(labels)}", "values": f"{replicas}x{MINUTES}"}


def restarts(pod: str, per_min: str, container: str = "model") -> dict[str, str]:
    labels = {"namespace": NS, "pod": pod, "container": container}
    return {"series": f"kube_pod_container_status_restarts_total{_labels(labels)}", "values": per_min}


def expected(version: str, severity: str, **extra: str) -> dict[str, Any]:
    return {"exp_labels": {"namespace": NS, "model": MODEL, "version": version, "severity": severity, **extra}}


# --------------------------------------------------------------------------- harness


@dataclass
class Case:
    id: str
    alert: str
    series: list[dict[str, str]]
    fires: list[dict[str, Any]]
    """Alerts expected *firing* at ``at`` (promtool ignores pending ones); [] = must not fire."""
    plan: TrafficPlan = field(default_factory=lambda: plan_traffic("7", None))
    thresholds: AlertThresholds = field(default_factory=AlertThresholds)
    at: str = "30m"


def run_promtool(tmp_path: Path, groups: list[dict[str, Any]], tests: list[dict[str, Any]]) -> None:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    (tmp_path / "test.yml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False)
    )
    assert PROMTOOL is not None
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def without_annotations(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cases below assert when an alert fires and with which labels; promtool compares
    annotations too, so those are dropped here and checked in their own test."""
    return [
        {**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]} for g in groups
    ]


def canary(percent: int = 20, strategy: str = "canary") -> TrafficPlan:
    return plan_traffic("7", CandidateSettings(version="8", strategy=strategy, percent=percent))  # type: ignore[arg-type]


CASES = [
    # ---- error ratio
    Case(
        "10% 5xx fires",
        mon.ALERT_ERROR_RATIO,
        [requests("7", 54), requests("7", 6, "500")],
        [expected("7", "critical")],
    ),
    Case("2% 5xx is fine", mon.ALERT_ERROR_RATIO, [requests("7", 98), requests("7", 2, "503")], []),
    Case(
        "4xx are the client's errors",
        mon.ALERT_ERROR_RATIO,
        [requests("7", 50), requests("7", 50, "400")],
        [],
    ),
    Case(
        "failing probes are not prediction errors",
        mon.ALERT_ERROR_RATIO,
        [requests("7", 60), requests("7", 12, "503", route="/ping")],
        [],
    ),
    Case(
        "threshold from config",
        mon.ALERT_ERROR_RATIO,
        [requests("7", 54), requests("7", 6, "500")],
        [],
        thresholds=AlertThresholds(error_ratio=0.15),
    ),
    Case(
        "still pending before 'for' has passed",
        mon.ALERT_ERROR_RATIO,
        [requests("7", 60), requests("7", 20, "500", start=20)],
        [],
        at="23m",
    ),
    Case(
        "fires once 'for' has passed",
        mon.ALERT_ERROR_RATIO,
        [requests("7", 60), requests("7", 20, "500", start=20)],
        [expected("7", "critical")],
        at="28m",
    ),
    Case(
        "each version on its own",
        mon.ALERT_ERROR_RATIO,
        [requests("7", 100), requests("8", 40), requests("8", 10, "500")],
        [expected("8", "critical")],
        plan=canary(),
    ),
    # ---- p99 latency
    Case("2 s requests fire", mon.ALERT_LATENCY, latency("7", 60, 2.0), [expected("7", "warning", quantile="0.99")]),
    Case("200 ms requests are fine", mon.ALERT_LATENCY, latency("7", 60, 0.2), []),
    Case(
        "latency threshold from config",
        mon.ALERT_LATENCY,
        latency("7", 60, 2.0),
        [],
        thresholds=AlertThresholds(p99_latency_seconds=3.0),
    ),
    Case(
        "slow probes do not count",
        mon.ALERT_LATENCY,
        latency("7", 60, 2.0, route="/ping") + latency("7", 60, 0.01),
        [],
    ),
    # ---- no traffic while replicas > 0
    Case(
        "pods up, only probes arrive",
        mon.ALERT_NO_TRAFFIC,
        [available("7", 2), requests("7", 12, route="/ping")],
        [expected("7", "warning", deployment="fraud-detector-v7")],
    ),
    Case("pods up and serving", mon.ALERT_NO_TRAFFIC, [available("7", 2), requests("7", 60)], []),
    Case("no pods", mon.ALERT_NO_TRAFFIC, [available("7", 0)], []),
    Case(
        "a canary taking no requests",
        mon.ALERT_NO_TRAFFIC,
        [available("7", 2), available("8", 2), requests("7", 60)],
        [expected("8", "warning", deployment="fraud-detector-v8")],
        plan=canary(),
    ),
    Case(
        "a blue-green preview is idle by design",
        mon.ALERT_NO_TRAFFIC,
        [available("7", 2), available("8", 1), requests("7", 60)],
        [],
        plan=canary(0, "blue-green"),
    ),
    Case(
        "a shadow must see mirrored requests",
        mon.ALERT_NO_TRAFFIC,
        [available("7", 2), available("8", 2), requests("7", 60)],
        [expected("8", "warning", deployment="fraud-detector-v8")],
        plan=canary(50, "shadow"),
    ),
    # ---- restarting pods
    Case(
        "a crash-looping model container",
        mon.ALERT_RESTARTS,
        [restarts("fraud-detector-v7-5d8f7c9b4-x2x4z", f"0+1x{MINUTES}")],
        [
            {
                "exp_labels": {
                    "namespace": NS,
                    "model": MODEL,
                    "version": "7",
                    "severity": "warning",
                    "pod": "fraud-detector-v7-5d8f7c9b4-x2x4z",
                    "container": "model",
                }
            }
        ],
    ),
    Case(
        "two restarts are below the threshold",
        mon.ALERT_RESTARTS,
        [restarts("fraud-detector-v7-5d8f7c9b4-x2x4z", f"0x20 1 2x{MINUTES - 22}")],
        [],
    ),
    Case(
        "another container of the pod",
        mon.ALERT_RESTARTS,
        [restarts("fraud-detector-v7-5d8f7c9b4-x2x4z", f"0+1x{MINUTES}", container="istio-proxy")],
        [],
    ),
    Case(
        "another workload's pod",
        mon.ALERT_RESTARTS,
        [
            restarts("fraud-detector-v70-5d8f7c9b4-x2x4z", f"0+1x{MINUTES}"),
            restarts("churn-v7-6c9-abcde", f"0+1x{MINUTES}"),
        ],
        [],
    ),
    # ---- canary: candidate worse than stable
    Case(
        "candidate 5% vs stable 1% 5xx",
        mon.ALERT_CANDIDATE_ERRORS,
        [requests("7", 99), requests("7", 1, "500"), requests("8", 19), requests("8", 1, "500")],
        [expected("8", "critical", rollout="canary", stable_version="7")],
        plan=canary(),
    ),
    Case(
        "candidate within the margin",
        mon.ALERT_CANDIDATE_ERRORS,
        [requests("7", 99), requests("7", 1, "500"), requests("8", 49), requests("8", 1, "500")],
        [],
        plan=canary(),
    ),
    Case(
        "margin from config",
        mon.ALERT_CANDIDATE_ERRORS,
        [requests("7", 99), requests("7", 1, "500"), requests("8", 19), requests("8", 1, "500")],
        [],
        plan=canary(),
        thresholds=AlertThresholds(candidate_error_ratio_margin=0.05),
    ),
    Case(
        "shadow candidate failing mirrored requests",
        mon.ALERT_CANDIDATE_ERRORS,
        [requests("7", 100), requests("8", 10), requests("8", 10, "500")],
        [expected("8", "critical", rollout="shadow", stable_version="7")],
        plan=canary(50, "shadow"),
    ),
    Case(
        "candidate p99 400 ms vs stable 200 ms",
        mon.ALERT_CANDIDATE_LATENCY,
        latency("7", 60, 0.2) + latency("8", 20, 0.4),
        [expected("8", "warning", quantile="0.99", rollout="canary", stable_version="7")],
        plan=canary(),
    ),
    Case(
        "candidate as fast as stable",
        mon.ALERT_CANDIDATE_LATENCY,
        latency("7", 60, 0.2) + latency("8", 20, 0.2),
        [],
        plan=canary(),
    ),
    Case(
        "latency factor from config",
        mon.ALERT_CANDIDATE_LATENCY,
        latency("7", 60, 0.2) + latency("8", 20, 0.4),
        [],
        plan=canary(),
        thresholds=AlertThresholds(candidate_latency_margin=2.5),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.alert}: {c.id}" for c in CASES])
def test_alert(case: Case, tmp_path: Path) -> None:
    groups = mon.rule_groups(MODEL, NS, case.plan, case.thresholds)
    names = [r.get("alert") for g in groups for r in g["rules"]]
    assert case.alert in names  # a "must not fire" case on a missing rule would prove nothing
    for e in case.fires:
        e["exp_labels"] = {k: str(v) for k, v in e["exp_labels"].items()}
    test = {
        "interval": "1m",
        "input_series": case.series,
        "alert_rule_test": [{"eval_time": case.at, "alertname": case.alert, "exp_alerts": case.fires}],
    }
    run_promtool(tmp_path, without_annotations(groups), [test])


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    every = {r["alert"] for r in mon.alert_rules(MODEL, NS, canary(), AlertThresholds())}
    assert {c.alert for c in CASES if c.fires} == every
    assert {c.alert for c in CASES if not c.fires} == every


def test_annotations_render_for_the_on_call(tmp_path: Path) -> None:
    groups = mon.rule_groups(MODEL, NS, plan_traffic("7", None), AlertThresholds())
    test = {
        "interval": "1m",
        "input_series": [requests("7", 54), requests("7", 6, "500")],
        "alert_rule_test": [
            {
                "eval_time": "30m",
                "alertname": mon.ALERT_ERROR_RATIO,
                "exp_alerts": [
                    {
                        **expected("7", "critical"),
                        "exp_annotations": {
                            "summary": "fraud-detector v7: 10% of predictions fail (5xx)",
                            "description": "More than 5.00% of /invocations requests to fraud-detector v7 in "
                            "namespace models answered 5xx over 5m.",
                        },
                    }
                ],
            }
        ],
    }
    run_promtool(tmp_path, groups, [test])


def test_recording_rules_per_version(tmp_path: Path) -> None:
    """Values a dashboard reads: requests/s and 5xx ratio per version (probes excluded), 0 and
    not "no data" for a version without errors, nothing for a version without requests."""
    groups = mon.rule_groups(MODEL, NS, canary(), AlertThresholds())
    sel = f'model="{MODEL}",namespace="{NS}"'
    test = {
        "interval": "1m",
        "input_series": [
            requests("7", 54),
            requests("7", 6, "500"),
            requests("7", 600, route="/ping"),
            requests("8", 30),
            *latency("7", 60, 0.2),
        ],
        "promql_expr_test": [
            {
                "expr": mon.REQUESTS_RATE,
                "eval_time": "30m",
                "exp_samples": [
                    {"labels": f'{mon.REQUESTS_RATE}{{{sel},version="7"}}', "value": 1},
                    {"labels": f'{mon.REQUESTS_RATE}{{{sel},version="8"}}', "value": 0.5},
                ],
            },
            {
                "expr": mon.ERROR_RATIO,
                "eval_time": "30m",
                "exp_samples": [
                    {"labels": f'{mon.ERROR_RATIO}{{{sel},version="7"}}', "value": 0.1},
                    {"labels": f'{mon.ERROR_RATIO}{{{sel},version="8"}}', "value": 0},
                ],
            },
            {
                # every request took 200 ms: inside the (0.1, 0.25] bucket, interpolated linearly
                "expr": f'{mon.LATENCY_QUANTILE}{{quantile="0.5"}}',
                "eval_time": "30m",
                "exp_samples": [
                    {"labels": f'{mon.LATENCY_QUANTILE}{{{sel},quantile="0.5",version="7"}}', "value": 0.175}
                ],
            },
        ],
    }
    run_promtool(tmp_path, groups, [test])


def test_promtool_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness is not vacuous: a case expecting the wrong labels fails."""
    groups = mon.rule_groups(MODEL, NS, plan_traffic("7", None), AlertThresholds())
    test = {
        "interval": "1m",
        "input_series": [requests("7", 54), requests("7", 6, "500")],
        "alert_rule_test": [
            {"eval_time": "30m", "alertname": mon.ALERT_ERROR_RATIO, "exp_alerts": [expected("8", "critical")]}
        ],
    }
    with pytest.raises(AssertionError):
        run_promtool(tmp_path, without_annotations(groups), [test])
