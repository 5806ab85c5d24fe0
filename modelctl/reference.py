"""``modelctl reference log``: give a model version the reference data drift is measured against.

The file (parquet or CSV) is logged as the run artifact ``reference/<file name>`` of the run that
produced the version, which is what ``monitoring.drift.reference: models:/<name>/<version>``
reads (monitor/reference.py). The file is read first, so a file the monitor could not load is
refused here, not at the next preview.
"""

from __future__ import annotations

from pathlib import Path

from modelctl.cli import CommandError


def log_reference(model: str, version: str, data: Path, tracking_uri: str | None = None) -> str:
    """Log ``data`` into the version's run under ``reference/``; return ``runs:/<run>/reference``.

    Refuses (CommandError, one line) an unreadable or empty file, an unknown version, a version
    without a run, and a run whose ``reference/`` already holds a file of another name (the monitor
    reads every file there: two would be concatenated)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from monitor.reference import REFERENCE_ARTIFACT, SUFFIXES, ReferenceError, load

    data = Path(data)
    if not data.is_file():
        raise CommandError(f"{data}: no such file")
    if data.suffix.lower() not in SUFFIXES:
        raise CommandError(f"{data.name}: the reference is parquet or CSV ({', '.join(SUFFIXES)})")
    try:
        frame = load(str(data))
    except ReferenceError as exc:
        raise CommandError(str(exc)) from None
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        mv = client.get_model_version(model, version)
        if not mv.run_id:
            raise CommandError(
                f"model {model!r} version {version} has no run (registered from outside a run): log the "
                "file into the training run, or register the version from a run"
            )
        others = [
            f.path.rsplit("/", 1)[-1]
            for f in client.list_artifacts(mv.run_id, REFERENCE_ARTIFACT)
            if not f.is_dir and f.path.rsplit("/", 1)[-1] != data.name
        ]
        if others:
            raise CommandError(
                f"run {mv.run_id} already has {REFERENCE_ARTIFACT}/{others[0]}, and every file there is part "
                f"of the reference: name the file {others[0]} to replace it"
            )
        client.log_artifact(mv.run_id, str(data), artifact_path=REFERENCE_ARTIFACT)
    except MlflowException as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CommandError(f"model {model!r} version {version}: {text}") from None
    print(
        f"logged {data.name} ({len(frame)} rows, {len(frame.columns)} columns) as "
        f"runs:/{mv.run_id}/{REFERENCE_ARTIFACT}/{data.name}; use it with "
        f"monitoring.drift.reference: models:/{model}/{version}"
    )
    return f"runs:/{mv.run_id}/{REFERENCE_ARTIFACT}"
