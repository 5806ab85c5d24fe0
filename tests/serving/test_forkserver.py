"""The fork server (``serving.zygote``): workers forked from one process that imported MLflow.

On the real runtime: which processes exist (``/proc``), what each worker answers, and what the
supervisor does when the fork server is killed, refuses to fork, or is still importing when the
server is told to stop.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from serving.zygote import READY_TIMEOUT_SECONDS, flavor_module
from tests.serving.conftest import HERE, IrisModel, ServerFactory
from tests.serving.helpers import (
    WAIT,
    answers_by_worker,
    children_of,
    command_line,
    frame,
    kill_quietly,
    process_name,
    wait_until,
    workers_of,
)


def fork_servers_of(pid: int) -> list[int]:
    return [child for child in children_of(pid) if process_name(child) == "serving-zygote"]


def forked(pid: int) -> bool:
    """A worker forked by the fork server keeps its command line; one started on its own runs
    ``python -m serving.worker``."""
    argv = command_line(pid)
    if "serving.zygote" in argv:
        return True
    assert "serving.worker" in argv, argv
    return False


def parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def predicts(url: str, iris: IrisModel) -> bool:
    records = iris.features.head(5).to_dict(orient="records")
    response = httpx.post(f"{url}/invocations", json={"dataframe_records": records}, timeout=WAIT)
    return response.status_code == 200 and response.json() == {"predictions": iris.expected[:5]}


def test_flavor_module_is_read_from_a_local_mlmodel_only(iris_model: IrisModel, tmp_path: Path) -> None:
    assert flavor_module(iris_model.path) == "mlflow.sklearn"
    assert flavor_module(f"file://{iris_model.path}") == "mlflow.sklearn"
    assert flavor_module("models:/fraud/7") is None
    assert flavor_module("s3://bucket/model") is None
    assert flavor_module(str(tmp_path)) is None  # no MLmodel
    (tmp_path / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: os; import x\n")
    assert flavor_module(str(tmp_path)) is None  # not a module name


def test_forked_workers_serve_are_replaced_by_forks_and_outlive_the_fork_server(
    start_server: ServerFactory, iris_model: IrisModel
) -> None:
    server = start_server(iris_model.path, workers=2)  # --fork-server auto: on with 2 workers
    workers = wait_until(lambda: len(workers_of(server.pid)) == 2 and workers_of(server.pid), "2 workers")
    (zygote,) = fork_servers_of(server.pid)
    # Forked, yet children of the supervisor (a subreaper), which reaps and restarts them.
    assert all(forked(pid) and parent_of(pid) == server.pid for pid in workers)
    assert predicts(server.url, iris_model)

    kill_quietly(workers[0])
    wait_until(lambda: len(set(workers_of(server.pid)) - {workers[0]}) == 2, "a replacement")
    replacement = (set(workers_of(server.pid)) - set(workers)).pop()
    assert forked(replacement) and parent_of(replacement) == server.pid
    server.wait_ready(WAIT)
    assert predicts(server.url, iris_model)

    # Without its fork server the supervisor starts the next replacement itself; the forked
    # workers keep serving meanwhile.
    kill_quietly(zygote)
    wait_until(lambda: not fork_servers_of(server.pid), "the fork server to be reaped")
    assert predicts(server.url, iris_model)
    survivors = workers_of(server.pid)
    kill_quietly(survivors[0])
    wait_until(lambda: len(set(workers_of(server.pid)) - {survivors[0]}) == 2, "a replacement")
    (started,) = set(workers_of(server.pid)) - set(survivors)
    assert not forked(started)
    server.wait_ready(WAIT)
    assert predicts(server.url, iris_model)


@pytest.mark.parametrize(("workers", "args"), [(2, ["--fork-server", "off"]), (1, [])])
def test_without_the_fork_server_workers_start_on_their_own(
    start_server: ServerFactory, iris_model: IrisModel, workers: int, args: list[str]
) -> None:
    server = start_server(iris_model.path, workers=workers, extra_args=args)
    pids = wait_until(lambda: len(workers_of(server.pid)) == workers and workers_of(server.pid), "the workers")
    assert not fork_servers_of(server.pid)
    assert not any(forked(pid) for pid in pids)
    assert predicts(server.url, iris_model)


def test_forked_workers_do_not_share_numpy_random_state(start_server: ServerFactory, slow_model: str) -> None:
    """numpy seeds its global generator once, at import, in the fork server: without a re-seed
    after the fork every worker would draw the same sequence."""
    server = start_server(slow_model, workers=3, extra_args=["--fork-server", "on"])
    assert all(forked(pid) for pid in workers_of(server.pid))
    first_draws = answers_by_worker(server.url, frame(random=[0]), 3)
    assert len({tuple(draws) for draws in first_draws.values()}) == 3, first_draws


def test_a_thread_running_after_the_imports_makes_the_supervisor_start_workers_itself(
    start_server: ServerFactory, iris_model: IrisModel, tmp_path: Path
) -> None:
    """fork() would copy a lock that thread holds; the fork server refuses and says why."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), name='started-by-sitecustomize', daemon=True).start()\n"
    )
    log = tmp_path / "server.log"
    with open(log, "wb") as stderr:
        server = start_server(
            iris_model.path, workers=2, env={"PYTHONPATH": str(site), "SERVING_LOG_LEVEL": "info"}, stderr=stderr
        )
        pids = wait_until(lambda: len(workers_of(server.pid)) == 2 and workers_of(server.pid), "2 workers")
        assert not any(forked(pid) for pid in pids)
        assert predicts(server.url, iris_model)
    text = log.read_text()
    assert "Python threads running after the imports (started-by-sitecustomize): unsafe to fork" in text
    assert "Traceback" not in text


