"""Benchmark: this runtime vs ``mlflow models serve`` vs in-process predict, on loopback.

    python bench/serving.py                  # the whole table, ~2-3 minutes
    python bench/serving.py --duration 10    # longer runs, steadier numbers
    python bench/serving.py --client python  # without wrk (slower client: lower ceilings)
    python bench/serving.py --only capture   # just payload capture: off vs sample 1.0, interleaved
    python bench/serving.py --only peers     # ours vs MLServer 1.7.1 vs mlflow, 2 models, c=1/8/32

Same model (LogisticRegression on iris, saved with ``mlflow.sklearn.save_model``), same payloads
(``dataframe_split`` JSON with 1 and 100 rows), same machine, one after the other:

(a) in-process: MLflow's own request handling without HTTP,
    ``scoring_server.invocations(body, "application/json", model, schema)`` = JSON parsing +
    ``pyfunc.predict`` + JSON encoding, in a loop (concurrency 1: it is one Python thread);
(b) ``mlflow models serve --env-manager local --workers N`` (uvicorn, N = 1, 2);
(c) ``python -m serving --workers N`` (this runtime, N = 1, 2).

Load generator: ``wrk`` (Debian package ``wrk``) when it is on PATH: one thread, C keep-alive
connections, a fixed duration, latency percentiles from its HdrHistogram. Without it, a Python
client (C threads, each with one keep-alive ``http.client`` connection) - it shares the GIL and
the CPUs with the servers, so it caps lower. Every server is warmed up (all workers loaded, one
warm-up run) before it is measured; a run's connections are opened when it starts.

The ``conns/worker`` column shows how the C connections of a run were spread over the worker
processes (``ss`` sampled mid-run): with keep-alive a connection stays on the worker that
accepted it, so an uneven split caps a 2-worker server below 2x.

Payload capture (``serving.capture``): the runtime with capture off and, up at the same time,
with ``SERVING_CAPTURE_URL`` pointing at a loopback receiver in this process (``http.server``,
answers 204) and ``SERVING_CAPTURE_SAMPLE=1`` (every request captured); same payloads and load,
runs interleaved (off/on, then on/off, ``--repeats`` times) so a neighbour's load falls on both,
printed per repeat with the servers' CPU per request (CPU seconds of the whole process tree /
requests), the median ratios, the records the receiver got and the drops the runtime counted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass
class Result:
    server: str
    workers: int | None
    rows: int
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    spread: str = ""
    notes: list[str] = field(default_factory=list)
    cpu_ms: float = 0.0  # server CPU (all processes) per request
    repeat: int = 0


# -- model and payloads ----------------------------------------------------------------------


def make_model(directory: Path) -> tuple[str, dict[int, bytes]]:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, target = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(features, target)
    path = directory / "iris"
    mlflow.sklearn.save_model(model, str(path), signature=infer_signature(features, model.predict(features)))
    payloads = {}
    for rows in (1, 100):
        split = json.loads(features.head(rows).to_json(orient="split"))
        del split["index"]
        payloads[rows] = json.dumps({"dataframe_split": split}).encode()
    return str(path), payloads


# -- load generators -------------------------------------------------------------------------

_WRK_TIME = re.compile(r"^\s*([\d.]+)(us|ms|s|m)$")


def _wrk_ms(text: str) -> float:
    match = _WRK_TIME.match(text)
    if not match:
        raise ValueError(f"cannot parse wrk time {text!r}")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run_wrk(
    url: str, body: bytes, concurrency: int, duration: float, script_dir: Path
) -> tuple[float, float, float, int]:
    script = script_dir / "post.lua"
    text = body.decode()
    assert "]==]" not in text
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[{text}]==]\n'
    )
    cmd = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "30s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _wrk_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _wrk_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors:.*", out):
        errors += sum(int(n) for n in re.findall(r"\d+", match.group(0)))
    return rps, p50, p99, errors


def run_python_client(url: str, body: bytes, concurrency: int, duration: float) -> tuple[float, float, float, int]:
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    path = "/" + url.split("//", 1)[1].split("/", 1)[1]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        mine: list[float] = []
        bad = 0
        start.wait()
        while time.perf_counter() < stop_at[0]:
            begin = time.perf_counter()
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - begin)
            bad += response.status != 200
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    stop_at[0] = began + duration
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, *_percentiles(latencies), errors[0]


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    if len(seconds) < 2:
        return (seconds[0] * 1e3 if seconds else float("nan")), float("nan")
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return cuts[49] * 1e3, cuts[98] * 1e3


# -- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


def wait_log(path: Path, needle: str, count: int, deadline: float) -> None:
    """Every worker logs ``needle`` once when it can serve: wait for ``count`` of them."""
    while time.monotonic() < deadline:
        if path.read_text(errors="replace").count(needle) >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"only {path.read_text(errors='replace').count(needle)} of {count} workers ready")


@contextlib.contextmanager
def mlflow_serve(model: str, workers: int, log: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", model, "--env-manager", "local",
        "-h", "127.0.0.1", "-p", str(port), "-w", str(workers),
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        wait_http(f"http://127.0.0.1:{port}/ping", deadline, proc)
        wait_log(log, "Application startup complete.", workers, deadline)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        _stop_group(proc)


@contextlib.contextmanager
def our_serve(
    model: str, workers: int, log: Path, env: dict[str, str] | None = None, seen: dict[str, float] | None = None
) -> Iterator[tuple[str, int]]:
    """``seen``: filled with the capture counters from /metrics just before the server stops."""
    from serving.local import LocalServer

    with open(log, "wb") as out:
        server = LocalServer(
            model, workers=workers, env={"SERVING_LOG_LEVEL": "info", **(env or {})}, stdout=out, stderr=out
        )
        server.start(startup_timeout=180)
    try:
        wait_log(log, "loaded in", workers, time.monotonic() + 180)
        yield server.url, server.pid
    finally:
        if seen is not None:
            time.sleep(2.0)  # the senders flush at least every second
            seen.update(capture_counters(server.metrics_url))
        server.stop()


def capture_counters(metrics_url: str) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    counters = {"records": 0.0, "dropped": 0.0}
    for line in text.splitlines():
        if line.startswith("model_capture_records_total"):
            counters["records"] += float(line.split()[-1])
        elif line.startswith("model_capture_dropped_total"):
            counters["dropped"] += float(line.split()[-1])
    return counters


class CaptureReceiver:
    """A loopback receiver for captured records: counts the JSON lines, answers 204."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.lines = 0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    receiver.lines += body.count(b"\n")
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/capture"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def connection_spread(port: int) -> str:
    """Established server-side connections on ``port`` per process, e.g. "5/3"."""
    if not shutil.which("ss"):
        return "?"
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    per_pid: dict[str, int] = {}
    for pid in re.findall(r"pid=(\d+)", out):
        per_pid[pid] = per_pid.get(pid, 0) + 1
    return "/".join(str(n) for n in sorted(per_pid.values(), reverse=True)) or "?"


