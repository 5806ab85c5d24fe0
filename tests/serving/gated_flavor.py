"""A pyfunc flavor (a model's ``loader_module``) whose *import* waits for a gate file.

The fork server imports a local model's loader module while it warms up, so with
``GATED_FLAVOR_IMPORT_GATE`` naming a file that does not exist yet, a test holds the server in
the state "the fork server is still importing" for as long as it needs (bounded: 60 s).
The model answers 1 for every row.
"""

from __future__ import annotations

import os
import time
from typing import Any

_gate = os.environ.get("GATED_FLAVOR_IMPORT_GATE")
if _gate:
    _deadline = time.monotonic() + 60
    while not os.path.exists(_gate) and time.monotonic() < _deadline:
        time.sleep(0.02)


class _Model:
    def predict(self, model_input: Any, params: Any = None) -> list[int]:
        return [1] * len(model_input)


def _load_pyfunc(path: str) -> _Model:
    return _Model()
