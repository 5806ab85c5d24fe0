"""Unit tests: settings from flags and env, row counting, the listening socket and TCP_NODELAY."""

from __future__ import annotations

import asyncio
import os
import re
import socket

import numpy as np
import pandas as pd
import pytest

from serving.app import count_rows, local_model_path
from serving.config import Settings, model_identity, parse_settings
from serving.supervisor import bind_socket, prepare_multiproc_dir
from serving.worker import inherited_socket

# -- settings ---------------------------------------------------------------------------------


def test_defaults_from_nothing() -> None:
    settings = parse_settings([], env={})
    assert settings.model_uri == "/opt/model"
    assert settings.port == 8080
    assert settings.metrics_port == 9090
    assert settings.host == "0.0.0.0"
    assert settings.workers is None  # -> cgroup CPU limit
    assert settings.timeout == 60
    assert settings.keepalive == 75
    assert settings.header_timeout == 10
    assert settings.drain_seconds == 5
    assert settings.max_body_bytes == 6 * 1024 * 1024
    assert settings.max_json_depth == 64
    assert settings.max_connections == 1000
    assert settings.download_timeout == 60
    assert (settings.docs, settings.debug, settings.access_log) == (False, False, "off")
    assert settings.capture_url is None
    assert (settings.model_name, settings.model_version) == ("unknown", "unknown")


def test_every_limit_from_flags_and_env() -> None:
    env = {
        "SERVING_METRICS_PORT": "9191",
        "SERVING_HEADER_TIMEOUT_SECONDS": "2.5",
        "SERVING_DRAIN_SECONDS": "0",
        "SERVING_MAX_BODY_BYTES": "1500000",
        "SERVING_MAX_JSON_DEPTH": "16",
        "SERVING_MAX_CONNECTIONS": "50",
        "SERVING_DOWNLOAD_TIMEOUT_SECONDS": "30",
        "SERVING_DOCS": "1",
        "SERVING_DEBUG": "true",
    }
    settings = parse_settings([], env=env)
    assert (settings.metrics_port, settings.header_timeout, settings.drain_seconds) == (9191, 2.5, 0)
    assert (settings.max_body_bytes, settings.max_json_depth, settings.max_connections) == (1500000, 16, 50)
    assert (settings.download_timeout, settings.docs, settings.debug) == (30, True, True)
    flags = ["--metrics-port", "9292", "--max-json-depth", "8", "--drain-seconds", "7"]
    settings = parse_settings(flags, env=env)
    assert (settings.metrics_port, settings.max_json_depth, settings.drain_seconds) == (9292, 8, 7)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SERVING_WORKERS": "1000000"}, "SERVING_WORKERS=1000000 is out of range"),
        ({"SERVING_GRACEFUL_TIMEOUT_SECONDS": "-1"}, "SERVING_GRACEFUL_TIMEOUT_SECONDS=-1 is out of range"),
        ({"SERVING_KEEPALIVE_SECONDS": "0"}, "--keepalive / SERVING_KEEPALIVE_SECONDS must be between 1 and 3600"),
        ({"SERVING_TIMEOUT_SECONDS": "0"}, "SERVING_TIMEOUT_SECONDS=0 is out of range"),
        ({"SERVING_HEADER_TIMEOUT_SECONDS": "0"}, "must be between 0.1 and 300"),
        ({"SERVING_DRAIN_SECONDS": "nan"}, "SERVING_DRAIN_SECONDS=nan is out of range"),
        ({"SERVING_MAX_BODY_BYTES": "10"}, "SERVING_MAX_BODY_BYTES=10 is out of range"),
        ({"SERVING_MAX_CONNECTIONS": "0"}, "SERVING_MAX_CONNECTIONS=0 is out of range"),
        ({"SERVING_MAX_JSON_DEPTH": "100000"}, "SERVING_MAX_JSON_DEPTH=100000 is out of range"),
        ({"SERVING_METRICS_PORT": "8080"}, "metrics port (8080) must differ from the serving port"),
        ({"SERVING_DOCS": "maybe"}, "SERVING_DOCS='maybe' is not a boolean"),
        ({"SERVING_PORT": "-1"}, "SERVING_PORT=-1 is out of range"),
    ],
)
def test_settings_out_of_bounds_stop_with_the_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(SystemExit, match=re.escape(message)):
        parse_settings([], env=env)


