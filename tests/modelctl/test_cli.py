"""modelctl as a command line: one clear line and a non-zero exit for every failure, no traceback
unless --debug, bounded registry calls, --project-dir and the installed console script."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelctl.cli import EXIT_DRIFT, build_parser, main
from modelctl.sample import SampleRegistry
from modelctl.stackops import DRIFT_EXIT
from tests.modelctl.test_stackops import stack_copy

ROOT = Path(__file__).resolve().parents[2]


def modelctl(*args: str, cwd: Path = ROOT, timeout: float = 120, env: dict[str, str] | None = None,
             exe: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    base.update(env or {})
    return subprocess.run(
        [*(exe or [sys.executable, "-m", "modelctl"]), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=base,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --------------------------------------------------------------------------- broken stack files


@pytest.mark.parametrize("command", ["render", "promote", "rollback", "status"])
def test_a_yaml_syntax_error_is_one_line_naming_file_and_line(tmp_path: Path, command: str) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("config:\n  mlflow-deploy:model:\n    name: [fraud\n    version: 1\n")
    extra = {"render": ["--out", str(tmp_path / "out")], "promote": ["--version", "2"], "rollback": ["--to", "1"],
             "status": []}[command]
    line = one_error_line(modelctl(command, "--stack", "dev", "--config", str(path), *extra))
    assert line.startswith(f"modelctl {command}: error: {path}:4:")
    assert "YAML error" in line and "<unicode string>" not in line


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text("config:\n  a: [1\n")
    proc = modelctl("--debug", "status", "--stack", "dev", "--config", str(path))
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ParserError" in proc.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("config:\n\tmlflow-deploy:model: {}\n", ":2:1: YAML error: found character '\\t'"),
        ("config:\n", "'config:' is empty"),
        ("", "is empty: a stack file needs a 'config:' section"),
        ("name: x\n", "has no 'config:' section"),
        ("config: [1, 2]\n", "'config:' must be a mapping"),
    ],
)
def test_broken_stack_files_are_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                              expected: str) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text)
    for args in (["status"], ["promote", "--version", "2"], ["render", "--out", str(tmp_path / "o")]):
        assert main([args[0], "--stack", "dev", "--config", str(path), *args[1:]]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and expected in err, err


def test_a_garbage_tracking_uri_is_one_line_naming_it(registry: SampleRegistry, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    for uri in ("foo://bar", "not a uri"):
        path = stack_copy(registry, tmp_path)
        path.write_text(path.read_text().replace(registry.tracking_uri, uri))
        for args in (["status"], ["promote", "--version", "2"], ["rollback", "--to", "2"],
                     ["render", "--out", str(tmp_path / "o")]):
            assert main([args[0], "--stack", "dev", "--config", str(path), *args[1:]]) == 1
            out, err = capsys.readouterr()
            assert err.count("\n") == 1 and f"MLflow tracking URI {uri!r}" in err, err
            assert "wrote" not in out


# --------------------------------------------------------------------------- dead registry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


def _dead_stack(registry: SampleRegistry, tmp_path: Path, uri: str) -> Path:
    path = stack_copy(registry, tmp_path)
    path.write_text(path.read_text().replace(registry.tracking_uri, uri))
    return path


def test_status_with_a_refusing_registry_fails_fast(registry: SampleRegistry, tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    path = _dead_stack(registry, tmp_path, uri)
    proc = modelctl("status", "--stack", "dev", "--config", str(path), timeout=30)
    line = one_error_line(proc)
    assert f"MLflow registry at {uri} is unreachable" in line and "Connection refused" in line
    assert "NOT FOUND" not in proc.stdout and proc.stdout == ""


def test_every_command_gives_up_on_a_silent_registry(registry: SampleRegistry, tmp_path: Path, blackhole: int) -> None:
    """Connections accepted, never answered: each command stops within the registry budget
    (3 attempts of 4 s) with the URI and the cause; the subprocess timeout is the issue's bound."""
    uri = f"http://127.0.0.1:{blackhole}"
    path = _dead_stack(registry, tmp_path, uri)
    before = path.read_text()
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def one(name: str, *args: str) -> None:
        results[name] = modelctl(*args, "--stack", "dev", "--config", str(path), timeout=30)

    threads = [
        threading.Thread(target=one, args=("status", "status")),
        threading.Thread(target=one, args=("promote", "promote", "--version", "3")),
        threading.Thread(target=one, args=("render", "render", "--out", str(tmp_path / "out"))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, proc in results.items():
        line = one_error_line(proc)
        assert f"MLflow registry at {uri} is unreachable" in line and "timed out" in line, (name, line)
        assert "(3 attempts)" in line
    assert path.read_text() == before


# --------------------------------------------------------------------------- usage, help, exit codes


def test_help_documents_the_exit_codes_and_every_option() -> None:
    parser = build_parser()
    top = parser.format_help()
    assert "exit codes:" in top and f"  {EXIT_DRIFT}    drift" in top and "  2    usage" in top
    assert "--project-dir" in top and "--debug" in top
    sub = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, p in sub.items():
        text = p.format_help()
        assert "exit codes:" in text, name
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.help and action.help.strip(), (name, action.option_strings)
    promote = sub["promote"].format_help()
    assert "share of live traffic" in promote and "mirrored" in promote
    assert DRIFT_EXIT == EXIT_DRIFT


def test_usage_errors_exit_2() -> None:
    proc = modelctl("promote", "--stack")
    assert proc.returncode == 2 and "usage:" in proc.stderr
    proc = modelctl("promote", "--stack", "dev", "--strategy", "linear")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


# --------------------------------------------------------------------------- project folder


def test_the_project_is_found_from_a_subfolder(registry: SampleRegistry, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = stack_copy(registry, tmp_path)
    monkeypatch.chdir(ROOT / "docs")
    assert main(["status", "--stack", "dev", "--config", str(path)]) == 0
    assert Path.cwd() == ROOT / "docs"  # restored
    # a relative --config means relative to where modelctl was started
    monkeypatch.chdir(tmp_path)
    assert main(["--project-dir", str(ROOT), "status", "--stack", "dev", "--config", path.name]) == 0
    assert f"({path.name})" in capsys.readouterr().out


def test_outside_any_project_it_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["status", "--stack", "dev"]) == 1
    assert "no Pulumi.yaml in" in capsys.readouterr().err
    assert main(["--project-dir", str(tmp_path), "status", "--stack", "dev"]) == 1
    assert f"--project-dir {tmp_path}: no Pulumi.yaml" in capsys.readouterr().err
    # --project-dir also after the command
    assert main(["status", "--stack", "dev", "--project-dir", str(tmp_path / "nope")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_relative_sqlite_paths_mean_the_project_folder(registry: SampleRegistry, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """As `pulumi` runs the program in the project folder, `sqlite:///.mlflow-demo/mlflow.db`
    is the project's, wherever modelctl is started."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: mlflow-deploy\nruntime: python\n")
    db = Path(registry.tracking_uri.removeprefix("sqlite:///"))
    (project / "reg").mkdir()
    (project / "reg" / "mlflow.db").symlink_to(db)
    stack = stack_copy(registry, project)
    stack.write_text(stack.read_text().replace(registry.tracking_uri, "sqlite:///reg/mlflow.db"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = modelctl("--project-dir", str(project), "status", "--stack", "dev", cwd=elsewhere,
                    env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "registry sqlite:///reg/mlflow.db" in proc.stdout and "status READY" in proc.stdout
    assert not (elsewhere / "reg").exists()


def test_the_installed_console_script_runs_from_any_folder(registry: SampleRegistry, tmp_path: Path) -> None:
    """pip install of the project (pyproject.toml) gives a `modelctl` command; run from a folder
    outside the project with --project-dir, it renders the real program."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "requirements.txt", "README.md"):
        shutil.copy(ROOT / name, src / name)
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for pkg in (p for p in packages if "." not in p):  # subpackages come with their parent
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(site), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    script = site / "bin" / "modelctl"
    assert script.is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = stack_copy(registry, tmp_path)
    env = {"PYTHONPATH": str(site), "MLFLOW_DEPLOY_BUILD_DIR": str(tmp_path / "build")}
    proc = modelctl("--project-dir", str(ROOT), "render", "--stack", "dev", "--config", str(path), "--out", "out",
                    cwd=elsewhere, env=env, exe=[sys.executable, str(script)], timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (elsewhere / "out" / "resources.json").is_file()
    proc = modelctl("--help", cwd=elsewhere, env=env, exe=[sys.executable, str(script)])
    assert proc.returncode == 0 and "exit codes:" in proc.stdout
