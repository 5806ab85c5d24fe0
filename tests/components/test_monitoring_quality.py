"""The model-quality alerts (``monitoring.drift``), run by the real ``promtool test rules``, and
their dashboard rows.

The input series carry the labels a scrape of the monitor through its PodMonitor gives them: the
monitor's own ``model`` (the registry name) and ``version`` / ``stable`` / ``candidate``, plus
``namespace``, ``pod``, ``job`` from the scrape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components import monitoring as mon
from components import monitoring_quality as mq
from components.rollout import plan_traffic
from components.settings import AlertThresholds, CandidateSettings, DriftSettings
from tests.components.test_monitoring_rules import PROMTOOL, run_promtool, without_annotations

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")

MODEL, NS = "fraud-detector", "models"
DRIFT = DriftSettings(enabled=True, reference="models:/fraud-detector/1", interval="5m", window="1h")
T = AlertThresholds(for_="5m", drift_share=0.5, shadow_agreement=0.95, shadow_min_pairs=100)  # type: ignore[call-arg]
SHADOW = plan_traffic("7", CandidateSettings(version="8", strategy="shadow", percent=100))
SCRAPE = {"namespace": NS, "pod": "fraud-detector-monitor-5d9c7-abcde", "job": "fraud-detector-monitor"}


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    all_labels = {**SCRAPE, "model": MODEL, **labels}
    return {"series": name + "{" + ",".join(f'{k}="{v}"' for k, v in all_labels.items()) + "}", "values": values}


def groups(plan: Any = SHADOW) -> list[dict[str, Any]]:
    extra = mq.quality_alert_rules(MODEL, NS, plan, T, DRIFT)
    return without_annotations(mon.rule_groups(MODEL, NS, plan, T, extra))


def alert_test(at: str, alert: str, fires: list[dict[str, str]], inputs: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": inputs,
        "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": [{"exp_labels": f} for f in fires]}],
    }


def labels(severity: str = "warning", **extra: str) -> dict[str, str]:
    return {"namespace": NS, "model": MODEL, "severity": severity, **extra}


def test_data_drift_fires_per_version_above_the_share_for_the_for_duration(tmp_path: Path) -> None:
    drifted = series(mq.DRIFT_SHARE, "0.75x40", version="7")
    calm = series(mq.DRIFT_SHARE, "0.25x40", version="8")
    at_threshold = series(mq.DRIFT_SHARE, "0.5x40", version="9")
    brief = series(mq.DRIFT_SHARE, "0.2x10 0.9x2 0.2x28", version="10")  # above for 3m < for 5m
    inputs = [drifted, calm, at_threshold, brief]
    tests = [
        alert_test("20m", mq.ALERT_DRIFT, [labels(version="7")], inputs),
        # pending, not yet firing, 3 minutes after the share went up
        alert_test("3m", mq.ALERT_DRIFT, [], [series(mq.DRIFT_SHARE, "0.9x40", version="7")]),
        alert_test("12m", mq.ALERT_DRIFT, [], [brief]),
    ]
    run_promtool(tmp_path, groups(), tests)


def test_shadow_disagreement_needs_enough_pairs_and_the_current_pair(tmp_path: Path) -> None:
    pair = {"stable": "7", "candidate": "8"}
    low = series(mq.SHADOW_AGREEMENT, "0.80x40", **pair)
    pairs = series(mq.SHADOW_PAIRS, "50+10x40", **pair)  # 100 pairs from minute 5
    fires = labels(version="8", rollout="shadow", stable_version="7", **pair)
    tests = [
        alert_test("20m", mq.ALERT_SHADOW, [fires], [low, pairs]),
        # fewer pairs than shadowMinPairs: agreement is not known well enough
        alert_test("20m", mq.ALERT_SHADOW, [], [low, series(mq.SHADOW_PAIRS, "0+2x40", **pair)]),
        # agreeing candidate
        alert_test("20m", mq.ALERT_SHADOW, [], [series(mq.SHADOW_AGREEMENT, "0.97x40", **pair), pairs]),
        # an older pair's leftover series does not alert for the current rollout
        alert_test(
            "20m",
            mq.ALERT_SHADOW,
            [],
            [
                series(mq.SHADOW_AGREEMENT, "0.5x40", stable="6", candidate="7"),
                series(mq.SHADOW_PAIRS, "500x40", stable="6", candidate="7"),
            ],
        ),
    ]
    run_promtool(tmp_path, groups(), tests)


def test_no_shadow_alert_without_a_mirror() -> None:
    canary = plan_traffic("7", CandidateSettings(version="8", strategy="canary", percent=10))
    names = [r["alert"] for r in mq.quality_alert_rules(MODEL, NS, canary, T, DRIFT)]
    assert mq.ALERT_SHADOW not in names and mq.ALERT_DRIFT in names


def test_monitor_stale_after_three_intervals_or_when_absent(tmp_path: Path) -> None:
    # a timestamp that follows the clock (evaluations every minute) until minute 10, then stops
    evaluating = series(mq.LAST_EVALUATION, "0+60x10 600x30")
    fires = labels()
    tests = [
        # 3 intervals of 5m = 900 s: minute 10 + 15 = 25 is the edge
        alert_test("24m", mq.ALERT_STALE, [], [evaluating]),
        alert_test("27m", mq.ALERT_STALE, [fires], [evaluating]),
        # a monitor evaluating on time never alerts
        alert_test("35m", mq.ALERT_STALE, [], [series(mq.LAST_EVALUATION, "0+60x40")]),
        # no series at all (the monitor is down or never scraped): fires after 15 minutes of absence
        alert_test("14m", mq.ALERT_STALE, [], [series("up", "1x40")]),
        alert_test(
            "16m", mq.ALERT_STALE, [{"namespace": NS, "model": MODEL, "severity": "warning"}], [series("up", "1x40")]
        ),
        # another model's monitor does not count for this one
        alert_test(
            "16m",
            mq.ALERT_STALE,
            [fires],
            [{"series": f'{mq.LAST_EVALUATION}{{namespace="{NS}",model="other"}}', "values": "0+60x40"}],
        ),
    ]
    run_promtool(tmp_path, groups(), tests)


def test_annotations_render_in_promtool(tmp_path: Path) -> None:
    """With annotations kept, the templates expand (a broken template fails promtool)."""
    drift = series(mq.DRIFT_SHARE, "0.75x40", version="7")
    g = mon.rule_groups(MODEL, NS, SHADOW, T, mq.quality_alert_rules(MODEL, NS, SHADOW, T, DRIFT))
    rule = next(r for r in g[1]["rules"] if r["alert"] == mq.ALERT_DRIFT)
    tests = [
        {
            "interval": "1m",
            "input_series": [drift],
            "alert_rule_test": [
                {
                    "eval_time": "20m",
                    "alertname": mq.ALERT_DRIFT,
                    "exp_alerts": [
                        {
                            "exp_labels": labels(version="7"),
                            "exp_annotations": {
                                "summary": "fraud-detector v7: 75% of the input columns drifted",
                                "description": rule["annotations"]["description"].replace(
                                    "{{ $labels.model }} v{{ $labels.version }}", "fraud-detector v7"
                                ),
                            },
                        }
                    ],
                }
            ],
        }
    ]
    run_promtool(tmp_path, g, tests)


def test_a_model_name_with_quotes_is_escaped(tmp_path: Path) -> None:
    name = 'odd"name\\x'
    sel = mq.monitor_selector(name, NS)
    assert sel == 'namespace="models",model="odd\\"name\\\\x"'
    rules = mq.quality_alert_rules(name, NS, SHADOW, T, DRIFT)
    # promtool parses every expression
    run_promtool(
        tmp_path, [{"name": "g", "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in rules]}], []
    )


def test_dashboard_rows() -> None:
    rows = mq.quality_rows(MODEL, NS, T)
    titles = [t for t, _ in rows]
    assert titles == ["Model quality: input drift", "Model quality: shadow comparison", "Payload capture"]
    board = mon.build_dashboard(MODEL, NS, T, rows)
    panels = {p["title"]: p for p in board["panels"] if p.get("type") == "timeseries"}
    drift = panels["Drift share"]
    assert (
        drift["targets"][0]["expr"]
        == f'max by (version) ({mq.DRIFT_SHARE}{{namespace="{NS}",model="{MODEL}",version=~"$version"}})'
    )
    steps = drift["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == T.drift_share
    assert "topk(10" in panels["Top 10 feature drift scores"]["targets"][0]["expr"]
    capture = panels["Captured requests/s"]["targets"][0]["expr"]
    assert f"rate({mq.CAPTURE_SENT}{{" in capture and "[5m]" in capture
    drops = panels["Capture drops/s"]["targets"][0]["expr"]
    assert "by (version, reason)" in drops and mq.CAPTURE_DROPPED in drops
    agreement = panels["Shadow agreement"]
    assert agreement["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == T.shadow_agreement
    json.dumps(board)


def test_capture_metric_names_match_the_serving_runtime() -> None:
    from prometheus_client import generate_latest

    from serving.metrics import Metrics

    m = Metrics()
    m.capture_records.inc()
    m.capture_dropped.labels(reason="queue_full").inc()
    text = generate_latest(m.registry).decode()
    assert mq.CAPTURE_SENT in text and f'{mq.CAPTURE_DROPPED}{{reason="queue_full"}}' in text
