"""ModelImage: one immutable container image per model version.

Build mode writes a Docker build context from the registry artifacts (the model directory, the
model's own pinned requirements, the serving runtime) and builds/pushes it with the Pulumi
Docker Build provider. The tag is ``v<version>-<content hash>``: it changes when the version
(or anything in the context) changes, and not otherwise, so re-running ``pulumi up`` with the
same config rebuilds nothing.

Prebuilt mode (``image.uris`` lists the version) declares nothing and passes the URI through.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pulumi

from components.gpu import GPU_IMAGE_ENV, GpuImageError, check_gpu_model
from components.names import base_name, version_name
from components.registry import ResolvedModel, download_model
from components.settings import ImageSettings
from components.validation import check_image_reference, check_python_version

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVING_DIR = PROJECT_ROOT / "serving"
CONTAINER_PORT = 8080
METRICS_PORT = 9090
"""The serving runtime's /metrics port: declared by every container, routed by nothing public."""
DRAIN_SECONDS = 5
"""After SIGTERM, seconds the runtime keeps serving with readiness 503 before it stops accepting:
what the load balancers of SageMaker, Azure ML and Vertex AI (no preStop hook) need to notice."""
SAGEMAKER_MAX_BODY_BYTES = 25 * 1024 * 1024
"""SageMaker's front end enforces its own payload limits (6 MB for a real-time InvokeEndpoint);
its containers accept up to 25 MiB so they never refuse a body the platform let through, on
whichever invocation path. Elsewhere the runtime's default (6 MiB) holds."""
MODEL_DIR = "/opt/model"
RUNTIME_UID = 10001

# What the serving runtime needs beyond the model's own requirements (which pin mlflow).
# orjson: serving.capture formats captured numeric inputs with it (optional there; ~4x cheaper).
SERVING_REQUIREMENTS = ("prometheus-client>=0.20,<1", "uvicorn>=0.30", "orjson>=3.8,<4")


def serving_env(
    model: str,
    version: str,
    *,
    workers: int | None = None,
    gpus: int = 0,
    timeout_seconds: int | None = None,
    drain_seconds: int = DRAIN_SECONDS,
    max_body_bytes: int | None = None,
    capture_url: str | None = None,
    capture_sample: float | None = None,
    batch_max_size: int = 0,
    batch_max_wait_ms: float | None = None,
) -> dict[str, str]:
    """The serving runtime's environment in a version's container, on every target.

    Depends on the version and the target's settings only, never on the rollout, so a routing
    change never changes (and so never restarts or replaces) a serving container. ``workers``
    None lets the runtime use the container's CPU limit; ``gpus``: the GPUs the container gets,
    shared out among the workers (``CUDA_VISIBLE_DEVICES``); ``timeout_seconds`` None, its default.
    ``drain_seconds``: 0 where a preStop hook already waits for the endpoints to drain
    (Kubernetes). ``max_body_bytes`` None: the runtime's default (6 MiB). ``capture_url``: where
    the runtime POSTs captured requests (``monitoring.drift``; the model monitor), a share
    ``capture_sample`` of them; None: capture off (serving/capture.py). ``batch_max_size``
    0: no adaptive batching; ``batch_max_wait_ms`` None: the runtime's default wait.
    """
    env = {
        "MODEL_NAME": model,
        "MODEL_VERSION": version,
        "SERVING_PORT": str(CONTAINER_PORT),
        "SERVING_METRICS_PORT": str(METRICS_PORT),
        "SERVING_DRAIN_SECONDS": str(drain_seconds),
    }
    if max_body_bytes is not None:
        env["SERVING_MAX_BODY_BYTES"] = str(max_body_bytes)
    if timeout_seconds is not None:
        env["SERVING_TIMEOUT_SECONDS"] = str(timeout_seconds)
    if workers is not None:
        env["SERVING_WORKERS"] = str(workers)
    if gpus > 0:
        env["SERVING_GPUS"] = str(gpus)  # each worker gets its share (serving/gpus.py)
    if capture_url is not None:
        env["SERVING_CAPTURE_URL"] = capture_url
        if capture_sample is not None:
            env["SERVING_CAPTURE_SAMPLE"] = repr(float(capture_sample))
    if batch_max_size:
        env["SERVING_BATCH_MAX_SIZE"] = str(batch_max_size)
        if batch_max_wait_ms is not None:
            env["SERVING_BATCH_MAX_WAIT_MS"] = f"{batch_max_wait_ms:g}"
    return env


