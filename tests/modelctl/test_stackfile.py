"""Stack-file edits that lose nothing: concurrent runs, read-only files, the file's own layout and
comment placement, atomic replacement."""

from __future__ import annotations

import difflib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from modelctl.cli import CommandError, main
from modelctl.sample import SampleRegistry
from modelctl.stackfile import atomic_write, detect_layout, locked
from tests.modelctl.test_stackops import stack_copy

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> int:
    return main(list(args))


def config_of(path: Path) -> dict:  # type: ignore[type-arg]
    return YAML(typ="safe").load(path.read_text())["config"]


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed, added) lines of the diff."""
    removed, added = [], []
    for ln in difflib.ndiff(before.splitlines(), after.splitlines()):
        if ln.startswith("- "):
            removed.append(ln[2:])
        elif ln.startswith("+ "):
            added.append(ln[2:])
    return removed, added


# --------------------------------------------------------------------------- concurrency


def _modelctl(path: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen(
        [sys.executable, "-m", "modelctl", "--project-dir", str(ROOT), *args, "--stack", "dev", "--config", str(path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _both(path: Path, a: list[str], b: list[str]) -> list[tuple[int, str, str]]:
    procs = [_modelctl(path, *a), _modelctl(path, *b)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        results.append((p.returncode, out, err))
    return results


def test_two_concurrent_promotes_keep_both_edits(registry: SampleRegistry, tmp_path: Path) -> None:
    """Two processes at once, one edit each (the percent, the strategy): both edits are in the
    file afterwards. Before the lock, both read the same file and the second write lost the first."""
    path = stack_copy(registry, tmp_path)
    # shadow needs the gateway router
    path.write_text(path.read_text().replace(
        "    namespace: models\n",
        "    namespace: models\n    router: gateway\n    gateway: {name: public, namespace: gateway-system}\n",
    ))
    assert run("promote", "--stack", "dev", "--config", str(path), "--version", "2", "--percent", "10") == 0
    results = _both(
        path,
        ["promote", "--version", "2", "--percent", "20"],
        ["promote", "--version", "2", "--strategy", "shadow"],
    )
    assert [r[0] for r in results] == [0, 0], results
    cand = config_of(path)["mlflow-deploy:candidate"]
    assert cand == {"version": "2", "strategy": "shadow", "percent": 20}, results
    assert not list(tmp_path.glob(".*.lock")) and not list(tmp_path.glob(".*.tmp"))


def test_two_concurrent_candidates_one_is_refused(registry: SampleRegistry, tmp_path: Path) -> None:
    """"A candidate is already on trial" holds under concurrency: one run wins, the other is
    refused after it saw the winner's edit, and the file holds the winner's candidate."""
    path = stack_copy(registry, tmp_path)
    results = _both(path, ["promote", "--version", "2"], ["promote", "--version", "3"])
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    winner = next(r for r in results if r[0] == 0)
    loser = next(r for r in results if r[0] == 1)
    assert "wrote" in winner[1] and "wrote" not in loser[1]
    assert "is on trial" in loser[2]
    version = config_of(path)["mlflow-deploy:candidate"]["version"]
    assert f'+    version: "{version}"' in winner[1]


def test_a_held_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("config: {}\n")
    with locked(path), pytest.raises(CommandError, match=r"being edited by another modelctl \(pid \d+\)"), \
            locked(path, timeout=0.2):
        pass
    assert not (tmp_path / ".Pulumi.dev.yaml.lock").exists()


def test_atomic_write_refuses_a_file_changed_since_it_was_read(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("a: 1\n")
    path.chmod(0o640)
    path.write_text("a: 2\n")  # someone else's edit after we read "a: 1"
    with pytest.raises(CommandError, match="changed while modelctl was editing it"):
        atomic_write(path, "a: 3\n", expected="a: 1\n")
    assert path.read_text() == "a: 2\n"
    atomic_write(path, "a: 3\n", expected="a: 2\n")
    assert path.read_text() == "a: 3\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Pulumi.dev.yaml"]  # no temp file left


def test_promote_keeps_the_file_mode_and_follows_a_symlink(registry: SampleRegistry, tmp_path: Path) -> None:
    real = stack_copy(registry, tmp_path)
    real.chmod(0o600)
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    assert run("promote", "--stack", "dev", "--config", str(link), "--version", "2") == 0
    assert link.is_symlink()
    assert config_of(real)["mlflow-deploy:candidate"]["version"] == "2"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600


def test_a_read_only_stack_file_is_refused_before_any_diff(registry: SampleRegistry, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = stack_copy(registry, tmp_path)
    before = path.read_text()
    path.chmod(0o444)
    assert run("promote", "--stack", "dev", "--config", str(path), "--version", "2") == 1
    out, err = capsys.readouterr()
    assert out == ""  # no diff, no "wrote"
    assert err.count("\n") == 1 and f"{path} is read-only (mode 0444)" in err
    assert path.read_text() == before
    # a dry run only reads
    assert run("promote", "--stack", "dev", "--config", str(path), "--version", "2", "--dry-run") == 0
    assert "dry run" in capsys.readouterr().out


# --------------------------------------------------------------------------- layout


FOUR_SPACES = """\
# A stack file indented with four spaces, sequences with the dash at the key's column.
config:
    mlflow-deploy:mlflow:
        trackingUri: {uri}
    mlflow-deploy:model:
        name: fraud-detector
        version: "1"    # the stable version
    # images go to the local registry
    mlflow-deploy:image:
        repository: localhost:5001/models
    mlflow-deploy:kubernetes:
        namespace: models
        imagePullSecrets:
        - regcred
        - other
        resources:
            requests: {{cpu: 250m, memory: 512Mi}}
