"""GPU and serverless settings of the cloud targets: the right resources, and a clear refusal of
impossible combinations (an accelerator a machine type cannot take, a GPU on a CPU instance)."""

from __future__ import annotations

from typing import Any

import pytest

from components.gpu import check_gpu_model, gpu_requirements, vertex_accelerator_types
from components.sagemaker_settings import sagemaker_instance_types
from components.settings import SettingsError, parse_settings

MODEL = {"name": "fraud-detector", "version": "7"}


def settings(**targets: Any) -> Any:
    return parse_settings({"model": MODEL, **targets})


def errors(**targets: Any) -> dict[str, str]:
    with pytest.raises(SettingsError) as exc:
        parse_settings({"model": MODEL, **targets})
    return {k.removeprefix("mlflow-deploy:"): v for k, v in exc.value.errors}


def test_every_sagemaker_gpu_type_in_botocore_has_a_gpu_count() -> None:
    from components.gpu import sagemaker_gpus

    gpu_types = [t for t in sagemaker_instance_types() if t.split(".")[1][0] in "gp" and t.split(".")[1][1].isdigit()]
    assert gpu_types
    for t in gpu_types:
        assert sagemaker_gpus(t) >= 1, t


def test_sagemaker_gpu_instance_defaults_workers_per_gpu() -> None:
    s = settings(sagemaker={"region": "eu-west-1", "instanceType": "ml.g5.12xlarge"})
    assert s.sagemaker.gpus == 4
    s = settings(sagemaker={"region": "eu-west-1", "instanceType": "ml.g5.12xlarge", "gpu": False})
    assert s.sagemaker.gpus == 0


@pytest.mark.parametrize(
    ("sm", "key", "needle"),
    [
        ({"instanceType": "ml.m5.large", "gpu": True}, "sagemaker.gpu", "no GPU"),
        ({"instanceType": "ml.inf2.xlarge", "gpu": True}, "sagemaker.gpu", "Neuron"),
        (
            {"serverless": {}, "dataCapture": {"destinationS3Uri": "s3://bucket-x/p"}},
            "sagemaker.dataCapture",
            "serverless",
        ),
        ({"serverless": {}, "autoscaling": {}}, "sagemaker.autoscaling", "serverless"),
        ({"serverless": {}, "instanceType": "ml.m5.large"}, "sagemaker.instanceType", "serverless"),
        ({"serverless": {}, "networkIsolation": True}, "sagemaker.networkIsolation", "serverless"),
        ({"serverless": {"memorySizeMb": 1500}}, "sagemaker.serverless.memorySizeMb", "1 GB steps"),
        (
            {"serverless": {"maxConcurrency": 5, "provisionedConcurrency": 6}},
            "sagemaker.serverless",
            "more than maxConcurrency",
        ),
        (
            {"serverless": {}, "deployment": {"type": "CANARY", "canarySize": {"type": "INSTANCE_COUNT", "value": 1}}},
            "sagemaker.deployment.canarySize",
            "CAPACITY_PERCENT",
        ),
    ],
)
def test_sagemaker_impossible_combinations(sm: dict[str, Any], key: str, needle: str) -> None:
    errs = errors(sagemaker={"region": "eu-west-1", **sm})
    assert needle in errs[key], errs


def test_sagemaker_serverless_refuses_every_candidate_strategy() -> None:
    for strategy in ("canary", "blue-green", "shadow"):
        errs = errors(
            sagemaker={"region": "eu-west-1", "serverless": {}}, candidate={"version": "8", "strategy": strategy}
        )
        assert "one production variant" in errs["candidate"]
    s = settings(sagemaker={"region": "eu-west-1", "serverless": {}})
    assert s.sagemaker.effective_network_isolation is False and s.sagemaker.gpus == 0


AZ = {"resourceGroup": "rg", "workspace": "ws", "location": "westeurope", "containerRegistry": "acme.azurecr.io"}


def test_azure_gpu_sizes() -> None:
    assert settings(azureml={**AZ, "instanceType": "Standard_NC24ads_A100_v4"}).azureml.gpus == 1
    assert settings(azureml={**AZ, "instanceType": "standard_nc64as_t4_v3"}).azureml.gpus == 4
    assert errors(azureml={**AZ, "instanceType": "Standard_DS3_v2", "gpu": True})["azureml.gpu"].startswith(
        "Standard_DS3_v2 has no GPU"
    )
    assert "does not know" in errors(azureml={**AZ, "instanceType": "Standard_NC999_v9"})["azureml.instanceType"]


VX = {"project": "acme"}


@pytest.mark.parametrize(
    ("vx", "want"),
    [
        ({"machineType": "n1-standard-8", "acceleratorType": "NVIDIA_TESLA_T4"}, ("NVIDIA_TESLA_T4", 1)),
        (
            {"machineType": "n1-standard-32", "acceleratorType": "NVIDIA_TESLA_V100", "acceleratorCount": 4},
            ("NVIDIA_TESLA_V100", 4),
        ),
        ({"machineType": "g2-standard-24", "acceleratorType": "NVIDIA_L4"}, ("NVIDIA_L4", 2)),
        (
            {"machineType": "a2-highgpu-2g", "acceleratorType": "NVIDIA_TESLA_A100", "acceleratorCount": 2},
            ("NVIDIA_TESLA_A100", 2),
        ),
        ({"machineType": "n1-standard-2"}, (None, None)),
    ],
)
def test_vertex_accelerators_that_fit(vx: dict[str, Any], want: tuple[Any, Any]) -> None:
    assert settings(vertex={**VX, **vx}).vertex.accelerator == want