def dockerfile(base_image: str, gpu: bool = False) -> str:
    """The Dockerfile of every model image. Pure; the context supplies model/ and serving/.

    ``base_image`` must be an image reference: it is the FROM line, and a newline in it would
    add instructions of its own (``USER root``, ``RUN ...``). ``gpu``: the environment the NVIDIA
    container toolkit reads to mount the host driver's CUDA libraries (components/gpu.py
    GPU_IMAGE_ENV); the CUDA user space comes with the requirements (:func:`gpu_image_requirements`)."""
    try:
        check_image_reference(base_image)
    except ValueError as exc:
        raise ValueError(f"mlflow-deploy:image.baseImage: {exc}") from None
    gpu_env = "".join(f" \\\n    {k}={v}" for k, v in GPU_IMAGE_ENV.items()) if gpu else ""
    return f"""\
# syntax=docker/dockerfile:1
# Generated by mlflow-deploy (components/image.py). One image per model version.
FROM {base_image}
ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    MODEL_URI={MODEL_DIR} \\
    SERVING_PORT={CONTAINER_PORT}{gpu_env}
WORKDIR /app
COPY requirements.txt /app/requirements.txt
RUN pip install -r /app/requirements.txt
COPY serving /app/serving
COPY model {MODEL_DIR}
RUN useradd --uid {RUNTIME_UID} --no-create-home --shell /usr/sbin/nologin model \\
 && chmod -R a+rX {MODEL_DIR} /app
USER {RUNTIME_UID}
EXPOSE {CONTAINER_PORT} {METRICS_PORT}
# SageMaker runs the image as `docker run IMAGE serve`; everything else uses the default CMD.
ENTRYPOINT ["python", "-m", "serving"]
CMD ["serve"]
"""


def image_requirements(model: ResolvedModel, requirements: list[str] | None = None) -> list[str]:
    """The image's pip requirements: the model's pinned ones (or ``requirements``, their GPU
    build), then the runtime's extras (skipped where the model already names the package)."""
    reqs = list(model.requirements if requirements is None else requirements)
    have = {_req_name(r) for r in reqs}
    reqs += [r for r in SERVING_REQUIREMENTS if _req_name(r) not in have]
    if "mlflow" not in have and "mlflow-skinny" not in have:
        reqs.append("mlflow>=3,<4")
    return reqs


def gpu_image_requirements(model: ResolvedModel, base_image: str) -> list[str]:
    """:func:`image_requirements` of a GPU image: each framework's CUDA build (components/gpu.py);
    GpuImageError when the model or ``base_image`` (resolved) cannot use a GPU."""
    return image_requirements(model, check_gpu_model(model.flavors, model.requirements, base_image))


def gpu_image_errors(models: dict[str, ResolvedModel], image: ImageSettings, gpu_key: str) -> list[tuple[str, str]]:
    """``(key, message)`` for every live version whose GPU image cannot be made, ``gpu_key`` (the
    target's GPU request) unless another key is the one to fix. Run before any resource is
    declared. A prebuilt image (``image.uris``) is checked by the model's flavors and its tag."""
    errors: list[tuple[str, str]] = []
    for version, model in sorted(models.items()):
        prebuilt = image.uris.get(version)
        try:
            if prebuilt:
                check_gpu_model(model.flavors, ["torch"], prebuilt.split("@")[0])  # flavors and tag only
            else:
                gpu_image_requirements(model, base_image_for(image.base_image, model))
        except GpuImageError as exc:
            key = gpu_key if exc.key is None else (f"image.uris.{version}" if prebuilt else exc.key)
            errors.append((f"mlflow-deploy:{key}", f"model version {version} with a GPU: {exc}"))
    return errors


def _req_name(req: str) -> str:
    for sep in ("==", ">=", "<=", "~=", "!=", ">", "<", "[", ";", " ", "@"):
        req = req.split(sep, 1)[0]
    return req.strip().lower().replace("_", "-")


