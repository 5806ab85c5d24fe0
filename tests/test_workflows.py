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


# --------------------------------------------------------------------------- progressive.yml

PROGRESSIVE = ROOT / ".github" / "workflows" / "progressive.yml"


def _progressive() -> dict:  # type: ignore[type-arg]
    return YAML(typ="safe").load(PROGRESSIVE.read_text())


def _script(run: str, marker: str) -> str:
    """The Python heredoc of a `run:` block that contains ``marker``."""
    import textwrap

    for chunk in run.split("<<'EOF'")[1:]:
        body = chunk.split("\nEOF", 1)[0].split("\n", 1)[1]
        if marker in body:
            return textwrap.dedent(body)
    raise AssertionError(f"no heredoc with {marker!r}")


def test_progressive_runs_on_a_schedule_and_by_hand_with_the_permissions_it_documents() -> None:
    wf = _progressive()
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as true
    assert on["schedule"][0]["cron"] and "workflow_dispatch" in on
    assert wf["permissions"] == {"contents": "write", "pull-requests": "write", "id-token": "write"}
    header = PROGRESSIVE.read_text().split("\nname:", 1)[0]
    for perm in ("contents: write", "pull-requests: write", "id-token: write", "PROGRESSIVE_TOKEN"):
        assert perm in header


def test_progressive_accepts_exactly_the_decision_exit_codes() -> None:
    from modelctl.cli import EXIT_ABORT, EXIT_HOLD, EXIT_OK

    steps = _progressive()["jobs"]["analyze"]["steps"]
    run = next(s["run"] for s in steps if s.get("id") == "analyze")
    assert "analyze --stack \"$STACK\" --write --json" in run
    assert f"case $code in {EXIT_OK}|{EXIT_HOLD}|{EXIT_ABORT}) ;;" in run


def test_progressive_finds_the_stacks_with_a_stepped_candidate(tmp_path: Path) -> None:
    run = next(s["run"] for s in _progressive()["jobs"]["stacks"]["steps"] if s.get("id") == "find")
    script = _script(run, "candidate")
    (tmp_path / "Pulumi.prod.yaml").write_text(
        'config:\n  mlflow-deploy:candidate:\n    version: "8"\n    percent: 5\n    steps: [5, 25, 100]\n'
    )
    (tmp_path / "Pulumi.staging.yaml").write_text('config:\n  mlflow-deploy:candidate:\n    version: "8"\n')
    (tmp_path / "Pulumi.dev.yaml").write_text('config:\n  mlflow-deploy:model:\n    name: m\n')
    (tmp_path / "Pulumi.yaml").write_text("name: x\n")

    def found(only: str) -> str:
        proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                              env={"ONLY": only, "PATH": "/usr/bin:/bin"}, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert found("") == 'stacks=["prod"]'
    assert found("staging") == "stacks=[]"


def test_progressive_renders_the_figures_of_a_real_analysis(tmp_path: Path, registry: object) -> None:
    """The PR body step reads what `modelctl analyze --json` prints (a real run, a stand-in source)."""
    import contextlib
    import datetime as dt
    import io
    import json

    from modelctl.analysis import Figures, VersionFigures
    from modelctl.analyze import analyze
    from tests.modelctl.test_analyze import stack

    class Fixed:
        name = "fixed"

        def figures(self, *_: object) -> Figures:
            return Figures(VersionFigures(5000, 0.001, 0.08), VersionFigures(500, 0.2, 0.09), drift_share=0.1)

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = analyze("dev", stack(registry, tmp_path), write=False, as_json=True,  # type: ignore[arg-type]
                       now=dt.datetime(2025, 6, 1, 12, tzinfo=dt.UTC), source=Fixed())
    assert code == 20
    (tmp_path / "analysis.json").write_text(out.getvalue())
    json.loads(out.getvalue())
    run = next(s["run"] for s in _progressive()["jobs"]["analyze"]["steps"] if s.get("id") == "analyze")
    script = _script(run, "body.md")
    (tmp_path / "summary").touch()
    (tmp_path / "output").touch()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        env={"RUNNER_TEMP": str(tmp_path), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
             "GITHUB_OUTPUT": str(tmp_path / "output"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    body = (tmp_path / "body.md").read_text()
    assert "**abort** for candidate 2" in body
    assert "| candidate | 500 | 20.00% | 90.0 ms |" in body and "| stable | 5000 | 0.10% | 80.0 ms |" in body
    assert "drift share: 0.100" in body and "- FAILED error ratio" in body
    assert (tmp_path / "output").read_text() == "decision=abort\n"
    assert (tmp_path / "summary").read_text() == body
