"""Registry resolution against a real sqlite MLflow registry."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from components.registry import RegistryError, resolve_model, tracking_uri_from
from modelctl.sample import SampleRegistry


def test_resolve_by_version_reads_the_model_metadata(registry: SampleRegistry) -> None:
    m = resolve_model(registry.name, "2", tracking_uri=registry.tracking_uri)
    mv = MlflowClient(registry.tracking_uri).get_model_version(registry.name, "2")
    assert (m.version, m.run_id, m.source) == ("2", mv.run_id, mv.source)
    assert "python_function" in m.flavors and "sklearn" in m.flavors
    assert [c["name"] for c in m.signature["inputs"]] == ["amount", "age", "score", "hour"]
    import platform

    assert m.python_version == platform.python_version()
    # the model's own pinned requirements, as logged
    import sklearn

    assert f"scikit-learn=={sklearn.__version__}" in m.requirements
    assert m.uri == f"models:/{registry.name}/2"


def test_resolve_alias_gives_the_version_it_points_at(registry: SampleRegistry) -> None:
    m = resolve_model(registry.name, alias="champion", tracking_uri=registry.tracking_uri)
    assert m.version == registry.versions[-1]
    assert m.alias == "champion"


def test_each_version_has_its_own_run(registry: SampleRegistry) -> None:
    runs = {resolve_model(registry.name, v, tracking_uri=registry.tracking_uri).run_id for v in registry.versions}
    assert len(runs) == len(registry.versions)


def test_unknown_model(registry: SampleRegistry) -> None:
    with pytest.raises(RegistryError, match="registered model 'nope' not found"):
        resolve_model("nope", "1", tracking_uri=registry.tracking_uri)


def test_unknown_version_lists_the_known_ones(registry: SampleRegistry) -> None:
    with pytest.raises(RegistryError, match=r"no version 42 .*versions: 1, 2, 3"):
        resolve_model(registry.name, "42", tracking_uri=registry.tracking_uri)


def test_unknown_alias(registry: SampleRegistry) -> None:
    with pytest.raises(RegistryError, match="no alias 'staging'"):
        resolve_model(registry.name, alias="staging", tracking_uri=registry.tracking_uri)


def test_unreachable_registry_names_the_uri() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(RegistryError, match=f"registry at {uri} is unreachable"):
        resolve_model("fraud-detector", "1", tracking_uri=uri)


def test_no_registry_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(RegistryError, match="MLFLOW_TRACKING_URI"):
        tracking_uri_from(None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert tracking_uri_from(None) == "http://env:5000"
    assert tracking_uri_from("http://cfg:5000") == "http://cfg:5000"


def test_model_without_pyfunc_flavor(registry: SampleRegistry, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("flavors:\n  onnx_only:\n    data: model.onnx\n")
    (model_dir / "model.onnx").write_bytes(b"\0")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(registry.tracking_uri)
    try:
        exp = MlflowClient().get_experiment_by_name("mlflow-deploy-sample")
        with mlflow.start_run(experiment_id=exp.experiment_id) as run:
            mlflow.log_artifacts(str(model_dir), "model")
        mlflow.register_model(f"runs:/{run.info.run_id}/model", "no-pyfunc")
    finally:
        mlflow.set_tracking_uri(previous)
    with pytest.raises(RegistryError, match=r"no python_function flavor \(flavors: onnx_only\)"):
        resolve_model("no-pyfunc", "1", tracking_uri=registry.tracking_uri)


# --------------------------------------------------------------------------- local stores that do not exist


@pytest.mark.parametrize("missing", ["dir/mlflow.db", "mlflow.db"])
def test_a_sqlite_path_that_does_not_exist_is_an_error_not_a_new_registry(tmp_path: Path, missing: str) -> None:
    """MLflow would create the folders and an empty database, then report the model missing."""
    from components.registry import describe_version, version_exists

    uri = f"sqlite:///{tmp_path / missing}"
    for call in (
        lambda: resolve_model("fraud-detector", "1", tracking_uri=uri),
        lambda: version_exists("fraud-detector", "1", tracking_uri=uri),
        lambda: describe_version("fraud-detector", "1", tracking_uri=uri),
    ):
        with pytest.raises(RegistryError, match=rf"MLflow tracking URI '{uri}': .* does not exist"):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing was created


def test_relative_sqlite_paths_resolve_against_the_working_directory(
    registry: SampleRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components.registry import check_tracking_uri, local_store_path

    db = Path(registry.tracking_uri.removeprefix("sqlite:///"))
    monkeypatch.chdir(db.parent)
    check_tracking_uri(f"sqlite:///{db.name}")  # there: fine
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RegistryError, match=f"{tmp_path / db.name} does not exist"):
        check_tracking_uri(f"sqlite:///{db.name}")
    assert local_store_path("sqlite:////abs/x.db?mode=ro") == Path("/abs/x.db")
    assert local_store_path("sqlite://") is None and local_store_path("sqlite:///:memory:") is None
    assert local_store_path("https://mlflow.example.com") is None


def test_uris_that_are_not_local_are_left_to_mlflow(tmp_path: Path) -> None:
    from components.registry import check_tracking_uri

    for uri in ("http://mlflow:5000", "https://x", "databricks", "postgresql+psycopg2://u@h/db",
                "azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/x", "sqlite://"):
        check_tracking_uri(uri)
    check_tracking_uri(str(tmp_path))  # an existing folder: a file store
    with pytest.raises(RegistryError, match=r"not a URI .* no local folder"):
        check_tracking_uri("garbage")


def test_an_unsupported_scheme_is_a_registry_error_naming_the_uri() -> None:
    with pytest.raises(RegistryError, match=r"MLflow tracking URI 'foo://bar': .*unsupported URI"):
        resolve_model("fraud-detector", "1", tracking_uri="foo://bar")


def test_an_unreachable_registry_is_one_line_with_the_cause_and_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded retries (3 attempts), the root cause rather than urllib3's nested report, and the
    MLflow variables put back afterwards."""
    from components.registry import REGISTRY_HTTP_BUDGET, describe_version

    for key in REGISTRY_HTTP_BUDGET:
        monkeypatch.delenv(key, raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(RegistryError) as info:
        describe_version("fraud-detector", "1", tracking_uri=uri)
    msg = str(info.value)
    assert msg == f"MLflow registry at {uri} is unreachable: Failed to establish a new connection: " \
                  "[Errno 111] Connection refused (3 attempts)"
    assert not any(k in os.environ for k in REGISTRY_HTTP_BUDGET)
