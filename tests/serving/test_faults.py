"""The runtime under faults and bad input, as an attacker or a failing model would drive it.

Every test talks to a real server on loopback; the slow model (``slow_model.py``) raises for a
``fail`` column and holds a request in flight on a ``gate`` file. Where MLflow's own scoring app
answers differently, the tests ask it too (in-process), so the difference is shown, not assumed.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.invocations import MODEL_FAILED
from serving.local import LocalServer
from tests.serving.conftest import SERVER_ENV
from tests.serving.helpers import WAIT, frame, metric, parse_metrics, wait_until

HEADER_TIMEOUT = 1.0
TIMEOUT = 3




def address(url: str) -> tuple[str, int]:
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    return host, int(port)


def scrape(server: LocalServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(f"{server.metrics_url}/metrics", timeout=30)
    assert response.status_code == 200
    return parse_metrics(response.text)


def requests_with(server: LocalServer, status: str) -> float:
    return metric(scrape(server), "model_requests_total", route="/invocations", status=status)


def five_xx(server: LocalServer) -> float:
    """Server errors on the prediction route (what the error-ratio alerts count)."""
    samples = scrape(server)
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == "model_requests_total"
        and dict(labels).get("route") == "/invocations"
        and dict(labels).get("status", "").startswith("5")
    )


def read_response(sock: socket.socket, timeout: float = 30.0) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout``)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults") / "server.log"


@pytest.fixture(scope="module")
def server(slow_model: str, server_log: Path) -> Iterator[LocalServer]:
    with open(server_log, "wb") as log:
        srv = LocalServer(
            slow_model,
            workers=1,
            env=SERVER_ENV,
            timeout=TIMEOUT,
            extra_args=["--header-timeout", str(HEADER_TIMEOUT), "--docs"],
            stderr=log,
        )
        srv.start(startup_timeout=180)
    try:
        yield srv
    finally:
        srv.stop(grace=20)


@pytest.fixture(scope="module")
def mlflow_app(slow_model: str) -> Iterator[Any]:
    """MLflow's own scoring app for the same model, in-process."""
    import mlflow.pyfunc
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    key = "_MLFLOW_IS_IN_SERVING_ENVIRONMENT"
    before = os.environ.get(key)
    try:
        app = scoring_server.init(mlflow.pyfunc.load_model(slow_model))
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


# -- status codes ------------------------------------------------------------------------------


def test_a_model_that_raises_is_a_500_counted_as_5xx(
    server: LocalServer, server_log: Path, mlflow_app: Any
) -> None:
    payload = frame(x=[1], fail=[1])
    before = requests_with(server, "500")
    response = httpx.post(f"{server.url}/invocations", json=payload, timeout=WAIT)
    assert response.status_code == 500
    assert response.json() == {"error_code": "INTERNAL_ERROR", "message": MODEL_FAILED}
    assert "Traceback" not in response.text and "slow_model.py" not in response.text
    request_id = response.headers["x-request-id"]
    assert requests_with(server, "500") == before + 1

    # MLflow's app hides the same failure as a client error, with the stack trace in the body.
    theirs = mlflow_app.post("/invocations", json=payload)
    assert theirs.status_code == 400
    assert theirs.json()["message"] == MODEL_FAILED and "Traceback" in theirs.json()["stack_trace"]

    # The trace is in the server log, under the request id the client got.
    def logged() -> bool:
        text = server_log.read_text(errors="replace")
        return request_id in text and "ValueError: the model failed on purpose" in text

    wait_until(logged, "the stack trace in the server log", timeout=10)


def test_the_same_server_answers_good_requests_after_a_failure(server: LocalServer) -> None:
    response = httpx.post(f"{server.url}/invocations", json=frame(x=[4]), timeout=WAIT)
    assert response.status_code == 200
    assert response.json() == {"predictions": [8]}
    assert len(response.headers["x-request-id"]) == 32


def test_a_sane_request_id_is_kept_and_another_replaced(server: LocalServer) -> None:
    ok = httpx.post(f"{server.url}/invocations", json=frame(x=[1]), headers={"x-request-id": "trace-42"}, timeout=WAIT)
    assert ok.headers["x-request-id"] == "trace-42"
    odd = httpx.post(
        f"{server.url}/invocations", json=frame(x=[1]), headers={"x-request-id": "a b\tc" + "x" * 200}, timeout=WAIT
    )
    assert odd.headers["x-request-id"] != "a b\tc" + "x" * 200 and len(odd.headers["x-request-id"]) == 32