# -- runs ------------------------------------------------------------------------------------


def measure(
    url: str, body: bytes, concurrency: int, duration: float, client: str, tmp: Path, spread_workers: int
) -> tuple[float, float, float, int, str]:
    spread = [""]
    port = int(url.rsplit(":", 1)[1])

    def sample() -> None:
        spread[0] = connection_spread(port)

    timer = threading.Timer(duration / 2, sample) if spread_workers > 1 and concurrency > 1 else None
    if timer:
        timer.start()
    target = f"{url}/invocations"
    if client == "wrk":
        rps, p50, p99, errors = run_wrk(target, body, concurrency, duration, tmp)
    else:
        rps, p50, p99, errors = run_python_client(target, body, concurrency, duration)
    if timer:
        timer.join()
    return rps, p50, p99, errors, spread[0]


def bench_server(
    name: str,
    serve: Any,
    model: str,
    workers: int,
    payloads: dict[int, bytes],
    args: argparse.Namespace,
    tmp: Path,
) -> list[Result]:
    results = []
    log = tmp / f"{name}-{workers}.log"
    print(f"# {name} --workers {workers}", file=sys.stderr, flush=True)
    with serve(model, workers, log) as (url, _pid):
        for rows in args.rows:  # warm-up: code paths, allocator, first-call imports
            measure(url, payloads[rows], max(args.concurrency), args.warmup, args.client, tmp, 1)
        for rows in args.rows:
            for concurrency in args.concurrency:
                rps, p50, p99, errors, spread = measure(
                    url, payloads[rows], concurrency, args.duration, args.client, tmp, workers
                )
                results.append(Result(name, workers, rows, concurrency, rps, p50, p99, errors, spread))
                print(f"  rows={rows} c={concurrency}: {rps:.0f} req/s", file=sys.stderr, flush=True)
    return results