@pytest.mark.parametrize(
    "argv",
    [
        ["--workers", "1000000"],
        ["--graceful-timeout", "-5"],
        ["--keepalive", "0"],
        ["--drain-seconds", "301"],
        ["--max-body-bytes", "1e9"],
        ["--metrics-port", "8080"],
    ],
)
def test_flags_out_of_bounds_stop(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings(argv, env={}, cpus=lambda: 2)


def test_workers_are_bounded_by_the_cpus_unless_forced() -> None:
    assert parse_settings(["--workers", "8"], env={}, cpus=lambda: 2).workers == 8
    with pytest.raises(SystemExit, match="9 workers for 2 CPU"):
        parse_settings(["--workers", "9"], env={}, cpus=lambda: 2)
    with pytest.raises(SystemExit, match="SERVING_FORCE_WORKERS"):
        parse_settings([], env={"SERVING_WORKERS": "64"}, cpus=lambda: 1)
    assert parse_settings(["--workers", "64", "--force-workers"], env={}, cpus=lambda: 1).workers == 64
    assert parse_settings([], env={"SERVING_WORKERS": "64", "SERVING_FORCE_WORKERS": "1"}, cpus=lambda: 1).workers == 64
    # forced or not, a hard ceiling
    with pytest.raises(SystemExit):
        parse_settings(["--workers", "5000", "--force-workers"], env={}, cpus=lambda: 1)


def test_sagemaker_serve_positional_and_env() -> None:
    env = {
        "MODEL_URI": "/models/m",
        "SERVING_PORT": "9000",
        "SERVING_WORKERS": "3",
        "SERVING_TIMEOUT_SECONDS": "12",
        "MODEL_NAME": "fraud",
        "MODEL_VERSION": "7",
    }
    settings = parse_settings(["serve"], env=env, cpus=lambda: 2)
    assert settings.model_uri == "/models/m"
    assert settings.port == 9000
    assert settings.workers == 3
    assert settings.timeout == 12
    assert (settings.model_name, settings.model_version) == ("fraud", "7")


def test_flags_win_over_env() -> None:
    env = {"MODEL_URI": "/env", "SERVING_PORT": "9000", "SERVING_WORKERS": "3"}
    argv = ["--model-uri", "/flag", "--port", "7000", "--workers", "1", "--timeout", "5"]
    settings = parse_settings(argv, env=env, cpus=lambda: 2)
    assert (settings.model_uri, settings.port, settings.workers, settings.timeout) == ("/flag", 7000, 1, 5)


def test_platform_port_variables() -> None:
    assert parse_settings([], env={"AIP_HTTP_PORT": "8081"}).port == 8081
    assert parse_settings([], env={"SAGEMAKER_BIND_TO_PORT": "8082"}).port == 8082
    assert parse_settings([], env={"SERVING_PORT": "1", "AIP_HTTP_PORT": "2"}).port == 1


@pytest.mark.parametrize(
    "argv",
    [["predict"], ["--workers", "0"], ["--timeout", "0"], ["--port", "70000"]],
)
def test_bad_arguments_exit(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings(argv, env={})


def test_bad_env_exits_with_the_variable_name() -> None:
    with pytest.raises(SystemExit, match="SERVING_WORKERS"):
        parse_settings([], env={"SERVING_WORKERS": "two"})


@pytest.mark.parametrize(
    ("uri", "env", "identity"),
    [
        ("models:/fraud/7", {}, ("fraud", "7")),
        ("models:/fraud@champion", {}, ("fraud", "champion")),
        ("models:/fraud/7", {"MODEL_NAME": "x", "MODEL_VERSION": "9"}, ("x", "9")),
        ("/opt/model", {"MODEL_NAME": "fraud", "MODEL_VERSION": "3"}, ("fraud", "3")),
        ("/opt/model", {}, ("unknown", "unknown")),
    ],
)
def test_model_identity(uri: str, env: dict[str, str], identity: tuple[str, str]) -> None:
    assert model_identity(uri, env) == identity


def test_settings_round_trip_to_workers() -> None:
    argv = ["--workers", "2", "--timeout", "3", "--header-timeout", "1.5", "--docs"]
    settings = parse_settings(argv, env={"MODEL_NAME": "m"}, cpus=lambda: 2)
    assert Settings.from_json(settings.to_json()) == settings


def test_grace_follows_timeout_unless_set() -> None:
    assert Settings(timeout=10).shutdown_grace == 15
    assert Settings(timeout=10, graceful_timeout=2).shutdown_grace == 2


# -- rows -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "rows"),
    [
        (pd.DataFrame({"a": [1, 2, 3]}), 3),
        (pd.Series([1, 2]), 2),
        (np.zeros((4, 2)), 4),
        (np.float64(1.0), 1),
        ({"a": np.zeros((5, 2)), "b": np.zeros((5,))}, 5),
        ({"a": [1, 2]}, 2),
        ([{"a": 1}, {"a": 2}], 2),
        ({"messages": "hi"}, 1),
        ("text", 1),
    ],
)
def test_count_rows(data: object, rows: int) -> None:
    assert count_rows(data) == rows


def test_local_model_uris_are_used_in_place(tmp_path: os.PathLike[str]) -> None:
    assert local_model_path("/opt/model", None) == "/opt/model"
    assert local_model_path("file:///opt/model", None) == "/opt/model"
    assert local_model_path("relative/model", str(tmp_path)) == "relative/model"


# -- metrics directory ------------------------------------------------------------------------


def test_multiproc_dir_is_emptied_at_start(tmp_path: os.PathLike[str]) -> None:
    from pathlib import Path

    runtime = Path(tmp_path)
    configured = runtime / "prom"
    configured.mkdir()
    (configured / "counter_123.db").write_bytes(b"stale")
    (configured / "keep.txt").write_text("not ours")
    path = prepare_multiproc_dir(runtime, {"PROMETHEUS_MULTIPROC_DIR": str(configured)})
    assert path == configured
    assert sorted(p.name for p in configured.iterdir()) == ["keep.txt"]
    assert prepare_multiproc_dir(runtime, {}) == runtime / "metrics"


# -- TCP_NODELAY on accepted connections (uvicorn issue 3149) ----------------------------------


async def _accepted_nodelay(listener: socket.socket) -> int:
    """TCP_NODELAY of a connection accepted by an asyncio server on ``listener`` (as uvicorn
    serves a socket it is handed: ``loop.create_server(sock=...)``)."""
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[int] = loop.create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            if not seen.done():
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await loop.create_server(Probe, sock=listener)
    try:
        host, port = listener.getsockname()[:2]
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        value = await asyncio.wait_for(seen, 10)
        writer.close()
        return value
    finally:
        server.close()


def test_listener_passed_to_a_worker_gives_nodelay_connections() -> None:
    listener = bind_socket("127.0.0.1", 0)
    assert listener.proto == socket.IPPROTO_TCP
    # What a worker does with the inherited descriptor.
    fd = os.dup(listener.fileno())
    listener.close()
    worker_side = inherited_socket(fd)
    assert worker_side.proto == socket.IPPROTO_TCP
    assert asyncio.run(_accepted_nodelay(worker_side)) != 0


def test_a_proto_0_listener_would_leave_nagle_on() -> None:
    """The failure mode the fix avoids, so the test above can tell the difference."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto 0, as uvicorn binds it
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    assert listener.proto == 0
    assert asyncio.run(_accepted_nodelay(listener)) == 0


def test_inherited_socket_repairs_a_proto_0_descriptor() -> None:
    """Even a listener created with proto 0 comes back as IPPROTO_TCP from its descriptor."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    rebuilt = inherited_socket(os.dup(listener.fileno()))
    listener.close()
    assert rebuilt.proto == socket.IPPROTO_TCP
    assert asyncio.run(_accepted_nodelay(rebuilt)) != 0


# -- spreading connections over workers (serving.balance) ---------------------------------------


class _Count(asyncio.Protocol):
    made: list[asyncio.BaseTransport]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)


