"""Reference data: resolving models:/, runs:/ and local URIs against a real MLflow registry,
loading parquet, CSV and directories, and one-line errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from modelctl.sample import SampleRegistry
from monitor import reference as ref
from tests.monitor.helpers import reference as make_reference

NAME = "monitor-reference-test"


@dataclass(frozen=True)
class Logged:
    tracking_uri: str
    run_id: str
    frame: pd.DataFrame
    other: pd.DataFrame


@pytest.fixture(scope="module")
def logged(registry: SampleRegistry, tmp_path_factory: pytest.TempPathFactory) -> Logged:
    """A registered model of its own in the test registry: version 1's run holds ``reference/``
    (a parquet file) and ``holdout/`` (a CSV); version 2's run holds nothing; alias ``live`` -> 1."""
    client = MlflowClient(tracking_uri=registry.tracking_uri)
    root = tmp_path_factory.mktemp("reference-artifacts")
    exp = client.get_experiment_by_name(NAME)
    exp_id = exp.experiment_id if exp else client.create_experiment(NAME, artifact_location=(root / "a").as_uri())
    frame, other = make_reference(300, seed=1), make_reference(50, seed=2)
    data = tmp_path_factory.mktemp("reference-data")
    frame.to_parquet(data / "train.parquet")
    other.to_csv(data / "holdout.csv", index=False)
    run = client.create_run(exp_id)
    client.log_artifact(run.info.run_id, str(data / "train.parquet"), "reference")
    client.log_artifact(run.info.run_id, str(data / "holdout.csv"), "holdout")
    empty = client.create_run(exp_id)
    if not client.search_registered_models(f"name = '{NAME}'"):
        client.create_registered_model(NAME)
    for r in (run, empty):
        client.create_model_version(NAME, f"{r.info.artifact_uri}/model", run_id=r.info.run_id)
    client.set_registered_model_alias(NAME, "live", "1")
    return Logged(registry.tracking_uri, run.info.run_id, frame, other)


def test_models_uri_means_the_versions_run_artifact_reference(logged: Logged) -> None:
    assert ref.resolve(f"models:/{NAME}/1", logged.tracking_uri) == f"runs:/{logged.run_id}/reference"
    df = ref.load(f"models:/{NAME}/1", logged.tracking_uri)
    pd.testing.assert_frame_equal(df, logged.frame)
    by_alias = ref.load(f"models:/{NAME}@live", logged.tracking_uri)
    pd.testing.assert_frame_equal(by_alias, logged.frame)


def test_another_run_artifact_path_and_runs_uris(logged: Logged) -> None:
    holdout = ref.load(f"models:/{NAME}/1#holdout", logged.tracking_uri)
    assert len(holdout) == 50
    assert holdout["f0"].tolist() == pytest.approx(logged.other["f0"].tolist())
    direct = ref.load(f"runs:/{logged.run_id}/reference/train.parquet", logged.tracking_uri)
    pd.testing.assert_frame_equal(direct, logged.frame)


def test_a_version_without_a_reference_fails_in_one_line(logged: Logged) -> None:
    with pytest.raises(ref.ReferenceError) as err:
        ref.load(f"models:/{NAME}/2", logged.tracking_uri)
    assert "\n" not in str(err.value) and f"models:/{NAME}/2" in str(err.value)
    with pytest.raises(ref.ReferenceError) as err:
        ref.load(f"models:/{NAME}/9", logged.tracking_uri)
    assert "\n" not in str(err.value)
    with pytest.raises(ref.ReferenceError, match="expected models:/<name>/<version>"):
        ref.resolve("models:/just-a-name", logged.tracking_uri)


def test_local_files_and_directories(tmp_path: Path) -> None:
    a, b = make_reference(40, seed=3), make_reference(60, seed=4)
    a.to_parquet(tmp_path / "a.parquet")
    b.to_csv(tmp_path / "b.csv", index=False)
    assert len(ref.load(str(tmp_path / "a.parquet"))) == 40
    assert len(ref.load((tmp_path / "b.csv").as_uri())) == 60
    both = ref.load(str(tmp_path))  # a.parquet then b.csv, in name order
    assert len(both) == 100
    assert both["f0"].tolist() == pytest.approx(a["f0"].tolist() + b["f0"].tolist())
    sampled = ref.load(str(tmp_path), max_rows=30)
    assert len(sampled) == 30 and set(sampled["f0"]) <= set(both["f0"])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.parquet", "does not exist"),
        (lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt", "not parquet or CSV"),
        (lambda p: (p / "broken.parquet").write_bytes(b"not parquet") and p / "broken.parquet", "cannot read"),
        (lambda p: (p / "empty.csv").write_text("f0,f1\n") and p / "empty.csv", "no rows"),
        (lambda p: (p / "d").mkdir() or p / "d", "no parquet or CSV file"),
    ],
)
def test_an_unloadable_local_reference_fails_in_one_line(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ref.ReferenceError) as err:
        ref.load(str(make(tmp_path)))
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ref.ReferenceError, match="empty"):
        ref.load("  ")
