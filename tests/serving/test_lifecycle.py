"""Process behaviour of the runtime: loading, timeouts, SIGTERM, crashed workers, bad models.

The slow model (``slow_model.py``) is held up with gate files, so every "while X is happening"
below is a state the test waits for, not a sleep it hopes is long enough.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.local import LocalServer, ServerError, run_local
from tests.serving.conftest import SERVER_ENV, IrisModel
from tests.serving.helpers import (
    WAIT,
    children_of,
    frame,
    kill_quietly,
    metric,
    parse_metrics,
    wait_until,
    workers_of,
)


def scrape(metrics_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The samples on the metrics port (``LocalServer.metrics_url``)."""
    response = httpx.get(f"{metrics_url}/metrics", timeout=30)
    assert response.status_code == 200
    return parse_metrics(response.text)


class Background:
    """An HTTP request running in a thread."""

    def __init__(self, url: str, payload: dict[str, Any]) -> None:
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(url, payload), daemon=True)
        self._thread.start()

    def _run(self, url: str, payload: dict[str, Any]) -> None:
        try:
            self.response = httpx.post(f"{url}/invocations", json=payload, timeout=WAIT)
        except BaseException as exc:
            self.error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> httpx.Response:
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "request did not finish"
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


def refuses_connections(url: str) -> bool:
    """True once nothing listens on ``url``'s port. A stopping server first drops new
    connection attempts (the SYN goes unanswered, the connect times out) until the last copy
    of its listener is closed."""
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return False
    except ConnectionRefusedError:
        return True
    except TimeoutError:
        return False


# -- loading ----------------------------------------------------------------------------------


def test_ping_is_503_until_the_model_is_loaded_and_version_answers_meanwhile(
    start_server: Callable[..., LocalServer], slow_model: str, tmp_path: Path
) -> None:
    gate = tmp_path / "load-gate"
    server = start_server(
        slow_model,
        env={"SERVING_MODEL_CONFIG": json.dumps({"load_gate": str(gate)})},
        wait_ready=False,
    )
    url = server.url

    def version() -> httpx.Response | None:
        try:
            response = httpx.get(f"{url}/version", timeout=5)
        except httpx.TransportError:
            return None
        return response if response.status_code == 200 else None

    # The liveness probe's endpoint answers while the model is still loading...
    assert wait_until(version, "/version").json()["ready"] is False
    # ... readiness answers 503, and so does scoring.
    for path in ("/ping", "/health"):
        assert httpx.get(f"{url}{path}", timeout=5).status_code == 503
    # A scoring request that arrives meanwhile waits for the model rather than failing.
    early = Background(url, frame(x=[3]))
    samples = scrape(server.metrics_url)
    assert metric(samples, "model_requests_total", route="/ping", status="503") == 1
    assert metric(samples, "model_load_seconds") == 0
    wait_until(lambda: metric(scrape(server.metrics_url), "model_requests_in_flight") == 1, "the early request")
    assert not early.done()

    gate.touch()
    assert early.result().json() == {"predictions": [6]}
    server.wait_ready(WAIT)
    assert httpx.get(f"{url}/version", timeout=5).json()["ready"] is True
    assert httpx.post(f"{url}/invocations", json=frame(x=[1, 2]), timeout=10).json() == {"predictions": [2, 4]}
    assert metric(scrape(server.metrics_url), "model_load_seconds") > 0


def test_a_model_that_cannot_load_stops_the_server(start_server: Callable[..., LocalServer], tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="exited with code 1"):
        start_server(str(tmp_path / "no-such-model"), workers=2)


# -- timeout ----------------------------------------------------------------------------------


def test_a_request_beyond_the_timeout_answers_504(start_server: Callable[..., LocalServer], slow_model: str) -> None:
    server = start_server(slow_model, timeout=1)
    response = httpx.post(f"{server.url}/invocations", json=frame(sleep=[3]), timeout=WAIT)
    assert response.status_code == 504
    assert response.text == "Request processing time exceeded limit"  # MLflow's own timeout answer
    # The worker keeps serving afterwards.
    ok = httpx.post(f"{server.url}/invocations", json=frame(x=[5]), timeout=WAIT)
    assert ok.json() == {"predictions": [10]}
    samples = scrape(server.metrics_url)
    assert metric(samples, "model_requests_total", route="/invocations", status="504") == 1
    assert metric(samples, "model_requests_total", route="/invocations", status="200") == 1


# -- SIGTERM ----------------------------------------------------------------------------------


def test_sigterm_stops_accepting_and_lets_the_in_flight_request_finish(
    start_server: Callable[..., LocalServer], slow_model: str, tmp_path: Path
) -> None:
    server = start_server(slow_model, workers=2)
    gate = tmp_path / "gate"
    request = Background(server.url, frame(gate=[str(gate)], x=[21]))
    wait_until(Path(f"{gate}.started").exists, "the request to reach the model")

    os.kill(server.pid, signal.SIGTERM)
    # The server stops listening...
    wait_until(lambda: refuses_connections(server.url), "the listener to close")
    # ... while the request is still held by the model: it has not been cut off.
    assert not request.done()
    assert server.process is not None and server.process.poll() is None

    gate.touch()
    response = request.result()
    assert response.status_code == 200
    assert response.json() == {"predictions": [42]}
    assert server.process.wait(timeout=WAIT) == 0


