"""The GitHub workflows: valid against the workflow schema, and every secret and variable they
use documented in docs/ci.md (and nothing documented that they do not use)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CI_DOC = ROOT / "docs" / "ci.md"


def schema_check(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, files)],
        capture_output=True, text=True, timeout=120,
    )


def test_the_workflows_are_valid() -> None:
    assert WORKFLOWS, "no workflow files"
    proc = schema_check(*WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  up:\n    steps:\n      - run: echo hi\n")  # no runs-on
    proc = schema_check(broken)
    assert proc.returncode != 0 and "runs-on" in proc.stdout + proc.stderr


def used(kind: str) -> set[str]:
    found: set[str] = set()
    for wf in WORKFLOWS:
        found |= set(re.findall(rf"\b{kind}\.([A-Z][A-Z0-9_]*)", wf.read_text()))
    return found


def documented(heading: str) -> set[str]:
    text = CI_DOC.read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, flags=re.M))


@pytest.mark.parametrize(("kind", "heading"), [("secrets", "Secrets"), ("vars", "Variables")])
def test_every_secret_and_variable_is_documented(kind: str, heading: str) -> None:
    assert used(kind) == documented(heading)


def test_dev_is_not_deployed_by_default() -> None:
    """dev pins a laptop registry and cluster: CI deploys only the stacks it is told to."""
    deploy = YAML(typ="safe").load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    matrix = deploy["jobs"]["up"]["strategy"]["matrix"]["stack"]
    default = re.search(r"\|\| '(\[.*?\])'", matrix)
    assert default and "dev" not in default.group(1) and "prod" in default.group(1)
    assert "vars.DEPLOY_STACKS" in matrix


def test_the_registry_logins_the_docs_promise_are_run() -> None:
    deploy = YAML(typ="safe").load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    runs = " ".join(str(step.get("run", "")) for step in deploy["jobs"]["up"]["steps"])
    assert "az acr login" in runs and "gcloud auth configure-docker" in runs
