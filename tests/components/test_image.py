"""ModelImage: the build context made from a real registered model, and the tag rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.image import (
    CONTAINER_PORT,
    METRICS_PORT,
    base_image_for,
    image_requirements,
    image_tag,
    write_build_context,
)
from components.registry import resolve_model
from components.settings import SettingsError
from modelctl.sample import SampleRegistry
from tests.conftest import base_config


def _context(registry: SampleRegistry, version: str, dst: Path):  # type: ignore[no-untyped-def]
    model = resolve_model(registry.name, version, tracking_uri=registry.tracking_uri)
    return model, write_build_context(model, dst, base_image_for("python:{python_version}-slim", model))


def test_build_context_holds_the_model_and_its_requirements(registry: SampleRegistry, tmp_path: Path) -> None:
    model, ctx = _context(registry, "1", tmp_path / "ctx")
    mlmodel = yaml.safe_load((ctx.path / "model" / "MLmodel").read_text())
    assert "python_function" in mlmodel["flavors"]
    # the serialized estimator the MLmodel points at is really there
    assert (ctx.path / "model" / mlmodel["flavors"]["python_function"]["model_path"]).is_file()
    # the image installs exactly the model's pinned requirements (plus the runtime's extras)
    reqs = (ctx.path / "requirements.txt").read_text().split()
    assert reqs[: len(model.requirements)] == list(model.requirements)
    assert any(r.startswith("prometheus-client") for r in reqs)
    # the runtime is in the context, and the Dockerfile runs it
    assert (ctx.path / "serving" / "__main__.py").is_file()
    dockerfile = ctx.dockerfile.read_text()
    assert f"FROM python:{model.python_minor}-slim" in dockerfile
    assert "RUN pip install -r /app/requirements.txt" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "serving"]' in dockerfile
    assert f"EXPOSE {CONTAINER_PORT} {METRICS_PORT}" in dockerfile
    user = [ln for ln in dockerfile.splitlines() if ln.startswith("USER ")]
    assert user and user[-1].split()[1] not in ("root", "0")


def test_tag_changes_with_the_version_and_not_otherwise(registry: SampleRegistry, tmp_path: Path) -> None:
    _, a1 = _context(registry, "1", tmp_path / "a1")
    _, a2 = _context(registry, "1", tmp_path / "again" / "a1")  # another path, another time
    _, b = _context(registry, "2", tmp_path / "b")
    assert image_tag("1", a1.content_hash) == image_tag("1", a2.content_hash)
    assert image_tag("1", a1.content_hash) != image_tag("2", b.content_hash)
    # the same bytes under a different version number still get a different tag
    assert image_tag("1", a1.content_hash) != image_tag("2", a1.content_hash)


def test_requirements_do_not_duplicate_what_the_model_pins() -> None:
    from components.registry import ResolvedModel

    m = ResolvedModel(
        name="m", version="1", run_id=None, source="s", artifact_uri="file:///x", flavors=("python_function",),
        signature=None, python_version="3.11.7", tracking_uri="sqlite://",
        requirements=("mlflow==3.1.0", "prometheus_client==0.21.0"),
    )
    reqs = image_requirements(m)
    assert [r for r in reqs if r.lower().replace("_", "-").startswith("prometheus-client")] == [
        "prometheus_client==0.21.0"
    ]
    assert [r for r in reqs if r.startswith("mlflow")] == ["mlflow==3.1.0"]


def test_built_image_is_declared_per_version(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    cfg = base_config(registry, candidate={"version": "2", "percent": 10})
    out = render(cfg)
    images = out.of_type("docker-build:index:Image")
    tags = sorted(t for i in images for t in i.inputs["tags"])
    assert len(tags) == 2
    assert tags[0].startswith("registry.example.com/models/fraud-detector:v1-")
    assert tags[1].startswith("registry.example.com/models/fraud-detector:v2-")
    assert all(i.inputs["push"] is True for i in images)
    # children of their ModelImage component, itself a child of the Kubernetes target
    model_images = out.of_type("mlflow-deploy:index:ModelImage")
    assert {i.parent for i in images} == {r.name for r in model_images}
    assert {r.parent for r in model_images} == {out.of_type("mlflow-deploy:index:KubernetesModelService")[0].name}


def test_prebuilt_versions_are_not_built(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    uri = "ghcr.io/acme/fraud:1"
    cfg = base_config(registry, image={"uris": {"1": uri}})
    out = render(cfg)
    assert out.of_type("docker-build:index:Image") == []
    dep = out.of_type("kubernetes:apps/v1:Deployment")[0]
    assert dep.inputs["spec"]["template"]["spec"]["containers"][0]["image"] == uri


def test_built_mode_without_repository_fails_naming_the_key(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    cfg = base_config(registry, image={"uris": {"1": "ghcr.io/acme/fraud:1"}}, candidate={"version": "2"})
    out = None
    with pytest.raises(SettingsError, match=r"mlflow-deploy:image\.repository: version\(s\) 2 are built"):
        out = render(cfg)
    assert out is None
    # with every live version prebuilt, no repository is needed
    cfg["mlflow-deploy:image"]["uris"]["2"] = "ghcr.io/acme/fraud:2"
    assert render(cfg).of_type("docker-build:index:Image") == []


def test_the_context_is_the_same_whatever_the_umask(registry: SampleRegistry, tmp_path: Path) -> None:
    """docker-build hashes file modes; a laptop (umask 002) and CI (022) must build the same
    context, or every `up` from the other machine rebuilds every image and rolls every version."""
    import os
    import stat

    contexts = []
    for umask in (0o022, 0o002, 0o077):
        previous = os.umask(umask)
        try:
            _, ctx = _context(registry, "1", tmp_path / f"ctx-{umask:o}")
        finally:
            os.umask(previous)
        modes = {
            p.relative_to(ctx.path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in ctx.path.rglob("*")
        }
        contexts.append((ctx.content_hash, modes))
    assert contexts[0] == contexts[1] == contexts[2]
    assert contexts[0][1]["requirements.txt"] == 0o644
    assert contexts[0][1]["serving"] == 0o755
