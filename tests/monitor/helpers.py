"""Helpers for the monitor tests: capture records written by the serving runtime's own encoder
(serving/capture.py), reference frames, and ``python -m monitor serve`` on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from serving.capture import encode_record
from tests.serving.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
MODEL = "fraud-detector"
NUMERIC = [f"f{i}" for i in range(6)]
FEATURES = [*NUMERIC, "channel"]
CHANNELS = ["web", "app", "store"]


def features(rows: int, *, seed: int, shift: float = 0.0, shifted: Sequence[str] = ()) -> pd.DataFrame:
    """Rows of the test distribution: 6 standard normals and a categorical; ``shift`` is added to
    the columns named in ``shifted``."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {c: rng.normal(size=rows) + (shift if c in shifted else 0.0) for c in NUMERIC}
    data["channel"] = rng.choice(CHANNELS, size=rows, p=[0.5, 0.3, 0.2])
    return pd.DataFrame(data)


def predictions(frame: pd.DataFrame) -> list[int]:
    """A fixed 'model': 1 when f0 + f1 > 0."""
    return [int(v) for v in (frame["f0"] + frame["f1"] > 0)]


def reference(rows: int = 5000, seed: int = 0) -> pd.DataFrame:
    ref = features(rows, seed=seed)
    ref["prediction"] = predictions(ref)
    return ref


def record_lines(
    frame: pd.DataFrame,
    *,
    version: str,
    rows_per_record: int = 1,
    outputs: list[Any] | None = None,
    model: str = MODEL,
    ts: float | None = None,
    id_prefix: str = "r",
) -> list[bytes]:
    """Capture records of ``frame`` as the serving runtime encodes them, ``rows_per_record`` rows
    per request; ``outputs`` default to ``predictions(frame)``."""
    outs = predictions(frame) if outputs is None else outputs
    now = time.time() if ts is None else ts
    lines = []
    for n, start in enumerate(range(0, len(frame), rows_per_record)):
        part = frame.iloc[start : start + rows_per_record]
        response = json.dumps({"predictions": outs[start : start + rows_per_record]})
        lines.append(encode_record(f"{id_prefix}{n}", now, model, version, part, response, len(part)))
    return lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MonitorProcess:
    proc: subprocess.Popen[bytes]
    port: int
    store: Path
    log: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, lines: Sequence[bytes], **kwargs: Any) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/capture",
            content=b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines),
            headers={"content-type": "application/x-ndjson"},
            timeout=30,
            **kwargs,
        )

    def evaluate(self) -> dict[str, Any]:
        r = httpx.post(f"{self.url}/v1/evaluate", timeout=300)
        assert r.status_code == 200, r.text
        return r.json()

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text


def monitor_command(reference_uri: str, store: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "monitor", "serve", "--model", MODEL, "--reference", reference_uri,
        "--store", str(store), "--host", "127.0.0.1", "--port", str(port), "--interval", "1h", *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def running_monitor(
    reference_uri: str, store: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[MonitorProcess]:
    """``python -m monitor serve`` on a free loopback port, healthy; killed at exit."""
    port = free_port()
    log = store.parent / f"monitor-{port}.log"
    args = monitor_command(reference_uri, store, port, *extra)
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    mon = MonitorProcess(proc, port, store, log, args)
    try:
        wait_until(lambda: _healthy(mon), f"the monitor on port {port} to be healthy ({log})")
        yield mon
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _healthy(mon: MonitorProcess) -> bool:
    if mon.proc.poll() is not None:
        raise AssertionError(f"the monitor exited with {mon.proc.returncode}: {mon.log.read_text()}")
    try:
        return httpx.get(f"{mon.url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
