"""One worker process: uvicorn serving the app on the listening socket the supervisor passed down.

Started by the supervisor as ``python -m serving.worker FD`` with the listening socket inherited as
file descriptor ``FD`` and its settings in ``SERVING_WORKER_SETTINGS`` (JSON).

Why the socket is rebuilt with ``socket.socket(fileno=fd)`` and checked (uvicorn issue 3149):
asyncio turns on ``TCP_NODELAY`` for an accepted connection only if the Python socket object says
``proto == IPPROTO_TCP`` (``asyncio.base_events._set_nodelay``), and ``socket.accept()`` copies
``proto`` from the *listening* socket object. uvicorn's multi-worker mode builds its listener with
``socket.socket(family)``, whose ``proto`` is 0, so no accepted connection gets ``TCP_NODELAY``;
Nagle then holds back the response body (written after the headers) until the client ACKs the
headers, and the client delays that ACK by up to 40 ms: every keep-alive request after the first
pays ~42 ms. Single-worker uvicorn does not show it because asyncio builds that listener from
``getaddrinfo``, which fills in ``proto=6``. The supervisor creates the listener with
``IPPROTO_TCP`` and the worker rebuilds it from the descriptor, where CPython asks the kernel for
family, type and protocol (``SO_DOMAIN``/``SO_TYPE``/``SO_PROTOCOL``), so every accepted
connection is ``proto == 6`` and asyncio sets ``TCP_NODELAY`` on it.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any

SETTINGS_ENV = "SERVING_WORKER_SETTINGS"
PRELOAD_ENV = "SERVING_WORKER_PRELOAD"
SLOT_ENV = "SERVING_WORKER_SLOT"
BOARD_ENV = "SERVING_CONNECTION_BOARD"
SUPERVISOR_ENV = "SERVING_SUPERVISOR_PID"
DRAIN_FLAG_ENV = "SERVING_DRAIN_FLAG"
# Descriptors a worker needs besides its client connections (listener, model files, pipes, ...).
FD_RESERVE = 64
# Exit code of a worker whose model failed to load (same value as uvicorn's STARTUP_FAILURE):
# the supervisor stops instead of restarting it in a loop.
STARTUP_FAILURE = 3
WORKER_NAME = "serving-worker"  # the process name (set_process_name)


def inherited_socket(fd: int) -> socket.socket:
    """The listening socket behind ``fd``, with family/type/proto as the kernel reports them."""
    sock = socket.socket(fileno=fd)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto != socket.IPPROTO_TCP:
        # Only reachable on a platform that cannot report SO_PROTOCOL: rebuild it explicitly.
        sock = socket.socket(sock.family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=sock.detach())
    return sock


def run_on_loop(loop_factory: Callable[[], asyncio.AbstractEventLoop], main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run(main)`` on a loop from ``loop_factory`` (also on Python 3.10, which images of
    models trained on 3.10 run and which has no ``asyncio.Runner``)."""
    runner_class = getattr(asyncio, "Runner", None)
    if runner_class is not None:
        with runner_class(loop_factory=loop_factory) as runner:
            runner.run(main)
        return
    loop = loop_factory()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def fit_connection_cap(max_connections: int, soft: int, hard: int) -> tuple[int | None, int]:
    """(the open-file soft limit to set, or None to keep it; the connection cap to use).

    A worker that runs out of descriptors cannot accept, and every request times out: the cap
    must stay below the limit. The soft limit is raised up to the hard one if that is needed;
    if even the hard limit is too low, the cap comes down to fit it.
    """
    unlimited = -1  # resource.RLIM_INFINITY on Linux
    needed = max_connections + FD_RESERVE
    if soft == unlimited or soft >= needed:
        return None, max_connections
    raised = needed if hard == unlimited else min(needed, hard)
    return (raised if raised > soft else None), max(1, min(max_connections, max(raised, soft) - FD_RESERVE))