def _queued_connections(n: int) -> tuple[socket.socket, list[socket.socket]]:
    listener = bind_socket("127.0.0.1", 0)
    listener.setblocking(False)
    clients = [socket.create_connection(listener.getsockname()[:2], timeout=5) for _ in range(n)]
    return listener, clients


def _run(loop: asyncio.AbstractEventLoop, seconds: float = 0.05) -> None:
    loop.run_until_complete(asyncio.sleep(seconds))


def test_balanced_loop_takes_one_queued_connection_per_wake_up() -> None:
    from serving.balance import BalancedAcceptEventLoop, event_loop_factory

    assert issubclass(event_loop_factory(None), BalancedAcceptEventLoop)  # this Python is supported
    listener, clients = _queued_connections(3)
    made: list[asyncio.BaseTransport] = []
    protocol = type("P", (_Count,), {"made": made})
    loop = event_loop_factory(None)()
    assert isinstance(loop, BalancedAcceptEventLoop)
    try:
        # What the loop runs when the listening socket turns readable (uvicorn passes 2048).
        loop._accept_connection(protocol, listener, None, None, 2048)
        _run(loop)
        assert len(made) == 1  # asyncio's own loop would have taken all three
        loop._accept_connection(protocol, listener, None, None, 2048)
        _run(loop)
        assert len(made) == 2
        assert loop.open_connections() == 2
    finally:
        for transport in made:
            transport.close()
        _run(loop, 0)
        loop.close()
        for client in clients:
            client.close()
        listener.close()