def test_sigterm_while_the_fork_server_imports_stops_without_starting_a_worker(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    import mlflow.pyfunc

    model = str(tmp_path / "gated")
    mlflow.pyfunc.save_model(model, loader_module="tests.serving.gated_flavor", data_path=str(HERE / "gated_flavor.py"))
    gate = tmp_path / "import-gate"
    log = tmp_path / "server.log"
    with open(log, "wb") as stderr:
        server = start_server(
            model,
            workers=2,
            wait_ready=False,
            env={"GATED_FLAVOR_IMPORT_GATE": str(gate), "SERVING_LOG_LEVEL": "info"},
            stderr=stderr,
        )
        wait_until(lambda: fork_servers_of(server.pid), "the fork server")
        assert not workers_of(server.pid)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=WAIT) == 0
    text = log.read_text()
    assert "received SIGTERM" in text
    assert "forked worker" not in text and "started worker" not in text
    assert "Traceback" not in text


def test_a_gated_import_then_serves_from_forked_workers(start_server: ServerFactory, tmp_path: Path) -> None:
    """The same model once its import is let through: the fork server's warm-up ends, both
    workers are forked and answer (the loader module came from the fork server's import)."""
    import mlflow.pyfunc

    model = str(tmp_path / "gated")
    mlflow.pyfunc.save_model(model, loader_module="tests.serving.gated_flavor", data_path=str(HERE / "gated_flavor.py"))
    gate = tmp_path / "import-gate"
    server = start_server(model, workers=2, wait_ready=False, env={"GATED_FLAVOR_IMPORT_GATE": str(gate)})
    wait_until(lambda: fork_servers_of(server.pid), "the fork server")
    gate.touch()
    server.wait_ready(WAIT)
    assert all(forked(pid) for pid in workers_of(server.pid))
    response = httpx.post(f"{server.url}/invocations", json=frame(x=[1, 2, 3]), timeout=WAIT)
    assert response.json() == {"predictions": [1, 1, 1]}


SLOW_FORK_SITECUSTOMIZE = """\
import os, time
if b"serving.zygote" in open("/proc/self/cmdline", "rb").read():
    ZYGOTE = os.getpid()
    def _slow(gate=os.environ["SLOW_FORK_GATE"]):
        # Once the gate exists, the fork server answers later than the supervisor waits for it
        # (it sleeps after forking the middle process, which forks the worker and exits).
        if os.path.exists(gate):
            if os.getpid() == ZYGOTE:
                time.sleep(12)
            else:
                open(gate + ".forked", "w").close()
    os.register_at_fork(after_in_parent=_slow)
"""


