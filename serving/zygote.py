"""The fork server: import MLflow once, fork the workers from that warm process.

Why: a worker spends most of its cold start importing MLflow and its dependencies (pandas,
pyarrow, FastAPI, the tracking client, ``mlflow.genai``; ``mlflow/__init__.py`` imports them
unconditionally, so they cannot be made lazy from outside). Started as ``python -m
serving.worker``, every worker pays that import, all of them at the same moment on a pod with
fewer free cores than workers, and a replacement for a crashed worker pays it again. Forked from
a process that already imported everything, a worker starts in milliseconds and shares the
imported modules' memory copy-on-write.

How (the supervisor, ``serving.supervisor``, drives it; ``--fork-server`` / ``SERVING_FORK_SERVER``):

1. the supervisor starts ``python -m serving.zygote FD CONTROL`` by ``Popen`` with the workers'
   environment, the listening socket (``FD``) and one end of a socket pair (``CONTROL``);
2. the fork server imports what a worker imports (uvicorn, ``serving.app`` and the rest of the
   worker, ``mlflow.pyfunc.scoring_server``) and the module that loads the model's flavor (the
   ``loader_module`` of the ``python_function`` flavor in a local ``MLmodel``), but never loads
   the model: a framework's thread pools, a CUDA context or an open file do not survive ``fork``;
3. it checks that no Python thread but the main one runs: ``fork()`` copies only the calling
   thread, and a lock another thread held at that instant (a logging handler's, a queue's) stays
   locked forever in the child. If an import started one (MLflow's telemetry does, unless
   ``MLFLOW_DISABLE_TELEMETRY`` is set, which the supervisor sets by default) it reports the
   threads and exits, and the supervisor starts workers the old way. Native threads that
   libraries start on import are allowed and logged: numpy's and scipy's OpenBLAS start a
   server thread and pyarrow its jemalloc background thread, and all three libraries import
   ``pthread_atfork`` (``nm -D`` on ``libscipy_openblas*.so`` and ``libarrow.so``) to quiesce them
   around a fork, which is what gunicorn's ``--preload`` relies on too;
4. it answers ``{"ready": ...}``, then serves requests ``{"slot": k, "env": {...}}``: it forks a
   child that forks the worker and exits at once, so the worker is re-parented to the supervisor
   (a child subreaper, ``PR_SET_CHILD_SUBREAPER``) which reaps, signals and restarts it exactly as
   a worker it started itself; the reply is ``{"pid": P}``;
5. the worker (grandchild) waits until it is the supervisor's child, takes the slot's
   environment (``CUDA_VISIBLE_DEVICES`` before any CUDA initialisation: the model loads after
   the fork), re-seeds numpy's global generator (else every worker would draw the same numbers),
   and runs ``serving.worker.run_worker`` on the inherited socket: uvicorn starts at once and the
   model loads in its loader thread, so ``/version`` answers during the load as before.

A fork server that dies or fails costs nothing but the speed-up: the supervisor logs why and
starts every later worker with ``python -m serving.worker``; workers already forked keep serving.

One thing a forked worker does not show: ``/proc/PID/environ`` is the environment the process
was *executed* with (the fork server's), not the one it set after the fork; ``os.environ`` and
``getenv`` (what CUDA and the model read) have the slot's values.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ForkServer", "ForkServerError", "enable_subreaper", "flavor_module", "main", "native_thread_names"]

# The modules every worker imports before it can answer (the worker's own and MLflow's scoring).
WORKER_MODULES = (
    "uvicorn",
    "serving.worker",
    "serving.app",
    "serving.protocol",
    "serving.balance",
    "serving.invocations",
    "mlflow.pyfunc",
    "mlflow.pyfunc.scoring_server",
)
# What a flavor's loader imports when it loads a model (not when the flavor module is imported),
# for the flavors whose framework is safe to import before a fork: sklearn (and skops, which
# MLflow 3 saves sklearn models with) starts no thread but OpenBLAS's (see 3. above); importing
# torch starts none (torch's DataLoader forks its workers after it). TensorFlow is left out
# (its runtime is not fork-safe once imported), as are flavors not listed: their worker imports
# the framework itself.
FLAVOR_FRAMEWORKS: dict[str, tuple[str, ...]] = {
    "mlflow.sklearn": ("sklearn", "skops.io"),
    "mlflow.pytorch": ("torch",),
}
# How long a forked worker waits to be re-parented to the supervisor (its parent exits at once).
REPARENT_SECONDS = 10.0
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
ZYGOTE_NAME = "serving-zygote"  # the fork server's process name (ps -o comm)
# The fork server's imports take 3-8 s on a 2-CPU pod (over 30 s on a saturated one); one not
# ready after this long (an import stuck on I/O) is given up, and workers import for themselves.
READY_TIMEOUT_SECONDS = 180.0
# A fork takes milliseconds; a fork server that does not answer in this long is given up.
FORK_TIMEOUT_SECONDS = 10.0


class ForkServerError(Exception):
    """The fork server cannot give the supervisor a worker; the message says why, on one line."""


def enable_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); False if it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def native_thread_names() -> list[str]:
    """Names of this process's threads other than the calling one, as the kernel lists them."""
    names = []
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            if int(task) == threading.get_native_id():
                continue
            with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
    return sorted(names)


