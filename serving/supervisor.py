"""The main process: binds the ports, starts the workers, keeps them running, stops them gracefully.

It does not import MLflow or serve model requests itself. What it does, in order:

1. resolves settings (flags, env) and the worker count (``serving.cpu``: the cgroup CPU limit,
   not the host's CPU count);
2. makes a runtime directory for this start (``tempfile.mkdtemp``) holding the Prometheus
   multiprocess directory (or empties the ``*.db`` files of a ``PROMETHEUS_MULTIPROC_DIR`` the
   environment names), the drain flag, and the download of a ``models:/`` URI that workers share;
3. binds the serving socket with ``IPPROTO_TCP`` (see ``serving.worker`` for why that matters)
   and the metrics socket, serves ``/metrics`` on the latter itself (``serving.exporter``), and
   starts ``N`` workers (``python -m serving.worker FD``) that inherit the serving socket;
4. waits: reaps exited workers, calls ``mark_process_dead`` for each, restarts a worker that
   crashed (a replacement loads the model before it accepts connections when other workers are
   serving), gives up if the model cannot be loaded (exit 1 with the workers' reason) or workers
   crash in a loop;
5. on SIGTERM/SIGINT: drains without losing a request (``serving.drain``): raises the drain flag
   (``/ping`` 503 at once) and keeps serving for ``--drain-seconds``, then stops the kernel from
   accepting new connections, forwards SIGTERM to the workers (they accept what is queued, stop,
   finish in-flight requests), waits up to the grace period, SIGKILLs what is left, removes the
   runtime directory and exits 0. A second SIGTERM/SIGINT ends the drain delay at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from serving.balance import ConnectionBoard
from serving.config import Settings, parse_settings
from serving.cpu import detect_workers
from serving.drain import DrainFlag, stop_accepting
from serving.gpus import CUDA_VISIBLE_DEVICES, worker_devices
from serving.worker import (  # the supervisor/worker handshake, defined once
    BOARD_ENV,
    DRAIN_FLAG_ENV,
    PRELOAD_ENV,
    SETTINGS_ENV,
    SLOT_ENV,
    STARTUP_FAILURE,
    SUPERVISOR_ENV,
)
from serving.zygote import (
    FORK_TIMEOUT_SECONDS,
    READY_TIMEOUT_SECONDS,
    REPARENT_SECONDS,
    ForkServer,
    ForkServerError,
    enable_subreaper,
)

logger = logging.getLogger("serving.supervisor")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
TELEMETRY_ENV = "MLFLOW_DISABLE_TELEMETRY"
RUNTIME_DIR_ENV = "SERVING_RUNTIME_DIR"
LOAD_FAILURE_FILE = "load-failure"  # written by a worker (serving.app) that cannot load the model
RUNTIME_PREFIX = "mlflow-serving-"
LISTEN_BACKLOG = 2048
# Beyond the grace period, for workers to accept what is queued and exit before they are killed.
QUEUE_AND_EXIT_SECONDS = 5.0
# A worker that dies this many times within the window is not restarted again.
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0


def bind_socket(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A listening TCP socket whose Python object says ``proto == IPPROTO_TCP``.

    ``socket.accept()`` copies ``proto`` from this object to every accepted connection, and
    asyncio sets ``TCP_NODELAY`` only on connections with ``proto == IPPROTO_TCP``.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host in ("::", "::0"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # also IPv4
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def prepare_multiproc_dir(runtime_dir: Path, environ: dict[str, str]) -> Path:
    """The Prometheus multiprocess directory for this start, emptied of any previous samples."""
    configured = environ.get(MULTIPROC_ENV)
    path = Path(configured) if configured else runtime_dir / "metrics"
    path.mkdir(parents=True, exist_ok=True)
    for stale in glob.glob(str(path / "*.db")):
        os.remove(stale)
    return path


def _mark_process_dead(pid: int, path: Path) -> None:
    from prometheus_client import multiprocess

    mark: Callable[[int, str], None] = multiprocess.mark_process_dead
    mark(pid, str(path))


@dataclass
class Worker:
    pid: int
    started: float
    slot: int
    process: subprocess.Popen[bytes] | None = None  # None: forked by the fork server


@dataclass
class Supervisor:
    settings: Settings
    workers: int
    sock: socket.socket
    runtime_dir: Path
    multiproc_dir: Path
    exit_code: int = 0
    _procs: dict[int, Worker] = field(default_factory=dict)
    _signals: list[int] = field(default_factory=list)
    _wake: threading.Event = field(default_factory=threading.Event)
    _restarts: list[float] = field(default_factory=list)
    _stopping: bool = False
    _deadline: float = 0.0
    _killed: bool = False
    _drain_until: float | None = None
    fork_server: ForkServer | None = None
    _pending: list[int] = field(default_factory=list)  # slots waiting for the fork server
    _retired: list[ForkServer] = field(default_factory=list)  # stopped, to be waited for
    _strays_until: float = 0.0  # until then, children we did not start are stopped (_stop_strays)

    def __post_init__(self) -> None:
        # Workers read the resolved count (for the connection board), not "from the cgroup".
        self.settings = dataclasses.replace(self.settings, workers=self.workers)
        self.board_path = self.runtime_dir / "connections"
        ConnectionBoard.create(self.board_path, self.workers)
        self.flag_path = self.runtime_dir / "draining"
        self.drain_flag = DrainFlag.create(self.flag_path)

    def _base_env(self) -> dict[str, str]:
        """What every worker's environment (and the fork server's) holds."""
        env = dict(os.environ)
        # No usage telemetry from a serving pod (its network policy allows DNS only), and MLflow's
        # telemetry thread would make the fork server unsafe to fork (serving.zygote).
        env.setdefault(TELEMETRY_ENV, "true")
        env[SUPERVISOR_ENV] = str(os.getpid())
        env[BOARD_ENV] = str(self.board_path)
        env[DRAIN_FLAG_ENV] = str(self.flag_path)
        env[MULTIPROC_ENV] = str(self.multiproc_dir)
        env[RUNTIME_DIR_ENV] = str(self.runtime_dir)
        env[SETTINGS_ENV] = self.settings.to_json()
        return env

    def _worker_env(self, slot: int, preload: bool) -> dict[str, str]:
        env = self._base_env()
        env[PRELOAD_ENV] = "1" if preload else "0"
        env[SLOT_ENV] = str(slot)
        if self.settings.gpus > 0:
            env[CUDA_VISIBLE_DEVICES] = worker_devices(slot, self.workers, self.settings.gpus, os.environ)
        return env

    def spawn(self, slot: int, preload: bool = False) -> None:
        """Start a worker in ``slot``. ``preload``: load the model before accepting connections.

        Forked by the fork server when there is one (``serving.zygote``), else (or if that fails)
        started as ``python -m serving.worker``."""
        env = self._worker_env(slot, preload)
        if self.fork_server is not None and self.fork_server.ready:
            try:
                pid = self.fork_server.fork(slot, env)
            except ForkServerError as exc:
                # The request was sent: the fork server may have forked the worker and died or
                # been too slow to answer. That worker is re-parented to us, and would serve
                # beside the replacement started below without being known: stop it.
                self._strays_until = time.monotonic() + REPARENT_SECONDS + FORK_TIMEOUT_SECONDS
                self._drop_fork_server(str(exc))
            else:
                self._procs[pid] = Worker(pid, time.monotonic(), slot)
                logger.info("forked worker %d", pid)
                return
        fd = self.sock.fileno()
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving.worker", str(fd)],
            pass_fds=(fd,),
            env=env,
            stdin=subprocess.DEVNULL,
        )
        self._procs[proc.pid] = Worker(proc.pid, time.monotonic(), slot, proc)
        logger.info("started worker %d", proc.pid)

    # -- the fork server -----------------------------------------------------------------------

    def use_fork_server(self) -> bool:
        """``--fork-server``: on, off, or auto (on with two workers or more). Needs Linux (a
        child subreaper adopts the forked workers)."""
        mode = self.settings.fork_server
        if mode == "off" or (mode == "auto" and self.workers < 2):
            return False
        if not enable_subreaper():
            logger.info("fork server off: this platform has no child subreaper")
            return False
        return True

    def _start_fork_server(self) -> None:
        try:
            self.fork_server = ForkServer.start(self.sock.fileno(), self._base_env())
        except OSError as exc:
            logger.warning("cannot start the fork server (%s): starting workers one by one", exc)
            return
        logger.info("fork server %d: importing MLflow once for %d worker(s)", self.fork_server.pid, self.workers)

    def _drop_fork_server(self, reason: str) -> None:
        """Give the fork server up: later workers are started with ``python -m serving.worker``."""
        server, self.fork_server = self.fork_server, None
        if server is None:
            return
        if not self._stopping:
            logger.warning("fork server: %s; starting workers with python -m serving.worker", reason)
        server.close()
        self._retired.append(server)

    def _start_pending(self) -> None:
        """Start the workers waiting for the fork server, once it is ready or gone."""
        if not self._pending or self._stopping:
            return
        if self.fork_server is not None and not self.fork_server.ready:
            try:
                if not self.fork_server.poll_ready(0):
                    if time.monotonic() - self.fork_server.started < READY_TIMEOUT_SECONDS:
                        return
                    raise ForkServerError(f"not ready after {READY_TIMEOUT_SECONDS:g} s")
            except ForkServerError as exc:
                self._drop_fork_server(str(exc))
            else:
                logger.info(
                    "fork server ready in %.2f s (imported %s; native threads: %s)",
                    self.fork_server.seconds,
                    ", ".join(self.fork_server.imported),
                    ", ".join(self.fork_server.native_threads) or "none",
                )
        pending, self._pending = self._pending, []
        for slot in pending:
            self.spawn(slot)

    def _stop_strays(self) -> None:
        """SIGTERM our children that are neither workers we know nor a fork server: workers a
        fork server forked without telling us their pid (see ``spawn``)."""
        if time.monotonic() >= self._strays_until:
            return
        known = set(self._procs) | {server.pid for server in self._retired}
        if self.fork_server is not None:
            known.add(self.fork_server.pid)
        for pid in sorted(child_pids(os.getpid()) - known):
            logger.warning("stopping process %d: forked by the fork server, but its pid never reached us", pid)
            _signal_process(pid, signal.SIGTERM)

    def _wait(self, seconds: float) -> None:
        """Sleep until a signal, ``seconds``, or (while starting) a word from the fork server."""
        if self._pending and self.fork_server is not None and not self.fork_server.ready:
            with contextlib.suppress(OSError, ValueError):
                select.select([self.fork_server.control], [], [], min(seconds, 0.05))
            return
        self._wake.wait(seconds)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)
        self._wake.set()

    def _install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)

    def drain(self, reason: str) -> None:
        """Readiness 503 from now on; keep serving for the drain delay, then ``stop``."""
        if self._stopping:
            return
        if self._drain_until is not None:
            self.stop(f"{reason} again during the drain")
            return
        if not self._procs:  # still waiting for the fork server: nothing to drain
            self.stop(reason)
            return
        delay = self.settings.drain_seconds
        self.drain_flag.raise_()
        if delay <= 0:
            self.stop(reason)
            return
        logger.info("%s: draining for %g s (readiness 503, still serving), then stopping", reason, delay)
        self._drain_until = time.monotonic() + delay

    def stop(self, reason: str) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.drain_flag.raise_()
        logger.info("%s: stopping %d worker(s)", reason, len(self._procs))
        # The kernel completes no new connection from here on; the ones it already queued stay
        # queued for the workers to accept before they close their copies of the listener.
        if not stop_accepting(self.sock):
            logger.debug("no socket filter on this platform: connections queued at stop may be reset")
        self.sock.close()
        self._pending = []
        self._drop_fork_server("stopping")
        for worker in self._procs.values():
            _signal_process(worker.pid, signal.SIGTERM)
        self._deadline = time.monotonic() + self.settings.shutdown_grace + QUEUE_AND_EXIT_SECONDS

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            if self.fork_server is not None and pid == self.fork_server.pid:
                self.fork_server.process.returncode = code
                why = self.fork_server.last_words()
                self._drop_fork_server(f"exited ({code})" + (f": {why}" if why and why != "fork server exited" else ""))
                continue
            worker = self._procs.pop(pid, None)
            if worker is None:
                continue  # the fork server, or an orphan we adopted: reaped, nothing else to do
            if worker.process is not None:
                worker.process.returncode = code
            _mark_process_dead(pid, self.multiproc_dir)
            ConnectionBoard.clear(self.board_path, worker.slot)
            self._on_exit(pid, code, worker)

    def _on_exit(self, pid: int, code: int, worker: Worker) -> None:
        if self._stopping:
            logger.info("worker %d exited (%d)", pid, code)
            return
        if code == STARTUP_FAILURE:
            reason = self.load_failure() or f"worker {pid} could not load the model"
            logger.error("%s", reason)
            self.exit_code = 1
            self.stop("model failed to load")
            return
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_SECONDS]
        if len(self._restarts) >= MAX_RESTARTS:
            logger.error(
                "worker %d exited (%d); %d restarts in %.0f s, giving up",
                pid,
                code,
                len(self._restarts),
                RESTART_WINDOW_SECONDS,
            )
            self.exit_code = 1
            self.stop("workers keep crashing")
            return
        self._restarts.append(now)
        logger.warning("worker %d exited unexpectedly (%d); starting a new one", pid, code)
        # While other workers serve, the replacement loads before it accepts; alone, it accepts
        # at once so that /version (liveness) answers during the load.
        self.spawn(worker.slot, preload=bool(self._procs))

    def load_failure(self) -> str | None:
        """The reason a worker left when it could not load the model."""
        try:
            return (self.runtime_dir / LOAD_FAILURE_FILE).read_text().strip() or None
        except OSError:
            return None

    def run(self) -> int:
        self._install_signal_handlers()
        self._pending = list(range(self.workers))
        if self.use_fork_server():
            self._start_fork_server()
        self._start_pending()
        while self._procs or self._pending:
            wait = 0.5
            if self._drain_until is not None and not self._stopping:
                wait = max(0.0, min(wait, self._drain_until - time.monotonic()))
            self._wait(wait)
            self._wake.clear()
            self._reap()
            self._stop_strays()
            self._start_pending()
            while self._signals:
                sig = self._signals.pop(0)
                if sig in (signal.SIGTERM, signal.SIGINT):
                    self.drain(f"received {signal.Signals(sig).name}")
            if self._drain_until is not None and not self._stopping and time.monotonic() >= self._drain_until:
                self.stop("drain delay over")
            if self._stopping and not self._killed and time.monotonic() > self._deadline:
                logger.warning("grace period over: killing %d worker(s)", len(self._procs))
                for worker in self._procs.values():
                    _signal_process(worker.pid, signal.SIGKILL)
                self._killed = True
        self._drop_fork_server("stopped")
        for server in self._retired:
            with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
                server.process.wait(timeout=QUEUE_AND_EXIT_SECONDS)
        return self.exit_code


def child_pids(parent: int) -> set[int]:
    """The pids of ``parent``'s live (not zombie) children, from ``/proc`` (empty elsewhere)."""
    children = set()
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid ...
            except (OSError, IndexError):
                continue
            if len(fields) > 1 and fields[0] != "Z" and fields[1] == str(parent):
                children.add(int(entry))
    return children


