"""`modelctl analyze` as a command: refusals, exit codes, the edits it writes (a figures source
stand-in feeds the decision; the real sources are in test_sources.py and test_analyze_e2e.py), and
`promote --steps` writing candidate.since."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from modelctl.analysis import Figures, VersionFigures
from modelctl.analyze import analyze
from modelctl.cli import CommandError, main
from modelctl.sample import SampleRegistry
from tests.modelctl.test_stackops import ROOT, config_of, stack_copy

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
GOOD = Figures(VersionFigures(5000, 0.001, 0.08), VersionFigures(500, 0.001, 0.08))
BAD = Figures(VersionFigures(5000, 0.001, 0.08), VersionFigures(500, 0.2, 0.08))


class Fixed:
    name = "fixed"

    def __init__(self, figures: Figures):
        self.f = figures
        self.asked: list[tuple[str, str, dt.datetime, dt.datetime]] = []

    def figures(self, stable: str, candidate: str, start: dt.datetime, end: dt.datetime) -> Figures:
        self.asked.append((stable, candidate, start, end))
        return self.f


def with_candidate(path: Path, block: str) -> Path:
    text = path.read_text()
    marker = "  mlflow-deploy:image:"
    path.write_text(text.replace(marker, block + marker, 1))
    return path


CANARY = """\
  mlflow-deploy:candidate:
    version: "2"
    percent: {percent}
    steps: [5, 25, 50]
{since}  mlflow-deploy:analysis:
    interval: 30m
    prometheusUrl: http://prometheus.monitoring:9090
"""


def stack(
    registry: SampleRegistry, tmp_path: Path, percent: int = 5, since: str | None = "2025-06-01T11:00:00Z"
) -> Path:
    line = f'    since: "{since}"\n' if since else ""
    return with_candidate(stack_copy(registry, tmp_path), CANARY.format(percent=percent, since=line))


def test_advance_writes_the_next_step_and_now(
    registry: SampleRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stack(registry, tmp_path)
    src = Fixed(GOOD)
    assert analyze("dev", path, write=True, now=NOW, source=src) == 0
    assert src.asked == [("1", "2", NOW - dt.timedelta(minutes=30), NOW)]
    cand = config_of(path)["mlflow-deploy:candidate"]
    assert cand["percent"] == 25 and cand["since"] == "2025-06-01T12:00:00Z"
    out = capsys.readouterr().out
    assert "decision:  advance" in out and '+    since: "2025-06-01T12:00:00Z"' in out


def test_abort_drops_the_candidate(
    registry: SampleRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stack(registry, tmp_path, percent=25)
    assert analyze("dev", path, write=True, now=NOW, source=Fixed(BAD), as_json=True) == 20
    report = json.loads(capsys.readouterr().out)
    assert report["decision"] == "abort" and report["written"] and "-  mlflow-deploy:candidate:" in report["diff"]
    assert report["figures"]["candidate"]["error_ratio"] == 0.2
    assert "mlflow-deploy:candidate" not in config_of(path)


def test_finish_after_the_last_step_without_100(registry: SampleRegistry, tmp_path: Path) -> None:
    path = stack(registry, tmp_path, percent=50)
    half = Figures(VersionFigures(5000, 0.001, 0.08), VersionFigures(5000, 0.001, 0.08))  # 50% is live
    assert analyze("dev", path, write=True, now=NOW, source=Fixed(half)) == 0
    cfg = config_of(path)
    assert cfg["mlflow-deploy:model"]["version"] == "2" and "mlflow-deploy:candidate" not in cfg


def test_hold_writes_nothing_and_asks_no_figures_too_early(registry: SampleRegistry, tmp_path: Path) -> None:
    path = stack(registry, tmp_path, since="2025-06-01T11:50:00Z")
    before = path.read_text()
    src = Fixed(GOOD)
    assert analyze("dev", path, write=True, now=NOW, source=src) == 10
    assert path.read_text() == before and src.asked == []


def test_a_missing_since_is_recorded_as_the_steps_start(registry: SampleRegistry, tmp_path: Path) -> None:
    path = stack(registry, tmp_path, since=None)
    assert analyze("dev", path, write=True, now=NOW, source=Fixed(GOOD)) == 10
    assert config_of(path)["mlflow-deploy:candidate"]["since"] == "2025-06-01T12:00:00Z"


def test_without_write_the_file_is_untouched(
    registry: SampleRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stack(registry, tmp_path)
    before = path.read_text()
    assert analyze("dev", path, now=NOW, source=Fixed(GOOD)) == 0
    assert path.read_text() == before
    assert "edit (not written; --write applies it): candidate.percent = 25" in capsys.readouterr().out


def test_refusals_are_one_line_exit_1(
    registry: SampleRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = stack_copy(registry, tmp_path)
    assert main(["analyze", "--stack", "dev", "--config", str(plain), "--project-dir", str(ROOT)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no candidate on trial" in err
    (tmp_path / "b").mkdir()
    no_steps = with_candidate(stack_copy(registry, tmp_path / "b"), '  mlflow-deploy:candidate:\n    version: "2"\n')
    with pytest.raises(CommandError, match=r"candidate\.steps"):
        analyze("dev", no_steps, now=NOW, source=Fixed(GOOD))


def test_an_unreachable_prometheus_is_one_line_exit_1(
    registry: SampleRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stack(registry, tmp_path)
    path.write_text(path.read_text().replace("http://prometheus.monitoring:9090", "http://127.0.0.1:9"))
    assert main(["analyze", "--stack", "dev", "--config", str(path), "--project-dir", str(ROOT)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("modelctl analyze: error: Prometheus at http://127.0.0.1:9") and err.count("\n") == 1


def test_promote_steps_starts_at_the_first_step_and_records_since(registry: SampleRegistry, tmp_path: Path) -> None:
    path = stack_copy(registry, tmp_path)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    assert (
        main(
            [
                "promote",
                "--stack",
                "dev",
                "--config",
                str(path),
                "--project-dir",
                str(ROOT),
                "--version",
                "2",
                "--steps",
                "5,25,50,100",
            ]
        )
        == 0
    )
    cand = config_of(path)["mlflow-deploy:candidate"]
    assert cand["percent"] == 5 and cand["steps"] == [5, 25, 50, 100]
    assert "steps: [5, 25, 50, 100]" in path.read_text()
    since = dt.datetime.fromisoformat(cand["since"].replace("Z", "+00:00"))
    assert before <= since <= dt.datetime.now(dt.UTC)
    # re-running the same promote changes nothing (the step did not change: since stays)
    text = path.read_text()
    assert main(["promote", "--stack", "dev", "--config", str(path), "--project-dir", str(ROOT), "--version", "2"]) == 0
    assert path.read_text() == text
    # a percent that is not a step is refused by the settings, naming the key
    assert (
        main(
            [
                "promote",
                "--stack",
                "dev",
                "--config",
                str(path),
                "--project-dir",
                str(ROOT),
                "--version",
                "2",
                "--percent",
                "30",
            ]
        )
        == 1
    )
    assert YAML(typ="safe").load(path.read_text()) == YAML(typ="safe").load(text)
