"""Shared fixtures: a real sqlite MLflow registry with a trained sample model, and a helper
that renders the real program under Pulumi's mock runtime."""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from modelctl.render import Rendered, run_program  # noqa: E402
from modelctl.sample import SampleRegistry, register_sample_model  # noqa: E402
from tests.gpu_models import GpuModels, register_gpu_models  # noqa: E402


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> SampleRegistry:
    """A real MLflow registry (sqlite in a temp dir): ``fraud-detector`` versions 1-3, alias
    ``champion`` -> 3. Each version is a LogisticRegression with a different C."""
    root = tmp_path_factory.mktemp("mlflow")
    reg = register_sample_model(root)
    os.environ["MLFLOW_TRACKING_URI"] = reg.tracking_uri
    # image build contexts of rendered programs go to a temp dir, not ./build
    os.environ["MLFLOW_DEPLOY_BUILD_DIR"] = str(tmp_path_factory.mktemp("build"))
    return reg


@pytest.fixture(scope="session")
def gpu_models(registry: SampleRegistry) -> GpuModels:
    """``image-scorer`` versions 1-3 (torch, TensorFlow, onnxruntime-gpu pyfunc models) in the
    same registry: what a GPU render serves (tests/gpu_models.py)."""
    return register_gpu_models(registry.tracking_uri)


def base_config(registry: SampleRegistry, **overrides: Any) -> dict[str, Any]:
    """A minimal valid stack config pointing at the test registry; ``overrides`` replace keys
    (``kubernetes=None`` removes one)."""
    cfg: dict[str, Any] = {
        "mlflow-deploy:mlflow": {"trackingUri": registry.tracking_uri},
        "mlflow-deploy:model": {"name": registry.name, "version": "1"},
        "mlflow-deploy:image": {"repository": "registry.example.com/models"},
        "mlflow-deploy:kubernetes": {"namespace": "models", "replicas": 2},
        "mlflow-deploy:monitoring": {"enabled": False},
    }
    for key, value in overrides.items():
        full = f"mlflow-deploy:{key}"
        if value is None:
            cfg.pop(full, None)
        else:
            cfg[full] = copy.deepcopy(value)
    return cfg


@pytest.fixture
def render(registry: SampleRegistry, tmp_path: Path) -> Callable[..., Rendered]:
    """``render(config, stack="test")`` runs the real __main__.py under the mock runtime."""

    def _render(config: dict[str, Any], stack: str = "test") -> Rendered:
        return run_program(config, stack=stack)

    return _render


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The raw RegisterResource requests of the renders in a test (resource options such as
    ignoreChanges and retainOnDelete, dependencies), as the engine receives them."""
    import modelctl.render as render_mod

    seen: list[Any] = []
    make = render_mod._make_monitor

    def wrapped(mocks: Any, rendered: Rendered) -> Any:
        monitor = make(mocks, rendered)
        register = monitor.RegisterResource

        def capture(request: Any) -> Any:
            seen.append(request)
            return register(request)

        monitor.RegisterResource = capture
        return monitor

    monkeypatch.setattr(render_mod, "_make_monitor", wrapped)
    return seen
