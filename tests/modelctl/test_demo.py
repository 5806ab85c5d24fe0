"""The quickstart's main command, end to end: register, render, serve on loopback, predict."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_registers_renders_and_serves(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(
        [sys.executable, "-m", "modelctl", "demo", "--dir", str(tmp_path / "demo")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # a registry with the sample model was made where asked
    assert (tmp_path / "demo" / "mlflow.db").is_file()
    assert "versions 1, 2, 3; alias champion -> 3" in out
    # the dev stack was rendered and summarised
    resources = json.loads((tmp_path / "demo" / "render" / "resources.json").read_text())
    deployments = [r["name"] for r in resources if r["type"] == "kubernetes:apps/v1:Deployment"]
    assert deployments and all(name in out for name in deployments)
    assert re.search(r"kubernetes Deployment\s+fraud-detector-v\d+\s+replicas=", out)
    # one real prediction from the runtime on loopback, and its metrics
    m = re.search(r"-> 200 (\{.*\})", out)
    assert m, out
    preds = json.loads(m.group(1))["predictions"]
    assert len(preds) == 2 and all(p in (0, 1) for p in preds)
    assert re.search(r'model_requests_total\{route="/invocations",status="200"\} 1\.0', out)
    assert "model_prediction_rows_total 2.0" in out
    assert "server stopped." in out
