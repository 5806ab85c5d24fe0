"""Helpers for the serving tests: Prometheus text parsing, process inspection."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text format -> {(name, frozenset(labels)): value}."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"unparseable metrics line: {line!r}"
        labels = frozenset(_LABEL.findall(match.group("labels") or ""))
        samples[(match.group("name"), labels)] = float(match.group("value"))
    return samples


def metric(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, /, **labels: str) -> float:
    """The value of one sample (0 if absent: a counter never incremented is not exported)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def children_of(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    pids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return pids


def process_name(pid: int) -> str:
    """``/proc/PID/comm``: ``serving-worker`` for a worker, ``serving-zygote`` for the fork server."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().rstrip("\0").split("\0")
    except OSError:
        return []


def workers_of(pid: int) -> list[int]:
    """The supervisor's worker processes (its children but the fork server)."""
    return [child for child in children_of(pid) if process_name(child) == "serving-worker"]


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


WAIT = 60.0
"""Upper bound for any state of a server under test to be reached."""


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``condition`` until it returns something truthy (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def frame(**columns: list[Any]) -> dict[str, Any]:
    """A ``dataframe_split`` request body from column lists."""
    rows = [list(r) for r in zip(*columns.values(), strict=True)]
    return {"dataframe_split": {"columns": list(columns), "data": rows}}


def answers_by_worker(url: str, payload: dict[str, Any], workers: int) -> dict[str, list[str]]:
    """{worker pid: the first predictions it gave} for ``payload`` sent to the slow model, whose
    ``env``/``random`` answers start with the worker's pid; concurrent requests until ``workers``
    different workers have answered."""
    import concurrent.futures

    import httpx

    seen: dict[str, list[str]] = {}

    def ask(_: int) -> list[str]:
        response = httpx.post(f"{url}/invocations", json=payload, timeout=WAIT)
        assert response.status_code == 200, response.text
        predictions: list[str] = response.json()["predictions"]
        return predictions

    def all_seen() -> bool:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for answer in pool.map(ask, range(32)):
                pid = answer[0].split(" ", 1)[0]
                seen.setdefault(pid, [a.split(" ", 1)[1] for a in answer])
        return len(seen) >= workers

    wait_until(all_seen, f"answers from {workers} workers")
    return seen
