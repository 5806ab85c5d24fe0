"""Cold start: process start -> first ``/ping`` 200, this runtime vs ``mlflow models serve``.

    python bench/coldstart.py                 # 5 rounds, workers 1 and 2
    python bench/coldstart.py --rounds 9 --workers 1

Same model as bench/serving.py (LogisticRegression on iris, ``mlflow.sklearn.save_model``), saved
once. Each round starts every server once, alternating, so a busy machine slows both sides alike:

* ``mlflow models serve -m <dir> --env-manager local -w N``;
* ``python -m serving serve --model-uri <dir> --workers N`` (this runtime).

The clock starts just before ``Popen`` and stops at the first ``GET /ping`` answered 200 (polled
every 10 ms on a fresh connection). For ``mlflow models serve`` /ping is 200 as soon as one
uvicorn worker has imported MLflow and loaded the model; for ours /ping is 200 once a worker has
loaded the model (the supervisor answers 503 before). The first ``/invocations`` answer is timed
too (a cold start ends when a request is answered, not when the health check turns green). The
page cache is warm after the first round (the same files are read every time), as on a node
that already pulled the image; round 1 is reported apart.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving import free_port, make_model

POLL_SECONDS = 0.01
DEADLINE_SECONDS = 180.0


def _get(port: int, path: str, body: bytes | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        if body is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def time_to_ready(cmd: list[str], port: int, body: bytes, env: dict[str, str]) -> tuple[float, float]:
    """(seconds to the first /ping 200, seconds to the first /invocations 200) from Popen."""
    with open(os.devnull, "wb") as devnull:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=devnull, stderr=devnull, env=env, start_new_session=True)
    try:
        ping = None
        while time.perf_counter() - start < DEADLINE_SECONDS:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[:4]} exited with {proc.returncode}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if _get(port, "/ping") == 200:
                    ping = time.perf_counter() - start
                    break
            time.sleep(POLL_SECONDS)
        if ping is None:
            raise RuntimeError(f"{cmd[:4]} never answered /ping")
        status = _get(port, "/invocations", body)
        if status != 200:
            raise RuntimeError(f"{cmd[:4]}: /invocations answered {status}")
        return ping, time.perf_counter() - start
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def commands(server: str, model: str, workers: int, port: int, metrics_port: int) -> list[str]:
    if server == "mlflow models serve":
        return [
            sys.executable, "-m", "mlflow", "models", "serve", "-m", model, "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(port), "-w", str(workers),
        ]  # fmt: skip
    return [
        sys.executable, "-m", "serving", "serve", "--model-uri", model, "--host", "127.0.0.1",
        "--port", str(port), "--metrics-port", str(metrics_port), "--workers", str(workers),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    servers = ("mlflow models serve", "ours")
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        model, payloads = make_model(Path(tmp))
        body = payloads[1]
        results: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for workers in args.workers:
            for r in range(args.rounds):
                order = servers if r % 2 == 0 else servers[::-1]
                for server in order:
                    cmd = commands(server, model, workers, free_port(), free_port())
                    results.setdefault((server, workers), []).append(
                        time_to_ready(cmd, int(cmd[cmd.index("-p" if "-p" in cmd else "--port") + 1]), body, env)
                    )
        print(f"cold start, {args.rounds} rounds (round 1 = cold page cache), seconds from Popen")
        print(
            f"{'server':<22}{'workers':>8}{'round 1 ping':>14}{'median ping':>13}{'min ping':>10}"
            f"{'median first answer':>21}"
        )
        for (server, workers), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            warm = runs[1:] or runs
            print(
                f"{server:<22}{workers:>8}{runs[0][0]:>14.2f}{statistics.median(p for p, _ in warm):>13.2f}"
                f"{min(p for p, _ in warm):>10.2f}{statistics.median(a for _, a in warm):>21.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