def test_a_client_that_goes_away_is_counted_as_499_not_as_a_server_error(
    server: LocalServer, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    before_499, before_5xx = requests_with(server, "499"), five_xx(server)
    body = json.dumps(frame(gate=[str(gate)], x=[1])).encode()
    sock = socket.create_connection(address(server.url), timeout=10)
    try:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        wait_until(Path(f"{gate}.started").exists, "the request to reach the model")
    finally:
        sock.close()  # the client gives up while the model is still working
    try:
        wait_until(lambda: requests_with(server, "499") == before_499 + 1, "the abandoned request to be counted")
        samples = scrape(server)
        assert metric(samples, "model_requests_in_flight") == 0
        assert five_xx(server) == before_5xx
    finally:
        gate.touch()  # let the model thread finish

    # a client that goes away in the middle of sending its body (MLflow's app counted a 500)
    with socket.create_connection(address(server.url), timeout=10) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n" + b" " * 70_000
        )
        wait_until(lambda: metric(scrape(server), "model_requests_in_flight") == 1, "the upload to start")
    wait_until(lambda: requests_with(server, "499") == before_499 + 2, "the abandoned upload to be counted")
    assert metric(scrape(server), "model_requests_in_flight") == 0
    assert five_xx(server) == before_5xx


def test_a_body_that_stops_arriving_is_408(server: LocalServer) -> None:
    with socket.create_connection(address(server.url), timeout=10) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{\"dataframe_split\": "
        )
        response = read_response(sock, timeout=TIMEOUT + 30)
    assert response.startswith(b"HTTP/1.1 408 ")
    assert b'"error_code": "BAD_REQUEST"' in response


# -- bodies ------------------------------------------------------------------------------------


MARKER = b"ECHO-MARKER-"


def test_a_body_over_the_limit_is_413_before_it_is_read(server: LocalServer) -> None:
    announced = 20 * 1024 * 1024
    with socket.create_connection(address(server.url), timeout=10) as sock:
        # Announce 20 MB, send 64 KB of it, and stop: the answer comes anyway.
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(announced).encode() + b"\r\n\r\n" + MARKER * 5000
        )
        response = read_response(sock, timeout=30)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in head.lower()
    message = json.loads(body)["message"]
    assert "20971520 bytes" in message and "SERVING_MAX_BODY_BYTES" in message
    assert MARKER not in response


