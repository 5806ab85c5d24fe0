"""A small sample model registered into a local MLflow registry (demo and tests).

Trains a LogisticRegression on a synthetic fraud-like table and registers it as versions
1..N of one registered model, with an alias on the last version.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FEATURES = ("amount", "age", "score", "hour")


@dataclass(frozen=True)
class SampleRegistry:
    tracking_uri: str
    name: str
    versions: tuple[str, ...]
    alias: str


def sample_frame(rows: int = 200, seed: int = 0):  # type: ignore[no-untyped-def]
    """Features (a DataFrame) and labels for the sample model."""
    import pandas as pd
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, n_features=len(FEATURES), random_state=seed)
    return pd.DataFrame(x, columns=list(FEATURES)), y


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's INFO chatter, `eprint` notices and schema hints are noise in the demo and the
    test logs; failures still raise."""
    import logging
    import warnings

    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _pinned_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "scikit-learn", "skops", "pandas", "numpy")]


def register_sample_model(
    root: Path,
    *,
    name: str = "fraud-detector",
    versions: int = 3,
    alias: str = "champion",
) -> SampleRegistry:
    """Create (or reuse) a sqlite registry under ``root`` and register ``versions`` versions.

    Each version is trained with a different regularisation strength, so predictions differ.
    Idempotent: a registry that already has the versions is returned as is.
    """
    with _quiet():
        return _register(root, name=name, versions=versions, alias=alias)


def _register(root: Path, *, name: str, versions: int, alias: str) -> SampleRegistry:
    import mlflow
    from mlflow.tracking import MlflowClient
    from sklearn.linear_model import LogisticRegression

    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    existing = {m.name for m in client.search_registered_models()}
    if name in existing:
        have = client.search_model_versions(f"name = '{name}'")
        if len(have) >= versions:
            return SampleRegistry(uri, name, tuple(str(i) for i in range(1, versions + 1)), alias)

    x, y = sample_frame()
    exp_name = "mlflow-deploy-sample"
    exp = client.get_experiment_by_name(exp_name)
    exp_id = (
        exp.experiment_id
        if exp
        else client.create_experiment(exp_name, artifact_location=(root / "artifacts").as_uri())
    )
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        for i in range(versions):
            model = LogisticRegression(C=10.0 ** (i - 1), max_iter=200).fit(x, y)
            with mlflow.start_run(experiment_id=exp_id):
                mlflow.sklearn.log_model(
                    model,
                    name="model",
                    registered_model_name=name,
                    input_example=x.head(2),
                    pip_requirements=_pinned_requirements(),
                )
        client.set_registered_model_alias(name, alias, str(versions))
    finally:
        mlflow.set_tracking_uri(previous)
    return SampleRegistry(uri, name, tuple(str(i) for i in range(1, versions + 1)), alias)


REFERENCE_FILE = "reference.parquet"


def log_sample_references(reg: SampleRegistry, root: Path) -> Path:
    """Log every version's reference (the run artifact ``reference/reference.parquet``, what
    ``models:/<name>/<version>`` means to ``monitoring.drift.reference``): the sample's training
    features and, as the ``prediction`` column, that version's own predictions on them (the monitor
    takes a ``prediction`` column as the reference outputs: ``model_prediction_drift_score``).
    The files are written under ``root/reference/v<version>/``; that directory is returned.
    Idempotent: the same file is logged again under the same name."""
    import mlflow
    import mlflow.pyfunc

    from modelctl.reference import log_reference

    x, _ = sample_frame()
    out = Path(root).resolve() / "reference"
    previous = mlflow.get_tracking_uri()
    with _quiet(), contextlib.redirect_stdout(io.StringIO()):
        mlflow.set_tracking_uri(reg.tracking_uri)
        try:
            for v in reg.versions:
                model = mlflow.pyfunc.load_model(f"models:/{reg.name}/{v}")
                frame = x.copy()
                frame["prediction"] = [int(p) for p in model.predict(x)]
                path = out / f"v{v}" / REFERENCE_FILE
                path.parent.mkdir(parents=True, exist_ok=True)
                frame.to_parquet(path, index=False)
                log_reference(reg.name, v, path, reg.tracking_uri)
        finally:
            mlflow.set_tracking_uri(previous)
    return out