def base_image_for(template: str, model: ResolvedModel) -> str:
    """``image.baseImage`` with the model's Python major.minor filled in; ValueError naming the key
    when either is not what it should be (settings and the registry check both first)."""
    try:
        check_python_version(model.python_version)
    except ValueError as exc:
        raise ValueError(
            f"model {model.name!r} version {model.version}: MLmodel python_version: {exc}"
        ) from None
    try:
        check_image_reference(template, placeholder=True)
        ref = template.replace("{python_version}", model.python_minor)
        return check_image_reference(ref)
    except ValueError as exc:
        raise ValueError(f"mlflow-deploy:image.baseImage: {exc}") from None


@dataclass(frozen=True)
class BuildContext:
    path: Path
    content_hash: str
    dockerfile: Path


def content_hash(root: Path) -> str:
    """sha256 over every file's relative path, mode and bytes, in sorted order (no mtimes, no
    absolute paths). The mode counts because the docker-build provider's own context hash counts
    it (pulumi/pulumi-docker-build provider/internal/context.go hashFile): a context whose modes
    differ is a rebuild there, so it must be a different tag here."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(p.relative_to(root).as_posix().encode())
            h.update(b"\0")
            h.update(oct(stat.S_IMODE(p.stat().st_mode)).encode())
            h.update(b"\0")
            h.update(p.read_bytes())
            h.update(b"\0")
    return h.hexdigest()


def normalize_modes(root: Path) -> None:
    """Folders 0755, files 0644 (0755 where the owner may execute): the same context, and so the
    same docker-build context hash and image, whatever the umask of the machine running Pulumi
    (a laptop's 002 and CI's 022 would otherwise rebuild every image and roll every version)."""
    for p in [root, *root.rglob("*")]:
        if p.is_symlink():
            continue
        if p.is_dir():
            p.chmod(0o755)
        else:
            p.chmod(0o755 if p.stat().st_mode & stat.S_IXUSR else 0o644)


def write_build_context(model: ResolvedModel, dst: Path, base_image: str, gpu: bool = False) -> BuildContext:
    """Write the build context for ``model`` into ``dst`` (replacing what was there); ``gpu``:
    the CUDA builds of the model's frameworks and the NVIDIA runtime's environment."""
    reqs = gpu_image_requirements(model, base_image) if gpu else image_requirements(model)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    downloaded = download_model(model, dst / ".download")
    shutil.move(str(downloaded), dst / "model")
    shutil.rmtree(dst / ".download", ignore_errors=True)
    shutil.copytree(SERVING_DIR, dst / "serving", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dst / "requirements.txt").write_text("\n".join(reqs) + "\n")
    (dst / "Dockerfile").write_text(dockerfile(base_image, gpu=gpu))
    (dst / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n")
    normalize_modes(dst)
    return BuildContext(path=dst, content_hash=content_hash(dst), dockerfile=dst / "Dockerfile")


def image_tag(version: str, digest: str) -> str:
    """``v<version>-<first 12 hex of the content hash>``."""
    return f"v{version}-{digest[:12]}"


@dataclass
class ModelImageArgs:
    model: ResolvedModel
    repository: pulumi.Input[str] | None = None
    """Where to push (``ghcr.io/acme/models/fraud-detector``). Not needed with ``prebuilt_uri``."""
    prebuilt_uri: str | None = None
    base_image: str = "python:{python_version}-slim"
    platform: str = "linux/amd64"
    push: bool = True
    registry_address: pulumi.Input[str] | None = None
    registry_username: pulumi.Input[str] | None = None
    registry_password: pulumi.Input[str] | None = None
    build_root: Path | None = None
    """Where build contexts are written; default ``$MLFLOW_DEPLOY_BUILD_DIR`` or ``./build``."""
    gpu: bool = False
    """The target serves this version on GPUs: a CUDA-capable image (components/gpu.py); its tag
    differs from the CPU image's (the context does)."""