def test_a_worker_holding_more_connections_defers_to_the_least_loaded(tmp_path: os.PathLike[str]) -> None:
    from pathlib import Path

    from serving.balance import ConnectionBoard, event_loop_factory

    path = Path(tmp_path) / "board"
    ConnectionBoard.create(path, 2)
    me, peer = ConnectionBoard(path, 0, 2), ConnectionBoard(path, 1, 2)
    assert me.least_other() is None  # the peer has not started: nothing to defer to
    listener, clients = _queued_connections(3)
    made: list[asyncio.BaseTransport] = []
    protocol = type("P", (_Count,), {"made": made})
    loop = event_loop_factory(me)()
    # Pauses that never end by themselves: the test resumes them by hand.
    loop.defer_seconds = loop.max_defer_seconds = 3600.0  # type: ignore[attr-defined]

    def listening() -> bool:
        return listener.fileno() in loop._selector.get_map()  # type: ignore[attr-defined]

    def resume_now() -> None:
        scheduled = loop._scheduled  # type: ignore[attr-defined]
        (pause,) = [h for h in scheduled if h._callback == loop._resume_accepting and not h.cancelled()]
        callback, args = pause._callback, pause._args
        pause.cancel()
        callback(*args)

    try:
        loop._accept_connection(protocol, listener, None, None, 2048)
        _run(loop)
        assert len(made) == 1 and me.read()[0] == 0  # published before accepting
        peer.publish(0)  # an idle peer: this worker (1 connection) leaves the next one to it
        loop._accept_connection(protocol, listener, None, None, 2048)
        _run(loop)
        assert len(made) == 1 and me.read()[0] == 1
        assert not listening()  # paused
        # Nobody took it: after the pause this worker accepts one connection itself...
        resume_now()
        _run(loop)
        assert len(made) == 2
        # ... and, still holding more than the peer, pauses again for the next.
        assert not listening()
        resume_now()
        _run(loop)
        assert len(made) == 3
        # A peer holding as many connections does not hold this worker back.
        extra = socket.create_connection(listener.getsockname()[:2], timeout=5)
        clients.append(extra)
        peer.publish(5)
        loop._accept_connection(protocol, listener, None, None, 2048)
        _run(loop)
        assert len(made) == 4
        ConnectionBoard.clear(path, 1)
        assert me.least_other() is None
    finally:
        for transport in made:
            transport.close()
        _run(loop, 0)
        loop.close()
        for client in clients:
            client.close()
        listener.close()


