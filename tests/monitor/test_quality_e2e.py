"""End to end: the real serving runtime capturing payloads, the real model monitor and a real
Prometheus running the project's rendered quality alerts.

* Two ``python -m serving`` processes serve two versions of a small pyfunc classifier with payload
  capture on (``SERVING_CAPTURE_URL`` / ``SERVING_CAPTURE_SAMPLE``, what the Deployment sets):
  stable v1 predicts ``x0 + x1 > 0``; candidate v2 is the same model but flips its prediction when
  ``x3`` is above a threshold, so it disagrees with stable on the share of inputs whose ``x3``
  crosses it (about 20% of the standard-normal rows sent; the exact share is computed from the rows
  sent).
* ``python -m monitor serve`` with the arguments the monitor Deployment gets
  (``components.quality.monitor_args``: a shadow plan, a 5 s interval), a reference parquet file of
  the training distribution with a ``prediction`` column.
* A Prometheus scraping the monitor (and the serving pods, as their PodMonitors would) every second
  with the rendered rule groups (``components.monitoring.prometheus_rule_spec`` with the alerts of
  ``components.monitoring_quality``, a 10 s ``for``).

Phase A sends undrifted rows to v1 and mirrors every request to v2 (same body, same
``X-Request-Id``, as Istio mirrors): the drift share stays low and ``ModelDataDrift`` inactive; the
shadow agreement is the known share (±2%) and ``ModelShadowDisagreement`` goes pending. Phase B
sends rows with x0..x2 shifted by 3 sigma to v1: its drift share rises above the threshold and
``ModelDataDrift`` goes pending (then firing) for v1 only.

Skipped only when the ``prometheus`` binary is missing (Debian package ``prometheus``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from components import monitoring as mon
from components import monitoring_quality as mq
from components.quality import monitor_args
from components.rollout import plan_traffic
from components.settings import AlertThresholds, CandidateSettings, DriftSettings
from serving.local import LocalServer
from tests.components.test_monitoring_e2e import free_port, query, wait_for
from tests.prometheus_runner import run_prometheus

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian package prometheus)"),
    pytest.mark.slow,
    pytest.mark.timeout(420),
]

ROOT = Path(__file__).resolve().parents[2]
MODEL, NS = "fraud-detector", "models"
STABLE, CANDIDATE = "1", "2"
FEATURES = ["x0", "x1", "x2", "x3"]
SHIFTED = ["x0", "x1", "x2"]  # phase B: 3 of the 4 columns drift
SHIFT = 3.0
FLIP_ABOVE = 0.8416  # P(N(0,1) > 0.8416) = 0.20: the candidate disagrees on ~20% of the rows
ROWS_PER_REQUEST = 10
REQUESTS = 120  # per phase: 1200 rows, so every window is a large one (monitor/drift.py:
# SMALL_WINDOW_ROWS): the same drift methods, comparable scores, in phase A and B

PLAN = plan_traffic(STABLE, CandidateSettings(version=CANDIDATE, strategy="shadow", percent=100))
DRIFT = DriftSettings(enabled=True, reference="reference.parquet", interval="5s", window="2m", shadow_window="30s")
T = AlertThresholds(for_="10s", drift_share=0.5, shadow_agreement=0.95, shadow_min_pairs=100)  # type: ignore[call-arg]

MODEL_CODE = textwrap.dedent(
    """
    import mlflow
    import pandas as pd
    from mlflow.pyfunc import PythonModel


    class Classifier(PythonModel):
        \"\"\"1 when x0 + x1 > 0; with flip_above in the model config, the opposite for rows whose
        x3 is above it (a candidate that disagrees with stable on a known share).\"\"\"

        def load_context(self, context):
            self.flip_above = (context.model_config or {}).get("flip_above")

        def predict(self, context, model_input: pd.DataFrame, params=None):
            out = (model_input["x0"] + model_input["x1"] > 0).astype(int)
            if self.flip_above is not None:
                out = out ^ (model_input["x3"] > float(self.flip_above)).astype(int)
            return out.tolist()


    mlflow.models.set_model(Classifier())
    """
)


def rows(n: int, *, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: rng.normal(size=n) + (shift if c in SHIFTED else 0.0) for c in FEATURES})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("quality-e2e")


@pytest.fixture(scope="module")
def reference_file(workdir: Path) -> Path:
    """The training distribution with the stable model's outputs as the ``prediction`` column."""
    ref = rows(3000, seed=0)
    ref["prediction"] = (ref["x0"] + ref["x1"] > 0).astype(int)
    path = workdir / "reference.parquet"
    ref.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def monitor(workdir: Path, reference_file: Path) -> Iterator[str]:
    """``python -m monitor serve`` with the Deployment's arguments, store and port local."""
    port = free_port()
    args = monitor_args(MODEL, PLAN, DRIFT, str(reference_file), drift_share=T.drift_share)
    local = {"--store": str(workdir / "store"), "--host": "127.0.0.1", "--port": str(port)}
    for flag, value in local.items():
        args[args.index(flag) + 1] = value
    log = (workdir / "monitor.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, (workdir / "monitor.log").read_text()[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        return False

    try:
        wait_for("the monitor to be healthy", healthy, timeout=120)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


@pytest.fixture(scope="module")
def servers(workdir: Path, monitor: str) -> Iterator[dict[str, LocalServer]]:
    import mlflow.pyfunc

    code = workdir / "classifier.py"
    code.write_text(MODEL_CODE)
    configs = {STABLE: {}, CANDIDATE: {"flip_above": FLIP_ABOVE}}
    started: dict[str, LocalServer] = {}
    try:
        for version, config in configs.items():
            path = workdir / f"model-{version}"
            mlflow.pyfunc.save_model(
                path=str(path), python_model=str(code), pip_requirements=["mlflow"], model_config=config
            )
            srv = LocalServer(
                str(path),
                workers=1,
                env={
                    "MODEL_NAME": MODEL,
                    "MODEL_VERSION": version,
                    "SERVING_CAPTURE_URL": f"{monitor}/v1/capture",
                    "SERVING_CAPTURE_SAMPLE": str(DRIFT.sample),
                },
                stdout=subprocess.DEVNULL,
                stderr=(workdir / f"serving-{version}.log").open("wb"),
            )
            srv.start(startup_timeout=180)
            started[version] = srv
        yield started
    finally:
        for srv in started.values():
            srv.stop(grace=10)


@contextlib.contextmanager
def prometheus(workdir: Path, monitor: str, servers: dict[str, LocalServer]) -> Iterator[str]:
    """Prometheus scraping the monitor (the scrape adds ``namespace``, as its PodMonitor's does) and
    each serving process as its version's pod, evaluating the rendered rules every second."""
    assert PROMETHEUS is not None
    alerts = mq.quality_alert_rules(MODEL, NS, PLAN, T, DRIFT)
    (workdir / "rules.yml").write_text(
        yaml.safe_dump(mon.prometheus_rule_spec(MODEL, NS, PLAN, T, alerts), sort_keys=False)
    )
    scrape = [
        {
            "job_name": "monitor",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [monitor.removeprefix("http://")], "labels": {"namespace": NS}}],
        },
        *(
            {
                "job_name": f"serving-{v}",
                "metrics_path": mon.METRICS_PATH,
                "static_configs": [
                    {"targets": [s.metrics_url.removeprefix("http://")], "labels": mon.scrape_labels(MODEL, v, NS)}
                ],
            }
            for v, s in servers.items()
        ),
    ]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(workdir / "rules.yml")],
        "scrape_configs": scrape,
    }
    with run_prometheus(workdir, config) as url:
        yield url


