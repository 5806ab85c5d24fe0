"""``modelctl diff``: the offline answer to "what would `pulumi up` do with this edit"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from modelctl.cli import CommandError
from modelctl.diff import ResourceChange, changed_paths, classify, committed_stack_file, under
from modelctl.render import Declared
from modelctl.sample import SampleRegistry

ROOT = Path(__file__).resolve().parents[2]


def test_changed_paths_are_leaves_with_indices() -> None:
    old = {"a": {"b": 1, "c": [1, 2]}, "d": "x", "gone": 1, "null": None}
    new = {"a": {"b": 2, "c": [1, 2, 3]}, "d": "x", "added": {"k": 1}}
    assert changed_paths(old, new) == ["a.b", "a.c[2]", "added", "gone"]
    assert changed_paths({"x": [{"y": 1}]}, {"x": [{"y": 2}]}) == ["x[0].y"]
    assert changed_paths({"a": 1}, {"a": 1}) == []


def test_under_matches_whole_path_components_only() -> None:
    assert under("spec.selector.matchLabels.app", "spec.selector")
    assert under("spec.selector", "spec.selector")
    assert under("productionVariants[1].initialVariantWeight", "productionVariants")
    assert under("spec.rules[0].backendRefs[1].weight", "spec.rules[*].backendRefs")
    assert not under("spec.selectorX", "spec.selector")
    assert not under("spec", "spec.selector")


def declared(type_: str, name: str, inputs: dict[str, Any], **kw: Any) -> Declared:
    return Declared(type=type_, name=name, parent=None, inputs=inputs, custom=True, urn=f"urn::{type_}::{name}", **kw)


def test_a_forcing_input_replaces_and_a_fixed_name_deletes_first() -> None:
    ep = "aws:sagemaker/endpoint:Endpoint"
    rollback = {"autoRollbackConfiguration": {"alarms": [{"alarmName": "a"}]}}
    old = declared(ep, "e", {"name": "fraud", "endpointConfigName": "c1", "deploymentConfig": rollback})
    assert classify(old, declared(ep, "e", {**old.inputs, "endpointConfigName": "c2"}), {}) == ResourceChange(
        ep, "e", "update", ("endpointConfigName",), urn=old.urn
    )
    renamed = classify(old, declared(ep, "e", {**old.inputs, "name": "fraud-2"}), {})
    assert renamed is not None and renamed.action == "replace" and renamed.delete_first
    assert "name forces a new resource" in renamed.reason and "sagemaker/endpoint.go" in renamed.source
    # the rollback block is ForceNew as a whole (MaxItems 1), its alarm list is not
    more_alarms = {"autoRollbackConfiguration": {"alarms": [{"alarmName": "a"}, {"alarmName": "b"}]}}
    grown = classify(old, declared(ep, "e", {**old.inputs, "deploymentConfig": more_alarms}), {})
    assert grown is not None and grown.action == "update"
    dropped = classify(old, declared(ep, "e", {**old.inputs, "deploymentConfig": {}}), {})
    assert dropped is not None and dropped.action == "replace" and dropped.delete_first


def test_ignore_changes_and_replace_on_changes_options_are_honoured() -> None:
    t = "gcp:vertex/aiEndpoint:AiEndpoint"
    old = declared(t, "ep", {"trafficSplit": {"a": 100}, "description": "x"})
    new = declared(t, "ep", {"trafficSplit": {"a": 50, "b": 50}, "description": "x"},
                   options={"ignoreChanges": ["trafficSplit"]})
    assert classify(old, new, {}) is None
    newer = declared(t, "ep", {"trafficSplit": {"a": 100}, "description": "y"},
                     options={"replaceOnChanges": ["description"]})
    change = classify(old, newer, {})
    assert change is not None and change.action == "replace" and "replaceOnChanges" in change.reason


def test_an_input_computed_from_a_replaced_resource_changes() -> None:
    """A replaced Model gets a new name, so the endpoint config naming it changes too."""
    cfg_type = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
    model_urn = "urn::aws:sagemaker/model:Model::m"
    inputs = {"productionVariants": [{"modelName": "m-1"}]}
    old = declared(cfg_type, "c", inputs)
    new = declared(cfg_type, "c", inputs, property_deps={"productionVariants": [model_urn]})
    assert classify(old, new, {}) is None
    replaced = {model_urn: ResourceChange("aws:sagemaker/model:Model", "m", "replace", urn=model_urn)}
    change = classify(old, new, replaced)
    assert change is not None and change.action == "replace"


def test_committed_stack_file_reads_head_not_the_working_copy(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@e", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "Pulumi.prod.yaml").write_text("config: {a: 1}\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    (repo / "Pulumi.prod.yaml").write_text("config: {a: 2}\n")
    got = committed_stack_file("prod", repo, tmp_path / "old.yaml")
    assert got.read_text() == "config: {a: 1}\n"
    with pytest.raises(CommandError, match=r"no committed Pulumi.dev.yaml .*--from"):
        committed_stack_file("dev", repo, tmp_path / "dev.yaml")


def stack_file(registry: SampleRegistry, path: Path, candidate: dict[str, Any] | None) -> Path:
    """The shipped prod example pointed at the test registry, with ``candidate``."""
    yml = YAML()
    data = yml.load((ROOT / "Pulumi.prod.yaml").read_text())
    data["config"]["mlflow-deploy:mlflow"]["trackingUri"] = registry.tracking_uri
    data["config"]["mlflow-deploy:model"]["version"] = "1"
    if candidate:
        data["config"]["mlflow-deploy:candidate"] = candidate
    with path.open("w") as fh:
        yml.dump(data, fh)
    return path


def modelctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelctl", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ),
    )


def test_the_command_prints_the_prod_example_canary_as_json_and_text(registry: SampleRegistry, tmp_path: Path) -> None:
    a = stack_file(registry, tmp_path / "a.yaml", None)
    b = stack_file(registry, tmp_path / "b.yaml", {"version": "2", "strategy": "canary", "percent": 10})
    proc = modelctl("diff", "--stack", "prod", "--from", str(a), "--to", str(b), "--json")
    assert proc.returncode == 0, proc.stderr
    changes = json.loads(proc.stdout)
    assert all({"type", "name", "action", "paths"} <= set(c) for c in changes)
    by_name = {c["name"]: c for c in changes}
    assert by_name["fraud-detector-sm-endpoint"]["action"] == "update"
    assert by_name["fraud-detector-sm-endpoint"]["paths"] == ["endpointConfigName"]
    assert by_name["fraud-detector-v2"]["action"] == "create"
    assert not [c for c in changes if c["action"] == "delete"]
    text = modelctl("diff", "--stack", "prod", "--from", str(a), "--to", str(b))
    assert text.returncode == 0, text.stderr
    assert "~ update   aws:sagemaker/endpoint:Endpoint  fraud-detector-sm-endpoint" in text.stdout
    assert text.stdout.rstrip().splitlines()[-1].endswith("unchanged")


def test_the_command_fails_in_one_line_on_a_bad_config(registry: SampleRegistry, tmp_path: Path) -> None:
    a = stack_file(registry, tmp_path / "a.yaml", None)
    b = stack_file(registry, tmp_path / "b.yaml", {"version": "2", "strategy": "canary", "percent": 150})
    proc = modelctl("diff", "--stack", "prod", "--from", str(a), "--to", str(b))
    assert proc.returncode == 1
    assert "mlflow-deploy:candidate.percent" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_replaced_provider_replaces_what_it_manages_except_its_global_types() -> None:
    """An AWS region change replaces the provider and every regional resource; IAM is global."""
    prov_type = "pulumi:providers:aws"
    prov_urn = f"urn::{prov_type}::aws"
    replaced = {prov_urn: ResourceChange(prov_type, "aws", "replace", urn=prov_urn)}
    model = declared("aws:sagemaker/model:Model", "m", {"tags": {}}, provider="aws")
    change = classify(model, model, replaced)
    assert change is not None and change.action == "replace" and "provider aws" in change.reason
    role = declared("aws:iam/role:Role", "r", {"tags": {}}, provider="aws")
    assert classify(role, role, replaced) is None


def test_ignore_changes_restores_the_old_value_before_the_replacement_rules() -> None:
    """The engine hands the provider the old value of an ignored path: an ignored `name` edit
    plus a tag edit is a tag update, not a (delete-first) replacement."""
    ep = "aws:sagemaker/endpoint:Endpoint"
    old = declared(ep, "e", {"name": "fraud", "tags": {"a": "1"}})
    new = declared(ep, "e", {"name": "fraud-2", "tags": {"a": "2"}}, options={"ignoreChanges": ["name"]})
    change = classify(old, new, {})
    assert change is not None and change.action == "update" and change.paths == ("tags.a",)


def test_ignore_changes_list_indices_are_exact_and_star_matches_all() -> None:
    dep = "kubernetes:apps/v1:Deployment"
    containers = {"spec": {"template": {"spec": {"containers": [{"image": "a:1"}, {"image": "b:1"}]}}}}
    both = {"spec": {"template": {"spec": {"containers": [{"image": "a:2"}, {"image": "b:2"}]}}}}
    old = declared(dep, "d", containers)
    first = declared(dep, "d", both, options={"ignoreChanges": ["spec.template.spec.containers[0].image"]})
    change = classify(old, first, {})
    assert change is not None and change.paths == ("spec.template.spec.containers[1].image",)
    star = declared(dep, "d", both, options={"ignoreChanges": ["spec.template.spec.containers[*].image"]})
    assert classify(old, star, {}) is None


def test_an_image_rebuild_changes_what_runs_it() -> None:
    """An updated docker-build Image is rebuilt and pushed (new digest): a SageMaker Model naming
    it is replaced, as it would be by the real engine."""
    from modelctl.diff import diff_renders
    from modelctl.render import Rendered

    image_urn = "urn::docker-build:index:Image::img"
    img_old = declared("docker-build:index:Image", "img", {"platforms": ["linux/amd64"], "tags": ["r:v1"]})
    img_new = declared("docker-build:index:Image", "img", {"platforms": ["linux/arm64"], "tags": ["r:v1"]})
    model = declared("aws:sagemaker/model:Model", "m", {"primaryContainer": {"image": "r:v1@sha256:1"}},
                     property_deps={"primaryContainer": [image_urn]})
    diff = diff_renders(Rendered(resources=[img_old, model]), Rendered(resources=[img_new, model]))
    assert diff.find("img") is not None and diff.find("img").action == "update"  # type: ignore[union-attr]
    m = diff.find("m")
    assert m is not None and m.action == "replace" and "primaryContainer" in m.reason


def test_a_new_stack_is_all_creates(registry: SampleRegistry, tmp_path: Path) -> None:
    b = stack_file(registry, tmp_path / "b.yaml", None)
    proc = modelctl("diff", "--stack", "prod", "--from", "none", "--to", str(b), "--json")
    assert proc.returncode == 0, proc.stderr
    changes = json.loads(proc.stdout)
    assert changes and {c["action"] for c in changes} == {"create"}


def test_a_masked_registry_token_is_not_sent_and_a_render_leaks_no_token(registry: SampleRegistry) -> None:
    import os

    from modelctl.render import SECRET_PLACEHOLDER, run_program
    from tests.conftest import base_config

    before = os.environ.get("MLFLOW_TRACKING_TOKEN")
    masked = {**base_config(registry), "mlflow-deploy:mlflowTrackingToken": SECRET_PLACEHOLDER}
    run_program(masked)
    assert os.environ.get("MLFLOW_TRACKING_TOKEN") == before
    real = {**base_config(registry), "mlflow-deploy:mlflowTrackingToken": "t0ken"}
    run_program(real)
    assert os.environ.get("MLFLOW_TRACKING_TOKEN") == before  # set for that render only


@pytest.mark.slow
def test_from_ref_shows_a_serving_runtime_change_that_rolls_the_stable_version(
    registry: SampleRegistry, tmp_path: Path
) -> None:
    """Config against config cannot see a code change; --from-ref renders the base commit's own
    program: a change under serving/ rebuilds the stable image and rolls its pods."""
    proj = tmp_path / "proj"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(proj)], check=True)
    git = ["git", "-C", str(proj), "-c", "user.email=t@e", "-c", "user.name=t"]
    stack = {
        "config": {
            "mlflow-deploy:mlflow": {"trackingUri": registry.tracking_uri},
            "mlflow-deploy:model": {"name": registry.name, "version": "1"},
            "mlflow-deploy:image": {"repository": "registry.example.com/models"},
            "mlflow-deploy:kubernetes": {"namespace": "models", "replicas": 2},
        }
    }
    YAML().dump(stack, proj / "Pulumi.t.yaml")
    subprocess.run([*git, "add", "Pulumi.t.yaml"], check=True)
    subprocess.run([*git, "commit", "-qm", "stack t"], check=True)

    def diff(*args: str) -> list[dict[str, Any]]:
        proc = subprocess.run(
            [sys.executable, "-m", "modelctl", "diff", "--stack", "t", "--json", *args],
            cwd=proj, capture_output=True, text=True, timeout=600, env=dict(os.environ),
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    assert diff("--from-ref", "HEAD") == []  # the same commit: nothing to do
    with (proj / "serving" / "__init__.py").open("a") as fh:
        fh.write("# a change of the serving runtime\n")
    subprocess.run([*git, "commit", "-qam", "serving change"], check=True)
    assert diff() == [], "config against config: blind to the code change (the documented scope)"
    changes = {c["name"]: c for c in diff("--from-ref", "HEAD~1")}
    assert changes["fraud-detector-v1"]["action"] == "update", changes["fraud-detector-v1"]  # the stable Deployment
    assert any(p.startswith("spec") for p in changes["fraud-detector-v1"]["paths"])
    assert "k8s-fraud-detector-v1" in changes  # its image is rebuilt
    bad = subprocess.run(
        [sys.executable, "-m", "modelctl", "diff", "--stack", "t", "--from-ref", "no-such-ref"],
        cwd=proj, capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 1 and "not a commit" in bad.stderr and "Traceback" not in bad.stderr
