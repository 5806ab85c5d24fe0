"""What every part of the stack settings shares: the model base class, the error type, checks."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

NAMESPACE = "mlflow-deploy"

# Kubernetes quantities, e.g. "500m", "1", "2Gi", "512Mi".
_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
# A model version in the MLflow registry is a positive integer, kept as a string.
_VERSION = re.compile(r"^[1-9][0-9]*$")



class SettingsError(ValueError):
    """Invalid stack config. ``errors`` holds ``(key path, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        lines = "\n".join(f"  {path}: {msg}" for path, msg in errors)
        n = len(errors)
        super().__init__(f"invalid stack config ({n} error{'s' if n != 1 else ''}):\n{lines}")


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


def _check_version(v: str | int | None) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    if not _VERSION.match(s):
        raise ValueError(f"a registry model version is a positive integer (got {v!r})")
    return s


def _check_quantity(v: str | int | float | None) -> str | None:
    if v is None:
        return None
    s = str(v)
    if not _QUANTITY.match(s):
        raise ValueError(f"not a Kubernetes quantity (got {v!r}; e.g. '500m', '1', '2Gi')")
    return s


class _KeyedError(ValueError):
    """A cross-field error that knows which key it is about."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(message)