@pytest.mark.slow
def test_a_worker_forked_after_the_supervisor_gave_up_on_the_fork_server_is_stopped(
    start_server: ServerFactory, iris_model: IrisModel, tmp_path: Path
) -> None:
    """The fork server forks the worker but its answer (the pid) comes too late: the supervisor
    falls back to python -m serving.worker, and the forked worker, re-parented to it all the
    same, must not serve on unknown beside the replacement (two workers in one slot, never
    signalled at stop)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_FORK_SITECUSTOMIZE)
    gate = tmp_path / "slow-fork"
    server = start_server(
        iris_model.path,
        workers=2,
        env={"PYTHONPATH": str(site), "SLOW_FORK_GATE": str(gate)},
        extra_args=["--fork-server", "on"],
    )
    originals = wait_until(lambda: len(workers_of(server.pid)) == 2 and workers_of(server.pid), "2 workers")
    gate.touch()
    kill_quietly(originals[0])
    # The supervisor gives up after FORK_TIMEOUT_SECONDS and starts a worker itself ...
    def started_by_the_supervisor() -> list[int]:
        return [p for p in children_of(server.pid) if p not in originals and "serving.worker" in command_line(p)]

    fallback = wait_until(started_by_the_supervisor, "a worker started with python -m serving.worker")
    # ... while the worker the fork server did fork has been re-parented to it.
    assert Path(f"{gate}.forked").exists()
    wait_until(
        lambda: set(children_of(server.pid)) == {originals[1], *fallback},
        "only the known workers to be left",
    )
    assert predicts(server.url, iris_model)


class _SilentForkServer:
    """A fork server that never says it is ready (an import stuck on I/O)."""

    def __init__(self, started: float) -> None:
        self.ready = False
        self.started = started
        self.closed = False
        self.pid = -1

    def poll_ready(self, timeout: float) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(("age", "gives_up"), [(1.0, False), (READY_TIMEOUT_SECONDS + 1, True)])
def test_a_fork_server_that_never_gets_ready_is_given_up(tmp_path: Path, age: float, gives_up: bool) -> None:
    import time

    from serving.config import Settings
    from serving.supervisor import Supervisor, bind_socket

    sock = bind_socket("127.0.0.1", 0)
    try:
        supervisor = Supervisor(
            settings=Settings(), workers=2, sock=sock, runtime_dir=tmp_path, multiproc_dir=tmp_path / "metrics"
        )
        silent = _SilentForkServer(started=time.monotonic() - age)
        supervisor.fork_server = silent  # type: ignore[assignment]
        supervisor._pending = [0, 1]
        spawned: list[int] = []
        supervisor.spawn = lambda slot, preload=False: spawned.append(slot)  # type: ignore[method-assign]
        supervisor._start_pending()
    finally:
        sock.close()
    if gives_up:
        assert (spawned, supervisor.fork_server, silent.closed) == ([0, 1], None, True)
    else:
        assert (spawned, supervisor.fork_server, silent.closed) == ([], silent, False)


def test_ctrl_c_drains_and_stops_without_restarting_or_a_traceback(
    start_server: ServerFactory, iris_model: IrisModel, tmp_path: Path
) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C: the workers leave it to the
    supervisor, which drains and stops them with SIGTERM."""
    import os

    log = tmp_path / "server.log"
    with open(log, "wb") as stderr:
        # A drain delay: workers that stopped on SIGINT themselves would exit inside it, and the
        # supervisor would take them for crashed ones.
        server = start_server(
            iris_model.path, workers=2, env={"SERVING_LOG_LEVEL": "info"}, stderr=stderr, drain_seconds=5
        )
        wait_until(lambda: len(workers_of(server.pid)) == 2, "2 workers")
        os.killpg(server.pid, signal.SIGINT)
        assert server.process is not None and server.process.wait(timeout=WAIT) == 0
    text = log.read_text()
    assert "received SIGINT" in text
    assert "exited unexpectedly" not in text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text


@pytest.mark.parametrize(
    ("argv", "env", "want"),
    [
        ([], {}, "auto"),
        ([], {"SERVING_FORK_SERVER": "off"}, "off"),
        ([], {"SERVING_FORK_SERVER": "1"}, "on"),
        ([], {"SERVING_FORK_SERVER": "false"}, "off"),
        (["--fork-server", "off"], {"SERVING_FORK_SERVER": "on"}, "off"),  # the flag wins
    ],
)
def test_fork_server_setting(argv: list[str], env: dict[str, str], want: str) -> None:
    from serving.config import parse_settings

    assert parse_settings(argv, env=env).fork_server == want


def test_a_bad_fork_server_setting_names_the_variable() -> None:
    from serving.config import parse_settings

    with pytest.raises(SystemExit, match="SERVING_FORK_SERVER='maybe' is not one of auto, on, off"):
        parse_settings([], env={"SERVING_FORK_SERVER": "maybe"})