def bench_in_process(model_path: str, payloads: dict[int, bytes], args: argparse.Namespace) -> list[Result]:
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(model_path)
    schema = model.metadata.get_input_schema()
    results = []
    for rows in args.rows:
        body = payloads[rows]
        for _ in range(50):
            scoring_server.invocations(body, "application/json", model, schema)
        latencies = []
        stop = time.perf_counter() + args.duration
        while time.perf_counter() < stop:
            begin = time.perf_counter()
            result = scoring_server.invocations(body, "application/json", model, schema)
            latencies.append(time.perf_counter() - begin)
            assert result.status == 200
        p50, p99 = _percentiles(latencies)
        results.append(Result("in-process", None, rows, 1, len(latencies) / args.duration, p50, p99))
    return results


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (Linux ``/proc``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(child) for child in (task / "children").read_text().split()]
    return total


def bench_capture(model: str, payloads: dict[int, bytes], args: argparse.Namespace, tmp: Path) -> list[Result]:
    """The runtime with capture off and with capture on at sample 1.0 to a loopback receiver:
    both servers up at once, runs interleaved (off, on, on, off, ...) ``--repeats`` times, so a
    neighbour's load lands on both sides; CPU per request from the servers' process trees."""
    import functools

    results: list[Result] = []
    for workers in args.workers:
        receiver = CaptureReceiver()
        seen: dict[str, float] = {}
        env = {"SERVING_CAPTURE_URL": receiver.url, "SERVING_CAPTURE_SAMPLE": "1"}
        print(f"# capture off vs on, --workers {workers}", file=sys.stderr, flush=True)
        try:
            with (
                our_serve(model, workers, tmp / f"off-{workers}.log") as (off_url, off_pid),
                functools.partial(our_serve, env=env, seen=seen)(model, workers, tmp / f"on-{workers}.log") as (
                    on_url,
                    on_pid,
                ),
            ):
                sides = [("ours", off_url, off_pid), ("ours + capture", on_url, on_pid)]
                for _name, url, _pid in sides:
                    for rows in args.rows:
                        measure(url, payloads[rows], max(args.concurrency), args.warmup, args.client, tmp, 1)
                for repeat in range(args.repeats):
                    for rows in args.rows:
                        for concurrency in args.concurrency:
                            order = sides if repeat % 2 == 0 else sides[::-1]
                            for name, url, pid in order:
                                cpu = tree_cpu_seconds(pid)
                                rps, p50, p99, errors, spread = measure(
                                    url, payloads[rows], concurrency, args.duration, args.client, tmp, workers
                                )
                                cpu = tree_cpu_seconds(pid) - cpu
                                result = Result(name, workers, rows, concurrency, rps, p50, p99, errors, spread)
                                result.cpu_ms = cpu * 1e3 / max(1.0, rps * args.duration)
                                result.repeat = repeat
                                results.append(result)
                                print(
                                    f"  {name} rows={rows} c={concurrency} #{repeat}: {rps:.0f} req/s, "
                                    f"{result.cpu_ms:.2f} ms CPU/req",
                                    file=sys.stderr,
                                    flush=True,
                                )
        finally:
            receiver.close()
        note = f"receiver got {receiver.lines}; sent {seen.get('records', 0):.0f}, dropped {seen.get('dropped', 0):.0f}"
        for result in results:
            if result.server == "ours + capture" and result.workers == workers:
                result.notes.append(note)
    return results


