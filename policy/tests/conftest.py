"""Fixtures of the policy pack's tests (run in the pack's venv: ``policy/venv/bin/python -m pytest
policy/tests``; scripts/test.sh does).

The stacks are rendered by the *program's* Python (``MLFLOW_DEPLOY_PYTHON``, default ``python3``)
running render_cases.py, or read from ``POLICY_CASES_DIR`` when a previous step rendered them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

POLICY_DIR = Path(__file__).resolve().parents[1]
if str(POLICY_DIR) not in sys.path:
    sys.path.insert(0, str(POLICY_DIR))

CASES = ("dev", "prod", "gateway-canary", "prod-private-vertex", "lax-kubernetes", "lax-clouds")


@pytest.fixture(scope="session")
def cases_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("POLICY_CASES_DIR")
    if given and all((Path(given) / c / "resources.json").is_file() for c in CASES):
        return Path(given)
    out = Path(given) if given else tmp_path_factory.mktemp("cases")
    python = os.environ.get("MLFLOW_DEPLOY_PYTHON", "python3")
    proc = subprocess.run(
        [python, str(POLICY_DIR / "tests" / "render_cases.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"rendering the policy cases with {python} failed:\n{proc.stderr[-4000:]}"
    return out


@pytest.fixture(scope="session")
def stack(cases_dir: Path) -> Callable[[str], list[dict[str, Any]]]:
    """``stack("prod")``: the rendered resources.json of a case."""

    def load(case: str) -> list[dict[str, Any]]:
        return json.loads((cases_dir / case / "resources.json").read_text())

    return load