def _signal_process(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _write_port_file(path: str, port: int, metrics_port: int) -> None:
    """``{"port": ..., "metrics_port": ...}``, written atomically (``serving.local`` reads it)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"port": port, "metrics_port": metrics_port}, f)
    os.replace(tmp, path)


def remove_stale_runtime_dirs(tmp: Path) -> None:
    """Runtime directories of supervisors that were killed (SIGKILL leaves them behind)."""
    for path in tmp.glob(f"{RUNTIME_PREFIX}*-*"):
        pid_text = path.name[len(RUNTIME_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


def _bind(host: str, port: int, what: str) -> socket.socket | None:
    try:
        return bind_socket(host, port)
    except OSError as exc:
        logger.error("cannot listen on %s:%d (%s): %s", host, port, what, exc)
        return None


def serve(settings: Settings) -> int:
    workers = settings.workers or detect_workers()
    environ = dict(os.environ)
    remove_stale_runtime_dirs(Path(tempfile.gettempdir()))
    runtime_dir = Path(tempfile.mkdtemp(prefix=f"{RUNTIME_PREFIX}{os.getpid()}-"))
    exporter = None
    sock = metrics_sock = None
    try:
        multiproc_dir = prepare_multiproc_dir(runtime_dir, environ)
        sock = _bind(settings.host, settings.port, "serving port")
        metrics_sock = _bind(settings.host, settings.metrics_port, "metrics port, --metrics-port") if sock else None
        if sock is None or metrics_sock is None:
            return 1
        from serving.exporter import MetricsExporter
        from serving.metrics import render_multiprocess

        exporter = MetricsExporter(metrics_sock, lambda: render_multiprocess(str(multiproc_dir)))
        exporter.start()
        port, metrics_port = sock.getsockname()[1], metrics_sock.getsockname()[1]
        logger.info(
            "serving %s on http://%s:%d (metrics on port %d) with %d worker(s)%s, timeout %d s, "
            "keep-alive %d s, header timeout %g s, max body %d bytes, drain %g s (runtime %s)",
            settings.model_uri,
            settings.host,
            port,
            metrics_port,
            workers,
            f" on {settings.gpus} GPU(s)" if settings.gpus else "",
            settings.timeout,
            settings.keepalive,
            settings.header_timeout,
            settings.max_body_bytes,
            settings.drain_seconds,
            _runtime_version(),
        )
        if settings.port_file:
            _write_port_file(settings.port_file, port, metrics_port)
        supervisor = Supervisor(
            settings=settings,
            workers=workers,
            sock=sock,
            runtime_dir=runtime_dir,
            multiproc_dir=multiproc_dir,
        )
        return supervisor.run()
    finally:
        if exporter is not None:
            exporter.stop()
        for s in (sock, metrics_sock):
            if s is not None:
                s.close()
        shutil.rmtree(runtime_dir, ignore_errors=True)


def _runtime_version() -> str:
    """For the log only: /version no longer tells the world which software answers."""
    from importlib import metadata

    from serving import __version__

    mlflow = "unknown"
    for name in ("mlflow", "mlflow-skinny"):
        try:
            mlflow = metadata.version(name)
            break
        except metadata.PackageNotFoundError:
            continue
    return f"mlflow-deploy-serving {__version__}, MLflow {mlflow}"


def log_level_number(name: str) -> int:
    """uvicorn's level names (it adds "trace") as a logging level."""
    level = logging.getLevelName(name.upper())
    return level if isinstance(level, int) else logging.DEBUG


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    logging.basicConfig(
        level=log_level_number(settings.log_level),
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return serve(settings)
