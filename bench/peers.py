"""``python bench/serving.py --only peers``: this runtime against MLServer and ``mlflow models serve``.

    python bench/serving.py --only peers                      # iris and breast-cancer, c=1/8/32
    python bench/serving.py --only peers --duration 10 --repeats 3

Servers, all up at the same time, each with 2 workers (``--workers``), on loopback:

* ``mlflow``: ``mlflow models serve --env-manager local -w 2`` (uvicorn + MLflow's FastAPI app);
* ``mlserver``: MLServer 1.7.1 with the ``mlserver-mlflow`` runtime (``parallel_workers: 2``),
  ``POST /invocations`` of its MLflow runtime - the same request format. It lives in a venv of
  its own, created by the benchmark when missing (``BENCH_MLSERVER_VENV``, default
  ``~/.cache/mlflow-deploy/mlserver-1.7.1``): ``mlserver`` and ``mlserver-mlflow`` 1.7.1 beside
  this environment's MLflow, scikit-learn, pandas and numpy versions;
* ``ours``: ``python -m serving --workers 2``;
* ``ours+batch``: the same with ``--batch-max-size 32``.

Two models: LogisticRegression on iris (4 features) and a StandardScaler + LogisticRegression
pipeline on breast-cancer (30 features), both saved by ``mlflow.sklearn.save_model`` with a
signature; one-row ``dataframe_split`` requests. Every cell (model, concurrency) runs each server
once per repeat, the servers' order rotating between repeats, so a neighbour's load falls on all
of them. Printed per cell: the median req/s, p50/p99 latency, server CPU per request (CPU
seconds of the server's whole process tree / requests), the ratios ``ours / mlserver`` and
``ours / mlflow``, and the in-process limit: MLflow's own ``invocations`` (parse, predict,
serialize) in a loop, without HTTP, one core.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.serving import (
    Result,
    free_port,
    measure,
    mlflow_serve,
    our_serve,
    tree_cpu_seconds,
    wait_http,
)

MLSERVER_VERSION = "1.7.1"
VENV_ENV = "BENCH_MLSERVER_VENV"
SERVERS = ("mlflow", "mlserver", "ours", "ours+batch")


def make_models(directory: Path) -> dict[str, tuple[str, bytes]]:
    """name -> (model path, one-row dataframe_split body)."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer, load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    for name, loader, model in (
        ("iris", load_iris, LogisticRegression(max_iter=500)),
        ("breast-cancer", load_breast_cancer, make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
    ):
        features, target = loader(return_X_y=True, as_frame=True)
        model.fit(features, target)
        path = directory / name
        mlflow.sklearn.save_model(model, str(path), signature=infer_signature(features, model.predict(features)))
        split = json.loads(features.head(1).to_json(orient="split"))
        del split["index"]
        out[name] = (str(path), json.dumps({"dataframe_split": split}).encode())
    return out


# -- MLServer in its own venv --------------------------------------------------------------


def mlserver_venv() -> Path:
    """The venv holding MLServer, created (pip) if missing."""
    import importlib.metadata

    venv = Path(os.environ.get(VENV_ENV) or Path.home() / ".cache" / "mlflow-deploy" / f"mlserver-{MLSERVER_VERSION}")
    mlserver = venv / "bin" / "mlserver"
    if mlserver.exists():
        return venv
    print(f"# creating {venv} (MLServer {MLSERVER_VERSION}; a few minutes)", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pins = [
        f"mlserver=={MLSERVER_VERSION}",
        f"mlserver-mlflow=={MLSERVER_VERSION}",
        # what the models are saved with, so both sides load the same model the same way
        f"mlflow=={importlib.metadata.version('mlflow')}",
        f"scikit-learn=={importlib.metadata.version('scikit-learn')}",
        f"pandas=={importlib.metadata.version('pandas')}",
        f"numpy=={importlib.metadata.version('numpy')}",
        # MLServer 1.7.1's inference workers call asyncio.get_event_loop() with no loop set,
        # which uvloop 0.22+ refuses (RuntimeError; the pool exits and MLServer with it)
        "uvloop<0.22",
    ]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        pins.append(f"skops=={importlib.metadata.version('skops')}")  # MLflow 3 saves sklearn with it
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *pins], check=True)
    return venv