"""


def test_a_four_space_file_changes_only_on_the_edited_lines(registry: SampleRegistry, tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    original = FOUR_SPACES.format(uri=registry.tracking_uri)
    path.write_text(original)
    assert detect_layout(original).mapping == 4
    assert run("promote", "--stack", "dev", "--config", str(path), "--version", "2", "--percent", "10") == 0
    after = path.read_text()
    removed, added = changed_lines(original, after)
    assert removed == []
    assert added == [
        "    mlflow-deploy:candidate:",
        '        version: "2"',
        "        strategy: canary",
        "        percent: 10",
    ]
    # the comment above image stays right above image
    lines = after.splitlines()
    assert lines[lines.index("    mlflow-deploy:image:") - 1] == "    # images go to the local registry"
    assert run("promote", "--stack", "dev", "--config", str(path), "--finish") == 0
    removed, added = changed_lines(original, path.read_text())
    assert removed == ['        version: "1"    # the stable version']
    assert added == ['        version: "2"    # the stable version']
    assert run("rollback", "--stack", "dev", "--config", str(path), "--to", "1") == 0
    assert path.read_text() == original


def test_lines_ruamel_would_reformat_are_left_alone(registry: SampleRegistry, tmp_path: Path) -> None:
    """Mixed indentation, odd spacing, a flow list: a one-key edit still changes one line."""
    original = (
        "config:\n"
        f"  mlflow-deploy:mlflow: {{trackingUri: '{registry.tracking_uri}'}}\n"
        "  mlflow-deploy:model:\n"
        "      name:   fraud-detector\n"
        "      version: '1'\n"
        "  mlflow-deploy:candidate:\n"
        "     version: \"2\"\n"
        "     strategy:  canary\n"
        "     percent:    10      # share of traffic\n"
        "  mlflow-deploy:image:\n"
        "    repository: localhost:5001/models\n"
        "  mlflow-deploy:kubernetes:\n"
        "        namespace: models\n"
        "        imagePullSecrets: [ regcred,  other ]\n"
    )
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(original)
    assert run("promote", "--stack", "dev", "--config", str(path), "--version", "2", "--percent", "30") == 0
    removed, added = changed_lines(original, path.read_text())
    assert removed == ["     percent:    10      # share of traffic"]
    assert len(added) == 1 and added[0].strip().startswith("percent: 30") and "# share of traffic" in added[0]


def test_comments_above_the_next_key_stay_there(registry: SampleRegistry, tmp_path: Path) -> None:
    """ruamel keeps the comment lines above a key on the value before it. A key appended after
    that value, or a block deleted, must not carry them off or leave them above the wrong key."""
    original = (
        "config:\n"
        "  mlflow-deploy:mlflow:\n"
        f"    trackingUri: {registry.tracking_uri}\n"
        "  mlflow-deploy:model:\n"
        "    name: fraud-detector\n"
        '    version: "1"\n'
        "  mlflow-deploy:candidate:\n"
        '    version: "2"\n'
        "    strategy: canary   # for now\n"
        "\n"
        "  # Kubernetes images: the local registry\n"
        "  mlflow-deploy:image:\n"
        "    repository: localhost:5001/models\n"
        "  mlflow-deploy:kubernetes:\n"
        "    namespace: models\n"
    )
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(original)
    assert run("promote", "--stack", "dev", "--config", str(path), "--version", "2", "--percent", "5") == 0
    after = path.read_text()
    assert "    strategy: canary   # for now\n    percent: 5\n\n  # Kubernetes images: the local registry\n" \
           "  mlflow-deploy:image:\n" in after
    assert run("rollback", "--stack", "dev", "--config", str(path)) == 0  # drops the candidate
    after = path.read_text()
    assert '    version: "1"\n\n  # Kubernetes images: the local registry\n  mlflow-deploy:image:\n' in after
    assert "candidate" not in after


def test_the_prod_file_round_trips_to_the_byte(registry: SampleRegistry, tmp_path: Path) -> None:
    """The real prod stack file (comments between blocks, a commented-out candidate, flow maps,
    block sequences): start a canary, roll it back, and the file is what it was."""
    path = stack_copy(registry, tmp_path, source="Pulumi.prod.yaml")
    original = path.read_text()
    assert run("promote", "--stack", "prod", "--config", str(path), "--version", "2", "--percent", "10") == 0
    removed, added = changed_lines(original, path.read_text())
    assert removed == [] and len(added) == 4
    assert run("rollback", "--stack", "prod", "--config", str(path)) == 0
    assert path.read_text() == original


def test_an_alias_becomes_a_version_in_place(registry: SampleRegistry, tmp_path: Path) -> None:
    original = (
        "config:\n"
        "  mlflow-deploy:mlflow:\n"
        f"    trackingUri: {registry.tracking_uri}\n"
        "  mlflow-deploy:model:\n"
        "    alias: champion   # follows the registry\n"
        "    # the registered model\n"
        "    name: fraud-detector\n"
        "  mlflow-deploy:image:\n"
        "    repository: localhost:5001/models\n"
        "  mlflow-deploy:kubernetes:\n"
        "    namespace: models\n"
    )
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(original)
    assert run("rollback", "--stack", "dev", "--config", str(path), "--to", "2") == 0
    removed, added = changed_lines(original, path.read_text())
    assert removed == ["    alias: champion   # follows the registry"]
    assert len(added) == 1 and added[0].startswith('    version: "2" ')
    # the end-of-line comment stays, at its column
    assert added[0].index("# follows the registry") == removed[0].index("# follows the registry")