def render_capture(results: list[Result]) -> str:
    """One line per case and repeat (on / off of the same repeat), then the median ratio."""
    off = {(r.workers, r.rows, r.concurrency, r.repeat): r for r in results if r.server == "ours"}
    lines = [
        "| workers | rows | conc | repeat | off req/s | capture req/s | capture / off | off CPU ms/req "
        "| capture CPU ms/req | off p50 / p99 ms | capture p50 / p99 ms | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    notes: list[str] = []
    ratios: dict[tuple[int | None, int, int], list[tuple[float, float]]] = {}
    for r in results:
        key = (r.workers, r.rows, r.concurrency, r.repeat)
        if r.server != "ours + capture" or key not in off:
            continue
        base = off[key]
        ratios.setdefault(key[:3], []).append((r.rps / base.rps, r.cpu_ms / base.cpu_ms))
        lines.append(
            f"| {r.workers} | {r.rows} | {r.concurrency} | {r.repeat} | {base.rps:.0f} | {r.rps:.0f} "
            f"| {r.rps / base.rps:.2f}x | {base.cpu_ms:.2f} | {r.cpu_ms:.2f} "
            f"| {base.p50_ms:.2f} / {base.p99_ms:.2f} | {r.p50_ms:.2f} / {r.p99_ms:.2f} | {base.errors + r.errors} |"
        )
        notes += [f"--workers {r.workers}: {n}" for n in r.notes if f"--workers {r.workers}: {n}" not in notes]
    lines += ["", "| workers | rows | conc | median capture / off req/s | median capture / off CPU per request |"]
    lines += ["|---:|---:|---:|---:|---:|"]
    for (workers, rows, concurrency), pairs in ratios.items():
        rps = statistics.median(p[0] for p in pairs)
        cpu = statistics.median(p[1] for p in pairs)
        lines.append(f"| {workers} | {rows} | {concurrency} | {rps:.2f}x | {cpu:.2f}x |")
    return "\n".join(lines + [""] + [f"capture (whole server run, warm-up included): {n}" for n in notes])


def render(results: list[Result]) -> str:
    base = {(r.workers, r.rows, r.concurrency): r.rps for r in results if r.server == "mlflow models serve"}
    lines = [
        "| server | workers | rows | conc | req/s | p50 ms | p99 ms | errors | conns/worker | ours / mlflow |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        ratio = ""
        if r.server == "ours" and (r.workers, r.rows, r.concurrency) in base:
            ratio = f"{r.rps / base[(r.workers, r.rows, r.concurrency)]:.2f}x"
        lines.append(
            f"| {r.server} | {r.workers if r.workers else '-'} | {r.rows} | {r.concurrency} | {r.rps:.0f} "
            f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {r.spread or '-'} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured run (5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per server and payload (1)")
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument("--rows", type=lambda s: [int(x) for x in s.split(",")], default=[1, 100])
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each capture case (3)")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--skip-mlflow", action="store_true", help="only in-process and ours")
    parser.add_argument(
        "--only",
        choices=["all", "capture", "peers"],
        default="all",
        help="capture: only the payload capture comparison; peers: ours vs MLServer vs mlflow (bench/peers.py)",
    )
    parser.add_argument(
        "--skip-servers", type=lambda s: s.split(","), default=[], help="peers: leave out these (e.g. mlserver)"
    )
    args = parser.parse_args(argv)
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "python"
    for rows in args.rows:
        if rows not in (1, 100):
            parser.error("--rows takes 1 and/or 100")

    started = time.monotonic()
    if args.only == "peers":
        from bench.peers import bench_peers, render_peers

        if "--concurrency" not in (argv if argv is not None else sys.argv[1:]):
            args.concurrency = [1, 8, 32]
        if "--workers" not in (argv if argv is not None else sys.argv[1:]):
            args.workers = [2]
        with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmpdir:
            peers, limits = bench_peers(args, Path(tmpdir))
        print(render_peers(peers, limits))
        print(
            f"\nclient: {args.client}; {args.duration:.0f} s per run, {args.repeats} interleaved repeats; "
            f"--workers {args.workers[0]}; {os.cpu_count()} CPUs; took {time.monotonic() - started:.0f} s"
        )
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmpdir:
        tmp = Path(tmpdir)
        model, payloads = make_model(tmp)
        results: list[Result] = []
        if args.only == "all":
            results = bench_in_process(model, payloads, args)
            for workers in args.workers:
                if not args.skip_mlflow:
                    results += bench_server("mlflow models serve", mlflow_serve, model, workers, payloads, args, tmp)
                results += bench_server("ours", our_serve, model, workers, payloads, args, tmp)
        capture = bench_capture(model, payloads, args, tmp)
    order = {"in-process": 0, "mlflow models serve": 1, "ours": 2}
    results.sort(key=lambda r: (r.rows, r.concurrency, r.workers or 0, order[r.server]))
    if results:
        print(render(results))
        print()
    print("Payload capture, sample 1.0 to a loopback receiver, vs off (same run):\n")
    print(render_capture(capture))
    print(
        f"\nclient: {args.client}; {args.duration:.0f} s per run; {os.cpu_count()} CPUs; "
        f"took {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
