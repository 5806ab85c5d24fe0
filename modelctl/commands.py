"""``modelctl render``: the real program under the mock runtime, written to a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelctl.cli import CommandError
from modelctl.render import Rendered, read_stack_config, run_program, stack_file, write_outputs


def load_stack_config(stack: str, config: Path | None) -> tuple[Path, dict[str, Any]]:
    path = config or stack_file(stack)
    if not path.exists():
        raise CommandError(f"no stack config file {path}")
    return path, read_stack_config(path)


def render_stack(stack: str, config: Path | None) -> Rendered:
    """Run the program for ``stack``; config and registry errors become a CommandError."""
    from components.registry import RegistryError
    from components.rollout import RolloutError
    from components.settings import SettingsError

    _, cfg = load_stack_config(stack, config)
    try:
        return run_program(cfg, stack=stack)
    except (SettingsError, RegistryError, RolloutError) as exc:
        raise CommandError(str(exc)) from exc


def render(stack: str, config: Path | None, out: Path) -> int:
    rendered = render_stack(stack, config)
    written = write_outputs(rendered, out)
    manifests = [p for p in written if p.suffix == ".yaml"]
    print(
        f"rendered stack {stack!r}: {len(rendered.resources)} resources -> {out / 'resources.json'}, "
        f"{len(manifests)} Kubernetes manifests -> {out / 'kubernetes'}"
    )
    return 0