class ModelImage(pulumi.ComponentResource):
    """The image for one model version. ``ref`` is the pullable reference (digest-pinned when built)."""

    ref: pulumi.Output[str]
    tag: str | None

    def __init__(self, name: str, args: ModelImageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-deploy:index:ModelImage", name, None, opts)
        model = args.model
        self.tag = None
        if args.prebuilt_uri:
            self.ref = pulumi.Output.from_input(args.prebuilt_uri)
        else:
            if args.repository is None:
                raise ValueError(
                    f"mlflow-deploy:image.repository: model version {model.version} is not in "
                    "image.uris, so it is built, and a built image needs a repository to push to"
                )
            import pulumi_docker_build as docker_build

            build_root = args.build_root or Path(
                os.environ.get("MLFLOW_DEPLOY_BUILD_DIR", PROJECT_ROOT / "build")
            )
            ctx = write_build_context(
                model,
                build_root / version_name(model.name, model.version),
                base_image_for(args.base_image, model),
                gpu=args.gpu,
            )
            self.tag = image_tag(model.version, ctx.content_hash)
            tag_ref = pulumi.Output.concat(args.repository, ":", self.tag)
            registries = None
            if args.registry_address is not None and args.registry_password is not None:
                registries = [
                    docker_build.RegistryArgs(
                        address=args.registry_address,
                        username=args.registry_username,
                        password=args.registry_password,
                    )
                ]
            image = docker_build.Image(
                name,
                context=docker_build.BuildContextArgs(location=str(ctx.path)),
                dockerfile=docker_build.DockerfileArgs(location=str(ctx.dockerfile)),
                tags=[tag_ref],
                platforms=[docker_build.Platform(args.platform)],
                push=args.push,
                registries=registries,
                labels={
                    "org.opencontainers.image.title": model.name,
                    "org.opencontainers.image.version": model.version,
                    "org.mlflow.model.run_id": model.run_id or "",
                    "org.mlflow.model.source": model.source,
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
            # ref is digest-pinned after a push; in a preview it falls back to the tag.
            self.ref = pulumi.Output.all(image.ref, tag_ref).apply(lambda r: r[0] or r[1])
        self.register_outputs({"ref": self.ref})


def model_images(
    prefix: str,
    models: dict[str, ResolvedModel],
    image: ImageSettings,
    repository: pulumi.Input[str] | None,
    opts: pulumi.ResourceOptions | None = None,
    registry_address: pulumi.Input[str] | None = None,
    registry_username: pulumi.Input[str] | None = None,
    registry_password: pulumi.Input[str] | None = None,
    gpu: bool = False,
) -> dict[str, pulumi.Output[str]]:
    """One ModelImage per live version; ``image.uris`` versions are prebuilt, the rest built
    (``gpu``: CUDA-capable, see :class:`ModelImageArgs`)."""
    out: dict[str, pulumi.Output[str]] = {}
    for version, model in models.items():
        img = ModelImage(
            f"{prefix}-{version_name(model.name, version)}",
            ModelImageArgs(
                model=model,
                repository=repository,
                prebuilt_uri=image.uris.get(version),
                base_image=image.base_image,
                platform=image.platform,
                push=image.push,
                registry_address=registry_address,
                registry_username=registry_username,
                registry_password=registry_password,
                gpu=gpu,
            ),
            opts=opts,
        )
        out[version] = img.ref
    return out


def registry_images(
    prefix: str,
    models: dict[str, ResolvedModel],
    image: ImageSettings,
    registry_root: str | None,
    opts: pulumi.ResourceOptions | None = None,
    registry_username: pulumi.Input[str] | None = None,
    registry_password: pulumi.Input[str] | None = None,
    gpu: bool = False,
) -> dict[str, pulumi.Output[str]]:
    """:func:`model_images` pushed to ``<registry_root>/<model>`` (``ghcr.io/acme/models`` ->
    ``ghcr.io/acme/models/fraud-detector``), logging in to the root's host when a password is given."""
    names = {m.name for m in models.values()}
    repository = f"{registry_root.rstrip('/')}/{base_name(names.pop())}" if registry_root and names else None
    return model_images(
        prefix,
        models,
        image,
        repository,
        opts=opts,
        registry_address=registry_root.split("/")[0] if registry_root and registry_password is not None else None,
        registry_username=registry_username,
        registry_password=registry_password,
        gpu=gpu,
    )