def test_stale_runtime_dirs_of_dead_supervisors_are_removed(tmp_path: os.PathLike[str]) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from serving.supervisor import RUNTIME_PREFIX, remove_stale_runtime_dirs

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tmp = Path(tmp_path)
    stale = tmp / f"{RUNTIME_PREFIX}{dead.pid}-abc"
    alive = tmp / f"{RUNTIME_PREFIX}{os.getpid()}-def"
    other = tmp / f"{RUNTIME_PREFIX}old-style"
    for path in (stale, alive, other):
        (path / "metrics").mkdir(parents=True)
    remove_stale_runtime_dirs(tmp)
    assert not stale.exists()
    assert alive.exists() and other.exists()


# -- limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "limit", "exceeds"),
    [
        (b'{"a": [[1]]}', 3, False),
        (b'{"a": [[1]]}', 2, True),
        (b'{"a": "[[[[[[[[[["}', 2, False),  # brackets in strings do not nest
        (b'{"a": "\\"[[[[[[[[[[", "b": 1}', 2, False),  # nor after an escaped quote
        (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 64, True),
        (b"[" * 65 + b"]" * 65, 64, True),
        (b"[" * 64 + b"]" * 64, 64, False),
        (b"[[1], [2], [3], [4], [5], [6], [7], [8], [9], [10]]", 2, False),  # many, shallow
        (b"not json at all", 2, False),
    ],
)
def test_json_depth(body: bytes, limit: int, exceeds: bool) -> None:
    from serving.limits import json_depth_exceeds

    assert json_depth_exceeds(body, limit) is exceeds


def test_error_messages_do_not_echo_the_request() -> None:
    from serving.limits import MAX_ECHO_CHARS, MAX_MESSAGE_CHARS, bounded_message

    short = "Invalid input. Error: 'x'\nInput: \n{bad}\n"
    assert bounded_message(short) == short
    echoed = bounded_message("Invalid input. Error: 'x'\nInput: \n" + "y" * 1_000_000)
    assert echoed.count("y") == MAX_ECHO_CHARS and echoed.endswith(f"[{1_000_000 - MAX_ECHO_CHARS} more characters]")
    long = bounded_message("z" * 10_000)
    assert long.count("z") == MAX_MESSAGE_CHARS and "more characters]" in long


# -- model download within a budget -------------------------------------------------------------