def flavor_module(model_uri: str) -> str | None:
    """The ``loader_module`` of a local model's ``python_function`` flavor, None if not local or
    not readable (the worker then imports it itself when it loads the model)."""
    path = model_uri[len("file://") :] if model_uri.startswith("file://") else model_uri
    if "://" in path or path.startswith(("models:/", "runs:/")):
        return None
    try:
        import yaml

        with open(Path(path) / "MLmodel") as f:
            mlmodel = yaml.safe_load(f)
        module = mlmodel["flavors"]["python_function"]["loader_module"]
    except Exception:  # noqa: BLE001 - unreadable: the worker reports it when it loads the model
        return None
    return module if isinstance(module, str) and module.replace(".", "").replace("_", "").isalnum() else None


# --------------------------------------------------------------------------- the supervisor's end


class ForkServer:
    """The supervisor's handle on a running fork server."""

    def __init__(self, process: subprocess.Popen[bytes], control: socket.socket) -> None:
        self.process = process
        self.control = control
        self._buffer = b""
        self.ready = False
        self.imported: list[str] = []
        self.seconds = 0.0
        self.native_threads: list[str] = []
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(cls, listen_fd: int, env: Mapping[str, str]) -> ForkServer:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "serving.zygote", str(listen_fd), str(theirs.fileno())],
                pass_fds=(listen_fd, theirs.fileno()),
                env=dict(env),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(process, ours)

    def _message(self, timeout: float) -> dict[str, Any] | None:
        """The next message, None if none came within ``timeout``; ForkServerError if it is gone."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([self.control], [], [], remaining)
            if not readable:
                return None
            try:
                chunk = self.control.recv(65536)
            except OSError as exc:
                raise ForkServerError(f"fork server unreachable: {exc}") from None
            if not chunk:
                raise ForkServerError("fork server exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            raise ForkServerError(f"fork server sent {line[:80]!r}") from None
        if not isinstance(message, dict):
            raise ForkServerError(f"fork server sent {line[:80]!r}")
        if "error" in message:
            raise ForkServerError(str(message["error"]))
        return message

    def poll_ready(self, timeout: float) -> bool:
        """True once the fork server has imported everything; ForkServerError if it cannot."""
        if not self.ready:
            message = self._message(timeout)
            if message is not None:
                self.ready = bool(message.get("ready"))
                self.imported = [str(m) for m in message.get("imported", [])]
                self.seconds = float(message.get("seconds", 0.0))
                self.native_threads = [str(t) for t in message.get("native_threads", [])]
        return self.ready

    def fork(self, slot: int, env: Mapping[str, str], timeout: float = FORK_TIMEOUT_SECONDS) -> int:
        """A new worker for ``slot`` with ``env``: its pid (a child of the caller, a subreaper)."""
        if not self.ready:
            raise ForkServerError("fork server not ready")
        try:
            _send(self.control, {"slot": slot, "env": dict(env)})
        except OSError as exc:
            raise ForkServerError(f"fork server unreachable: {exc}") from None
        message = self._message(timeout)
        if message is None:
            raise ForkServerError(f"fork server did not answer within {timeout:g} s")
        pid = message.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            raise ForkServerError(f"fork server answered {message!r}")
        return pid

    def last_words(self) -> str | None:
        """After it exited: the error it sent, if any was left unread."""
        try:
            while self._message(0) is not None:
                pass
        except ForkServerError as exc:
            return str(exc)
        return None

    def close(self) -> None:
        """Stop the fork server (its workers are not its children: they keep running)."""
        with contextlib.suppress(OSError):
            self.control.close()
        # SIGKILL: it has nothing to clean up, and an import may have replaced SIGTERM's handler.
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


# --------------------------------------------------------------------------- the fork server


def _send(conn: socket.socket, message: Mapping[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _warm_up(model_uri: str) -> list[str]:
    """Import what every worker imports before it can answer; the names imported."""
    imported = []
    for name in WORKER_MODULES:
        importlib.import_module(name)
        imported.append(name)
    flavor = flavor_module(model_uri)
    for name in (flavor, *FLAVOR_FRAMEWORKS.get(flavor or "", ())) if flavor else ():
        try:
            importlib.import_module(name)
            imported.append(name)
        except Exception:  # noqa: BLE001 - the worker meets the same error when it loads, and reports it
            break
    # mlflow.pyfunc.load_model checks the model's requirements against the installed packages
    # (requirements_utils.warn_dependency_requirement_mismatches); the first check in a process
    # builds a module -> package map from every installed distribution's file list (~1.5 s idle,
    # 5 s on a busy 2-core machine; MLflow 3.17). Built here, forked workers find it built. A
    # private function: if MLflow renames it, the workers build the map themselves.
    try:
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()
        imported.append("(installed packages map)")
    except Exception:  # noqa: BLE001 - only a speed-up
        pass
    return imported


def _become_worker(listen_fd: int, env: Mapping[str, str], supervisor: int) -> int:
    """In the forked worker: wait to be the supervisor's child, take the slot's env, serve."""
    deadline = time.monotonic() + REPARENT_SECONDS
    while os.getppid() != supervisor:
        if time.monotonic() > deadline:
            return 1
        time.sleep(0.001)
    os.environ.clear()
    os.environ.update(env)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()  # a fresh process would start from fresh entropy
    from serving import worker

    worker.exit_with_parent()  # PR_SET_PDEATHSIG, now that the parent is the supervisor
    worker.set_process_name(worker.WORKER_NAME)
    return worker.run_worker(listen_fd, env[worker.SETTINGS_ENV])


def _fork() -> int:
    # Python 3.12+ warns (DeprecationWarning) on fork() in a process with more than one OS
    # thread. The only threads here are native ones of libraries that register pthread_atfork
    # handlers for exactly this (serve() has refused if a Python thread runs).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def _fork_worker(listen_fd: int, control: socket.socket, env: Mapping[str, str], supervisor: int) -> int:
    """Fork (twice) a worker; its pid. The middle process exits at once so the worker is
    re-parented to the supervisor (a subreaper), which then reaps and signals it itself."""
    read_end, write_end = os.pipe()
    middle = _fork()
    if middle == 0:  # the middle process
        code = 1
        try:
            os.close(read_end)
            worker = _fork()
            if worker == 0:  # the worker
                os.close(write_end)
                os.close(control.detach())  # the request stream's file object still refers to it
                # SIGINT stays ignored, as in a worker the supervisor starts (serving.worker).
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                try:
                    code = _become_worker(listen_fd, env, supervisor)
                except SystemExit as exc:  # as the interpreter would: a message is printed, exit 1
                    if exc.code is None or isinstance(exc.code, int):
                        code = exc.code or 0
                    else:
                        print(exc.code, file=sys.stderr)
                        code = 1
                except BaseException:  # noqa: BLE001 - printed as an uncaught exception would be
                    import traceback

                    traceback.print_exc()
                    code = 1
                finally:
                    with contextlib.suppress(Exception):
                        sys.stdout.flush()
                        sys.stderr.flush()
                os._exit(code)
            os.write(write_end, str(worker).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as f:
            text = f.read().decode()
    finally:
        _, status = os.waitpid(middle, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not text.isdigit():
        raise ForkServerError(f"fork failed (status {os.waitstatus_to_exitcode(status)})")
    return int(text)


def serve(listen_fd: int, control: socket.socket, model_uri: str) -> int:
    supervisor = os.getppid()
    begin = time.perf_counter()
    try:
        imported = _warm_up(model_uri)
    except BaseException as exc:  # noqa: BLE001 - reported to the supervisor, which falls back
        _send(control, {"error": f"import failed: {type(exc).__name__}: {exc}"})
        return 1
    python_threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if python_threads:
        running = ", ".join(python_threads)
        _send(control, {"error": f"Python threads running after the imports ({running}): unsafe to fork"})
        return 1
    _send(
        control,
        {
            "ready": True,
            "imported": imported,
            "seconds": round(time.perf_counter() - begin, 3),
            "native_threads": native_thread_names(),
        },
    )
    with control.makefile("rb") as requests:
        for line in requests:
            try:
                request = json.loads(line)
                env = {str(k): str(v) for k, v in request["env"].items()}
                pid = _fork_worker(listen_fd, control, env, supervisor)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                _send(control, {"error": f"bad request: {exc}"})
                continue
            except (OSError, ForkServerError) as exc:
                _send(control, {"error": str(exc)})
                continue
            _send(control, {"pid": pid})
    return 0  # the supervisor closed its end


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not all(a.isdigit() for a in args):
        print("usage: python -m serving.zygote FD CONTROL_FD (started by python -m serving)", file=sys.stderr)
        return 2
    from serving import worker

    settings_json = os.environ.get(worker.SETTINGS_ENV)
    if not settings_json:
        print(f"{worker.SETTINGS_ENV} is not set (started by python -m serving)", file=sys.stderr)
        return 2
    # Ctrl-C in a terminal reaches the whole process group: the supervisor stops the fork server.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # as a worker: kill -USR1 prints stacks
    worker.exit_with_parent()
    worker.set_process_name(ZYGOTE_NAME)
    model_uri = json.loads(settings_json).get("model_uri", "")
    control = socket.socket(fileno=int(args[1]))
    try:
        return serve(int(args[0]), control, model_uri)
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the supervisor went away
    finally:
        control.close()


if __name__ == "__main__":
    sys.exit(main())
