"""The runtime as a real process on loopback, serving a real sklearn model with 2 workers.

The contract is MLflow's: predictions must equal ``pyfunc.predict`` for every input format, and
error answers must be byte-for-byte what MLflow's own scoring app (``scoring_server.init``)
answers for the same request, which the tests compute in-process rather than copy.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.local import LocalServer
from tests.serving.conftest import SERVER_ENV, IrisModel
from tests.serving.helpers import metric, parse_metrics, workers_of

WORKERS = 2


@pytest.fixture(scope="module")
def prom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prom")


@pytest.fixture(scope="module")
def server(iris_model: IrisModel, prom_dir: Path) -> Iterator[LocalServer]:
    env = {
        **SERVER_ENV,
        "MODEL_NAME": "iris",
        "MODEL_VERSION": "3",
        # A directory the test can look into (by default the runtime makes a private one).
        "PROMETHEUS_MULTIPROC_DIR": str(prom_dir),
    }
    srv = LocalServer(iris_model.path, workers=WORKERS, env=env)
    srv.start(startup_timeout=180)
    try:
        yield srv
    finally:
        srv.stop(grace=20)


@pytest.fixture(scope="module")
def client(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def metrics_client(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.metrics_url, timeout=30) as c:
        yield c


def _payloads(iris: IrisModel, rows: int = 150) -> dict[str, tuple[str, bytes]]:
    """Every MLflow 3 input format for the first ``rows`` rows: name -> (content type, body)."""
    frame = iris.features.head(rows)
    split = json.loads(frame.to_json(orient="split"))
    del split["index"]
    records = frame.to_dict(orient="records")
    columns = {name: frame[name].tolist() for name in frame.columns}
    parquet = io.BytesIO()
    frame.to_parquet(parquet)
    return {
        "dataframe_split": ("application/json", json.dumps({"dataframe_split": split}).encode()),
        "dataframe_records": ("application/json", json.dumps({"dataframe_records": records}).encode()),
        "instances": ("application/json", json.dumps({"instances": records}).encode()),
        "inputs_records": ("application/json", json.dumps({"inputs": records}).encode()),
        "inputs_columns": ("application/json", json.dumps({"inputs": columns}).encode()),
        "csv": ("text/csv", frame.to_csv(index=False).encode()),
        "csv_charset": ("text/csv; charset=utf-8", frame.to_csv(index=False).encode()),
        "parquet": ("application/vnd.apache.parquet", parquet.getvalue()),
    }


FORMATS = [
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs_records",
    "inputs_columns",
    "csv",
    "csv_charset",
    "parquet",
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_input_format_predicts_like_pyfunc(client: httpx.Client, iris_model: IrisModel, fmt: str) -> None:
    content_type, body = _payloads(iris_model)[fmt]
    response = client.post("/invocations", content=body, headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"predictions": iris_model.expected}


def test_params_are_accepted_like_mlflow(client: httpx.Client, mlflow_client: Any, iris_model: IrisModel) -> None:
    _, body = _payloads(iris_model, rows=3)["dataframe_split"]
    payload = {**json.loads(body), "params": {"unused": 1}}
    ours = client.post("/invocations", json=payload)
    theirs = mlflow_client.post("/invocations", json=payload)
    assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json())
    assert ours.json() == {"predictions": iris_model.expected[:3]}


BAD_REQUESTS: dict[str, tuple[str, bytes]] = {
    # MLflow 1.x body: rejected with the explanation of the 2.0 protocol change.
    "legacy_columns_data": (
        "application/json",
        json.dumps(
            {
                "columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
                "data": [[5.1, 3.5, 1.4, 0.2]],
            }
        ).encode(),
    ),
    "not_json": ("application/json", b"{not json"),
    "json_list": ("application/json", b"[1, 2, 3]"),
    "two_formats": ("application/json", json.dumps({"instances": [], "inputs": []}).encode()),
    "wrong_columns": ("application/json", json.dumps({"dataframe_records": [{"a": 1}]}).encode()),
    "unsupported_type": ("text/plain", b"hello"),
    "latin1_charset": ("application/json; charset=latin-1", b"{}"),
    "unknown_ct_param": ("application/json; format=pandas-split", b"{}"),
    "bad_csv": ("text/csv", b"\x00\x01\xff"),
}


_SET_REPR = re.compile(r"\{'[^{}]*'\}")


def _sorted_sets(body: dict[str, Any]) -> dict[str, Any]:
    def sort(match: re.Match[str]) -> str:
        return "{" + ", ".join(sorted(match.group(0)[1:-1].split(", "))) + "}"

    return {k: _SET_REPR.sub(sort, v) if isinstance(v, str) else v for k, v in body.items()}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_error_answers_are_mlflows(client: httpx.Client, mlflow_client: Any, case: str) -> None:
    content_type, body = BAD_REQUESTS[case]
    headers = {"content-type": content_type}
    ours = client.post("/invocations", content=body, headers=headers)
    theirs = mlflow_client.post("/invocations", content=body, headers=headers)
    assert ours.status_code >= 400
    assert ours.status_code == theirs.status_code
    assert ours.headers["content-type"] == theirs.headers["content-type"]
    if theirs.headers["content-type"].startswith("application/json"):
        ours_body, theirs_body = ours.json(), theirs.json()
        # A stack trace (where MLflow includes one) names file paths and line numbers of the
        # process that raised; everything else must be identical.
        ours_body.pop("stack_trace", None)
        theirs_body.pop("stack_trace", None)
        # MLflow prints a Python set in some messages; its order depends on the hash seed of the
        # process, so compare sets as sorted.
        assert _sorted_sets(ours_body) == _sorted_sets(theirs_body)
    else:
        assert ours.text == theirs.text


def test_legacy_body_is_400_with_the_protocol_change_explanation(client: httpx.Client) -> None:
    content_type, body = BAD_REQUESTS["legacy_columns_data"]
    response = client.post("/invocations", content=body, headers={"content-type": content_type})
    assert response.status_code == 400
    assert response.json()["error_code"] == "BAD_REQUEST"
    assert "scoring protocol has changed in MLflow version 2.0" in response.json()["message"]


@pytest.mark.parametrize("path", ["/ping", "/health"])
def test_health_answers_like_mlflow(client: httpx.Client, mlflow_client: Any, path: str) -> None:
    ours, theirs = client.get(path), mlflow_client.get(path)
    assert ours.status_code == theirs.status_code == 200
    assert ours.content == theirs.content


def test_version_names_the_model_and_nothing_about_the_software(client: httpx.Client) -> None:
    import mlflow

    response = client.get("/version")
    assert response.json() == {"model": {"name": "iris", "version": "3"}, "ready": True}
    # no runtime, MLflow or server versions for a scanner to match against CVEs
    assert mlflow.__version__ not in response.text
    assert "server" not in response.headers


@pytest.mark.parametrize("path", ["/metrics", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_metrics_and_api_docs_are_not_served_on_the_serving_port(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_the_metrics_port_serves_only_metrics(metrics_client: httpx.Client) -> None:
    assert metrics_client.get("/metrics").status_code == 200
    assert metrics_client.head("/metrics").status_code == 200
    assert metrics_client.post("/metrics").status_code == 405
    for path in ("/", "/ping", "/invocations", "/version", "/metrics/x"):
        assert metrics_client.get(path).status_code == 404


def _scrape(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse_metrics(response.text)


def _post_fresh_connection(url: str, content_type: str, body: bytes) -> int:
    # A new connection per request so that both workers accept some of them.
    with httpx.Client(timeout=30) as c:
        return c.post(f"{url}/invocations", content=body, headers={"content-type": content_type}).status_code


def test_metrics_count_requests_across_workers(
    server: LocalServer, metrics_client: httpx.Client, iris_model: IrisModel, prom_dir: Path
) -> None:
    good_ct, good = _payloads(iris_model, rows=7)["dataframe_split"]
    bad_ct, bad = BAD_REQUESTS["legacy_columns_data"]
    before = _scrape(metrics_client)

    n_good, n_bad = 60, 9
    jobs = [(good_ct, good)] * n_good + [(bad_ct, bad)] * n_bad
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda job: _post_fresh_connection(server.url, *job), jobs))
    assert statuses.count(200) == n_good and statuses.count(400) == n_bad

    # Every scrape shows the sum over all workers.
    for _ in range(4):
        with httpx.Client(base_url=server.metrics_url, timeout=30) as fresh:
            after = _scrape(fresh)

        def delta(name: str, after: Any = after, **labels: str) -> float:
            return metric(after, name, **labels) - metric(before, name, **labels)

        assert delta("model_requests_total", route="/invocations", status="200") == n_good
        assert delta("model_requests_total", route="/invocations", status="400") == n_bad
        assert delta("model_request_duration_seconds_count", route="/invocations", status="200") == n_good
        assert delta("model_request_duration_seconds_bucket", route="/invocations", status="200", le="+Inf") == n_good
        assert delta("model_prediction_rows_total") == 7 * n_good
        assert metric(after, "model_requests_in_flight") == 0
        # /metrics scrapes are not counted
        assert not [k for k in after if ("route", "/metrics") in k[1]]

    # Both workers served some of them: each wrote its own samples file.
    from prometheus_client.multiprocess import MultiProcessCollector

    workers = workers_of(server.pid)
    assert len(workers) == WORKERS
    per_worker = {}
    for pid in workers:
        files = [str(p) for p in prom_dir.glob(f"counter_{pid}.db")]
        total = 0.0
        for family in MultiProcessCollector.merge(files):
            for sample in family.samples:
                if sample.name == "model_requests_total" and sample.labels.get("route") == "/invocations":
                    total += sample.value
        per_worker[pid] = total
    assert all(v > 0 for v in per_worker.values()), per_worker


def test_metric_names_types_and_identity(client: httpx.Client, metrics_client: httpx.Client) -> None:
    client.get("/ping")
    client.get("/no/such/path")
    text = metrics_client.get("/metrics").text
    types = {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert types["model_requests_total"] == "counter"
    assert types["model_prediction_rows_total"] == "counter"
    assert types["model_request_duration_seconds"] == "histogram"
    assert types["model_requests_in_flight"] == "gauge"
    assert types["model_load_seconds"] == "gauge"
    assert types["model_info"] == "gauge"
    assert types["model_connections_dropped_total"] == "counter"
    samples = parse_metrics(text)
    assert metric(samples, "model_info", name="iris", version="3") == 1
    assert metric(samples, "model_load_seconds") > 0
    assert metric(samples, "model_requests_total", route="/ping", status="200") >= 1
    # Unknown paths share one label value instead of one series per path.
    assert metric(samples, "model_requests_total", route="other", status="404") >= 1
    assert not [k for k in samples if ("route", "/no/such/path") in k[1]]
    buckets = sorted(
        float(dict(labels)["le"])
        for name, labels in samples
        if name == "model_request_duration_seconds_bucket" and ("route", "/ping") in labels
    )
    assert buckets[0] == 0.001 and 30.0 in buckets and buckets[-1] == float("inf")


def test_keep_alive_connection_is_reused(server: LocalServer, iris_model: IrisModel) -> None:
    content_type, body = _payloads(iris_model, rows=1)["dataframe_split"]
    ports = set()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for _ in range(5):
            response = c.post("/invocations", content=body, headers={"content-type": content_type})
            assert response.status_code == 200
            assert response.headers.get("connection", "").lower() != "close"
            stream = response.extensions["network_stream"]
            ports.add(stream.get_extra_info("client_addr")[1])
    assert len(ports) == 1