@contextlib.contextmanager
def mlserver_serve(model: str, workers: int, log: Path) -> Iterator[tuple[str, int]]:
    venv = mlserver_venv()
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    folder = log.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
                "parallel_workers": workers,
                "debug": False,
            }
        )
    )
    (folder / "model-settings.json").write_text(
        json.dumps({"name": "model", "implementation": "mlserver_mlflow.MLflowRuntime", "parameters": {"uri": model}})
    )
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true", "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(venv / "bin" / "mlserver"), "start", str(folder)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/models/model/ready", time.monotonic() + 300, proc)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        from bench.serving import _stop_group

        _stop_group(proc)


def _batching_serve(model: str, workers: int, log: Path) -> Any:
    return our_serve(model, workers, log, env={"SERVING_BATCH_MAX_SIZE": "32"})


SERVE = {"mlflow": mlflow_serve, "mlserver": mlserver_serve, "ours": our_serve, "ours+batch": _batching_serve}


# -- runs ------------------------------------------------------------------------------------


def in_process_ms(model_path: str, body: bytes, seconds: float) -> float:
    """Milliseconds per request of MLflow's own invocations (parse, predict, serialize) in a loop."""
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(model_path)
    schema = model.metadata.get_input_schema()
    for _ in range(50):
        scoring_server.invocations(body, "application/json", model, schema)
    count = 0
    begin = time.process_time()
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        scoring_server.invocations(body, "application/json", model, schema)
        count += 1
    return (time.process_time() - begin) * 1e3 / count  # CPU time: the neighbours' load left out


def bench_peers(args: argparse.Namespace, tmp: Path) -> tuple[list[Result], dict[str, float]]:
    models = make_models(tmp)
    limits = {name: in_process_ms(path, body, args.duration) for name, (path, body) in models.items()}
    servers = [s for s in SERVERS if s not in args.skip_servers]
    results: list[Result] = []
    workers = args.workers[0]
    for name, (path, body) in models.items():
        with contextlib.ExitStack() as stack:
            up = {}
            for server in servers:
                print(f"# {name}: starting {server}", file=sys.stderr, flush=True)
                up[server] = stack.enter_context(SERVE[server](path, workers, tmp / f"{server}-{name}.log"))
            for url, _pid in up.values():  # warm-up
                measure(url, body, max(args.concurrency), args.warmup, args.client, tmp, 1)
            for repeat in range(args.repeats):
                for concurrency in args.concurrency:
                    shift = repeat % len(servers)
                    for server in servers[shift:] + servers[:shift]:
                        url, pid = up[server]
                        cpu = tree_cpu_seconds(pid)
                        rps, p50, p99, errors, _ = measure(url, body, concurrency, args.duration, args.client, tmp, 1)
                        cpu = tree_cpu_seconds(pid) - cpu
                        result = Result(server, workers, 1, concurrency, rps, p50, p99, errors)
                        result.cpu_ms = cpu * 1e3 / max(1.0, rps * args.duration)
                        result.repeat = repeat
                        result.notes.append(name)
                        results.append(result)
                        print(
                            f"  {name} {server} c={concurrency} #{repeat}: {rps:.0f} req/s, "
                            f"{result.cpu_ms:.2f} ms CPU/req, p99 {p99:.1f} ms",
                            file=sys.stderr,
                            flush=True,
                        )
    return results, limits


def render_peers(results: list[Result], limits: dict[str, float]) -> str:
    cells: dict[tuple[str, int, str], list[Result]] = {}
    for r in results:
        cells.setdefault((r.notes[0], r.concurrency, r.server), []).append(r)
    lines = [
        "| model | conc | server | req/s (median) | p50 ms | p99 ms | CPU ms/req | ours / mlserver | ours / mlflow "
        "| errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    med: dict[tuple[str, int, str], float] = {k: statistics.median(r.rps for r in v) for k, v in cells.items()}
    order = sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1], SERVERS.index(kv[0][2])))
    for (model, conc, server), runs in order:
        rps = med[(model, conc, server)]
        ratios = ["", ""]
        if server.startswith("ours"):
            for i, peer in enumerate(("mlserver", "mlflow")):
                if (model, conc, peer) in med:
                    ratios[i] = f"{rps / med[(model, conc, peer)]:.2f}x"
        lines.append(
            f"| {model} | {conc} | {server} | {rps:.0f} | {statistics.median(r.p50_ms for r in runs):.1f} "
            f"| {statistics.median(r.p99_ms for r in runs):.1f} | {statistics.median(r.cpu_ms for r in runs):.2f} "
            f"| {ratios[0]} | {ratios[1]} | {sum(r.errors for r in runs)} |"
        )
    lines.append("")
    for model, ms in limits.items():
        lines.append(f"in-process limit, {model}: {ms:.2f} ms CPU per request (MLflow's invocations, no HTTP)")
    return "\n".join(lines)
