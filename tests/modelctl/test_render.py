"""``modelctl render``: the real program under the mock runtime, written for review."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from ruamel.yaml import YAML

from modelctl.render import read_stack_config
from modelctl.sample import SampleRegistry

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def dev_config_file(registry: SampleRegistry, tmp_path: Path, mutate: Any = None) -> Path:
    """The real Pulumi.dev.yaml, pointed at the test registry (comments kept)."""
    yml = YAML()
    data = yml.load((ROOT / "Pulumi.dev.yaml").read_text())
    data["config"]["mlflow-deploy:mlflow"]["trackingUri"] = registry.tracking_uri
    if mutate:
        mutate(data["config"])
    path = tmp_path / "Pulumi.dev.yaml"
    with path.open("w") as fh:
        yml.dump(data, fh)
    return path


def modelctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelctl", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def rendered_dev(registry: SampleRegistry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("render")
    cfg = dev_config_file(registry, tmp)
    out = tmp / "out"
    proc = modelctl("render", "--stack", "dev", "--config", str(cfg), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "resources" in proc.stdout
    return out


def test_resources_json_shape(rendered_dev: Path) -> None:
    resources = json.loads((rendered_dev / "resources.json").read_text())
    assert isinstance(resources, list) and resources
    names = {r["name"] for r in resources}
    for r in resources:
        assert set(r) == {"type", "name", "parent", "inputs"}
        assert ":" in r["type"]
        assert r["parent"] is None or r["parent"] in names
    dep = next(r for r in resources if r["type"] == "kubernetes:apps/v1:Deployment")
    # camelCase keys, as Pulumi sends them to the engine
    assert "apiVersion" in dep["inputs"] and "serviceAccountName" in dep["inputs"]["spec"]["template"]["spec"]
    # no pickled provider blobs or other binary junk anywhere
    blob = (rendered_dev / "resources.json").read_text()
    assert "__provider" not in blob and "gANj" not in blob


def test_manifests_are_what_the_api_server_receives(rendered_dev: Path) -> None:
    files = sorted((rendered_dev / "kubernetes").glob("*.yaml"))
    kinds = {yaml.safe_load(f.read_text())["kind"] for f in files}
    assert {"Deployment", "Service", "ServiceAccount", "Namespace"} <= kinds
    for f in files:
        m = yaml.safe_load(f.read_text())
        assert list(m)[:3] == ["apiVersion", "kind", "metadata"]
        assert "spec" in m or "data" in m or m["kind"] in ("Namespace", "ServiceAccount")


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_dev_manifests_validate_against_kubernetes_schemas(rendered_dev: Path, k8s_version: str) -> None:
    checked = 0
    for f in sorted((rendered_dev / "kubernetes").glob("*.yaml")):
        m = yaml.safe_load(f.read_text())
        if "." in m["apiVersion"].split("/")[0] and not m["apiVersion"].startswith(
            ("apps/", "policy/", "autoscaling/", "networking.k8s.io/")
        ):
            continue  # custom resources (HTTPRoute, ServiceMonitor, ...) have no built-in schema
        kubernetes_validate.validate(m, k8s_version, strict=True)
        checked += 1
    assert checked >= 4


def test_the_validator_rejects_a_broken_manifest(rendered_dev: Path) -> None:
    """Guards the test above: the schemas are really applied."""
    dep = next(f for f in (rendered_dev / "kubernetes").glob("*deployment*.yaml"))
    m = yaml.safe_load(dep.read_text())
    bad = copy.deepcopy(m)
    bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)
    typo = copy.deepcopy(m)
    typo["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSIONS[0], strict=True)


def test_invalid_config_exits_non_zero_with_the_settings_error(registry: SampleRegistry, tmp_path: Path) -> None:
    def bad(cfg: Any) -> None:
        cfg["mlflow-deploy:candidate"] = {"version": "2", "percent": 150}

    cfg = dev_config_file(registry, tmp_path, bad)
    proc = modelctl("render", "--stack", "dev", "--config", str(cfg), "--out", str(tmp_path / "o"))
    assert proc.returncode == 1
    assert "mlflow-deploy:candidate.percent: must be between 0 and 100 (got 150)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_registry_falls_back_to_mlflow_tracking_uri(registry: SampleRegistry, tmp_path: Path) -> None:
    def no_uri(cfg: Any) -> None:
        del cfg["mlflow-deploy:mlflow"]

    cfg = dev_config_file(registry, tmp_path, no_uri)
    assert "mlflow-deploy:mlflow" not in read_stack_config(cfg)
    out = tmp_path / "o"
    ok = modelctl("render", "--stack", "dev", "--config", str(cfg), "--out", str(out),
                  env={"MLFLOW_TRACKING_URI": registry.tracking_uri})
    assert ok.returncode == 0, ok.stderr
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-m", "modelctl", "render", "--stack", "dev", "--config", str(cfg),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1
    assert "MLFLOW_TRACKING_URI" in proc.stderr


def test_unknown_version_in_the_registry_is_a_clean_error(registry: SampleRegistry, tmp_path: Path) -> None:
    def v9(cfg: Any) -> None:
        cfg["mlflow-deploy:model"]["version"] = "9"

    proc = modelctl("render", "--stack", "dev", "--config", str(dev_config_file(registry, tmp_path, v9)),
                    "--out", str(tmp_path / "o"))
    assert proc.returncode == 1
    assert "has no version 9" in proc.stderr


@pytest.mark.parametrize("candidate", [None, {"version": "2", "strategy": "canary", "percent": 10}])
def test_the_prod_example_renders_every_target(registry: SampleRegistry, tmp_path: Path, candidate: Any) -> None:
    """Pulumi.prod.yaml as shipped (only the registry and version swapped for the test ones) is
    a valid stack that declares every target, with and without a canary."""
    yml = YAML()
    data = yml.load((ROOT / "Pulumi.prod.yaml").read_text())
    cfg = data["config"]
    cfg["mlflow-deploy:mlflow"]["trackingUri"] = registry.tracking_uri
    cfg["mlflow-deploy:model"]["version"] = "1"
    if candidate is not None:
        cfg["mlflow-deploy:candidate"] = candidate
    path = tmp_path / "Pulumi.prod.yaml"
    with path.open("w") as fh:
        yml.dump(data, fh)
    out = tmp_path / "out"
    proc = modelctl("render", "--stack", "prod", "--config", str(path), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    resources = json.loads((out / "resources.json").read_text())
    packages = {r["type"].split(":")[0] for r in resources}
    assert {"kubernetes", "aws", "azure-native", "gcp"} <= packages
    outputs = json.loads((out / "outputs.json").read_text())
    assert {"kubernetes", "sagemaker", "azureml", "vertex"} <= set(outputs)
    expected = {"1": 100} if candidate is None else {"1": 90, "2": 10}
    assert outputs["traffic"] == expected
    for f in sorted((out / "kubernetes").glob("*.yaml")):
        m = yaml.safe_load(f.read_text())
        if m["apiVersion"] in ("v1", "apps/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1"):
            kubernetes_validate.validate(m, K8S_VERSIONS[0], strict=True)


def test_a_render_is_byte_identical_whatever_the_registration_order(
    registry: SampleRegistry, tmp_path: Path
) -> None:
    """Files follow from what is declared, not from when: the same config rendered twice, and
    once more with the resources registered in reverse, writes the same names and bytes."""
    from modelctl.render import Rendered, run_program, write_outputs

    cfg = read_stack_config(dev_config_file(registry, tmp_path))
    cfg["mlflow-deploy:candidate"] = {"version": "3", "strategy": "canary", "percent": 10}
    first, second = run_program(cfg, stack="dev"), run_program(cfg, stack="dev")
    reverse = Rendered(resources=list(reversed(second.resources)), outputs=dict(second.outputs))
    trees = []
    for i, rendered in enumerate((first, second, reverse)):
        out = tmp_path / f"out{i}"
        write_outputs(rendered, out)
        trees.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert trees[0] == trees[1] == trees[2]
    names = [n for n in trees[0] if n.startswith("kubernetes/")]
    assert "kubernetes/deployment-models-fraud-detector-v3.yaml" in names
    assert len(names) >= 8
