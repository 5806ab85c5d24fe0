"""modelctl promote / rollback / status on copies of the real stack files, against the real
test registry; every refusal leaves the file untouched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from modelctl.cli import main
from modelctl.sample import SampleRegistry
from modelctl.stackops import versions_from_pulumi_history

ROOT = Path(__file__).resolve().parents[2]


def stack_copy(registry: SampleRegistry, tmp_path: Path, source: str = "Pulumi.dev.yaml",
               version: str = "1") -> Path:
    """The real stack file with the registry URI and the stable version swapped in by text
    edits, so its comments and layout are the real ones."""
    text = (ROOT / source).read_text()
    lines = []
    for ln in text.splitlines(keepends=True):
        if ln.strip().startswith("trackingUri:"):
            ln = ln[: ln.index("trackingUri:")] + f"trackingUri: {registry.tracking_uri}\n"
        elif ln.strip().startswith("version:") and not lines[-1].strip().startswith("#"):
            ln = ln[: ln.index("version:")] + f'version: "{version}"\n'
        lines.append(ln)
    path = tmp_path / source
    path.write_text("".join(lines))
    return path


def config_of(path: Path) -> dict:  # type: ignore[type-arg]
    return YAML(typ="safe").load(path.read_text())["config"]


def run(*args: str) -> int:
    return main(list(args))


def comments(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith("#")]


# --------------------------------------------------------------------------- promote


def test_promote_starts_a_canary_keeping_comments_and_order(registry, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = stack_copy(registry, tmp_path)
    before = path.read_text()
    assert run("promote", "--stack", "dev", "--config", str(path), "--version", "2", "--percent", "10") == 0
    after = path.read_text()
    cfg = config_of(path)
    assert cfg["mlflow-deploy:candidate"] == {"version": "2", "strategy": "canary", "percent": 10}
    assert cfg["mlflow-deploy:model"]["version"] == "1"
    # comments kept, keys in their order, the candidate right after the model
    assert comments(after) == comments(before)
    keys = list(cfg)
    assert keys.index("mlflow-deploy:candidate") == keys.index("mlflow-deploy:model") + 1
    assert [k for k in keys if k != "mlflow-deploy:candidate"] == list(config_of_text(before))
    # only lines were added: nothing else in the file moved
    assert [ln for ln in before.splitlines() if ln not in after.splitlines()] == []
    out = capsys.readouterr().out
    assert "+  mlflow-deploy:candidate:" in out and '+    version: "2"' in out


def config_of_text(text: str) -> dict:  # type: ignore[type-arg]
    return YAML(typ="safe").load(text)["config"]


def test_promote_adjusts_the_percent_of_the_same_candidate(registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = stack_copy(registry, tmp_path)
    run("promote", "--stack", "dev", "--config", str(path), "--version", "2", "--percent", "10")
    assert run("promote", "--stack", "dev", "--config", str(path), "--version", "2", "--percent", "50") == 0
    assert config_of(path)["mlflow-deploy:candidate"]["percent"] == 50


def test_promote_blue_green_then_finish(registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = stack_copy(registry, tmp_path)
    assert run("promote", "--stack", "dev", "--config", str(path), "--version", "3", "--strategy", "blue-green") == 0
    assert config_of(path)["mlflow-deploy:candidate"] == {"version": "3", "strategy": "blue-green"}
    assert run("promote", "--stack", "dev", "--config", str(path), "--finish") == 0
    cfg = config_of(path)
    assert cfg["mlflow-deploy:model"]["version"] == "3"
    assert "mlflow-deploy:candidate" not in cfg


def test_dry_run_writes_nothing(registry, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = stack_copy(registry, tmp_path)
    before = path.read_text()
    assert run("promote", "--stack", "dev", "--config", str(path), "--version", "2", "--dry-run") == 0
    assert path.read_text() == before
    assert "mlflow-deploy:candidate" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--version", "9"], "has no version 9 in the registry"),
        (["--version", "1"], "already the stable version"),
        (["--version", "2", "--percent", "150"], "mlflow-deploy:candidate.percent"),
        (["--version", "2", "--strategy", "blue-green", "--percent", "30"], "blue-green is a switch"),
        (["--finish"], "no candidate to finish"),
        ([], "give --version"),
    ],
)
def test_promote_refusals_leave_the_file_alone(registry, tmp_path, capsys, args, message) -> None:  # type: ignore[no-untyped-def]
    path = stack_copy(registry, tmp_path)
    before = path.read_text()
    assert run("promote", "--stack", "dev", "--config", str(path), *args) == 1
    assert message in capsys.readouterr().err
    assert path.read_text() == before


def test_promote_refuses_a_second_candidate(registry, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = stack_copy(registry, tmp_path)
    run("promote", "--stack", "dev", "--config", str(path), "--version", "2")
    before = path.read_text()
    assert run("promote", "--stack", "dev", "--config", str(path), "--version", "3") == 1
    assert "candidate 2 is on trial" in capsys.readouterr().err
    assert path.read_text() == before


def test_promote_with_an_alias_stable(registry, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = stack_copy(registry, tmp_path)
    path.write_text(path.read_text().replace('version: "1"', "alias: champion", 1))
    # champion -> 3, so 3 is the stable version
    assert run("promote", "--stack", "dev", "--config", str(path), "--version", "3") == 1
    assert "already the stable version" in capsys.readouterr().err
    assert run("promote", "--stack", "dev", "--config", str(path), "--version", "2", "--percent", "5") == 0
    assert run("promote", "--stack", "dev", "--config", str(path), "--finish") == 0
    model = config_of(path)["mlflow-deploy:model"]
    assert model == {"name": "fraud-detector", "version": "2"}


# --------------------------------------------------------------------------- rollback


def test_rollback_drops_the_candidate(registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = stack_copy(registry, tmp_path)
    original = path.read_text()
    run("promote", "--stack", "dev", "--config", str(path), "--version", "2", "--percent", "10")
    assert run("rollback", "--stack", "dev", "--config", str(path)) == 0
    assert path.read_text() == original  # back to the byte


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo,
                   check=True, capture_output=True)


def test_rollback_to_the_version_the_stack_ran_before_from_git(registry, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    path = stack_copy(registry, repo, version="1")
    git(repo, "add", path.name)
    git(repo, "commit", "-qm", "v1")
    assert run("promote", "--stack", "dev", "--config", str(path), "--version", "3", "--percent", "10") == 0
    git(repo, "commit", "-qam", "canary 3")
    assert run("promote", "--stack", "dev", "--config", str(path), "--finish") == 0
    git(repo, "commit", "-qam", "promote 3")
    capsys.readouterr()
    assert run("rollback", "--stack", "dev", "--config", str(path)) == 0
    assert "ran version 1 before 3" in capsys.readouterr().out
    assert config_of(path)["mlflow-deploy:model"]["version"] == "1"


def test_rollback_with_no_history_is_refused(registry, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    path = stack_copy(registry, repo, version="2")
    git(repo, "add", path.name)
    git(repo, "commit", "-qm", "only one version ever")
    before = path.read_text()
    assert run("rollback", "--stack", "dev", "--config", str(path)) == 1
    assert "no earlier model.version than 2" in capsys.readouterr().err
    assert path.read_text() == before


def test_rollback_to_an_explicit_version(registry, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = stack_copy(registry, tmp_path, version="3")
    assert run("rollback", "--stack", "dev", "--config", str(path), "--to", "9") == 1
    assert "has no version 9" in capsys.readouterr().err
    assert run("rollback", "--stack", "dev", "--config", str(path), "--to", "3") == 1
    assert "already the stable version" in capsys.readouterr().err
    assert run("rollback", "--stack", "dev", "--config", str(path), "--to", "2") == 0
    assert config_of(path)["mlflow-deploy:model"]["version"] == "2"


def test_pulumi_history_parsing() -> None:
    """The shape `pulumi stack history --json` prints: newest first, config values as
    {value, secret}, structured values as JSON strings."""

    def update(version: str, kind: str = "update", result: str = "succeeded") -> dict:  # type: ignore[type-arg]
        model = json.dumps({"name": "fraud-detector", "version": version})
        return {"kind": kind, "result": result,
                "config": {"mlflow-deploy:model": {"value": model, "secret": False},
                           "aws:region": {"value": "us-east-1", "secret": False}}}

    history = [update("8"), update("8"), update("6", result="failed"), update("5", kind="refresh"), update("7")]
    assert versions_from_pulumi_history(history, "8") == "7"
    assert versions_from_pulumi_history([update("8")], "8") is None


# --------------------------------------------------------------------------- status


def test_status_shows_the_rollout_and_the_registry(registry, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = stack_copy(registry, tmp_path)
    run("promote", "--stack", "dev", "--config", str(path), "--version", "2", "--percent", "20")
    capsys.readouterr()
    assert run("status", "--stack", "dev", "--config", str(path)) == 0
    out = capsys.readouterr().out
    assert "stable:    1" in out
    assert "candidate: 2  strategy canary  percent 20" in out
    assert "v1=80%, v2=20%" in out
    from mlflow.tracking import MlflowClient

    for v in ("1", "2"):
        mv = MlflowClient(registry.tracking_uri).get_model_version(registry.name, v)
        assert f"run {mv.run_id}" in out
    assert "status READY" in out


def test_status_on_a_sagemaker_stack_without_the_pulumi_cli(registry, tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no `pulumi` here
    path = stack_copy(registry, tmp_path)
    path.write_text(path.read_text() + "  mlflow-deploy:sagemaker:\n    region: eu-west-1\n")
    assert run("status", "--stack", "dev", "--config", str(path)) == 0
    assert "sagemaker: endpoint drift not checked: needs the Pulumi CLI" in capsys.readouterr().out


def test_sagemaker_drift_is_reported_and_flagged(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    import boto3
    import botocore.session
    from botocore.stub import Stubber

    from modelctl.stackops import DRIFT_EXIT, sagemaker_drift

    now = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/m@sha256:" + "7" * 64
    bc = botocore.session.get_session()
    bc.set_credentials("testing", "testing")
    session = boto3.Session(botocore_session=bc, region_name="eu-west-1")
    original = session.client

    def client(*args, **kwargs):  # type: ignore[no-untyped-def]
        c = original(*args, **kwargs)
        stub = Stubber(c)
        stub.add_response("describe_endpoint", {
            "EndpointName": "fraud-detector", "EndpointArn": "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/x",
            "EndpointConfigName": "cfg-old", "EndpointStatus": "InService", "CreationTime": now,
            "LastModifiedTime": now,
            "ProductionVariants": [{"VariantName": "stable", "CurrentWeight": 1.0, "DesiredWeight": 1.0,
                                    "DeployedImages": [{"SpecifiedImage": image}]}],
        }, {"EndpointName": "fraud-detector"})
        stub.activate()
        return c

    session.client = client  # type: ignore[method-assign]
    outputs = {"sagemaker": {"region": "eu-west-1", "endpointName": "fraud-detector", "endpointConfigName": "cfg-new",
                             "variants": [{"name": "stable", "version": "7", "weight": 100, "image": image}]}}
    drift = sagemaker_drift("prod", tmp_path, outputs=outputs, session=session)
    assert drift.drifted and any(line.startswith("DRIFT:") and "cfg-old" in line for line in drift.lines)
    assert DRIFT_EXIT not in (0, 1, 2)
