"""Which project modelctl works on: ``--project-dir``, else the nearest folder holding Pulumi.yaml.

Commands run with that folder as the working directory, as ``pulumi`` runs the program: relative
paths in a stack file (``sqlite:///.mlflow-demo/mlflow.db``) mean the same to both. Paths given on
the command line (``--config``, ``--out``, ``--dir``) are taken relative to where modelctl was
started, before the change of directory.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from modelctl.cli import CommandError

PROJECT_FILE = "Pulumi.yaml"


def find_project_dir(start: Path | None = None) -> Path:
    """``start`` (default: the working directory) or the nearest parent holding Pulumi.yaml."""
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    raise CommandError(
        f"no {PROJECT_FILE} in {here} or any folder above it: run modelctl inside the project "
        "or give --project-dir DIR"
    )


def project_dir(given: Path | None) -> Path:
    """The folder ``--project-dir`` names (it must hold Pulumi.yaml), else the nearest one."""
    if given is None:
        return find_project_dir()
    folder = given.absolute()
    if not folder.is_dir():
        raise CommandError(f"--project-dir {given}: no such folder")
    if not (folder / PROJECT_FILE).is_file():
        raise CommandError(f"--project-dir {given}: no {PROJECT_FILE} in {folder}")
    return folder


@contextlib.contextmanager
def activated(folder: Path) -> Iterator[None]:
    """Run as ``pulumi`` runs the program in ``folder``: it is the working directory, its
    ``components`` package is the one imported (first on ``sys.path``; modelctl may be installed
    elsewhere), and image build contexts go to its ``build/`` unless MLFLOW_DEPLOY_BUILD_DIR says
    otherwise. Everything is restored on exit."""
    previous = Path.cwd()
    root = str(folder)
    added = root not in sys.path
    build_key = "MLFLOW_DEPLOY_BUILD_DIR"
    had_build = build_key in os.environ
    if added:
        sys.path.insert(0, root)
    os.environ.setdefault(build_key, str(folder / "build"))
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)
        if not had_build:
            os.environ.pop(build_key, None)
        if added and root in sys.path:
            sys.path.remove(root)
