"""Payload capture and the JSON access log, on the real runtime on loopback.

A receiver (``http.server`` on 127.0.0.1 in the test) collects what the runtime POSTs; a closed
port stands for a receiver that is down, a listening socket that never answers for one that hangs.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.conftest import IrisModel, ServerFactory
from tests.serving.helpers import metric, parse_metrics

WAIT = 30.0  # seconds: client timeout, and the longest a test polls for records or counters


class Receiver:
    """Collects JSON lines POSTed to it; remembers each request's content type."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.content_types.append(self.headers["Content-Type"])
                    receiver.records += [json.loads(line) for line in body.splitlines() if line]
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/capture"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, settle: float = 0.0) -> list[dict[str, Any]]:
        """The records once at least ``count`` arrived (then ``settle`` s more for stragglers)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.records) >= count:
                    break
            time.sleep(0.1)
        time.sleep(settle)
        with self.lock:
            return list(self.records)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def capture_env(url: str, **extra: str) -> dict[str, str]:
    return {"MODEL_NAME": "iris", "MODEL_VERSION": "3", "SERVING_CAPTURE_URL": url, **extra}


def payloads(features: Any) -> dict[str, tuple[bytes, str]]:
    """The same rows in every request format MLflow reads."""
    split = json.loads(features.to_json(orient="split"))
    del split["index"]
    records = json.loads(features.to_json(orient="records"))
    columns = {c: [float(v) for v in features[c]] for c in features.columns}
    as_json = "application/json"
    return {
        "dataframe_split": (json.dumps({"dataframe_split": split}).encode(), as_json),
        "dataframe_records": (json.dumps({"dataframe_records": records}).encode(), as_json),
        "instances": (json.dumps({"instances": records}).encode(), as_json),
        "inputs": (json.dumps({"inputs": columns}).encode(), as_json),
        "csv": (features.to_csv(index=False).encode(), "text/csv"),
    }


def metrics_of(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return parse_metrics(httpx.get(f"{url}/metrics", timeout=WAIT).text)


def poll_metrics(url: str, done: Callable[[dict[tuple[str, frozenset[tuple[str, str]]], float]], bool]) -> Any:
    deadline = time.monotonic() + WAIT
    samples = metrics_of(url)
    while not done(samples) and time.monotonic() < deadline:
        time.sleep(0.2)
        samples = metrics_of(url)
    return samples


def test_every_format_gives_the_same_record(
    iris_model: IrisModel, start_server: ServerFactory, receiver: Receiver
) -> None:
    server = start_server(iris_model.path, workers=2, env=capture_env(receiver.url))
    rows = iris_model.features.iloc[[0, 60, 120]]
    expected_inputs = {c: [float(v) for v in rows[c]] for c in rows.columns}
    expected_outputs = [iris_model.expected[i] for i in (0, 60, 120)]
    sent = {}
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        for name, (body, content_type) in payloads(rows).items():
            response = client.post(
                "/invocations", content=body, headers={"Content-Type": content_type, "X-Request-Id": f"fmt-{name}"}
            )
            assert response.status_code == 200, response.text
            sent[f"fmt-{name}"] = name
    records = {r["id"]: r for r in receiver.wait_for(len(sent), settle=0.5)}
    assert set(records) == set(sent)
    for record in records.values():
        assert record["inputs"] == expected_inputs, sent[record["id"]]
        assert record["outputs"] == expected_outputs, sent[record["id"]]
        assert (record["model"], record["version"], record["rows"]) == ("iris", "3", 3)
        assert abs(record["ts"] - time.time()) < 300
    # one hash for the same rows, whatever the format
    assert len({r["input_hash"] for r in records.values()}) == 1
    assert set(receiver.content_types) == {"application/x-ndjson"}
    samples = metrics_of(server.metrics_url)
    assert metric(samples, "model_capture_records_total") == len(sent)
    assert sum(v for (name, _), v in samples.items() if name == "model_capture_dropped_total") == 0


def test_same_body_same_hash_other_rows_other_hash(
    iris_model: IrisModel, start_server: ServerFactory, receiver: Receiver
) -> None:
    server = start_server(iris_model.path, env=capture_env(receiver.url))
    first, _ = payloads(iris_model.features.head(2))["dataframe_split"]
    other, _ = payloads(iris_model.features.iloc[[5, 6]])["dataframe_split"]
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        for request_id, body in (("a", first), ("mirror-of-a", first), ("b", other)):
            headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
            assert client.post("/invocations", content=body, headers=headers).status_code == 200
    hashes = {r["id"]: r["input_hash"] for r in receiver.wait_for(3)}
    assert hashes["a"] == hashes["mirror-of-a"]
    assert hashes["b"] != hashes["a"]
    assert len(hashes["a"]) == 32 and int(hashes["a"], 16) >= 0


def test_sample_half_captures_about_half(
    iris_model: IrisModel, start_server: ServerFactory, receiver: Receiver
) -> None:
    server = start_server(iris_model.path, env=capture_env(receiver.url, SERVING_CAPTURE_SAMPLE="0.5"))
    body, _ = payloads(iris_model.features.head(1))["dataframe_split"]
    total = 200
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        for i in range(total):
            headers = {"Content-Type": "application/json", "X-Request-Id": f"sample-{i}"}
            assert client.post("/invocations", content=body, headers=headers).status_code == 200
    # the sender flushes at least every second: wait until two polls 1.5 s apart agree
    count = -1.0
    for _ in range(20):
        now = metric(metrics_of(server.metrics_url), "model_capture_records_total")
        if now == count and now > 0:
            break
        count = now
        time.sleep(1.5)
    got = receiver.wait_for(0)
    assert len(got) == count
    # 100 expected; 60..140 is more than five standard deviations either side
    assert 60 <= len(got) <= 140, len(got)
    # the decision comes from the request id: the same ids again are captured again, and only those
    before = {r["id"] for r in got}
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        for i in range(total):
            headers = {"Content-Type": "application/json", "X-Request-Id": f"sample-{i}"}
            assert client.post("/invocations", content=body, headers=headers).status_code == 200
    again = receiver.wait_for(2 * len(before), settle=1.5)
    assert len(again) == 2 * len(before)
    assert {r["id"] for r in again[len(got) :]} == before


def test_dead_receiver_never_fails_a_prediction(iris_model: IrisModel, start_server: ServerFactory) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # nothing listens there any more: connections are refused
    server = start_server(iris_model.path, env=capture_env(f"http://127.0.0.1:{port}/v1/capture"))
    body, _ = payloads(iris_model.features.head(3))["dataframe_split"]
    total = 40
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        for _ in range(total):
            response = client.post("/invocations", content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 200
            assert response.json() == {"predictions": iris_model.expected[:3]}
    samples = poll_metrics(
        server.metrics_url,
        lambda s: sum(v for (n, _), v in s.items() if n == "model_capture_dropped_total") >= total,
    )
    assert metric(samples, "model_capture_dropped_total", reason="unreachable") == total
    assert metric(samples, "model_capture_records_total") == 0
    assert metric(samples, "model_requests_total", route="/invocations", status="200") == total


def test_hanging_receiver_never_holds_a_prediction(iris_model: IrisModel, start_server: ServerFactory) -> None:
    # A listener that never accepts: the kernel completes the handshake, nobody ever answers.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    try:
        env = capture_env(f"http://127.0.0.1:{hung.getsockname()[1]}/v1/capture", SERVING_CAPTURE_QUEUE="5")
        server = start_server(iris_model.path, env=env)
        body, _ = payloads(iris_model.features.head(1))["dataframe_split"]
        total = 60
        with httpx.Client(base_url=server.url, timeout=WAIT) as client:
            # the first requests fill a batch that the sender then waits on (5 s)
            for _ in range(5):
                assert (
                    client.post("/invocations", content=body, headers={"Content-Type": "application/json"}).status_code
                    == 200
                )
            time.sleep(1.5)
            for _ in range(total - 5):
                response = client.post("/invocations", content=body, headers={"Content-Type": "application/json"})
                assert response.status_code == 200
                assert response.json() == {"predictions": iris_model.expected[:1]}
        samples = poll_metrics(
            server.metrics_url, lambda s: metric(s, "model_capture_dropped_total", reason="timeout") > 0
        )
        assert metric(samples, "model_capture_dropped_total", reason="queue_full") >= total // 2
        assert metric(samples, "model_capture_dropped_total", reason="timeout") >= 1
        assert metric(samples, "model_capture_records_total") == 0
    finally:
        hung.close()


def test_json_access_log_lines(iris_model: IrisModel, start_server: ServerFactory, tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        server = start_server(
            iris_model.path,
            env={"MODEL_NAME": "iris", "MODEL_VERSION": "3", "SERVING_ACCESS_LOG": "json"},
            stderr=log,
        )
        body, _ = payloads(iris_model.features.head(2))["dataframe_split"]
        ok = httpx.post(
            f"{server.url}/invocations",
            content=body,
            headers={"Content-Type": "application/json", "X-Request-Id": "log-ok"},
            timeout=WAIT,
        )
        bad = httpx.post(
            f"{server.url}/invocations",
            content=b'{"nonsense": 1}',
            headers={"Content-Type": "application/json", "X-Request-Id": "log-bad"},
            timeout=WAIT,
        )
        httpx.get(f"{server.url}/no/such/path", timeout=WAIT)
        assert (ok.status_code, bad.status_code) == (200, 400)
        lines: list[dict[str, Any]] = []
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            lines = []
            for line in io.StringIO(log_path.read_text(errors="replace")):
                if line.startswith("{"):
                    lines.append(json.loads(line))  # every JSON-looking line parses
            if len(lines) >= 3 and any(entry["route"] == "other" for entry in lines):
                break
            time.sleep(0.2)
    by_id = {entry["request_id"]: entry for entry in lines if entry["request_id"]}
    good = by_id["log-ok"]
    assert (good["status"], good["route"], good["method"]) == (200, "/invocations", "POST")
    assert (good["model"], good["version"]) == ("iris", "3")
    assert good["bytes"] == len(ok.content)
    assert good["duration_ms"] > 0
    assert good["ts"].endswith("Z")
    assert by_id["log-bad"]["status"] == 400 and by_id["log-bad"]["bytes"] == len(bad.content)
    other = [entry for entry in lines if entry["route"] == "other"]
    assert other and other[0]["status"] == 404


def test_capture_off_by_default_sends_nothing(iris_model: IrisModel, start_server: ServerFactory) -> None:
    server = start_server(iris_model.path)
    body, _ = payloads(iris_model.features.head(1))["dataframe_split"]
    assert (
        httpx.post(f"{server.url}/invocations", content=body, headers={"Content-Type": "application/json"}).status_code
        == 200
    )
    samples = metrics_of(server.metrics_url)
    assert not [key for key in samples if key[0].startswith("model_capture_dropped")]
    assert metric(samples, "model_capture_records_total") == 0