@pytest.mark.parametrize(
    ("vx", "key", "needle"),
    [
        ({"acceleratorType": "NVIDIA_TESLA_X1"}, "vertex.acceleratorType", "not an AcceleratorType"),
        (
            {"machineType": "e2-standard-4", "acceleratorType": "NVIDIA_TESLA_T4"},
            "vertex.acceleratorType",
            "takes no accelerator",
        ),
        (
            {"machineType": "n1-standard-4", "acceleratorType": "NVIDIA_L4"},
            "vertex.acceleratorType",
            "does not attach to N1",
        ),
        (
            {"machineType": "n1-standard-4", "acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 3},
            "vertex.acceleratorType",
            "counts of [1, 2, 4]",
        ),
        (
            {"machineType": "n1-standard-32", "acceleratorType": "NVIDIA_TESLA_T4"},
            "vertex.acceleratorType",
            "at most 24",
        ),
        (
            {"machineType": "g2-standard-8", "acceleratorType": "NVIDIA_TESLA_T4"},
            "vertex.acceleratorType",
            "comes with NVIDIA_L4",
        ),
        ({"machineType": "a2-highgpu-1g"}, "vertex.acceleratorType", "set acceleratorType NVIDIA_TESLA_A100"),
        (
            {"machineType": "a2-highgpu-1g", "acceleratorType": "NVIDIA_TESLA_A100", "acceleratorCount": 2},
            "vertex.acceleratorCount",
            "exactly 1",
        ),
        ({"acceleratorType": "TPU_V3"}, "vertex.acceleratorType", "TPU"),
        ({"acceleratorCount": 1}, "vertex.acceleratorCount", "needs acceleratorType"),
    ],
)
def test_vertex_impossible_accelerators(vx: dict[str, Any], key: str, needle: str) -> None:
    errs = errors(vertex={**VX, **vx})
    assert needle in errs[key], errs


def test_vertex_enum_is_the_installed_api_and_the_real_machine_spec_takes_it() -> None:
    from google.cloud.aiplatform_v1 import types

    from components.vertex_provider import CPU_METRIC, DUTY_CYCLE_METRIC, AiplatformApi

    assert (
        "NVIDIA_L4" in vertex_accelerator_types() and "ACCELERATOR_TYPE_UNSPECIFIED" not in vertex_accelerator_types()
    )
    api = object.__new__(AiplatformApi)
    api._v1 = __import__("google.cloud.aiplatform_v1", fromlist=["x"])
    res = api._resources(1, 2, {DUTY_CYCLE_METRIC: 70, CPU_METRIC: 60}, "g2-standard-24", "NVIDIA_L4", 2)
    assert res.machine_spec.accelerator_type == types.AcceleratorType.NVIDIA_L4
    assert res.machine_spec.accelerator_count == 2
    assert {m.metric_name: m.target for m in res.autoscaling_metric_specs} == {DUTY_CYCLE_METRIC: 70, CPU_METRIC: 60}


def test_vertex_gpu_changes_the_deployed_model_id_but_cpu_ids_stay() -> None:
    from components.vertex import deployment_inputs

    cpu = settings(vertex=VX).vertex
    gpu = settings(vertex={**VX, "machineType": "n1-standard-2", "acceleratorType": "NVIDIA_TESLA_T4"}).vertex
    a = deployment_inputs("fraud-detector", "7", "europe-docker.pkg.dev/a/b/c:v7", cpu)
    b = deployment_inputs("fraud-detector", "7", "europe-docker.pkg.dev/a/b/c:v7", gpu)
    assert "acceleratorType" not in a and b["acceleratorType"] == "NVIDIA_TESLA_T4"
    assert a["deployedModelId"] != b["deployedModelId"]
    assert b["container"]["env"]["SERVING_WORKERS"] == "1"


def test_gpu_image_checks() -> None:
    assert gpu_requirements(["tensorflow==2.16.1", "numpy<2"]) == ["tensorflow[and-cuda]==2.16.1", "numpy<2"]
    with pytest.raises(ValueError, match="CPU-only build"):
        gpu_requirements(["torch==2.3.0+cpu"])
    with pytest.raises(ValueError, match="never use a GPU"):
        check_gpu_model(["python_function", "sklearn"], [], "python:3.11-slim")
    with pytest.raises(ValueError, match="CPU-only image"):
        check_gpu_model(["python_function", "pytorch"], [], "tensorflow/tensorflow:2.16.1")
    check_gpu_model(["python_function", "pytorch"], ["torch==2.3.0"], "python:3.11-slim")
    check_gpu_model(["python_function", "tensorflow"], [], "tensorflow/tensorflow:2.16.1-gpu")
