"""Cold start: process start -> first ``/ping`` 200, this runtime vs ``mlflow models serve``.

    python bench/coldstart.py                 # 5 rounds, workers 1 and 2
    python bench/coldstart.py --rounds 9 --workers 1

Same model as bench/serving.py (LogisticRegression on iris, ``mlflow.sklearn.save_model``), saved
once. Each round starts every server once, alternating, so a busy machine slows both sides alike:

* ``mlflow models serve -m <dir> --env-manager local -w N``;
* ``python -m serving serve --model-uri <dir> --workers N --fork-server off``: this runtime with
  every worker importing MLflow itself (the runtime before the fork server);
* ``python -m serving serve --model-uri <dir> --workers N``: this runtime as it ships (with two
  workers or more, the fork server imports MLflow once and forks the workers, serving.zygote).

The clock starts just before ``Popen`` and stops at the first ``GET /ping`` answered 200 (polled
every 10 ms on a fresh connection). For ``mlflow models serve`` /ping is 200 as soon as one
uvicorn worker has imported MLflow and loaded the model; for ours /ping is 200 once a worker has
loaded the model (the supervisor answers 503 before). The first ``/invocations`` answer is timed
too (a cold start ends when a request is answered, not when the health check turns green). The
page cache is warm after the first round (the same files are read every time), as on a node
that already pulled the image; round 1 is reported apart.

Once the first request is answered, the memory of the whole server (every process of its
session: supervisor, fork server, workers) is read as the sum of each process's proportional set
size (``Pss`` in ``/proc/PID/smaps_rollup``: a page shared by ``k`` processes counts ``1/k`` in
each), so pages that forked workers share with the fork server are counted once.
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
SETTLE_SECONDS = 3.0


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


def session_pss_mib(session: int) -> float:
    """Sum of Pss over every process of the session ``session`` (Linux /proc), in MiB."""
    total_kib = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) != session:
                continue
            with open(f"/proc/{entry}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total_kib += int(line.split()[1])
                        break
        except (OSError, ValueError):
            continue  # exited meanwhile
    return total_kib / 1024


def time_to_ready(cmd: list[str], port: int, body: bytes, env: dict[str, str]) -> tuple[float, float, float]:
    """(seconds to the first /ping 200, seconds to the first /invocations 200, MiB Pss) from Popen."""
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
        answered = time.perf_counter() - start
        time.sleep(SETTLE_SECONDS)  # let the other workers finish loading before memory is read
        return ping, answered, session_pss_mib(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


SERVERS = ("mlflow models serve", "ours, fork server off", "ours")


def commands(server: str, model: str, workers: int, port: int, metrics_port: int) -> list[str]:
    if server == "mlflow models serve":
        return [
            sys.executable, "-m", "mlflow", "models", "serve", "-m", model, "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(port), "-w", str(workers),
        ]  # fmt: skip
    cmd = [
        sys.executable, "-m", "serving", "serve", "--model-uri", model, "--host", "127.0.0.1",
        "--port", str(port), "--metrics-port", str(metrics_port), "--workers", str(workers),
    ]  # fmt: skip
    if server == "ours, fork server off":
        cmd += ["--fork-server", "off"]
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        model, payloads = make_model(Path(tmp))
        body = payloads[1]
        results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
        for workers in args.workers:
            for r in range(args.rounds):
                # Rotate the order each round, so that no server always runs first or last.
                order = SERVERS[r % len(SERVERS) :] + SERVERS[: r % len(SERVERS)]
                for server in order:
                    port = free_port()
                    cmd = commands(server, model, workers, port, free_port())
                    results.setdefault((server, workers), []).append(time_to_ready(cmd, port, body, env))
        load = os.getloadavg()
        print(
            f"cold start, {args.rounds} rounds (round 1 = cold page cache), seconds from Popen; "
            f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)"
        )
        print(
            f"{'server':<24}{'workers':>8}{'round 1 ping':>14}{'median ping':>13}{'min ping':>10}"
            f"{'median first answer':>21}{'median MiB Pss':>16}"
        )
        for workers in args.workers:
            for server in SERVERS:
                runs = results[(server, workers)]
                warm = runs[1:] or runs
                print(
                    f"{server:<24}{workers:>8}{runs[0][0]:>14.2f}{statistics.median(p for p, _, _ in warm):>13.2f}"
                    f"{min(p for p, _, _ in warm):>10.2f}{statistics.median(a for _, a, _ in warm):>21.2f}"
                    f"{statistics.median(m for _, _, m in warm):>16.0f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
