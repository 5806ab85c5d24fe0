"""Fixtures for the serving runtime: small real models saved with MLflow, and servers on loopback.

* ``iris_model``: a LogisticRegression on iris saved by ``mlflow.sklearn.save_model`` (MLflow 3
  saves it in the skops format; loading it needs ``skops`` installed and
  ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` not set to false, which the servers' env pins).
* ``slow_model``: ``slow_model.py`` saved as an MLflow model from code (see its docstring).
* ``start_server``: starts ``python -m serving`` subprocesses (``serving.local.LocalServer``) on a
  free port and always stops them (SIGTERM, then SIGKILL of the process group) at teardown.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from serving.local import LocalServer

HERE = Path(__file__).resolve().parent

# Every server a test starts inherits this; the loaders never need the network.
SERVER_ENV = {
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
    "MLFLOW_TRACKING_URI": "file:///nonexistent-tracking-store",
    "SERVING_LOG_LEVEL": "warning",
}


@dataclass
class IrisModel:
    path: str
    features: Any  # pandas.DataFrame, all 150 rows
    expected: list[int]  # pyfunc.predict on features, as ints


@pytest.fixture(scope="session")
def iris_model(tmp_path_factory: pytest.TempPathFactory) -> IrisModel:
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, target = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(features, target)
    path = str(tmp_path_factory.mktemp("models") / "iris")
    mlflow.sklearn.save_model(
        model,
        path,
        signature=infer_signature(features, model.predict(features)),
        input_example=features.head(2),
    )
    pyfunc = mlflow.pyfunc.load_model(path)
    expected = [int(v) for v in pyfunc.predict(features)]
    return IrisModel(path=path, features=features, expected=expected)


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    import mlflow.pyfunc

    path = str(tmp_path_factory.mktemp("models") / "slow")
    mlflow.pyfunc.save_model(path, python_model=str(HERE / "slow_model.py"))
    return path


ServerFactory = Callable[..., LocalServer]


@pytest.fixture
def start_server() -> Iterator[ServerFactory]:
    """``start_server(model_path, workers=1, env=None, wait_ready=True, **kw) -> LocalServer``."""
    servers: list[LocalServer] = []

    def start(
        model_uri: str,
        workers: int = 1,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        **kwargs: Any,
    ) -> LocalServer:
        server = LocalServer(model_uri, workers=workers, env={**SERVER_ENV, **(env or {})}, **kwargs)
        servers.append(server)
        server.start(wait_ready=wait_ready, startup_timeout=180)
        return server

    yield start
    for server in servers:
        server.stop(grace=20)


@pytest.fixture(scope="module")
def mlflow_client(iris_model: IrisModel) -> Iterator[Any]:
    """MLflow's own scoring app for the same model, in-process: the reference answers."""
    import mlflow.pyfunc
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    key = "_MLFLOW_IS_IN_SERVING_ENVIRONMENT"
    before = os.environ.get(key)
    try:
        app = scoring_server.init(mlflow.pyfunc.load_model(iris_model.path))
    finally:  # init() sets this for the whole process; keep it out of other tests
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before
    with TestClient(app) as c:
        yield c
