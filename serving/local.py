"""Run the model server as a local subprocess (``modelctl demo``, tests, the benchmark).

    from serving.local import run_local

    with run_local("models:/fraud-detector/7", workers=2) as url:
        httpx.post(f"{url}/invocations", json={"dataframe_split": ...})
        httpx.get(f"{url.metrics_url}/metrics")

The server binds 127.0.0.1 on ports it picks itself (``port=0`` and metrics port 0, race-free:
the server writes the ports it bound to a file this helper reads), ``run_local`` waits until
``/ping`` answers 200 (model loaded), yields the base URL (a ``str`` that also carries
``metrics_url``), and on exit sends SIGTERM, waits for a graceful stop and SIGKILLs the process
group if it does not come. No drain delay by default (``drain_seconds=0``): there is no load
balancer in front of a local server to tell.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

_SRC_ROOT = str(Path(__file__).resolve().parent.parent)


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class ServerError(RuntimeError):
    """The server process exited or did not become ready in time."""


class LocalURL(str):
    """The serving base URL, with the metrics port's base URL as ``metrics_url``."""

    metrics_url: str

    def __new__(cls, url: str, metrics_url: str) -> LocalURL:
        obj = super().__new__(cls, url)
        obj.metrics_url = metrics_url
        return obj


def _http_status(url: str, timeout: float) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


class LocalServer:
    """A ``python -m serving`` subprocess on loopback. Use ``start()``/``stop()`` or ``with``."""

    def __init__(
        self,
        model_uri: str,
        port: int = 0,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        timeout: int | None = None,
        extra_args: list[str] | None = None,
        host: str = "127.0.0.1",
        stdout: IO[bytes] | int | None = None,
        stderr: IO[bytes] | int | None = None,
        metrics_port: int = 0,
        drain_seconds: float = 0.0,
    ) -> None:
        self.model_uri = model_uri
        self.port = port
        self.metrics_port = metrics_port
        self.drain_seconds = drain_seconds
        self.workers = workers
        self.env = dict(env or {})
        self.timeout = timeout
        self.extra_args = list(extra_args or [])
        self.host = host
        self.stdout = stdout
        self.stderr = stderr
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.metrics_url = ""
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerError("server not started")
        return self.process.pid

    def start(self, wait_ready: bool = True, startup_timeout: float = 120.0) -> str:
        """Start the process, wait until it listens (and, by default, until /ping is 200)."""
        self._tmp = tempfile.TemporaryDirectory(prefix="serving-local-")
        port_file = os.path.join(self._tmp.name, "port")
        cmd = [
            sys.executable,
            "-m",
            "serving",
            "serve",
            "--model-uri",
            self.model_uri,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--metrics-port",
            str(self.metrics_port),
            "--drain-seconds",
            str(self.drain_seconds),
            "--workers",
            str(self.workers),
            "--port-file",
            port_file,
        ]
        if self.timeout is not None:
            cmd += ["--timeout", str(self.timeout)]
        cmd += self.extra_args
        env = dict(os.environ)
        env.update(self.env)
        # Make `serving` importable however the caller found it (source tree or installed).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC_ROOT, env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.stdout,
            stderr=self.stderr,
            start_new_session=True,  # its own process group: stop() can reach the workers too
        )
        deadline = time.monotonic() + startup_timeout
        try:
            port, metrics_port = self._wait_for_ports(port_file, deadline)
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.url = f"http://{host}:{port}"
            self.metrics_url = f"http://{host}:{metrics_port}"
            if wait_ready:
                self.wait_ready(deadline - time.monotonic())
        except BaseException:
            self.stop()
            raise
        return self.url

    def _wait_for_ports(self, port_file: str, deadline: float) -> tuple[int, int]:
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                text = Path(port_file).read_text().strip()
            except FileNotFoundError:
                text = ""
            if text:
                ports = json.loads(text)
                return int(ports["port"]), int(ports["metrics_port"])
            time.sleep(0.05)
        raise ServerError("server did not start listening in time")

    def _check_alive(self) -> None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            raise ServerError(f"server exited with code {code}")

    def wait_ready(self, timeout: float = 120.0, path: str = "/ping") -> None:
        """Wait until ``path`` answers 200."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            self._check_alive()
            if _http_status(self.url + path, timeout=5.0) == 200:
                return
            if time.monotonic() >= deadline:
                self.dump_stacks()
                raise ServerError(f"{self.url}{path} did not answer 200 in {timeout:.0f} s")
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        """The worker processes (children of the supervisor but the fork server), from /proc."""
        pids: list[int] = []
        if self.process is None:
            return pids
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{self.process.pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    pids += [int(p) for p in (task / "children").read_text().split()]
        return [pid for pid in pids if _process_name(pid) != "serving-zygote"]

    def dump_stacks(self) -> None:
        """Ask every worker to print its threads' stacks to stderr (SIGUSR1, see worker.py)."""
        for pid in self.worker_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
        time.sleep(1.0)

    def terminate(self) -> None:
        """Send SIGTERM to the server (graceful shutdown), without waiting."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL the process group. Exit code."""
        process = self.process
        code: int | None = None
        if process is not None:
            self.terminate()
            try:
                code = process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                code = None
            # Kill anything left in the group (workers of a supervisor that died hard).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            if code is None:
                code = process.wait(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return code

    def __enter__(self) -> LocalServer:
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def run_local(
    model_uri: str,
    port: int = 0,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    timeout: int | None = None,
    startup_timeout: float = 120.0,
) -> Iterator[LocalURL]:
    """Serve ``model_uri`` on 127.0.0.1 in a subprocess; yields the base URL once /ping is 200.

    Args:
        model_uri: local model directory or ``models:/name/version`` (``models:/name@alias``);
            a registry URI needs ``MLFLOW_TRACKING_URI`` in ``env`` or the environment.
        port: 0 picks a free port.
        workers: worker processes.
        env: extra environment for the server (e.g. ``MLFLOW_TRACKING_URI``, ``MODEL_NAME``).
        timeout: request timeout in seconds (default 60).
        startup_timeout: seconds to wait for the model to load before raising ``ServerError``.

    Yields the base URL; its ``metrics_url`` attribute is the metrics port's base URL.
    """
    server = LocalServer(model_uri, port=port, workers=workers, env=env, timeout=timeout)
    server.start(startup_timeout=startup_timeout)
    try:
        yield LocalURL(server.url, server.metrics_url)
    finally:
        server.stop()