@dataclass
class Outcomes:
    """What the clients of ``test_sigterm_under_load_loses_no_accepted_request`` saw."""

    answered: int = 0  # a complete HTTP answer, whatever its status
    ok: int = 0
    ok_after_sigterm: int = 0
    closed_by_server_after_sigterm: int = 0  # answers with Connection: close
    refused: int = 0  # connect() refused: nothing listens any more (fine)
    unanswered_connects: int = 0  # SYN dropped while the listener stopped accepting (fine)
    lost: list[str] = field(default_factory=list)  # connected, request sent, no answer: a loss
    lock: threading.Lock = field(default_factory=threading.Lock)


def _client(host: str, port: int, body: bytes, sigterm: threading.Event, out: Outcomes, deadline: float) -> None:
    """Keep-alive requests, one after the other, until the server refuses connections."""
    conn: http.client.HTTPConnection | None = None
    while time.monotonic() < deadline:
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=15)
            try:
                conn.connect()
            except ConnectionRefusedError:
                with out.lock:
                    out.refused += 1
                return
            except TimeoutError:
                with out.lock:
                    out.unanswered_connects += 1
                conn = None
                continue
        after = sigterm.is_set()
        try:
            conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            # the connection was established and the request sent: this one is lost
            with out.lock:
                out.lost.append(f"{type(exc).__name__}: {exc} (after SIGTERM: {after})")
            conn.close()
            conn = None
            continue
        with out.lock:
            out.answered += 1
            if response.status == 200:
                out.ok += 1
                if after:
                    out.ok_after_sigterm += 1
            if after and (response.getheader("connection") or "").lower() == "close":
                out.closed_by_server_after_sigterm += 1
        if response.will_close:
            conn.close()
            conn = None


@pytest.mark.slow
def test_sigterm_under_load_loses_no_accepted_request(
    start_server: Callable[..., LocalServer], iris_model: IrisModel
) -> None:
    """Continuous keep-alive load across SIGTERM: readiness turns 503 at once, requests keep
    being answered during the drain delay, then connections are refused; no request that got a
    connection goes unanswered (EOF, reset or timeout)."""
    # Long enough for the two probes below to land inside the drain window on a loaded machine.
    drain = 3.0
    server = start_server(iris_model.path, workers=2, drain_seconds=drain)
    host, port = server.url.rsplit("/", 1)[-1].rsplit(":", 1)
    records = iris_model.features.head(2).to_dict(orient="records")
    body = json.dumps({"dataframe_records": records}).encode()
    sigterm = threading.Event()
    out = Outcomes()
    deadline = time.monotonic() + WAIT
    clients = [
        threading.Thread(target=_client, args=(host, int(port), body, sigterm, out, deadline), daemon=True)
        for _ in range(6)
    ]
    for t in clients:
        t.start()
    wait_until(lambda: out.ok >= 50, "load to build up")

    os.kill(server.pid, signal.SIGTERM)
    sigterm.set()
    # readiness goes at once, while scoring goes on
    assert httpx.get(f"{server.url}/ping", timeout=10).status_code == 503
    assert httpx.get(f"{server.url}/version", timeout=10).status_code == 200
    for t in clients:
        t.join(WAIT)
    assert not any(t.is_alive() for t in clients)
    assert server.process is not None and server.process.wait(timeout=WAIT) == 0

    assert out.lost == []
    assert out.refused == len(clients)  # every client ended on "connection refused"
    assert out.ok == out.answered and out.ok_after_sigterm > 0
    assert out.closed_by_server_after_sigterm > 0


def test_the_drain_delay_keeps_serving_with_readiness_503(
    start_server: Callable[..., LocalServer], iris_model: IrisModel
) -> None:
    server = start_server(iris_model.path, workers=1, drain_seconds=30)
    records = iris_model.features.head(1).to_dict(orient="records")
    os.kill(server.pid, signal.SIGTERM)
    wait_until(lambda: httpx.get(f"{server.url}/ping", timeout=10).status_code == 503, "readiness to turn 503")
    assert httpx.get(f"{server.url}/health", timeout=10).json() == {
        "error_code": "TEMPORARILY_UNAVAILABLE",
        "message": "server is shutting down",
    }
    response = httpx.post(f"{server.url}/invocations", json={"dataframe_records": records}, timeout=10)
    assert response.json() == {"predictions": iris_model.expected[:1]}
    assert response.headers["connection"] == "close"  # clients reconnect (elsewhere, soon)
    samples = scrape(server.metrics_url)
    assert metric(samples, "model_requests_total", route="/ping", status="503") >= 1
    # a second SIGTERM ends the drain delay
    os.kill(server.pid, signal.SIGTERM)
    assert server.process is not None and server.process.wait(timeout=WAIT) == 0


