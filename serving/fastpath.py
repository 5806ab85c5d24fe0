"""A short cut through MLflow's parsing for the commonest request, with MLflow's exact result.

MLflow turns ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`` into a DataFrame
in two steps that dominate a small model's request: ``pd.DataFrame(columns=..., data=rows)``
(an object array, then per-column type inference) and ``cast_df_types_according_to_schema``,
which replaces every column by ``astype(<schema type>)`` one ``__setitem__`` at a time (~45% of
the in-process cost of a 30-feature model, ``bench/hotpath.py``). When the request is exactly
the plain case, :func:`FastFrame.frame` builds the same DataFrame directly: one NumPy array per
column, of the schema's type, the column labels an ``Index`` built once per model.

"Exactly the plain case" (anything else returns ``None`` and MLflow's own parsing runs, so every
other request and every error gets MLflow's answer, byte for byte):

* the model's input schema names its columns (no tensor spec), each a required ``double``
  (float64) or ``long`` (int64), and the model's signature is not from type hints;
* ``Content-Type`` is exactly ``application/json``; the body is a JSON object whose only key is
  ``dataframe_split``, holding ``columns`` equal to the schema's names in the schema's order
  and ``data`` (no ``index``): one or more rows, each a list of as many values;
* a ``double`` column holds only JSON numbers (``int`` within +-2**53, so its float64 is the
  one pandas' int64 -> float64 ``astype`` gives; ``float``, NaN and infinities included), a
  ``long`` column only JSON integers within int64. ``true``/``false``, ``null``, strings and
  anything nested fall back.

Under those conditions MLflow's DataFrame has, per column, the schema's dtype and the same
values (pandas infers int64 or float64 from the numbers, then ``astype`` gives the schema's
dtype), a ``RangeIndex``, and the same labels; only the internal block layout differs, which
the model never sees: ``PyFuncModel.predict`` enforces the schema as before and rebuilds the
frame column by column either way. The JSON is decoded with ``json.loads`` as MLflow does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

_EXACT_FLOAT = 2**53
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_CONTENT_TYPE = "application/json"


class FastFrame:
    """Built once per loaded model; :meth:`frame` per request."""

    __slots__ = ("_columns", "_dtypes", "_names", "_np", "_pd", "_single")

    def __init__(self, names: list[str], kinds: list[str]) -> None:
        import numpy as np
        import pandas as pd

        self._np = np
        self._pd = pd
        self._names = names
        self._dtypes = [np.dtype(np.float64) if kind == "double" else np.dtype(np.int64) for kind in kinds]
        # the labels MLflow's pd.DataFrame(columns=names) gets, built once instead of per request
        self._columns = pd.Index(names)
        self._single = self._dtypes[0] if len(set(self._dtypes)) == 1 else None

    @classmethod
    def for_model(cls, model: Any, schema: Any) -> FastFrame | None:
        """A FastFrame if the model's signature allows the short cut, else None."""
        from mlflow.types.schema import DataType

        if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
            return None
        metadata = getattr(model, "metadata", None)
        from_hints = getattr(metadata, "_is_signature_from_type_hint", None)
        if from_hints is None or from_hints():
            return None
        names: list[str] = []
        kinds: list[str] = []
        for spec in schema.inputs:
            if not spec.required or not isinstance(spec.name, str):
                return None
            if spec.type == DataType.double:
                kinds.append("double")
            elif spec.type == DataType.long:
                kinds.append("long")
            else:
                return None
            names.append(spec.name)
        if not names or len(set(names)) != len(names):
            return None
        return cls(names, kinds)

    def frame(self, body: bytes, content_type: str) -> Any:
        """MLflow's parsed and cast DataFrame for this request, or None (MLflow parses it)."""
        if content_type != _CONTENT_TYPE or not body.startswith(b"{"):
            return None
        try:
            decoded = json.loads(body)
        except ValueError:
            return None
        if not isinstance(decoded, dict) or len(decoded) != 1:
            return None
        split = decoded.get("dataframe_split")
        if not isinstance(split, dict) or len(split) != 2 or split.get("columns") != self._names:
            return None
        rows = split.get("data")
        if not isinstance(rows, list) or not rows:
            return None
        width = len(self._names)
        for row in rows:
            if type(row) is not list or len(row) != width:
                return None
        np = self._np
        dtypes = self._dtypes
        if self._single is not None:
            check = _is_double if self._single.kind == "f" else _is_long
            for row in rows:
                for v in row:
                    if not check(v):
                        return None
            return self._pd.DataFrame(np.array(rows, dtype=self._single), columns=self._columns, copy=False)
        arrays = {}
        for i, dtype in enumerate(dtypes):
            values = [row[i] for row in rows]
            check = _is_double if dtype.kind == "f" else _is_long
            for v in values:
                if not check(v):
                    return None
            arrays[self._names[i]] = np.array(values, dtype=dtype)
        frame = self._pd.DataFrame(arrays, copy=False)
        frame.columns = self._columns
        return frame


def _is_double(v: Any) -> bool:
    t = type(v)
    return t is float or (t is int and -_EXACT_FLOAT <= v <= _EXACT_FLOAT)


def _is_long(v: Any) -> bool:
    return type(v) is int and _INT64_MIN <= v <= _INT64_MAX


def invoke(
    fast: FastFrame | None, invocations: Callable[..., Any], body: bytes, content_type: str, model: Any, schema: Any
) -> Any:
    """MLflow's ``scoring_server.invocations(body, content_type, model, schema)``, through the
    short cut when the request allows it: then the tail of MLflow's function (predict, its
    exception handling, ``predictions_to_json``) runs here, line for line."""
    frame = fast.frame(body, content_type) if fast is not None else None
    if frame is None:
        return invocations(body, content_type, model, schema)
    import traceback
    from io import StringIO

    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST
    from mlflow.pyfunc import scoring_server

    try:
        raw_predictions = model.predict(frame, params=None)
    except MlflowException as e:
        if "Failed to enforce schema" in e.message:
            scoring_server._logger.warning(
                "If using `instances` as input key, we internally convert "
                "the data type from `records` (List[Dict]) type to "
                "`list` (Dict[str, List]) type if the data is a pandas "
                "dataframe representation. This might cause schema changes. "
                "Please use `inputs` to avoid this conversion.\n"
            )
        e.message = f"Failed to predict data '{frame}'. \nError: {e.message}"
        raise e
    except Exception:  # noqa: BLE001 - MLflow's own handler, line for line
        raise MlflowException(  # noqa: B904 - as MLflow raises it (the model's exception as context)
            message=(
                "Encountered an unexpected error while evaluating the model. Verify"
                " that the serialized input Dataframe is compatible with the model for"
                " inference."
            ),
            error_code=BAD_REQUEST,
            stack_trace=traceback.format_exc(),
        )
    result = StringIO()
    scoring_server.predictions_to_json(raw_predictions, result)
    return scoring_server.InvocationsResponse(response=result.getvalue(), status=200, mimetype="application/json")
