"""A pyfunc model (MLflow "models from code") whose load and predict the tests can hold up.

* ``model_config["load_gate"]``: ``load_context`` waits until that file exists (the tests pass it
  through ``SERVING_MODEL_CONFIG``) - to observe the server while the model is loading.
* input column ``gate``: ``predict`` creates ``<gate>.started`` and waits until the file ``<gate>``
  exists - to hold a request in flight for exactly as long as a test needs.
* input column ``sleep``: ``predict`` sleeps that many seconds - to run past the request timeout.
* input column ``env``: ``predict`` answers, per row, ``"<pid> <value>"``: the worker's pid and the
  value of the environment variable the row names, as the model itself sees it (``os.environ``;
  a forked worker's ``/proc/PID/environ`` still shows the fork server's).
* input column ``random``: ``predict`` answers, per row, ``"<pid> <n>"`` with ``n`` drawn from
  numpy's global generator (forked workers must not all draw the same numbers).
* input column ``fail``: ``predict`` raises ``ValueError`` for a row with ``fail`` > 0 - a model
  that fails, as opposed to input the server rejects.

It answers ``x * 2`` for an ``x`` column (0 otherwise). Every wait is bounded.
"""

from __future__ import annotations

import os
import time
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

MAX_WAIT_SECONDS = 60.0


def _wait_for(path: str) -> None:
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.02)


class SlowModel(PythonModel):
    def load_context(self, context):  # type: ignore[no-untyped-def]
        gate = (context.model_config or {}).get("load_gate")
        if gate:
            _wait_for(gate)

    # a DataFrame hint: MLflow validates nothing, as without a hint, and has no "add type hints"
    # warning to print (in ANSI colours) in the test summary
    def predict(self, context, model_input: pd.DataFrame, params=None):  # type: ignore[no-untyped-def]
        columns = set(model_input.columns)
        if "random" in columns:
            import numpy as np

            return [f"{os.getpid()} {np.random.randint(1 << 62)}" for _ in range(len(model_input))]
        if "env" in columns:
            return [f"{os.getpid()} {os.environ.get(str(name), '')}" for name in model_input["env"]]
        if "gate" in columns:
            for gate in model_input["gate"].dropna().unique():
                with open(f"{gate}.started", "w"):
                    pass
                _wait_for(str(gate))
        if "fail" in columns and (model_input["fail"] > 0).any():
            raise ValueError("the model failed on purpose")
        if "sleep" in columns:
            time.sleep(min(float(model_input["sleep"].max()), MAX_WAIT_SECONDS))
        if "x" in columns:
            return (model_input["x"] * 2).tolist()
        result: list[Any] = [0] * len(model_input)
        return result


mlflow.models.set_model(SlowModel())