def test_a_whole_20_mb_body_gets_the_413_not_a_reset(server: LocalServer) -> None:
    before = requests_with(server, "413")
    response = httpx.post(
        f"{server.url}/invocations",
        content=MARKER * (20 * 1024 * 1024 // len(MARKER)),
        headers={"content-type": "application/json"},
        timeout=WAIT,
    )
    assert response.status_code == 413
    assert MARKER not in response.content and len(response.content) < 1000
    assert requests_with(server, "413") == before + 1


def test_a_client_still_sending_its_body_is_not_reset(server: LocalServer) -> None:
    """After the early 413 the server half-closes and discards the rest for a while (lingering
    close) instead of closing with unread data, which resets the connection: the client can
    finish sending and then read the answer, as HTTP/1.1 clients that do not read while they
    send expect (over a real network a reset can also destroy the 413 before it arrives)."""
    body = MARKER * (20 * 1024 * 1024 // len(MARKER))
    with socket.create_connection(address(server.url), timeout=30) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        sock.sendall(body)  # raises ConnectionResetError / BrokenPipeError if the server resets
        response = read_response(sock, timeout=30)
    assert response.startswith(b"HTTP/1.1 413 ")


def test_a_chunked_body_over_the_limit_is_413(server: LocalServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b" " * (1024 * 1024)

    response = httpx.post(
        f"{server.url}/invocations", content=chunks(), headers={"content-type": "application/json"}, timeout=WAIT
    )
    assert response.status_code == 413


def test_an_invalid_body_is_not_echoed_back(server: LocalServer, mlflow_app: Any) -> None:
    body = b"{not json " + MARKER * 50_000
    response = httpx.post(
        f"{server.url}/invocations", content=body, headers={"content-type": "application/json"}, timeout=WAIT
    )
    assert response.status_code == 400
    message = response.json()["message"]
    assert message.startswith("Invalid input. Ensure that input is a valid JSON formatted string.")
    assert len(response.content) < 2000 and "more characters]" in message
    # MLflow's app sends the whole body back
    theirs = mlflow_app.post("/invocations", content=body, headers={"content-type": "application/json"})
    assert theirs.status_code == 400 and len(theirs.content) > len(body)


def _nested(depth: int) -> bytes:
    return b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"


def test_deeply_nested_json_is_400(server: LocalServer, mlflow_app: Any) -> None:
    before_5xx = five_xx(server)
    headers = {"content-type": "application/json"}
    deep = httpx.post(f"{server.url}/invocations", content=_nested(100_000), headers=headers, timeout=WAIT)
    assert deep.status_code == 400
    assert "SERVING_MAX_JSON_DEPTH" in deep.json()["message"]
    # Brackets inside a string do not count ...
    in_string = b'{"note": "' + b"[" * 500 + b'", "dataframe_split": {"columns": ["x"], "data": [[1]]}}'
    response = httpx.post(f"{server.url}/invocations", content=in_string, headers=headers, timeout=WAIT)
    assert response.json() == {"predictions": [2]}
    # ... and closing brackets in a string that hide real depth from the count still end in a
    # 400: the decoder's RecursionError is caught.
    hidden = b'{"note": "' + b"]" * 3000 + b'", "inputs": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    response = httpx.post(f"{server.url}/invocations", content=hidden, headers=headers, timeout=WAIT)
    assert response.status_code == 400
    assert "RecursionError" in response.json()["message"]
    assert five_xx(server) == before_5xx
    # MLflow's app: an unhandled RecursionError, a 500
    assert mlflow_app.post("/invocations", content=_nested(100_000), headers=headers).status_code == 500


def test_a_missing_content_type_is_415(server: LocalServer, mlflow_app: Any) -> None:
    response = httpx.post(f"{server.url}/invocations", content=b"{}", timeout=WAIT)
    assert response.status_code == 415
    assert response.text.startswith("This predictor only supports the following content types")
    # MLflow's app crashes on it (AttributeError on None): a 500
    assert mlflow_app.post("/invocations", content=b"{}").status_code == 500


def test_api_docs_are_served_only_when_asked_for(server: LocalServer) -> None:
    # this server runs with --docs (the default, off, is checked in test_server.py)
    assert httpx.get(f"{server.url}/openapi.json", timeout=10).json()["paths"]
    assert httpx.get(f"{server.url}/docs", timeout=10).status_code == 200


# -- slow connections ----------------------------------------------------------------------------


def test_slow_loris_connections_are_closed_after_the_header_timeout(server: LocalServer) -> None:
    before = metric(scrape(server), "model_connections_dropped_total", reason="header_timeout")
    silent = [socket.create_connection(address(server.url), timeout=10) for _ in range(3)]
    trickling = [socket.create_connection(address(server.url), timeout=10) for _ in range(3)]
    head = b"POST /invocations HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"a" * 100
    try:
        for sock in trickling:
            sock.sendall(head[:20])
            sock.setblocking(False)
        answered = 0
        sent = 20
        deadline = time.monotonic() + 20 * HEADER_TIMEOUT
        closed: set[int] = set()
        with httpx.Client(base_url=server.url, timeout=WAIT) as client:
            while len(closed) < len(trickling) and time.monotonic() < deadline:
                # good requests keep being answered meanwhile
                assert client.post("/invocations", json=frame(x=[2])).json() == {"predictions": [4]}
                answered += 1
                for i, sock in enumerate(trickling):  # one more byte of the head each round
                    if i in closed:
                        continue
                    try:
                        sock.send(head[sent : sent + 1])
                        data = sock.recv(1024)
                    except BlockingIOError:
                        continue
                    except (BrokenPipeError, ConnectionResetError):
                        closed.add(i)
                        continue
                    assert data.startswith(b"HTTP/1.1 408 ") or data == b""
                    closed.add(i)
                sent = min(sent + 1, len(head) - 1)
                time.sleep(0.1)
        assert closed == {0, 1, 2}, "the trickling connections are still open"
        assert answered > 0
        for sock in silent:  # the server closed them: EOF
            assert read_response(sock, timeout=10) == b""
        wait_until(
            lambda: metric(scrape(server), "model_connections_dropped_total", reason="header_timeout") == before + 6,
            "the dropped connections to be counted",
            timeout=10,
        )
    finally:
        for sock in silent + trickling:
            sock.close()


def test_an_idle_keep_alive_connection_is_not_cut_by_the_header_timeout(server: LocalServer) -> None:
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        first = client.post("/invocations", json=frame(x=[1]))
        port = first.extensions["network_stream"].get_extra_info("client_addr")[1]
        time.sleep(HEADER_TIMEOUT * 2.5)  # idle: the keep-alive timeout (75 s) applies, not this one
        second = client.post("/invocations", json=frame(x=[1]))
        assert second.status_code == 200
        assert second.extensions["network_stream"].get_extra_info("client_addr")[1] == port


def test_connections_over_the_cap_get_a_503(start_server: Callable[..., LocalServer], slow_model: str) -> None:
    server = start_server(slow_model, workers=1, extra_args=["--max-connections", "3", "--header-timeout", "60"])
    idle = [socket.create_connection(address(server.url), timeout=10) for _ in range(3)]
    try:

        def held() -> bool:
            # the worker registers a connection when its event loop gets to it
            with socket.create_connection(address(server.url), timeout=10) as extra:
                response = read_response(extra, timeout=10)
            return response.startswith(b"HTTP/1.1 503 ")

        wait_until(held, "the fourth connection to be refused with 503", timeout=20)
        with socket.create_connection(address(server.url), timeout=10) as extra:
            extra.sendall(b"GET /version HTTP/1.1\r\nHost: test\r\n\r\n")
            response = read_response(extra, timeout=10)
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in head.lower()
        assert json.loads(body)["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert metric(scrape(server), "model_connections_dropped_total", reason="over_limit") >= 2
    finally:
        for sock in idle:
            sock.close()
    # once the idle connections are gone, the worker takes new ones again
    wait_until(
        lambda: httpx.post(f"{server.url}/invocations", json=frame(x=[3]), timeout=WAIT).status_code == 200,
        "a good request after the idle connections closed",
        timeout=20,
    )