class _Clock:
    """A fake monotonic clock advanced by the fake sleep: the retry policy without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_download_retries_transient_failures_then_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    from serving import download

    clock = _Clock()
    monkeypatch.setattr(download.time, "monotonic", lambda: clock.now)
    calls: list[dict[str, str | None]] = []

    def fetch(uri: str, dst: str | None) -> str:
        calls.append({k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")})
        if len(calls) < 4:
            raise ConnectionError("registry down")
        return "/tmp/model"

    assert download.download_with_budget("models:/m/1", None, 60, fetch=fetch, sleep=clock.sleep) == "/tmp/model"
    assert clock.sleeps == [1.0, 2.0, 4.0]  # growing pauses
    # MLflow's own retries are off during the download, its timeout within the budget
    assert calls[0] == {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # restored afterwards


def test_download_gives_up_when_the_budget_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    from serving import download

    clock = _Clock()
    monkeypatch.setattr(download.time, "monotonic", lambda: clock.now)

    def fetch(uri: str, dst: str | None) -> str:
        clock.now += 3  # each attempt takes 3 s
        raise ConnectionError("connection refused")

    with pytest.raises(download.DownloadError, match=r"gave up after \d+ attempt\(s\) in 2\d s .*connection refused"):
        download.download_with_budget("models:/m/1", None, 20, fetch=fetch, sleep=clock.sleep)
    assert clock.now <= 20 + 3


def test_download_does_not_retry_what_retrying_cannot_fix() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    from serving import download

    attempts = []

    def fetch(uri: str, dst: str | None) -> str:
        attempts.append(uri)
        raise MlflowException("Registered Model with name=m not found", error_code=RESOURCE_DOES_NOT_EXIST)

    with pytest.raises(download.DownloadError, match="not found"):
        download.download_with_budget("models:/m/1", None, 60, fetch=fetch, sleep=lambda s: None)
    assert len(attempts) == 1


def test_an_attempt_that_hangs_is_abandoned_at_the_deadline() -> None:
    import threading

    from serving import download

    release = threading.Event()

    def fetch(uri: str, dst: str | None) -> str:
        release.wait(30)
        return "late"

    try:
        with pytest.raises(download.DownloadError, match="still running"):
            download.download_with_budget("models:/m/1", None, 1, fetch=fetch)
    finally:
        release.set()


# -- drain primitives (real sockets) -------------------------------------------------------------


def test_a_stopped_listener_keeps_its_queue_and_drops_new_connections() -> None:
    from serving.drain import accept_queue_length, stop_accepting

    listener, clients = _queued_connections(3)
    try:
        assert accept_queue_length(listener) == 3
        assert stop_accepting(listener)
        with pytest.raises(TimeoutError):  # the SYN goes unanswered
            socket.create_connection(listener.getsockname()[:2], timeout=0.5)
        assert accept_queue_length(listener) == 3  # the queued ones are still there ...
        accepted = [listener.accept()[0] for _ in range(3)]  # ... and can be accepted
        assert accept_queue_length(listener) == 0
        for conn, client in zip(accepted, clients, strict=True):
            client.sendall(b"x")
            assert conn.recv(1) == b"x"
            conn.close()
    finally:
        for client in clients:
            client.close()
        listener.close()


def test_drain_flag_is_shared_between_processes(tmp_path: os.PathLike[str]) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from serving.drain import DrainFlag

    path = Path(tmp_path) / "draining"
    flag = DrainFlag.create(path)
    reader = DrainFlag(path)
    assert not reader.raised
    flag.raise_()
    assert reader.raised
    code = "import sys; from serving.drain import DrainFlag; sys.exit(0 if DrainFlag(sys.argv[1]).raised else 1)"
    assert subprocess.run([sys.executable, "-c", code, str(path)], timeout=60).returncode == 0


@pytest.mark.parametrize(
    ("cap", "soft", "hard", "expected"),
    [
        (1000, 1_048_576, 1_048_576, (None, 1000)),  # plenty
        (1000, -1, -1, (None, 1000)),  # unlimited
        (1000, 1024, 1_048_576, (1064, 1000)),  # the soft limit is raised to fit
        (1000, 1024, -1, (1064, 1000)),
        (1000, 1024, 1024, (None, 960)),  # the hard limit is too low: the cap comes down
        (1000, 512, 800, (800, 736)),
        (10, 20, 20, (None, 1)),
    ],
)
def test_the_connection_cap_fits_the_open_file_limit(
    cap: int, soft: int, hard: int, expected: tuple[int | None, int]
) -> None:
    from serving.worker import fit_connection_cap

    assert fit_connection_cap(cap, soft, hard) == expected


# -- the /invocations handler in-process (real model, ASGI messages) --------------------------------


def _call_handler(
    handler: object, body: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": headers}
    asyncio.run(handler(scope, receive, send))  # type: ignore[operator]
    start, end = sent
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}  # type: ignore[attr-defined]
    return int(start["status"]), response_headers, end["body"]  # type: ignore[call-overload, return-value]


@pytest.mark.parametrize("debug", [False, True])
def test_stack_traces_reach_a_body_only_when_debugging(slow_model: str, debug: bool) -> None:
    import json

    import mlflow.pyfunc

    from serving.invocations import Invocations
    from serving.metrics import Metrics

    handler = Invocations(
        mlflow.pyfunc.load_model(slow_model), Metrics(), timeout=30, max_body=1 << 20, max_depth=64, debug=debug
    )
    headers = [(b"content-type", b"application/json"), (b"x-request-id", b"r-1")]
    failing = json.dumps({"dataframe_split": {"columns": ["fail"], "data": [[1]]}}).encode()
    status, response_headers, body = _call_handler(handler, failing, headers)
    assert status == 500 and response_headers["x-request-id"] == "r-1"
    payload = json.loads(body)
    if debug:
        assert "ValueError: the model failed on purpose" in payload["stack_trace"]
    else:
        assert "stack_trace" not in payload and "Traceback" not in body.decode()
    # bad input: MLflow attaches a stack trace to some of its 400s; it is dropped the same way
    status, _, body = _call_handler(handler, b'{"dataframe_split": {"columns": ["x"], "data": "x"}}', headers)
    assert status == 400
    assert ("stack_trace" in json.loads(body)) is debug


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, "off"),
        (["--access-log"], {}, "text"),  # the bare flag of earlier releases: uvicorn's log
        (["--access-log", "json"], {"SERVING_ACCESS_LOG": "off"}, "json"),
        ([], {"SERVING_ACCESS_LOG": "JSON"}, "json"),
        ([], {"SERVING_ACCESS_LOG": "1"}, "text"),
        ([], {"SERVING_ACCESS_LOG": "0"}, "off"),
    ],
)
def test_access_log_format(argv: list[str], env: dict[str, str], expected: str) -> None:
    assert parse_settings(argv, env=env).access_log == expected


def test_access_log_bad_value_names_the_variable() -> None:
    with pytest.raises(SystemExit, match="SERVING_ACCESS_LOG='xml' is not one of json, text, off"):
        parse_settings([], env={"SERVING_ACCESS_LOG": "xml"})


def test_capture_settings_from_flags_and_env() -> None:
    env = {"SERVING_CAPTURE_URL": "http://monitor:8000/v1/capture", "SERVING_CAPTURE_SAMPLE": "0.25"}
    settings = parse_settings([], env=env)
    assert (settings.capture_url, settings.capture_sample, settings.capture_queue) == (
        "http://monitor:8000/v1/capture",
        0.25,
        10_000,
    )
    flags = ["--capture-url", "https://m.example/c", "--capture-sample", "1", "--capture-queue", "50"]
    settings = parse_settings(flags, env=env)
    assert (settings.capture_url, settings.capture_sample, settings.capture_queue) == ("https://m.example/c", 1.0, 50)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {"SERVING_CAPTURE_SAMPLE": "1.5"}, "--capture-sample / SERVING_CAPTURE_SAMPLE must be between 0 and 1"),
        (["--capture-sample", "-0.1"], {}, "--capture-sample / SERVING_CAPTURE_SAMPLE must be between 0 and 1"),
        ([], {"SERVING_CAPTURE_QUEUE": "0"}, "--capture-queue / SERVING_CAPTURE_QUEUE must be between 1 and 1000000"),
        ([], {"SERVING_CAPTURE_URL": "monitor:8000"}, "SERVING_CAPTURE_URL='monitor:8000' is not an http"),
        (["--capture-url", "ftp://m/c"], {}, "--capture-url='ftp://m/c' is not an http"),
        (["--capture-url", "http://m:99999/c"], {}, "has an invalid port"),
    ],
)
def test_capture_settings_out_of_bounds(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(SystemExit, match=re.escape(message)):
        parse_settings(argv, env=env)


def test_capture_queue_full_drops_and_counts_without_blocking() -> None:
    from serving.capture import Capture
    from serving.metrics import Metrics

    metrics = Metrics()
    capture = Capture("http://127.0.0.1:9/c", 1.0, 3, "m", "1", metrics)
    for i in range(5):
        capture.offer(f"r{i}", None, "{}", 1)
    assert [entry[0] for entry in capture.queue] == ["r0", "r1", "r2"]
    assert metrics.capture_dropped.labels(reason="queue_full")._value.get() == 2
