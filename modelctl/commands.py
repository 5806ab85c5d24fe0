"""``modelctl render``: the real program under the mock runtime, written to a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelctl.cli import CommandError
from modelctl.render import PROJECT_ROOT, Rendered, run_program, stack_file, write_outputs


def load_stack_config(stack: str, config: Path | None, project: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The stack file's path and its ``config:`` mapping; every problem with the file (missing,
    unreadable, a YAML error, no or an empty ``config:``) is a CommandError naming it."""
    from modelctl.stackfile import read_config

    path = config or stack_file(stack, project or PROJECT_ROOT)
    return path, read_config(path)


def render_stack(stack: str, config: Path | None, project: Path | None = None) -> Rendered:
    """Run the program for ``stack``; config and registry errors become a CommandError."""
    from components.registry import RegistryError
    from components.rollout import RolloutError
    from components.settings import SettingsError

    root = project or PROJECT_ROOT
    _, cfg = load_stack_config(stack, config, root)
    program = root / "__main__.py"
    if not program.is_file():
        raise CommandError(f"no Pulumi program {program}")
    try:
        return run_program(cfg, stack=stack, program=program)
    except (SettingsError, RegistryError, RolloutError) as exc:
        raise CommandError(str(exc)) from exc


def render(stack: str, config: Path | None, out: Path, project: Path | None = None) -> int:
    rendered = render_stack(stack, config, project)
    try:
        written = write_outputs(rendered, out)
    except OSError as exc:
        raise CommandError(f"cannot write the render to {out}: {exc.strerror or exc}") from exc
    manifests = [p for p in written if p.suffix == ".yaml"]
    print(
        f"rendered stack {stack!r}: {len(rendered.resources)} resources -> {out / 'resources.json'}, "
        f"{len(manifests)} Kubernetes manifests -> {out / 'kubernetes'}"
    )
    return 0
