"""Resolve a registry model (name + version or alias) to a :class:`ResolvedModel`.

This runs at preview time, before any resource is declared: an alias such as ``champion`` is
turned into the concrete version it points at, so the version shows in the ``pulumi preview``
diff, and every resource name is derived from that version.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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
    """The registry URI: the config's, else ``MLFLOW_TRACKING_URI``; an error if neither, or if
    it names a local database or folder that does not exist (see :func:`check_tracking_uri`)."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise RegistryError(
            "no MLflow registry: set mlflow-deploy:mlflow.trackingUri or MLFLOW_TRACKING_URI"
        )
    check_tracking_uri(uri)
    return uri


# Schemes MLflow's client reaches over the network or an SDK: nothing to check locally.
_REMOTE_SCHEMES = frozenset({"http", "https", "databricks", "databricks-uc", "uc"})
_DB_SCHEMES = frozenset({"postgresql", "mysql", "mssql"})


def local_store_path(uri: str) -> Path | None:
    """The file or folder a local tracking URI names (``sqlite:///x.db``, ``file:///x``, ``./x``),
    relative paths against the working directory as MLflow resolves them; None for a remote store
    or an in-memory database."""
    scheme, sep, rest = uri.partition(":")
    if not sep or len(scheme) == 1:  # a plain path (or a Windows drive letter)
        return Path(uri)
    scheme = scheme.lower()
    if scheme == "sqlite":
        # SQLAlchemy: sqlite:///relative.db, sqlite:////absolute.db, sqlite:// (memory)
        path = rest.removeprefix("//").split("?", 1)[0]
        path = path[1:] if path.startswith("/") else path
        return None if path in ("", ":memory:") else Path(path)
    if scheme == "file":
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    return None


def check_tracking_uri(uri: str) -> None:
    """Refuse a local registry that does not exist.

    MLflow's client creates a missing sqlite database (and its folders) on first use, so a typo
    in the path would "work" against a new empty registry and report the model as missing. The
    program and modelctl only ever read a registry: a database or folder that is not there is a
    mistake, reported with the URI and the path it resolved to.
    """
    scheme = uri.partition(":")[0].lower() if ":" in uri else ""
    remote = uri.lower() in ("databricks", "databricks-uc") or scheme in _REMOTE_SCHEMES
    if remote or scheme.startswith(tuple(_DB_SCHEMES)):
        return
    path = local_store_path(uri)
    if path is None:  # other schemes (plugins such as azureml://) are MLflow's to judge
        return
    where = path if path.is_absolute() else Path.cwd() / path
    if not scheme:
        if not where.exists():
            raise RegistryError(
                f"MLflow tracking URI {uri!r}: not a URI (no scheme such as http:// or sqlite:///), and no "
                f"local folder {where} exists"
            )
        return
    if not where.parent.is_dir():
        raise RegistryError(
            f"MLflow tracking URI {uri!r}: the folder {where.parent} does not exist "
            "(a typo? MLflow would create a new, empty registry there)"
        )
    if not where.exists():
        raise RegistryError(
            f"MLflow tracking URI {uri!r}: {where} does not exist "
            "(a typo? MLflow would create a new, empty registry there)"
        )


# Registry calls fail within a short, bounded budget instead of MLflow's default of 7 retries
# with exponential backoff (about four minutes against a dead server). Per request: 3 attempts of
# at most 4 s each (connect or read) with 0 s and 2 s between them: 14 s at worst. Each variable
# that is already set in the environment wins.
REGISTRY_HTTP_BUDGET = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "4",
}


@contextlib.contextmanager
def _fail_fast() -> Iterator[None]:
    """Do not let an unreachable registry hang a preview or a modelctl command for minutes."""
    saved = {k: os.environ.get(k) for k in REGISTRY_HTTP_BUDGET}
    for k, v in REGISTRY_HTTP_BUDGET.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)


def _client(tracking_uri: str, registry_uri: str | None) -> Any:
    from mlflow.tracking import MlflowClient

    if registry_uri:
        check_tracking_uri(registry_uri)
    try:
        return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)
    except Exception as exc:  # an unsupported scheme, a plugin that fails to load, ...
        raise RegistryError(f"MLflow tracking URI {registry_uri or tracking_uri!r}: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    """The gist of an exception: its first line, without MLflow's trailing "See https://..."."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].split(" See http")[0]


def _is_not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


_CAUSE = re.compile(r"\(Caused by \w+\((?P<inner>.*)\)\)\s*$", re.DOTALL)
_WHO = re.compile(r"^(?:<[^>]*>|\w+\([^)]*\)): ")


def _root_cause(text: str) -> str | None:
    """urllib3's ``... (Caused by NewConnectionError("HTTPConnection(...): Failed to establish a new
    connection: [Errno 111] Connection refused"))`` -> ``Failed to establish ... Connection refused``."""
    m = _CAUSE.search(text)
    if not m:
        return None
    inner = m.group("inner").strip()
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        inner = inner[1:-1]
    return _WHO.sub("", inner).strip() or None


def _unreachable(tracking_uri: str, exc: Exception) -> RegistryError:
    """One line: the URI and the root cause (``[Errno 111] Connection refused``, ``Read timed
    out``), not urllib3's nested retry report."""
    cause = _root_cause(str(exc))
    text = cause or _first_line(exc)
    retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    if cause and retries and retries.isdigit():
        text += f" ({int(retries) + 1} attempts)"
    return RegistryError(f"MLflow registry at {tracking_uri} is unreachable: {text}")


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
        try:
            artifact_uri = str(client.get_model_version_download_uri(name, str(mv.version)))
            mlmodel = _read_mlmodel(artifact_uri)
        except Exception as exc:  # the artifact store (s3, gs, a proxied server) can fail on its own
            raise RegistryError(
                f"model {name!r} version {mv.version} in {uri}: cannot read its MLmodel: {_first_line(exc)}"
            ) from exc
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

    return describe_version(name, version, tracking_uri=tracking_uri) is not None


def describe_version(name: str, version: str, *, tracking_uri: str | None = None) -> Any | None:
    """The registry's ``ModelVersion`` for ``name`` / ``version``, or None when the registry has no
    such model or version. An unreachable or unusable registry is a :class:`RegistryError` naming
    the URI (never reported as "not found")."""
    from mlflow.exceptions import MlflowException

    uri = tracking_uri_from(tracking_uri)
    with _fail_fast():
        client = _client(uri, None)
        try:
            return client.get_model_version(name, str(version))
        except MlflowException as exc:
            if _is_not_found(exc):
                return None
            raise _unreachable(uri, exc) from exc
        except Exception as exc:  # connection errors surface as requests/OSError types
            raise _unreachable(uri, exc) from exc


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
