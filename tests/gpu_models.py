"""GPU-capable models for the render tests: pyfunc models whose requirements name a CUDA framework
(torch, TensorFlow, ONNX Runtime's GPU build), registered into the test registry beside the
sklearn sample model. The images are rendered, never built, so the frameworks are not installed:
what the GPU checks read is the registered model's MLmodel flavors and requirements.txt."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib.metadata import version

import mlflow.pyfunc

GPU_MODEL = "image-scorer"
FRAMEWORKS = {
    "1": ["torch==2.5.1"],
    "2": ["tensorflow==2.16.1"],
    "3": ["onnxruntime-gpu==1.20.1", "onnx==1.17.0"],
}
"""Version -> the framework requirement it was logged with."""


class Scorer(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    # no annotations: MLflow would try to infer a signature from them
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return model_input


@dataclass(frozen=True)
class GpuModels:
    tracking_uri: str
    name: str


def register_gpu_models(tracking_uri: str) -> GpuModels:
    """Versions 1-3 of ``image-scorer`` in the registry at ``tracking_uri`` (idempotent)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    if client.search_registered_models(f"name = '{GPU_MODEL}'"):
        return GpuModels(tracking_uri, GPU_MODEL)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow's type-hint notices about the untyped predict
            for v in sorted(FRAMEWORKS):
                with mlflow.start_run():
                    mlflow.pyfunc.log_model(
                        name="model",
                        python_model=Scorer(),
                        registered_model_name=GPU_MODEL,
                        pip_requirements=[f"mlflow=={version('mlflow')}", *FRAMEWORKS[v]],
                    )
    finally:
        mlflow.set_tracking_uri(previous)
    return GpuModels(tracking_uri, GPU_MODEL)
