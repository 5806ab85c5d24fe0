"""``modelctl reference log``: a file becomes a version's reference, which ``models:/`` then loads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from modelctl.sample import SampleRegistry, register_sample_model, sample_frame
from monitor.reference import load
from tests.modelctl.test_cli import modelctl, one_error_line


@pytest.fixture(scope="module")
def own_registry(tmp_path_factory: pytest.TempPathFactory) -> SampleRegistry:
    """A registry of this module's own: logging references changes the versions' runs."""
    return register_sample_model(tmp_path_factory.mktemp("mlflow-ref"), versions=2)


def log(reg: SampleRegistry, version: str, data: Path, *extra: str):  # type: ignore[no-untyped-def]
    return modelctl(
        "reference", "log", "--model", reg.name, "--version", version, "--data", str(data),
        "--tracking-uri", reg.tracking_uri, *extra,
    )  # fmt: skip


def test_a_logged_file_is_what_models_uri_loads(own_registry: SampleRegistry, tmp_path: Path) -> None:
    x, _ = sample_frame(rows=150, seed=3)
    path = tmp_path / "train.parquet"
    x.to_parquet(path, index=False)
    proc = log(own_registry, "2", path)
    assert proc.returncode == 0, proc.stderr
    assert "150 rows, 4 columns" in proc.stdout and "models:/fraud-detector/2" in proc.stdout
    loaded = load("models:/fraud-detector/2", own_registry.tracking_uri)
    pd.testing.assert_frame_equal(loaded, x)
    # the same name again replaces it
    x2, _ = sample_frame(rows=120, seed=4)
    x2.to_parquet(path, index=False)
    assert log(own_registry, "2", path).returncode == 0
    assert len(load("models:/fraud-detector/2", own_registry.tracking_uri)) == 120
    # a second file of another name would be concatenated with the first: refused
    csv = tmp_path / "more.csv"
    x.to_csv(csv, index=False)
    line = one_error_line(log(own_registry, "2", csv))
    assert "reference/train.parquet" in line and "name the file train.parquet" in line


@pytest.mark.parametrize(
    ("make", "version", "words"),
    [
        (lambda d: d / "missing.parquet", "1", "no such file"),
        (lambda d: (d / "x.json").write_text("{}") and d / "x.json", "1", "parquet or CSV"),
        (lambda d: (d / "bad.parquet").write_bytes(b"nope") and d / "bad.parquet", "1", "cannot read bad.parquet"),
        (lambda d: (d / "empty.csv").write_text("a,b\n") and d / "empty.csv", "1", "no rows"),
        (lambda d: (d / "ok.csv").write_text("a,b\n1,2\n") and d / "ok.csv", "9", "version 9"),
    ],
    ids=["missing", "not-a-table", "corrupt", "empty", "unknown-version"],
)
def test_refusals_are_one_line(own_registry: SampleRegistry, tmp_path: Path, make, version: str, words: str) -> None:  # type: ignore[no-untyped-def]
    line = one_error_line(log(own_registry, version, make(tmp_path)))
    assert line.startswith("modelctl reference: error:") and words in line, line


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    proc = modelctl("reference", "log", "--model", "m", "--version", "1")
    assert proc.returncode == 2 and "--data" in proc.stderr
    assert modelctl("reference").returncode == 2