# -- registry down ----------------------------------------------------------------------------


def test_a_registry_that_is_down_exits_1_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    log = tmp_path / "server.log"
    budget = 4
    with open(log, "wb") as err:
        server = LocalServer(
            "models:/fraud-detector/1",
            workers=2,
            env={**SERVER_ENV, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{closed_port}", "SERVING_LOG_LEVEL": "info"},
            extra_args=["--download-timeout", str(budget)],
            stderr=err,
        )
        # MLflow's own retries alone would keep it unready for minutes; this must end well before.
        with pytest.raises(ServerError, match="exited with code 1"):
            server.start(startup_timeout=WAIT)
    text = log.read_text()
    retries = [ln for ln in text.splitlines() if "download of models:/fraud-detector/1 failed (attempt" in ln]
    assert len(retries) >= 2, text
    assert "Connection refused" in retries[0]
    final = [ln for ln in text.splitlines() if "gave up after" in ln]
    assert final and "SERVING_DOWNLOAD_TIMEOUT_SECONDS=4" in final[-1]
    # one worker tried; the other took its verdict instead of a second budget
    assert len({re.search(r"\[(\d+)\]", ln).group(1) for ln in retries}) == 1  # type: ignore[union-attr]
    assert "Traceback" not in text


# -- crashed worker ---------------------------------------------------------------------------


def test_a_killed_worker_is_replaced_and_metrics_stay_right(
    start_server: Callable[..., LocalServer], slow_model: str, tmp_path: Path
) -> None:
    from prometheus_client.multiprocess import MultiProcessCollector

    prom = tmp_path / "prom"
    server = start_server(slow_model, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(prom)})
    for _ in range(5):
        assert httpx.post(f"{server.url}/invocations", json=frame(x=[1]), timeout=WAIT).status_code == 200

    gate = tmp_path / "gate"
    request = Background(server.url, frame(gate=[str(gate)]))
    wait_until(Path(f"{gate}.started").exists, "the request to reach the model")
    assert metric(scrape(server.metrics_url), "model_requests_in_flight") == 1

    def in_flight(pid: int) -> float:
        files = [str(p) for p in prom.glob(f"gauge_livesum_{pid}.db")]
        return sum(
            s.value
            for family in MultiProcessCollector.merge(files)
            for s in family.samples
            if s.name == "model_requests_in_flight"
        )

    workers = workers_of(server.pid)
    busy = [pid for pid in workers if in_flight(pid) == 1]
    assert len(busy) == 1
    kill_quietly(busy[0])
    with pytest.raises(httpx.TransportError):
        request.result()

    # The supervisor starts a replacement and forgets the dead worker's live gauges.
    def replaced() -> bool:
        pids = workers_of(server.pid)
        return len(pids) == 2 and busy[0] not in pids

    wait_until(replaced, "a replacement worker")
    assert not list(prom.glob(f"gauge_livesum_{busy[0]}.db"))
    gate.touch()
    server.wait_ready(WAIT)
    samples = scrape(server.metrics_url)
    assert metric(samples, "model_requests_in_flight") == 0
    # Counters of the dead worker are kept: nothing was lost, nothing double counted.
    assert metric(samples, "model_requests_total", route="/invocations", status="200") == 5
    assert metric(samples, "model_prediction_rows_total") == 5


# -- run_local --------------------------------------------------------------------------------


def test_run_local_yields_a_ready_url_and_stops_the_server(iris_model: IrisModel) -> None:
    with run_local(iris_model.path, env=SERVER_ENV) as url:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/ping", timeout=5).status_code == 200
        records = iris_model.features.head(3).to_dict(orient="records")
        predicted = httpx.post(f"{url}/invocations", json={"dataframe_records": records}, timeout=30)
        assert predicted.json() == {"predictions": iris_model.expected[:3]}
    assert refuses_connections(url)


def test_models_uri_from_the_registry(registry: Any) -> None:
    """A ``models:/`` URI: downloaded once for all workers, name/version taken from the URI."""
    env = {**SERVER_ENV, "MLFLOW_TRACKING_URI": registry.tracking_uri}
    with run_local(f"models:/{registry.name}/1", workers=2, env=env) as url:
        version = httpx.get(f"{url}/version", timeout=5).json()
        assert version["model"] == {"name": registry.name, "version": "1"}
        samples = scrape(url.metrics_url)
        assert metric(samples, "model_info", name=registry.name, version="1") == 1


def test_workers_exit_when_the_supervisor_is_killed(
    start_server: Callable[..., LocalServer], iris_model: IrisModel
) -> None:
    server = start_server(iris_model.path, workers=2, wait_ready=False)
    wait_until(lambda: len(workers_of(server.pid)) == 2, "2 workers")
    workers = children_of(server.pid)  # the workers and, with two of them, the fork server
    kill_quietly(server.pid)

    def gone(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return True
        return state == "Z"  # exited, waiting to be reaped by init

    wait_until(lambda: all(gone(pid) for pid in workers), "the orphaned workers to exit")
