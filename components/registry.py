"""Resolve a registry model (name + version or alias) to a :class:`ResolvedModel`.

This runs at preview time, before any resource is declared: an alias such as ``champion`` is
turned into the concrete version it points at, so the version shows in the ``pulumi preview``
diff, and every resource name is derived from that version.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.validation import check_python_version

DEFAULT_PYTHON = "3.11"


class RegistryError(RuntimeError):
    """The registry could not resolve what the stack config names."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    version: str
    run_id: str | None
    source: str
    """Where the registry says the artifacts are (``models:/m-…``, ``runs:/…``, ``s3://…``)."""
    artifact_uri: str
    """The concrete artifact location the model downloads from (``file://``, ``s3://`` …)."""
    flavors: tuple[str, ...]
    signature: dict[str, Any] | None
    python_version: str
    """``major.minor.patch`` the model was logged with."""
    requirements: tuple[str, ...]
    """The model's own pinned pip requirements (its ``requirements.txt``)."""
    tracking_uri: str
    alias: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """A ``models:/`` URI that pins this exact version."""
        return f"models:/{self.name}/{self.version}"

    @property
    def python_minor(self) -> str:
        return ".".join(self.python_version.split(".")[:2])


def tracking_uri_from(configured: str | None) -> str:
    """The registry URI: the config's, else ``MLFLOW_TRACKING_URI``; an error if neither."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise RegistryError(
            "no MLflow registry: set mlflow-deploy:mlflow.trackingUri or MLFLOW_TRACKING_URI"
        )
    return uri


@contextlib.contextmanager
def _fail_fast() -> Iterator[None]:
    """Do not let an unreachable registry hang a preview for minutes of retries."""
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
    saved = {k: os.environ.get(k) for k in keys}
    for k, v in keys.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)


def _client(tracking_uri: str, registry_uri: str | None) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)


def _is_not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def _unreachable(tracking_uri: str, exc: Exception) -> RegistryError:
    return RegistryError(f"MLflow registry at {tracking_uri} is unreachable: {exc}")


def resolve_model(
    name: str,
    version: str | None = None,
    alias: str | None = None,
    *,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
) -> ResolvedModel:
    """Look ``name`` + ``version``/``alias`` up in the registry and read its MLmodel metadata."""
    if (version is None) == (alias is None):
        raise ValueError("give exactly one of version or alias")
    uri = tracking_uri_from(tracking_uri)
    from mlflow.exceptions import MlflowException

    with _fail_fast():
        client = _client(uri, registry_uri)
        try:
            client.get_registered_model(name)
        except MlflowException as exc:
            if _is_not_found(exc):
                raise RegistryError(f"registered model {name!r} not found in {uri}") from exc
            raise _unreachable(uri, exc) from exc
        except Exception as exc:  # connection errors surface as requests/OSError types
            raise _unreachable(uri, exc) from exc
        try:
            if alias is not None:
                mv = client.get_model_version_by_alias(name, alias)
            else:
                mv = client.get_model_version(name, str(version))
        except MlflowException as exc:
            if _is_not_found(exc):
                what = f"alias {alias!r}" if alias is not None else f"version {version}"
                known = _known_versions(client, name)
                raise RegistryError(
                    f"model {name!r} has no {what} in {uri} (versions: {known or 'none'})"
                ) from exc
            raise _unreachable(uri, exc) from exc
        artifact_uri = str(client.get_model_version_download_uri(name, str(mv.version)))
        mlmodel = _read_mlmodel(artifact_uri)
        flavors = tuple(sorted(mlmodel.get("flavors", {})))
        if "python_function" not in flavors:
            raise RegistryError(
                f"model {name!r} version {mv.version} has no python_function flavor "
                f"(flavors: {', '.join(flavors) or 'none'}); the serving runtime needs a pyfunc"
            )
        pyfunc = mlmodel["flavors"]["python_function"]
        python_version = str(pyfunc.get("python_version") or DEFAULT_PYTHON)
        try:
            # it lands in the image's FROM line (image.baseImage's {python_version})
            check_python_version(python_version)
        except ValueError as exc:
            raise RegistryError(
                f"model {name!r} version {mv.version}: MLmodel flavors.python_function.python_version: {exc}"
            ) from None
        requirements = _read_requirements(artifact_uri)
    return ResolvedModel(
        name=name,
        version=str(mv.version),
        run_id=mv.run_id or None,
        source=str(mv.source),
        artifact_uri=artifact_uri,
        flavors=flavors,
        signature=mlmodel.get("signature"),
        python_version=python_version,
        requirements=tuple(requirements),
        tracking_uri=uri,
        alias=alias,
        tags=dict(mv.tags or {}),
    )


def version_exists(name: str, version: str, *, tracking_uri: str | None = None) -> bool:
    """True when ``name`` has ``version`` in the registry (used by modelctl before any write)."""
    from mlflow.exceptions import MlflowException

    uri = tracking_uri_from(tracking_uri)
    with _fail_fast():
        try:
            _client(uri, None).get_model_version(name, str(version))
        except MlflowException as exc:
            if _is_not_found(exc):
                return False
            raise _unreachable(uri, exc) from exc
    return True


def _known_versions(client: Any, name: str) -> str:
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except Exception:  # noqa: BLE001 - only used to enrich an error message
        return ""
    return ", ".join(sorted((str(v.version) for v in versions), key=int))


def _read_mlmodel(artifact_uri: str) -> dict[str, Any]:
    import yaml
    from mlflow.artifacts import download_artifacts

    path = download_artifacts(artifact_uri=f"{artifact_uri.rstrip('/')}/MLmodel")
    data = yaml.safe_load(Path(path).read_text())
    sig = data.get("signature")
    if isinstance(sig, dict):
        # MLmodel stores the schema as JSON strings; expose them as data
        data["signature"] = {k: (json.loads(v) if isinstance(v, str) else v) for k, v in sig.items()}
    return dict(data)


def _read_requirements(artifact_uri: str) -> list[str]:
    from mlflow.artifacts import download_artifacts

    try:
        path = download_artifacts(artifact_uri=f"{artifact_uri.rstrip('/')}/requirements.txt")
    except Exception:  # noqa: BLE001 - a model logged without requirements
        return []
    lines = Path(path).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def download_model(model: ResolvedModel, dst: Path) -> Path:
    """Download a model's artifacts (the directory holding ``MLmodel``) into ``dst``."""
    from mlflow.artifacts import download_artifacts

    dst.mkdir(parents=True, exist_ok=True)
    return Path(download_artifacts(artifact_uri=model.artifact_uri, dst_path=str(dst)))
