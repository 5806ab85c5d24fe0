"""GPUs on every target: what each platform's machine types carry, and the image a GPU needs.

Pure knowledge and checks (no Pulumi); the settings modules call the checks, the components the
builders.

* SageMaker: the GPUs of each GPU instance type botocore's ``ProductionVariantInstanceType`` enum
  lists (AWS "Amazon EC2 accelerated computing instance specifications", docs.aws.amazon.com/ec2/
  latest/instancetypes/ac.html, and AWS Batch "GPU jobs" table of GPUs per instance type).
  Inferentia/Trainium types (``ml.inf*``, ``ml.trn*``) carry Neuron accelerators, not CUDA GPUs.
* Azure ML: managed online endpoints' GPU VM sizes, the ``Standard_NC*`` / ``Standard_ND*`` /
  ``Standard_NV*`` families (learn.microsoft.com "Managed online endpoints SKU list" and the VM
  size pages "NCv3", "NCasT4_v3", "NC A100 v4", "NCads H100 v5", "ND A100 v4", "NDv2").
* Vertex AI: ``MachineSpec.acceleratorType`` is the API's ``AcceleratorType`` enum, read from the
  installed google-cloud-aiplatform (``aiplatform_v1.types.AcceleratorType``, the same list as the
  REST reference cloud.google.com/vertex-ai/docs/reference/rest/v1/MachineSpec). Which machine
  types take which accelerator, and how many: cloud.google.com/vertex-ai/docs/predictions/
  configure-compute ("GPUs" section) and Compute Engine "GPU machine types": accelerator-optimized
  machines (A2, A3, A4, G2) come with a fixed GPU model and count; N1 machines take T4, P4, P100 or
  V100, 1/2/4 (V100 also 8), each count up to a vCPU limit; every other series takes none.
* Image: the CUDA user space comes with the framework's own wheels (PyTorch's Linux wheels on PyPI
  depend on the ``nvidia-*-cu12`` runtime wheels; TensorFlow's is the ``and-cuda`` extra), and the
  NVIDIA container toolkit mounts the host driver into a container whose environment asks for the
  ``compute`` capability. So a GPU image keeps the model's exact Python (``python:<x.y>-slim``) and
  its pinned framework, adds the CUDA extras per flavor, and sets ``NVIDIA_VISIBLE_DEVICES`` /
  ``NVIDIA_DRIVER_CAPABILITIES``; an explicitly CPU-only base image or wheel is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# --------------------------------------------------------------------------- sagemaker

_SAGEMAKER_SIZES_1_4_8 = {
    "xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1,
    "12xlarge": 4, "24xlarge": 4, "48xlarge": 8,
}  # fmt: skip
SAGEMAKER_GPUS: dict[str, int] = {
    **{f"ml.p2.{s}": n for s, n in {"xlarge": 1, "8xlarge": 8, "16xlarge": 16}.items()},
    **{f"ml.p3.{s}": n for s, n in {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8}.items()},
    **{f"ml.g4dn.{s}": n for s, n in {
        "xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1, "12xlarge": 4}.items()},
    **{f"ml.{fam}.{s}": n for fam in ("g5", "g6", "g6e") for s, n in _SAGEMAKER_SIZES_1_4_8.items()},
    **{f"ml.g7e.{s}": n for s, n in {
        "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "12xlarge": 2, "24xlarge": 4, "48xlarge": 8}.items()},
    "ml.p4d.24xlarge": 8,
    "ml.p4de.24xlarge": 8,
    "ml.p5.4xlarge": 1,
    "ml.p5.48xlarge": 8,
    "ml.p5e.48xlarge": 8,
    "ml.p5en.48xlarge": 8,
    "ml.p6-b200.48xlarge": 8,
    "ml.p6-b300.48xlarge": 8,
    "ml.p6e-gb200.36xlarge": 4,
}  # fmt: skip
"""NVIDIA GPUs per SageMaker GPU instance type."""
_NEURON = re.compile(r"^ml\.(inf[0-9]|trn[0-9])")


def sagemaker_gpus(instance_type: str) -> int:
    """NVIDIA GPUs of a SageMaker instance type (0: none). A type whose family is a GPU family
    but is missing from the table is an error: the table must learn it before a stack uses it."""
    if instance_type in SAGEMAKER_GPUS:
        return SAGEMAKER_GPUS[instance_type]
    if re.match(r"^ml\.(p[0-9]|g[0-9])", instance_type):
        raise ValueError(
            f"{instance_type!r} is a GPU instance type whose GPU count components/gpu.py does not know "
            "yet; add it to SAGEMAKER_GPUS (from the EC2 accelerated computing specifications)"
        )
    return 0


def sagemaker_accelerator_note(instance_type: str) -> str | None:
    """Why a non-GPU accelerator instance cannot take a GPU request, or None."""
    if _NEURON.match(instance_type):
        return (
            f"{instance_type} carries AWS Neuron accelerators (Inferentia/Trainium), not CUDA GPUs: the "
            "model would need compiling with the Neuron SDK; pick a GPU type (ml.g5, ml.g6, ml.p4d ...)"
        )
    return None


# --------------------------------------------------------------------------- azure ml

AZUREML_GPUS: dict[str, int] = {
    # NCv3 (V100)
    "Standard_NC6s_v3": 1, "Standard_NC12s_v3": 2, "Standard_NC24s_v3": 4, "Standard_NC24rs_v3": 4,
    # NCasT4_v3 (T4)
    "Standard_NC4as_T4_v3": 1, "Standard_NC8as_T4_v3": 1, "Standard_NC16as_T4_v3": 1,
    "Standard_NC64as_T4_v3": 4,
    # NC A100 v4
    "Standard_NC24ads_A100_v4": 1, "Standard_NC48ads_A100_v4": 2, "Standard_NC96ads_A100_v4": 4,
    # NCads H100 v5
    "Standard_NC40ads_H100_v5": 1, "Standard_NC80adis_H100_v5": 2,
    # NDv2 (V100), ND A100 v4, NDm A100 v4, ND H100 v5
    "Standard_ND40rs_v2": 8, "Standard_ND96asr_v4": 8, "Standard_ND96amsr_A100_v4": 8,
    "Standard_ND96isr_H100_v5": 8,
}  # fmt: skip
"""NVIDIA GPUs per Azure VM size that managed online endpoints accept for GPU serving."""
_AZURE_GPU_FAMILY = re.compile(r"^Standard_N[CDV][0-9]", re.IGNORECASE)


def azureml_gpus(instance_type: str) -> int:
    """NVIDIA GPUs of an Azure VM size (0: a CPU size); case-insensitive, as Azure is."""
    for name, n in AZUREML_GPUS.items():
        if name.lower() == instance_type.lower():
            return n
    if _AZURE_GPU_FAMILY.match(instance_type):
        raise ValueError(
            f"{instance_type!r} looks like a GPU VM size (N-series) that components/gpu.py does not "
            f"know; managed online endpoints serve GPUs on {', '.join(sorted(AZUREML_GPUS))}"
        )
    return 0


# --------------------------------------------------------------------------- vertex ai


def vertex_accelerator_types() -> tuple[str, ...]:
    """The ``AcceleratorType`` enum of the installed aiplatform v1 API (without UNSPECIFIED)."""
    from google.cloud.aiplatform_v1.types import AcceleratorType

    return tuple(n for n in AcceleratorType.__members__ if n != "ACCELERATOR_TYPE_UNSPECIFIED")


# accelerator-optimized machine types: (accelerator, count) fixed by the machine type
_FIXED: dict[str, tuple[str, int]] = {
    **{f"a2-highgpu-{n}g": ("NVIDIA_TESLA_A100", n) for n in (1, 2, 4, 8)},
    "a2-megagpu-16g": ("NVIDIA_TESLA_A100", 16),
    **{f"a2-ultragpu-{n}g": ("NVIDIA_A100_80GB", n) for n in (1, 2, 4, 8)},
    **{f"a3-highgpu-{n}g": ("NVIDIA_H100_80GB", n) for n in (1, 2, 4, 8)},
    "a3-megagpu-8g": ("NVIDIA_H100_MEGA_80GB", 8),
    "a3-ultragpu-8g": ("NVIDIA_H200_141GB", 8),
    "a4-highgpu-8g": ("NVIDIA_B200", 8),
    "a4x-highgpu-4g": ("NVIDIA_GB200", 4),
    **{f"g2-standard-{c}": ("NVIDIA_L4", 1) for c in (4, 8, 12, 16, 32)},
    "g2-standard-24": ("NVIDIA_L4", 2),
    "g2-standard-48": ("NVIDIA_L4", 4),
    "g2-standard-96": ("NVIDIA_L4", 8),
}
# N1: accelerator -> {count: most vCPUs of an N1 machine with that many}
_N1: dict[str, dict[int, int]] = {
    "NVIDIA_TESLA_T4": {1: 24, 2: 48, 4: 96},
    "NVIDIA_TESLA_P4": {1: 24, 2: 48, 4: 96},
    "NVIDIA_TESLA_P100": {1: 16, 2: 32, 4: 96},
    "NVIDIA_TESLA_V100": {1: 12, 2: 24, 4: 48, 8: 96},
}
_N1_MACHINE = re.compile(r"^n1-(standard|highmem|highcpu)-([0-9]+)$")


def vertex_machine_accelerator(machine_type: str) -> tuple[str, int] | None:
    """The accelerator an accelerator-optimized machine type comes with, or None."""
    return _FIXED.get(machine_type)


def check_vertex_accelerator(machine_type: str, accelerator: str | None, count: int | None) -> tuple[str, int] | None:
    """The (acceleratorType, acceleratorCount) a deployed model runs with, or None for CPU only.

    ValueError, with the reason, for an unknown accelerator, one the machine type cannot take, a
    count it cannot take, or an accelerator-optimized machine type without its accelerator (Vertex
    needs the machine's GPUs named in the MachineSpec).
    """
    if accelerator is None:
        if count is not None:
            raise ValueError("acceleratorCount needs acceleratorType")
        fixed = _FIXED.get(machine_type)
        if fixed is not None:
            raise ValueError(
                f"{machine_type} comes with {fixed[1]} x {fixed[0]}: set acceleratorType {fixed[0]} "
                f"and acceleratorCount {fixed[1]} (Vertex wants the machine's GPUs named)"
            )
        return None
    known = vertex_accelerator_types()
    if accelerator not in known:
        raise ValueError(
            f"{accelerator!r} is not an AcceleratorType of the Vertex AI API (aiplatform v1 lists {', '.join(known)})"
        )
    if accelerator.startswith("TPU_"):
        raise ValueError(f"{accelerator} is a TPU: the serving image is CUDA (GPU) or CPU only")
    fixed = _FIXED.get(machine_type)
    if fixed is not None:
        want, n = fixed
        if accelerator != want:
            raise ValueError(f"{machine_type} comes with {want}, not {accelerator}")
        if count is not None and count != n:
            raise ValueError(f"{machine_type} comes with exactly {n} x {want} (got acceleratorCount {count})")
        return want, n
    m = _N1_MACHINE.match(machine_type)
    if m is None:
        takers = sorted({a for a, _ in _FIXED.values()} | set(_N1))
        raise ValueError(
            f"machine type {machine_type} takes no accelerator: GPUs attach to N1 machines "
            f"({', '.join(sorted(_N1))}) or come with the accelerator-optimized A2/A3/A4/G2 machines "
            f"({', '.join(takers)})"
        )
    limits = _N1.get(accelerator)
    if limits is None:
        raise ValueError(
            f"{accelerator} does not attach to N1 machines (they take {', '.join(sorted(_N1))}); "
            f"it comes with {', '.join(sorted(k for k, (a, _) in _FIXED.items() if a == accelerator))}"
        )
    n = 1 if count is None else count
    if n not in limits:
        raise ValueError(f"{accelerator} attaches to an N1 machine in counts of {sorted(limits)} (got {n})")
    vcpus = int(m.group(2))
    if vcpus > limits[n]:
        fits = [c for c in sorted(limits) if limits[c] >= vcpus]
        raise ValueError(
            f"{machine_type} has {vcpus} vCPUs; {n} x {accelerator} allows at most {limits[n]}"
            + (f" (use acceleratorCount {fits[0]})" if fits else "")
        )
    return accelerator, n


# --------------------------------------------------------------------------- image

GPU_IMAGE_ENV = {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}
"""What the NVIDIA container toolkit reads to mount the driver's CUDA libraries (``compute``) and
nvidia-smi (``utility``); without ``compute`` a plain Python image sees no libcuda. (The Kubernetes
device plugin narrows NVIDIA_VISIBLE_DEVICES to the allocated GPUs.)"""

_CPU_ONLY_IMAGE = (
    re.compile(r"(^|[/:_.-])cpu([_.-]|$)", re.IGNORECASE),  # …:2.3.0-cpu, …-cpu-py311, …/cpu/…
    re.compile(r"^(docker\.io/)?tensorflow/tensorflow:(?!.*gpu)[^@]*$"),  # TF's GPU tags say -gpu
    re.compile(r"^(docker\.io/)?python:"),  # no CUDA of its own: fine, see GPU_BASE_IMAGE
)
CUDA_FLAVORS = {
    "pytorch": "torch",
    "tensorflow": "tensorflow",
    "keras": "tensorflow",
    "transformers": "torch",
    "sentence_transformers": "torch",
    "xgboost": "xgboost",
    "catboost": "catboost",
    "lightgbm": "lightgbm",
    "onnx": "onnxruntime-gpu",
}
"""Flavors whose framework can run on a CUDA GPU, and the package that carries it."""
CPU_ONLY_FLAVORS = {"sklearn", "statsmodels", "prophet", "spark", "h2o", "pmdarima"}
"""Flavors whose framework never uses a GPU: a GPU request for a model of only these is refused."""
GPU_EXTRAS = {"tensorflow": "and-cuda"}
"""Pip extras that pull a framework's CUDA user space (``tensorflow[and-cuda]``)."""


def cpu_only_base_image(ref: str) -> bool:
    """True when a base image reference says it is built for CPUs only (``-cpu`` tags, TensorFlow
    tags without ``gpu``). ``python:*`` is not CPU-only: the CUDA user space comes in the wheels."""
    return any(p.search(ref) for p in _CPU_ONLY_IMAGE[:2])


def gpu_requirements(requirements: Sequence[str]) -> list[str]:
    """The model's requirements with each framework's CUDA extra added, ValueError for a wheel
    pinned to a CPU-only build (``torch==2.3.0+cpu``, a ``…/whl/cpu`` index, ``tensorflow-cpu``)."""
    out = []
    for req in requirements:
        low = req.strip().lower()
        if re.search(r"\+cpu\b", low) or re.search(r"/whl/cpu\b", low) or re.match(r"^tensorflow-cpu\b", low):
            raise GpuImageError(f"requirement {req!r} is a CPU-only build; a GPU image needs the CUDA build")
        name = req_name(low)
        extra = GPU_EXTRAS.get(name)
        if extra and "[" not in req.split(";")[0]:
            rest = req.strip()[len(name) :]
            req = f"{req.strip()[: len(name)]}[{extra}]{rest}"
        out.append(req)
    return out


GPU_PACKAGES = frozenset(
    {"torch", "tensorflow", "jax", "xgboost", "catboost", "lightgbm", "onnxruntime-gpu", "cupy-cuda12x",
     "cupy-cuda11x", "tensorrt", "vllm"}
)  # fmt: skip
"""Packages that run on a CUDA GPU: a GPU request for a model that requires none of them (and
whose flavors are not in CUDA_FLAVORS) has nothing to put on the GPU."""
CUDA_BASE_PACKAGES = frozenset({"onnxruntime-gpu"})
"""Packages whose PyPI wheels do not bring the CUDA user space (onnxruntime-gpu links against the
system's CUDA 12 and cuDNN 9, onnxruntime.ai "CUDA Execution Provider: Requirements"): their GPU
image needs a CUDA runtime base image (``image.baseImage``), not ``python:<x.y>-slim``. torch's,
TensorFlow's ``and-cuda``, XGBoost's and CatBoost's Linux wheels bring theirs; LightGBM's use the
driver's OpenCL."""


class GpuImageError(ValueError):
    """Why a model cannot have a GPU image. ``key``: the config key to fix when it is not the
    target's GPU request itself (``image.baseImage``), else None."""

    def __init__(self, message: str, key: str | None = None):
        self.key = key
        super().__init__(message)


def req_name(req: str) -> str:
    """A requirement's normalised project name (``Torch_Vision>=1`` -> ``torch-vision``)."""
    return re.split(r"[\[=<>~!; @]", req.strip().lower(), maxsplit=1)[0].replace("_", "-")


def looks_cuda_image(ref: str) -> bool:
    """A base image that carries the CUDA runtime: ``nvidia/cuda``, NGC images, ``…cuda…`` tags."""
    return bool(re.search(r"cuda|nvcr\.io/nvidia/", ref, re.IGNORECASE))


def check_gpu_model(flavors: Iterable[str], requirements: Sequence[str], base_image: str) -> list[str]:
    """The GPU image's requirements (CUDA extras added), or GpuImageError: the model or the base
    image cannot use a GPU. ``base_image`` is the resolved reference (``python:3.11-slim``)."""
    own = {f for f in flavors if f != "python_function"}
    if own and own <= CPU_ONLY_FLAVORS:
        raise GpuImageError(f"the model's flavors ({', '.join(sorted(own))}) never use a GPU; serve it on CPUs")
    if cpu_only_base_image(base_image):
        raise GpuImageError(
            f"{base_image!r} is a CPU-only image; with a GPU use the default python:{{python_version}}-slim "
            "(the framework wheels bring CUDA) or a CUDA image",
            key="image.baseImage",
        )
    reqs = gpu_requirements(requirements)
    names = {req_name(r) for r in reqs}
    if "onnxruntime" in names or ("onnx" in own and "onnxruntime-gpu" not in names):
        raise GpuImageError(
            "the model requires onnxruntime, the CPU build: log it with onnxruntime-gpu to serve on a GPU"
        )
    if not own & set(CUDA_FLAVORS) and not names & GPU_PACKAGES:
        raise GpuImageError(
            "nothing the model requires runs on a GPU (its flavors: "
            f"{', '.join(sorted(own)) or 'python_function only'}; GPU packages: {', '.join(sorted(GPU_PACKAGES))})"
        )
    needs_base = sorted(names & CUDA_BASE_PACKAGES)
    if needs_base and not looks_cuda_image(base_image):
        raise GpuImageError(
            f"{', '.join(needs_base)} needs the CUDA runtime and cuDNN in the image, which {base_image!r} lacks: "
            "set a CUDA runtime image with the model's Python and pip (e.g. built FROM "
            "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04)",
            key="image.baseImage",
        )
    return reqs