def send(servers: dict[str, LocalServer], frame: pd.DataFrame, *, prefix: str, versions: list[str]) -> list[int]:
    """``frame`` in requests of ROWS_PER_REQUEST rows, each to every version in ``versions`` with
    the same body and X-Request-Id (a mirror); the first version's predictions."""
    out: list[int] = []
    clients = {v: httpx.Client(base_url=servers[v].url, timeout=30) for v in versions}
    try:
        for n, start in enumerate(range(0, len(frame), ROWS_PER_REQUEST)):
            part = frame.iloc[start : start + ROWS_PER_REQUEST]
            body = {"dataframe_split": {"columns": FEATURES, "data": part.to_numpy().tolist()}}
            headers = {"x-request-id": f"{prefix}-{n}"}
            for i, v in enumerate(versions):
                r = clients[v].post("/invocations", json=body, headers=headers)
                assert r.status_code == 200, r.text
                assert r.headers["x-request-id"] == headers["x-request-id"]
                if i == 0:
                    out += r.json()["predictions"]
    finally:
        for c in clients.values():
            c.close()
    return out


def value(prom: str, expr: str) -> float | None:
    result = query(prom, expr)
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def alerts(prom: str, name: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a for a in r if a["labels"]["alertname"] == name]


def test_drift_and_shadow_agreement_through_prometheus(
    workdir: Path, monitor: str, servers: dict[str, LocalServer]
) -> None:
    sel = {v: mq.monitor_selector(MODEL, NS, version=v) for v in (STABLE, CANDIDATE)}
    pair = mq.monitor_selector(MODEL, NS, stable=STABLE, candidate=CANDIDATE)
    with prometheus(workdir, monitor, servers) as prom:
        # the monitor's first evaluation (at start, no traffic) is scraped: not stale, no drift
        every = mq.monitor_selector(MODEL, NS)
        wait_for("the monitor's evaluations", lambda: value(prom, f"{mq.LAST_EVALUATION}{{{every}}}"))

        # --- phase A: undrifted rows, every request mirrored to the candidate -------------------
        undrifted = rows(REQUESTS * ROWS_PER_REQUEST, seed=1)
        stable_out = send(servers, undrifted, prefix="a", versions=[STABLE, CANDIDATE])
        assert stable_out == (undrifted["x0"] + undrifted["x1"] > 0).astype(int).tolist()
        expected_agreement = float((undrifted["x3"] <= FLIP_ABOVE).mean())
        assert 0.75 < expected_agreement < 0.85  # the candidate disagrees on ~20% of these rows

        # an evaluation saw every phase A request of both versions
        for v in (STABLE, CANDIDATE):
            wait_for(
                f"v{v}'s {REQUESTS} records in an evaluation",
                lambda v=v: value(prom, f"{mq.CAPTURED_IN_WINDOW}{{{sel[v]}}}") == REQUESTS,
                timeout=60,
            )
        ratio = wait_for(
            "the shadow agreement of all phase A pairs",
            lambda: value(prom, f"{mq.SHADOW_PAIRS}{{{pair}}}") == len(undrifted)
            and value(prom, f"{mq.SHADOW_AGREEMENT}{{{pair}}}"),
            timeout=60,
        )
        assert abs(ratio - expected_agreement) <= 0.02, (ratio, expected_agreement)
        # the serving pods' capture counters say every request was captured, none dropped
        for v in (STABLE, CANDIDATE):
            ssel = mon.series_selector(MODEL, NS, version=v)
            assert value(prom, f"sum({mq.CAPTURE_SENT}{{{ssel}}})") == REQUESTS
            assert value(prom, f"sum({mq.CAPTURE_DROPPED}{{{ssel}}})") in (None, 0.0)

        # one more evaluation interval and rule evaluation: undrifted traffic never drifted
        time.sleep(duration_s(DRIFT.interval) + 2)
        drift_a = {}
        for v in (STABLE, CANDIDATE):
            drift_a[v] = value(prom, f"max_over_time({mq.DRIFT_SHARE}{{{sel[v]}}}[1m])")
            assert drift_a[v] is not None and drift_a[v] <= 0.25, (v, drift_a[v])
            assert value(prom, f"{mq.DRIFT_DETECTED}{{{sel[v]}}}") == 0
        assert alerts(prom, mq.ALERT_DRIFT) == []
        pred_a = value(prom, f"{mq.PREDICTION_DRIFT_SCORE}{{{sel[STABLE]}}}")
        assert pred_a is not None
        # ... but the candidate's disagreement is an alert (0.8 < 0.95, 1200 pairs >= 100)
        (shadow,) = wait_for("ModelShadowDisagreement", lambda: alerts(prom, mq.ALERT_SHADOW), timeout=30)
        assert shadow["labels"]["version"] == CANDIDATE and shadow["labels"]["stable_version"] == STABLE
        assert abs(float(shadow["value"]) - expected_agreement) <= 0.02

        # --- phase B: x0..x2 shifted by 3 sigma, to stable only ---------------------------------
        drifted = rows(REQUESTS * ROWS_PER_REQUEST, seed=2, shift=SHIFT)
        send(servers, drifted, prefix="b", versions=[STABLE])

        def drift_pending() -> list[dict[str, Any]]:
            return [a for a in alerts(prom, mq.ALERT_DRIFT) if a["state"] == "pending"]

        (pending,) = wait_for("ModelDataDrift pending for v1", drift_pending, timeout=60)
        assert pending["labels"]["version"] == STABLE
        share_b = float(pending["value"])
        assert share_b > T.drift_share
        assert value(prom, f"{mq.CAPTURED_IN_WINDOW}{{{sel[STABLE]}}}") == 2 * REQUESTS
        assert value(prom, f"{mq.DRIFT_DETECTED}{{{sel[STABLE]}}}") == 1
        scores = {
            s["metric"]["feature"]: float(s["value"][1])
            for s in query(prom, f"{mq.FEATURE_DRIFT_SCORE}{{{sel[STABLE]}}}")
        }
        assert set(scores) == set(FEATURES)
        assert min(scores[c] for c in SHIFTED) > scores["x3"], scores
        # shifted x0 + x1 make the model answer 1 almost always: the outputs drifted too
        pred_b = value(prom, f"{mq.PREDICTION_DRIFT_SCORE}{{{sel[STABLE]}}}")
        assert pred_b is not None and pred_b > pred_a
        # the candidate got no drifted traffic: no alert for it
        assert value(prom, f"{mq.DRIFT_DETECTED}{{{sel[CANDIDATE]}}}") == 0

        # `for` (10s) passes: the alert fires; the monitor never went stale
        wait_for(
            "ModelDataDrift firing",
            lambda: [a for a in alerts(prom, mq.ALERT_DRIFT) if a["state"] == "firing"],
            timeout=60,
        )
        assert alerts(prom, mq.ALERT_STALE) == []
        rules = [r for g in httpx.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"] for r in g["rules"]]
        assert rules and all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]

    figures = {
        "expected_agreement": round(expected_agreement, 4),
        "agreement": round(ratio, 4),
        "drift_share_undrifted": drift_a,
        "drift_share_drifted": share_b,
        "prediction_drift": (pred_a, pred_b),
    }
    print(f"quality e2e figures: {figures}")


def duration_s(text: str) -> float:
    from components.validation import duration_seconds

    return float(duration_seconds(text))
