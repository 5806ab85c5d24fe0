"""The docs a newcomer follows: every `modelctl` command in them parses, the getting-started
guide has each step the issue found missing, and no page points at a file outside the repository."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from modelctl.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def modelctl_lines(page: Path) -> list[str]:
    lines = []
    for block in shell_blocks(page.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            m = re.search(r"(?:^|&& |; )(?:python -m )?modelctl (.*?)(?: &&| ;|$)", line)
            if m:
                lines.append(m.group(1))
    return lines


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_modelctl_command_in_the_docs_parses(page: Path) -> None:
    parser = build_parser()
    for line in modelctl_lines(page):
        args = shlex.split(line)
        if args in (["--help"],):
            continue
        parser.parse_args(args)  # SystemExit (exit 2) on an unknown command or option


def test_getting_started_has_every_step() -> None:
    text = (ROOT / "docs" / "getting-started.md").read_text()
    for step in (
        "get.pulumi.com",                           # the Pulumi CLI
        "pulumi login --local",
        "PULUMI_CONFIG_PASSPHRASE",
        "python3 -m venv .venv",
        "pip install -e .",
        "modelctl demo",                            # before render --stack dev
        "Python | 3.11",
        "2.1 GB",                                   # install size
        "kind create cluster",
        'config_path = "/etc/containerd/certs.d"',  # containerd reads the mirror config
        "certs.d/localhost:5001",                   # the mirror: pods pull localhost:5001/...
        "docker network connect kind kind-registry",
        "mlflow server --backend-store-uri",
        "installStack",
        "port-forward svc/kube-prometheus-stack-grafana",
        "port-forward svc/kube-prometheus-stack-prometheus",
        "modelctl promote --stack dev",
        "modelctl rollback --stack dev",
        "pulumi up",
        "--config /tmp/prod-local.yaml",            # prod without its registry
        "az acr login",
        "gcloud auth configure-docker",
        "aws sso login",
        "ci.md",
    ):
        assert step in text, step
    # the guide's modelctl commands are real ones
    assert len(modelctl_lines(ROOT / "docs" / "getting-started.md")) >= 8


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_points_outside_the_repository(page: Path) -> None:
    text = page.read_text()
    assert "DESIGN.md" not in text and "shared/" not in text
    for target in re.findall(r"\]\(([^)#]+?)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://")):
            assert (page.parent / target).exists(), (page.name, target)


def test_the_readme_serves_on_loopback_only() -> None:
    text = (ROOT / "README.md").read_text()
    serve = [ln for ln in text.splitlines() if "python -m serving" in ln]
    assert serve and all("--host 127.0.0.1" in ln for ln in serve)
