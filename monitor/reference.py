"""Reference data for drift detection: resolve ``monitoring.drift.reference`` and load it.

Accepted URIs (the file or directory holds parquet or CSV; a directory's ``*.parquet`` / ``*.csv``
files are concatenated in name order):

* ``models:/<name>/<version>`` or ``models:/<name>@<alias>``: that version's *run* artifact
  ``reference/`` (the convention ``log_reference`` follows), not the model's own artifacts;
  ``models:/<name>/<version>#<path>`` picks another run artifact path;
* ``runs:/<run_id>/<path>``: a run artifact;
* ``s3://``, ``gs://``, ``wasbs://``, ``abfss://`` ...: any artifact URI MLflow can download;
* a local path (``file://`` or plain).

Only MLflow and pandas are needed here (no Evidently): the Pulumi program imports this module at
preview to refuse drift with a reference it cannot load, and the monitor loads it at start.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

REFERENCE_ARTIFACT = "reference"
"""The run artifact path ``models:/name/version`` points at, and where ``log_reference`` writes."""

SUFFIXES = (".parquet", ".pq", ".csv")


class ReferenceError(Exception):
    """The reference could not be resolved or loaded; the message says why and what to do."""


def how_to_log(model: str = "<model>") -> str:
    """One sentence telling a user how to give a model version a reference."""
    return (
        "log one with the model's training data: "
        f"`python -m modelctl reference log --model {model} --version <v> --data train.parquet` "
        "(or mlflow.log_artifact(path, 'reference') in the training run)"
    )


def resolve(uri: str, tracking_uri: str | None = None) -> str:
    """The artifact URI (or local path) behind ``uri``; ``models:/`` becomes the run's artifact."""
    if not uri or not uri.strip():
        raise ReferenceError("the reference URI is empty")
    uri = uri.strip()
    if uri.startswith("models:/"):
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        spec, _, path = uri[len("models:/") :].partition("#")
        path = path.strip("/") or REFERENCE_ARTIFACT
        client = MlflowClient(tracking_uri=tracking_uri)
        try:
            if "@" in spec:
                name, alias = spec.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, sep, version = spec.rpartition("/")
                if not sep or not name or not version:
                    raise ReferenceError(f"{uri!r}: expected models:/<name>/<version> or models:/<name>@<alias>")
                mv = client.get_model_version(name, version)
        except MlflowException as e:
            raise ReferenceError(f"{uri!r}: {_first_line(e)}") from None
        if not mv.run_id:
            raise ReferenceError(
                f"{uri!r}: model version {mv.version} has no run to hold a reference; {how_to_log(mv.name)}"
            )
        return f"runs:/{mv.run_id}/{path}"
    return uri


def load(uri: str, tracking_uri: str | None = None, *, max_rows: int | None = None) -> Any:
    """The reference as a pandas DataFrame; ``ReferenceError`` with one line when it cannot be."""
    import pandas as pd

    resolved = resolve(uri, tracking_uri)
    local = _local_path(resolved)
    with tempfile.TemporaryDirectory(prefix="mlflow-deploy-reference-") as tmp:
        if local is None:
            local = _download(uri, resolved, tracking_uri, tmp)
        files = _data_files(uri, local)
        frames = []
        for f in files:
            try:
                frame = pd.read_parquet(f) if f.suffix in (".parquet", ".pq") else pd.read_csv(f)
            except Exception as e:  # noqa: BLE001 - pyarrow/pandas raise many types for a bad file
                raise ReferenceError(f"{uri!r}: cannot read {f.name}: {_first_line(e)}") from None
            frames.append(frame)
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if df.empty or len(df.columns) == 0:
        raise ReferenceError(f"{uri!r}: the reference has no rows")
    df.columns = [str(c) for c in df.columns]
    if max_rows is not None and len(df) > max_rows:
        df = df.sample(n=max_rows, random_state=0).reset_index(drop=True)
    return df


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if "://" in uri or uri.startswith(("runs:/", "models:/")):
        return None
    return Path(os.path.expanduser(uri))


def _download(uri: str, resolved: str, tracking_uri: str | None, tmp: str) -> Path:
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=resolved, dst_path=tmp, tracking_uri=tracking_uri))
    except (MlflowException, OSError) as e:
        raise ReferenceError(f"{uri!r}: cannot download {resolved}: {_first_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - cloud SDKs (botocore, google-auth, azure) raise their own types
        raise ReferenceError(f"{uri!r}: cannot download {resolved}: {type(e).__name__}: {_first_line(e)}") from None


def _data_files(uri: str, local: Path) -> list[Path]:
    if not local.exists():
        raise ReferenceError(f"{uri!r}: {local} does not exist")
    if local.is_file():
        if local.suffix.lower() not in SUFFIXES:
            raise ReferenceError(f"{uri!r}: {local.name} is not parquet or CSV ({', '.join(SUFFIXES)})")
        return [local]
    files = sorted(p for p in local.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise ReferenceError(f"{uri!r}: no parquet or CSV file under {local}")
    return files


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
