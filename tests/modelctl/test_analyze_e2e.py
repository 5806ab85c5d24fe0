"""End to end: `modelctl analyze` against a real Prometheus scraping the real serving runtime.

Three `python -m serving` processes: version 1 (stable, healthy), version 2 (a candidate whose
model fails one prediction in four: HTTP 500) and version 3 (a healthy candidate). A real
Prometheus scrapes each with the target labels the generated PodMonitor gives a pod of that
version and evaluates the project's rendered recording rules every second; traffic goes to all
three. Then `modelctl analyze` (the CLI entry, the stack file's `analysis.prometheusUrl` pointing at
that Prometheus) must say abort for candidate 2 and advance for candidate 3, and `--write` must
leave exactly the expected stack file.

Skipped only when the `prometheus` binary is missing (Debian package `prometheus`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import shutil
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from components import monitoring as mon
from components.rollout import plan_traffic
from components.settings import AlertThresholds, CandidateSettings
from modelctl.cli import EXIT_ABORT, EXIT_OK, main
from serving.local import LocalServer
from tests.components.test_monitoring_e2e import query, wait_for
from tests.prometheus_runner import run_prometheus

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian package prometheus)"),
    pytest.mark.slow,
    pytest.mark.timeout(420),
]

ROOT = Path(__file__).resolve().parents[2]
MODEL, NS = "fraud-detector", "models"
FAIL_EVERY = 4  # the faulty version fails one prediction in four
WINDOW_S = 20

MODEL_CODE = textwrap.dedent(
    """
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import PythonModel


    class Scorer(PythonModel):
        \"\"\"Scores 0. With FAIL_EVERY > 0 in the model config, raises (HTTP 500) for rows whose
        `n` is a multiple of it: a known share of predictions fails.\"\"\"

        def load_context(self, context):
            self.fail_every = int((context.model_config or {}).get("fail_every", 0))

        def predict(self, context, model_input: pd.DataFrame, params=None):
            if self.fail_every and (model_input["n"] % self.fail_every == 0).any():
                raise MlflowException("injected failure")
            return [0] * len(model_input)


    mlflow.models.set_model(Scorer())
    """
)

STACK = textwrap.dedent(
    """\
    # the canary of {version}, analysed from a local Prometheus
    config:
      mlflow-deploy:mlflow:
        trackingUri: sqlite:///unused.db
      mlflow-deploy:model:
        name: fraud-detector
        version: "1"
      mlflow-deploy:candidate:
        version: "{version}"
        strategy: canary
        percent: 25 # the current step
        steps: [5, 25, 50, 100]
        since: "{since}"
      mlflow-deploy:image:
        repository: registry.example.com/models
      mlflow-deploy:kubernetes:
        namespace: models
      mlflow-deploy:analysis:
        interval: {window}s
        # the recorded rates are rate5m: a series younger than 5 minutes is under-counted, so the
        # minute-long test asks for few requests (docs/rollouts.md: an interval of 5m or more)
        minRequests: 10
        maxErrorRatioIncrease: 0.05
        # p99 from histogram buckets on a shared CI machine: only the error ratio is under test here
        maxLatencyRatio: 20
        prometheusUrl: {url}
    """
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("analyze-e2e")


def _save(workdir: Path, name: str, fail_every: int) -> Path:
    import mlflow.pyfunc

    code = workdir / "scorer.py"
    code.write_text(MODEL_CODE)
    path = workdir / name
    mlflow.pyfunc.save_model(
        path=str(path), python_model=str(code), pip_requirements=["mlflow"], model_config={"fail_every": fail_every}
    )
    return path


@pytest.fixture(scope="module")
def servers(workdir: Path) -> Iterator[dict[str, LocalServer]]:
    healthy, faulty = _save(workdir, "healthy", 0), _save(workdir, "faulty", FAIL_EVERY)
    models = {"1": healthy, "2": faulty, "3": healthy}
    started: dict[str, LocalServer] = {}
    try:
        for version, path in models.items():
            srv = LocalServer(
                str(path),
                workers=1,
                env={"MODEL_NAME": MODEL, "MODEL_VERSION": version},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            srv.start(startup_timeout=180)
            started[version] = srv
        yield started
    finally:
        for srv in started.values():
            srv.stop(grace=10)


@contextlib.contextmanager
def prometheus(workdir: Path, targets: dict[str, str]) -> Iterator[str]:
    """A Prometheus scraping each ``version -> host:port`` as that version's pod, with the
    rendered rule groups of the stack (stable 1, a canary beside it)."""
    assert PROMETHEUS is not None
    plan = plan_traffic("1", CandidateSettings(version="2", percent=25))
    (workdir / "rules.yml").write_text(
        yaml.safe_dump(mon.prometheus_rule_spec(MODEL, NS, plan, AlertThresholds()), sort_keys=False)
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(workdir / "rules.yml")],
        "scrape_configs": [
            {
                "job_name": f"{MODEL}-v{v}",
                "metrics_path": mon.METRICS_PATH,
                "static_configs": [{"targets": [t], "labels": mon.scrape_labels(MODEL, v, NS)}],
            }
            for v, t in targets.items()
        ],
    }
    with run_prometheus(workdir, config) as url:
        yield url


@contextlib.contextmanager
def traffic(servers: dict[str, LocalServer]) -> Iterator[dict[str, dict[str, int]]]:
    """Predictions to every server until the block ends; request n carries n (the faulty model
    fails every FAIL_EVERY-th)."""
    counts = {v: {"ok": 0, "error": 0, "other": 0} for v in servers}
    stop = threading.Event()

    def run(version: str, base_url: str) -> None:
        n = 1
        with httpx.Client(base_url=base_url, timeout=10) as client:
            while not stop.is_set():
                body = {"dataframe_split": {"columns": ["n"], "data": [[n]]}}
                status = client.post("/invocations", json=body).status_code
                counts[version]["ok" if status == 200 else "error" if status >= 500 else "other"] += 1
                n += 1
                time.sleep(0.01)

    threads = [threading.Thread(target=run, args=(v, s.url), daemon=True) for v, s in servers.items()]
    for t in threads:
        t.start()
    try:
        yield counts
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)


def analyze(stack_file: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["analyze", "--stack", "e2e", "--config", str(stack_file), "--project-dir", str(ROOT), *args])
    return code, out.getvalue()


def test_analyze_aborts_the_faulty_candidate_and_advances_the_healthy_one(
    servers: dict[str, LocalServer], workdir: Path
) -> None:
    targets = {v: s.metrics_url.removeprefix("http://") for v, s in servers.items()}
    with prometheus(workdir, targets) as prom, traffic(servers) as counts:
        # a full analysis window of recorded ratios for every version
        for v in servers:
            sel = mon.series_selector(MODEL, NS, version=v)
            wait_for(
                f"{WINDOW_S}s of recorded error ratios for version {v}",
                lambda sel=sel: [
                    s for s in query(prom, f"count_over_time({mon.ERROR_RATIO}{{{sel}}}[{WINDOW_S}s])")
                    if float(s["value"][1]) >= WINDOW_S - 2
                ],
                timeout=150,
            )
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")

        # -- the faulty candidate: abort, and --write drops it
        faulty = workdir / "Pulumi.faulty.yaml"
        faulty.write_text(STACK.format(version="2", since=since, window=WINDOW_S, url=prom))
        before = faulty.read_text()
        code, out = analyze(faulty, "--json")
        report = json.loads(out)
        assert code == EXIT_ABORT, out
        assert report["decision"] == "abort"
        cand = report["figures"]["candidate"]
        stable = report["figures"]["stable"]
        assert abs(cand["error_ratio"] - 1 / FAIL_EVERY) < 0.05, cand
        assert stable["error_ratio"] < 0.01 and stable["requests"] >= 10 and cand["requests"] >= 10
        assert any(r.startswith("FAILED error ratio") for r in report["reasons"])
        assert report["edit"] == {"candidate": None}
        assert faulty.read_text() == before  # no --write: nothing written

        code, out = analyze(faulty, "--write")
        print(out)  # docs/rollouts.md shows a run of this
        assert code == EXIT_ABORT
        assert "decision:  abort" in out and "-  mlflow-deploy:candidate:" in out
        assert faulty.read_text() == textwrap.dedent(
            f"""\
            # the canary of 2, analysed from a local Prometheus
            config:
              mlflow-deploy:mlflow:
                trackingUri: sqlite:///unused.db
              mlflow-deploy:model:
                name: fraud-detector
                version: "1"
              mlflow-deploy:image:
                repository: registry.example.com/models
              mlflow-deploy:kubernetes:
                namespace: models
              mlflow-deploy:analysis:
                interval: {WINDOW_S}s
                # the recorded rates are rate5m: a series younger than 5 minutes is under-counted, so the
                # minute-long test asks for few requests (docs/rollouts.md: an interval of 5m or more)
                minRequests: 10
                maxErrorRatioIncrease: 0.05
                # p99 from histogram buckets on a shared CI machine: only the error ratio is under test here
                maxLatencyRatio: 20
                prometheusUrl: {prom}
            """
        )

        # -- the healthy candidate: advance to the next step, since = now
        healthy = workdir / "Pulumi.healthy.yaml"
        healthy.write_text(STACK.format(version="3", since=since, window=WINDOW_S, url=prom))
        before = healthy.read_text()
        started = dt.datetime.now(dt.UTC).replace(microsecond=0)
        code, out = analyze(healthy, "--write")
        print(out)
        assert code == EXIT_OK, out
        assert "decision:  advance" in out and "next step 50%" in out
        after = healthy.read_text()
        new_since = after.split('since: "', 1)[1].split('"', 1)[0]
        when = dt.datetime.fromisoformat(new_since.replace("Z", "+00:00"))
        assert started <= when <= dt.datetime.now(dt.UTC)
        assert after == before.replace("percent: 25 # the current step", "percent: 50 # the current step").replace(
            since, new_since
        )

        # -- and now the new step has not held its interval: hold, nothing written
        code, out = analyze(healthy, "--write")
        assert code == 10 and "decision:  hold" in out and "of the 20s analysis.interval" in out
        assert healthy.read_text() == after

    assert counts["2"]["error"] > 0 and counts["1"]["error"] == 0 and counts["3"]["error"] == 0
    assert all(c["other"] == 0 for c in counts.values())
