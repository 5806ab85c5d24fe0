"""End to end: the real serving runtime scraped by a real Prometheus running the generated rules.

The model server (``python -m serving``) serves a small pyfunc model that fails (HTTP 500) when
asked to; Prometheus scrapes its ``/metrics`` every second with the target labels the generated
PodMonitor gives a pod of version 7, and evaluates the project's rule groups every second.
Traffic with one failing request in four must show up through Prometheus's HTTP API as an error
ratio of 25% in the recording rule and a pending ``ModelErrorRatioHigh`` alert for version 7.

Skipped only when the ``prometheus`` binary is missing (Debian package ``prometheus``;
``scripts/test.sh`` installs it).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from components import monitoring as mon
from components.rollout import plan_traffic
from components.settings import AlertThresholds
from serving.local import LocalServer
from tests.prometheus_runner import run_prometheus

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian package prometheus)"),
    pytest.mark.timeout(300),
]

MODEL, NS, VERSION = "fraud-detector", "models", "7"
FAIL_EVERY = 4  # one request in four fails -> a 5xx ratio of 0.25

FLAKY_MODEL = textwrap.dedent(
    """
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import PythonModel


    class Flaky(PythonModel):
        \"\"\"Scores 0; raises (HTTP 500 from the scoring server) for rows with fail > 0.\"\"\"

        def predict(self, context, model_input: pd.DataFrame, params=None):
            if (model_input["fail"] > 0).any():
                raise MlflowException("injected failure")
            return [0] * len(model_input)


    mlflow.models.set_model(Flaky())
    """
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="monitoring-e2e-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def model_dir(workdir: Path) -> Path:
    import mlflow.pyfunc

    code = workdir / "flaky.py"
    code.write_text(FLAKY_MODEL)
    path = workdir / "model"
    mlflow.pyfunc.save_model(path=str(path), python_model=str(code), pip_requirements=["mlflow"])
    return path


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[LocalServer]:

    srv = LocalServer(
        str(model_dir),
        workers=1,
        env={"MODEL_NAME": MODEL, "MODEL_VERSION": VERSION},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    srv.start(startup_timeout=120)
    try:
        yield srv
    finally:
        srv.stop(grace=10)


@contextlib.contextmanager
def prometheus(workdir: Path, target: str) -> Iterator[str]:
    """A Prometheus on loopback scraping ``target`` as version 7's pod, with the generated rules."""
    assert PROMETHEUS is not None
    rules = mon.prometheus_rule_spec(MODEL, NS, plan_traffic(VERSION, None), AlertThresholds())
    (workdir / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(workdir / "rules.yml")],
        "scrape_configs": [
            {
                "job_name": MODEL,
                "metrics_path": mon.METRICS_PATH,
                "static_configs": [
                    {"targets": [target], "labels": mon.scrape_labels(MODEL, VERSION, NS)},
                ],
            }
        ],
    }
    with run_prometheus(workdir, config) as url:
        yield url


@contextlib.contextmanager
def traffic(base_url: str) -> Iterator[dict[str, int]]:
    """Prediction requests until the block ends, every FAIL_EVERY-th one failing."""
    counts = {"ok": 0, "error": 0, "other": 0}
    stop = threading.Event()

    def run() -> None:
        i = 0
        with httpx.Client(base_url=base_url, timeout=10) as client:
            while not stop.is_set():
                fail = int(i % FAIL_EVERY == FAIL_EVERY - 1)
                body = {"dataframe_split": {"columns": ["amount", "fail"], "data": [[1.0, fail]]}}
                status = client.post("/invocations", json=body).status_code
                key = "ok" if status == 200 else "error" if status >= 500 else "other"
                counts[key] += 1
                i += 1
                time.sleep(0.01)

    t = threading.Thread(target=run, name="traffic", daemon=True)
    t.start()
    try:
        yield counts
    finally:
        stop.set()
        t.join(timeout=15)


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def wait_for(what: str, fn: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def test_error_ratio_recorded_and_alert_pending(server: LocalServer, workdir: Path) -> None:
    target = server.metrics_url.removeprefix("http://")  # the metrics port, as the PodMonitor scrapes it
    sel = mon.series_selector(MODEL, NS, version=VERSION)
    with prometheus(workdir, target) as prom, traffic(server.url) as counts:
        # the scrape carries the version label the PodMonitor would put on the series
        up = wait_for("the target to be up", lambda: [s for s in query(prom, f"up{{{sel}}}") if s["value"][1] == "1"])
        assert up[0]["metric"]["version"] == VERSION

        def ratio_settled() -> list[dict[str, Any]]:
            samples = query(prom, f"{mon.ERROR_RATIO}{{{sel}}}")
            return [s for s in samples if abs(float(s["value"][1]) - 1 / FAIL_EVERY) < 0.03]

        (sample,) = wait_for("the recorded error ratio to reach 0.25", ratio_settled)
        assert sample["metric"]["version"] == VERSION

        def alert() -> list[dict[str, Any]]:
            r = httpx.get(f"{prom}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
            return [a for a in r if a["labels"]["alertname"] == mon.ALERT_ERROR_RATIO]

        (active,) = wait_for(f"{mon.ALERT_ERROR_RATIO} to be active", alert)
        assert active["state"] == "pending"  # `for: 5m` has not passed yet
        assert active["labels"]["version"] == VERSION
        assert active["labels"]["severity"] == "critical"
        assert float(active["value"]) > AlertThresholds().error_ratio

        # the other series the dashboard reads are there, per version
        rate = query(prom, f"{mon.REQUESTS_RATE}{{{sel}}}")
        assert rate and float(rate[0]["value"][1]) > 0
        p99 = query(prom, f'{mon.LATENCY_QUANTILE}{{{sel},quantile="0.99"}}')
        assert p99 and 0 < float(p99[0]["value"][1]) < AlertThresholds().p99_latency_seconds
        assert query(prom, f"{mon.ROWS_RATE}{{{sel}}}")
        # and no latency alert for fast requests
        alerts = httpx.get(f"{prom}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        assert mon.ALERT_LATENCY not in {a["labels"]["alertname"] for a in alerts}

        # every generated rule evaluates without error in a real Prometheus
        groups = httpx.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        generated = mon.rule_groups(MODEL, NS, plan_traffic(VERSION, None), AlertThresholds())
        assert len(rules) == sum(len(g["rules"]) for g in generated)
        assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]

    # the server saw what we sent: 500s for the injected failures, nothing else
    assert counts["error"] > 0 and counts["ok"] > 0 and counts["other"] == 0
