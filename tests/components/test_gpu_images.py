"""GPU images on every target: a target that serves on GPUs builds its versions' images with the
CUDA builds of the model's framework and the NVIDIA runtime's environment, and a GPU request the
model or the base image cannot use fails at preview, naming the key, before any resource."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.settings import SettingsError
from modelctl.render import Rendered
from modelctl.sample import SampleRegistry
from tests.conftest import base_config
from tests.gpu_models import GpuModels

IMAGE = "docker-build:index:Image"
SM = {"region": "eu-west-1", "instanceCount": 1}
AZ = {"resourceGroup": "ml-rg", "workspace": "ml-ws", "location": "westeurope", "modelSource": "image"}
VX = {"project": "acme-ml", "region": "europe-west4", "minReplicas": 1, "maxReplicas": 2}
GPU_TARGETS: dict[str, dict[str, Any]] = {
    "kubernetes": {"namespace": "models", "replicas": 1, "gpu": {"count": 1}},
    "sagemaker": {**SM, "instanceType": "ml.g5.xlarge"},
    "azureml": {**AZ, "instanceType": "Standard_NC4as_T4_v3"},
    "vertex": {**VX, "machineType": "n1-standard-4", "acceleratorType": "NVIDIA_TESLA_T4"},
}
CPU_TARGETS: dict[str, dict[str, Any]] = {
    "kubernetes": {"namespace": "models", "replicas": 1},
    "sagemaker": {**SM, "instanceType": "ml.m5.large"},
    "azureml": {**AZ, "instanceType": "Standard_DS3_v2"},
    "vertex": {**VX, "machineType": "n1-standard-4"},
}
GPU_KEY = {
    "kubernetes": "kubernetes.gpu",
    "sagemaker": "sagemaker.instanceType",
    "azureml": "azureml.instanceType",
    "vertex": "vertex.acceleratorType",
}


def config(
    registry: SampleRegistry, target: str, spec: dict[str, Any], model: str, version: str, **extra: Any
) -> dict[str, Any]:
    cfg = base_config(registry, kubernetes=None, model={"name": model, "version": version}, **extra)
    cfg[f"mlflow-deploy:{target}"] = spec
    return cfg


def context(out: Rendered) -> tuple[str, list[str], list[str]]:
    """(Dockerfile, requirements.txt lines, tags) of the one image a render builds."""
    (image,) = out.of_type(IMAGE)
    ctx = Path(image.inputs["context"]["location"])
    return (ctx / "Dockerfile").read_text(), (ctx / "requirements.txt").read_text().split(), image.inputs["tags"]


@pytest.mark.parametrize("target", sorted(GPU_TARGETS))
def test_gpu_target_builds_a_cuda_image(
    render: Any, registry: SampleRegistry, gpu_models: GpuModels, target: str
) -> None:
    gpu = context(render(config(registry, target, GPU_TARGETS[target], gpu_models.name, "2")))
    cpu = context(render(config(registry, target, CPU_TARGETS[target], gpu_models.name, "2")))
    dockerfile, reqs, tags = gpu
    # TensorFlow's CUDA user space is its and-cuda extra; the pin stays the model's own
    assert "tensorflow[and-cuda]==2.16.1" in reqs and "tensorflow==2.16.1" not in reqs
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in dockerfile
    assert "NVIDIA_VISIBLE_DEVICES=all" in dockerfile
    assert dockerfile.splitlines()[2].startswith("FROM python:3.")  # the wheels bring CUDA
    # the CPU image of the same version: plain requirements, no NVIDIA environment, another tag
    assert "tensorflow==2.16.1" in cpu[1] and "NVIDIA" not in cpu[0]
    assert set(tags).isdisjoint(cpu[2])


def test_torch_image_keeps_the_model_pin(render: Any, registry: SampleRegistry, gpu_models: GpuModels) -> None:
    _, reqs, _ = context(render(config(registry, "kubernetes", GPU_TARGETS["kubernetes"], gpu_models.name, "1")))
    assert "torch==2.5.1" in reqs  # PyPI's Linux torch wheels depend on the nvidia-*-cu12 wheels


@pytest.mark.parametrize("target", sorted(GPU_TARGETS))
def test_gpu_for_an_sklearn_model_is_refused_naming_the_key(
    render: Any, registry: SampleRegistry, requests: list[Any], target: str
) -> None:
    with pytest.raises(SettingsError) as exc:
        render(config(registry, target, GPU_TARGETS[target], registry.name, "1"))
    ((key, message),) = exc.value.errors
    assert key == f"mlflow-deploy:{GPU_KEY[target]}"
    assert "sklearn" in message and "never use a GPU" in message
    assert {r.type for r in requests} <= {"pulumi:pulumi:Stack"}  # refused before any resource


def test_explicit_gpu_switch_is_the_key_named(render: Any, registry: SampleRegistry) -> None:
    spec = {**GPU_TARGETS["sagemaker"], "gpu": True}
    with pytest.raises(SettingsError) as exc:
        render(config(registry, "sagemaker", spec, registry.name, "1"))
    assert [k for k, _ in exc.value.errors] == ["mlflow-deploy:sagemaker.gpu"]


def test_gpu_off_on_a_gpu_instance_serves_sklearn(render: Any, registry: SampleRegistry) -> None:
    spec = {**GPU_TARGETS["sagemaker"], "gpu": False}
    dockerfile, _, _ = context(render(config(registry, "sagemaker", spec, registry.name, "1")))
    assert "NVIDIA" not in dockerfile


def test_cpu_only_base_image_is_refused(render: Any, registry: SampleRegistry, gpu_models: GpuModels) -> None:
    image = {"repository": "registry.example.com/models", "baseImage": "ghcr.io/acme/python:{python_version}-cpu"}
    with pytest.raises(SettingsError) as exc:
        render(config(registry, "kubernetes", GPU_TARGETS["kubernetes"], gpu_models.name, "1", image=image))
    ((key, message),) = exc.value.errors
    assert key == "mlflow-deploy:image.baseImage" and "CPU-only" in message


def test_cpu_only_prebuilt_image_is_refused(render: Any, registry: SampleRegistry, gpu_models: GpuModels) -> None:
    image = {"uris": {"1": "ghcr.io/acme/image-scorer:1-cpu"}}
    with pytest.raises(SettingsError) as exc:
        render(config(registry, "kubernetes", GPU_TARGETS["kubernetes"], gpu_models.name, "1", image=image))
    assert [k for k, _ in exc.value.errors] == ["mlflow-deploy:image.uris.1"]


def test_onnxruntime_gpu_needs_a_cuda_base_image(render: Any, registry: SampleRegistry, gpu_models: GpuModels) -> None:
    target = GPU_TARGETS["vertex"]
    with pytest.raises(SettingsError) as exc:
        render(config(registry, "vertex", target, gpu_models.name, "3"))
    ((key, message),) = exc.value.errors
    assert key == "mlflow-deploy:image.baseImage" and "cuDNN" in message
    image = {"baseImage": "ghcr.io/acme/cuda-python:12.4-cudnn-py{python_version}"}
    dockerfile, reqs, _ = context(render(config(registry, "vertex", target, gpu_models.name, "3", image=image)))
    assert dockerfile.splitlines()[2].startswith("FROM ghcr.io/acme/cuda-python:12.4-cudnn-py3.")
    assert "onnxruntime-gpu==1.20.1" in reqs


def test_candidate_checked_too(render: Any, registry: SampleRegistry, gpu_models: GpuModels) -> None:
    """Every live version is checked: a GPU-capable stable with a candidate that is not."""
    cfg = config(registry, "kubernetes", GPU_TARGETS["kubernetes"], gpu_models.name, "1")
    cfg["mlflow-deploy:candidate"] = {"version": "3", "percent": 10}
    with pytest.raises(SettingsError) as exc:
        render(cfg)
    assert [k for k, _ in exc.value.errors] == ["mlflow-deploy:image.baseImage"]
    assert "model version 3" in exc.value.errors[0][1]