def _apply_connection_cap(max_connections: int) -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new_soft, cap = fit_connection_cap(max_connections, soft, hard)
    if new_soft is not None:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        except (ValueError, OSError):
            new_soft, cap = None, max(1, min(max_connections, soft - FD_RESERVE))
    if cap < max_connections:
        logging.getLogger("serving").warning(
            "open-file limit %d allows %d connections per worker, not %d (--max-connections)",
            new_soft or soft,
            cap,
            max_connections,
        )
    return cap


def configure_logging(level: str) -> None:
    from serving.supervisor import log_level_number

    logging.basicConfig(
        level=log_level_number(level),
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_worker(fd: int, settings_json: str) -> int:
    import uvicorn

    from serving.app import build_app
    from serving.balance import ConnectionBoard, event_loop_factory
    from serving.config import Settings
    from serving.drain import DrainFlag
    from serving.protocol import ServingServer, WorkerState, protocol_class

    settings = Settings.from_json(settings_json)
    configure_logging(settings.log_level)
    # `kill -USR1 <worker pid>` prints every thread's stack: how to see where a hung worker is.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    sock = inherited_socket(fd)

    exit_code = 0
    server: uvicorn.Server | None = None

    def on_fatal(exc: BaseException) -> None:
        nonlocal exit_code
        exit_code = STARTUP_FAILURE
        if server is not None:
            server.should_exit = True

    flag_path = os.environ.get(DRAIN_FLAG_ENV)
    state = WorkerState(DrainFlag(flag_path) if flag_path else None)
    asgi_app, serving_app = build_app(settings, on_fatal=on_fatal, state=state)
    if os.environ.get(PRELOAD_ENV) == "1" and not serving_app.load_now():
        # A replacement for a crashed worker loads before it accepts: the other workers serve
        # meanwhile, and no connection lands on a worker that cannot answer it yet.
        return STARTUP_FAILURE
    config = uvicorn.Config(
        asgi_app,
        http=protocol_class(
            settings.header_timeout, _apply_connection_cap(settings.max_connections), state, serving_app.metrics
        ),
        lifespan="on",
        log_config=None,
        log_level=settings.log_level,
        access_log=settings.access_log == "text",  # json: serving.accesslog
        timeout_keep_alive=settings.keepalive,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
        # Trust X-Forwarded-* only from loopback (a sidecar); the pod network is not trusted.
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        server_header=False,
    )
    server = ServingServer(config, sock, state)
    board = None
    board_path = os.environ.get(BOARD_ENV)
    if board_path and settings.workers and settings.workers > 1:
        board = ConnectionBoard(board_path, int(os.environ.get(SLOT_ENV, "0")), settings.workers)
    # What uvicorn.Server.run does, on the event loop of serving.balance.
    run_on_loop(event_loop_factory(board), server.serve(sockets=[sock]))
    return exit_code


def exit_with_parent() -> None:
    """Linux: get SIGTERM if the supervisor dies, instead of serving on as an orphan."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = int(os.environ.get(SUPERVISOR_ENV) or os.getppid())
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect (or before we started)
        os.kill(os.getpid(), signal.SIGTERM)


def set_process_name(name: str) -> None:
    """The name ``ps -o comm``, ``top`` and ``/proc/PID/comm`` show (Linux, at most 15 bytes):
    ``serving-worker`` for a worker, whether started by ``python -m serving.worker`` or forked by
    the fork server (whose command line it keeps), ``serving-zygote`` for the fork server."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_name = 15
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_name, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        return


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m serving.worker FD (started by python -m serving)", file=sys.stderr)
        return 2
    settings_json = os.environ.get(SETTINGS_ENV)
    if not settings_json:
        print(f"{SETTINGS_ENV} is not set (started by python -m serving)", file=sys.stderr)
        return 2
    # Ctrl-C reaches the whole process group; the supervisor drains, then sends SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    set_process_name(WORKER_NAME)
    return run_worker(int(args[0]), settings_json)


if __name__ == "__main__":
    sys.exit(main())
