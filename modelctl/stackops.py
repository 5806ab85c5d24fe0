"""``modelctl promote | rollback | status``: promotion and rollback as stack-config edits.

Every write
* holds a lock on the stack file and reads it only then, so two runs at once go one after the
  other and the second sees (and is validated against) the first one's edit;
* validates the resulting config with the same settings code the program runs;
* checks that the version exists in the registry the stack names (else ``MLFLOW_TRACKING_URI``);
* changes only the lines of the edit: the file's indentation, comments, key order and quoting
  stay as they were (:mod:`modelctl.stackfile`);
* prints the unified diff (and writes nothing with ``--dry-run``), then replaces the file in one
  rename, keeping its mode, only if nobody changed it meanwhile.

The resulting file is what goes into the pull request; ``pulumi preview`` in the PR check then
shows what the edit changes.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from modelctl import stackfile
from modelctl.cli import CommandError
from modelctl.render import NAMESPACE, PROJECT_ROOT, stack_file

MODEL_KEY = f"{NAMESPACE}:model"
CANDIDATE_KEY = f"{NAMESPACE}:candidate"
MLFLOW_KEY = f"{NAMESPACE}:mlflow"


def stack_path(stack: str, config: Path | None, project: Path | None = None) -> Path:
    return config or stack_file(stack, project or PROJECT_ROOT)


@dataclass
class StackFile:
    path: Path
    text: str
    """The file as read: the base every edit is applied to, and what it must still hold at write."""
    data: Any  # the round-trip document
    before: str
    """ruamel's dump of the unedited document (see :func:`stackfile.merge_edit`)."""

    @classmethod
    def load(cls, path: Path) -> StackFile:
        text = stackfile.read_text(path)
        data = stackfile.parse(path, text, round_trip=True)
        stackfile.config_section(path, data)
        return cls(path, text, data, stackfile.dump(data, text))

    @property
    def config(self) -> Any:
        return self.data["config"]

    def render_text(self) -> str:
        """The edited file: the original with only the edited lines changed, unless that would
        not read back as the edited document (then ruamel's own dump of it)."""
        after = stackfile.dump(self.data, self.text)
        merged = stackfile.merge_edit(self.text, self.before, after)
        safe = YAML(typ="safe")
        try:
            same = safe.load(merged) == safe.load(after)
        except YAMLError:
            same = False
        return merged if same else after


@contextlib.contextmanager
def _editing(path: Path, dry_run: bool) -> Iterator[None]:
    """A real edit: refuse a read-only file up front, then hold the file's lock throughout."""
    if dry_run:
        yield
        return
    if not path.exists():
        raise CommandError(f"no stack config file {path}")
    stackfile.check_writable(path)
    with stackfile.locked(path):
        yield


def _settings(config: Any) -> Any:
    from components.settings import SettingsError, parse_settings

    plain = json.loads(json.dumps(config, default=str))
    try:
        return parse_settings(plain)
    except SettingsError as exc:
        raise CommandError(str(exc)) from exc


def _tracking_uri(settings: Any) -> str:
    from components.registry import RegistryError, tracking_uri_from

    try:
        return tracking_uri_from(settings.mlflow.tracking_uri)
    except RegistryError as exc:
        raise CommandError(str(exc)) from exc


def _require_version(settings: Any, version: str) -> None:
    from components.registry import RegistryError, version_exists

    uri = _tracking_uri(settings)
    try:
        ok = version_exists(settings.model.name, version, tracking_uri=uri)
    except RegistryError as exc:
        raise CommandError(str(exc)) from exc
    if not ok:
        raise CommandError(f"model {settings.model.name!r} has no version {version} in the registry at {uri}")


def _stable_version(settings: Any) -> str:
    """model.version, or the version the alias points at."""
    if settings.model.version is not None:
        return str(settings.model.version)
    from components.registry import RegistryError, resolve_model

    try:
        return resolve_model(
            settings.model.name, alias=settings.model.alias, tracking_uri=_tracking_uri(settings)
        ).version
    except RegistryError as exc:
        raise CommandError(str(exc)) from exc


def _write(sf: StackFile, dry_run: bool) -> int:
    new = sf.render_text()
    _settings(stackfile.config_section(sf.path, YAML(typ="safe").load(new)))  # the result must be valid
    diff = "".join(
        difflib.unified_diff(
            sf.text.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"a/{sf.path.name}",
            tofile=f"b/{sf.path.name}",
        )
    )
    print(diff, end="" if diff.endswith("\n") or not diff else "\n")
    if not diff:
        print("(no change)")
    elif dry_run:
        print(f"(dry run: {sf.path} not written)")
    else:
        try:
            stackfile.atomic_write(sf.path, new, expected=sf.text)
        except OSError as exc:
            raise CommandError(f"cannot write {sf.path}: {exc.strerror or exc}: nothing written") from exc
        print(f"wrote {sf.path}")
    return 0


def _version_scalar(v: str) -> DoubleQuotedScalarString:
    return DoubleQuotedScalarString(str(v))


def _set_stable_version(model: CommentedMap, version: str) -> None:
    """model.version = version (an alias is replaced in place: the stack now pins the version;
    the alias in the registry is the registry's business)."""
    if "alias" in model:
        stackfile.rename_key(model, "alias", "version", _version_scalar(version))
    else:
        model["version"] = _version_scalar(version)


def _set(mapping: CommentedMap, key: str, value: Any) -> None:
    if key in mapping:
        mapping[key] = value
    else:
        stackfile.insert_key(mapping, len(mapping), key, value)


# --------------------------------------------------------------------------- promote


def promote(
    stack: str,
    config: Path | None,
    *,
    version: str | None,
    strategy: str | None,
    percent: int | None,
    finish: bool,
    steps: str | None = None,
    dry_run: bool = False,
    project: Path | None = None,
) -> int:
    if finish and (version is not None or strategy is not None or percent is not None or steps is not None):
        raise CommandError("--finish takes no --version, --strategy, --percent or --steps")
    step_list = _parse_steps(steps)
    if step_list is not None and percent is None:
        percent = step_list[0]
    if not finish and version is None:
        raise CommandError("give --version V (start or adjust a candidate) or --finish")
    path = stack_path(stack, config, project)
    with _editing(path, dry_run):
        sf = StackFile.load(path)
        settings = _settings(sf.config)
        if finish:
            return _finish(sf, settings, dry_run)
        assert version is not None
        return _start(sf, settings, str(version).strip(), strategy, percent, dry_run, step_list)


def _parse_steps(steps: str | None) -> list[int] | None:
    if steps is None:
        return None
    try:
        return [int(s) for s in steps.replace(" ", "").split(",") if s]
    except ValueError:
        raise CommandError(f"--steps is a comma-separated list of percents, e.g. 5,25,50,100 (got {steps!r})") from None


def _now_since() -> DoubleQuotedScalarString:
    """``candidate.since``: when the step the edit starts began (now, UTC)."""
    import datetime as dt

    from components.analysis_settings import format_since

    return DoubleQuotedScalarString(format_since(dt.datetime.now(dt.UTC)))


def _start(sf: StackFile, settings: Any, version: str, strategy: str | None, percent: int | None,
           dry_run: bool, steps: list[int] | None = None) -> int:
    stable = _stable_version(settings)
    if version == stable:
        raise CommandError(f"version {version} is already the stable version (model.version); nothing to promote")
    current = settings.candidate
    if current is not None and current.version != version:
        raise CommandError(
            f"candidate {current.version} is on trial; finish it (promote --finish) or roll it back "
            f"(rollback) before starting {version}"
        )
    _require_version(settings, version)

    cfg = sf.config
    cand = cfg.get(CANDIDATE_KEY)
    if cand is None:
        new = CommentedMap()
        new["version"] = _version_scalar(version)
        new["strategy"] = strategy or "canary"
        if percent is not None:
            new["percent"] = percent
        if steps is not None:
            new["steps"] = _flow_list(steps)
            new["since"] = _now_since()  # progressive delivery: the first step starts now
        keys = list(cfg.keys())
        stackfile.insert_key(cfg, keys.index(MODEL_KEY) + 1 if MODEL_KEY in keys else len(keys), CANDIDATE_KEY, new)
        return _write(sf, dry_run)
    _set(cand, "version", _version_scalar(version))
    if strategy is not None:
        _set(cand, "strategy", strategy)
    elif "strategy" not in cand:
        _set(cand, "strategy", "canary")
    if percent is not None:
        _set(cand, "percent", percent)
    if steps is not None:
        _set(cand, "steps", _flow_list(steps))
    if steps is not None or "steps" in cand:
        # progressive delivery: a changed step starts now (analyze measures how long it has held)
        from components.settings import DEFAULT_PERCENT

        new_strategy = str(cand.get("strategy", "canary"))
        new_percent = cand.get("percent")
        new_percent = DEFAULT_PERCENT[new_strategy] if new_percent is None else int(new_percent)
        old = current
        changed = old is None or (old.version, old.strategy, old.effective_percent, old.steps) != (
            version, new_strategy, new_percent, list(cand["steps"])
        )
        if changed or "since" not in cand:
            _set(cand, "since", _now_since())
    return _write(sf, dry_run)


def _flow_list(items: list[int]) -> Any:
    from ruamel.yaml.comments import CommentedSeq

    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _finish(sf: StackFile, settings: Any, dry_run: bool) -> int:
    cand = settings.candidate
    if cand is None:
        raise CommandError("no candidate to finish: the stack has no mlflow-deploy:candidate")
    _require_version(settings, cand.version)
    _set_stable_version(sf.config[MODEL_KEY], cand.version)
    stackfile.delete_key(sf.config, CANDIDATE_KEY)
    return _write(sf, dry_run)


# --------------------------------------------------------------------------- rollback


def rollback(stack: str, config: Path | None, *, to: str | None, dry_run: bool = False,
             project: Path | None = None) -> int:
    path = stack_path(stack, config, project)
    with _editing(path, dry_run):
        sf = StackFile.load(path)
        return _rollback(stack, sf, to, dry_run)


def _rollback(stack: str, sf: StackFile, to: str | None, dry_run: bool) -> int:
    settings = _settings(sf.config)
    cfg = sf.config
    if to is None and settings.candidate is not None:
        # abort the trial: routing goes back to stable, the candidate's objects go away
        stackfile.delete_key(cfg, CANDIDATE_KEY)
        return _write(sf, dry_run)

    stable = _stable_version(settings)
    if to is None:
        to = previous_version(stack, sf.path, stable)
        if to is None:
            raise CommandError(
                f"no earlier model.version than {stable} in the history of stack {stack!r} "
                f"(pulumi stack history, or git log of {sf.path.name}); use --to V"
            )
        print(f"the stack ran version {to} before {stable}")
    to = str(to).strip()
    if to == stable and settings.candidate is None:
        raise CommandError(f"version {to} is already the stable version; nothing to roll back")
    _require_version(settings, to)
    if CANDIDATE_KEY in cfg:
        stackfile.delete_key(cfg, CANDIDATE_KEY)
    _set_stable_version(cfg[MODEL_KEY], to)
    return _write(sf, dry_run)


def previous_version(stack: str, path: Path, current: str) -> str | None:
    """The model version the stack ran before ``current``: from ``pulumi stack history`` when
    the Pulumi CLI is present, else from the git history of the stack file."""
    if shutil.which("pulumi"):
        found = _from_pulumi_history(stack, path.parent, current)
        if found is not None:
            return found
    return _from_git_history(path, current)


def _model_version_of(config: Any) -> str | None:
    model = (config or {}).get(MODEL_KEY)
    if isinstance(model, str):
        try:
            model = json.loads(model)
        except ValueError:
            return None
    if isinstance(model, dict) and model.get("version") is not None:
        return str(model["version"])
    return None


def _from_pulumi_history(stack: str, cwd: Path, current: str) -> str | None:
    try:
        proc = subprocess.run(
            ["pulumi", "stack", "history", "--stack", stack, "--json", "--page-size", "50"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        updates = json.loads(proc.stdout)
    except ValueError:
        return None
    return versions_from_pulumi_history(updates, current)


def versions_from_pulumi_history(updates: list[dict[str, Any]], current: str) -> str | None:
    """From `pulumi stack history --json` (newest first): the version of the last successful
    ``update`` that ran something other than ``current``."""
    return first_other_version(
        (
            _model_version_of(_history_config(u))
            for u in updates
            if u.get("kind") == "update" and u.get("result") == "succeeded"
        ),
        current,
    )


def _history_config(update: dict[str, Any]) -> dict[str, Any]:
    """`pulumi stack history --json` gives config as {key: {"value": ..., "secret": bool}}."""
    out: dict[str, Any] = {}
    for k, v in (update.get("config") or {}).items():
        out[k] = v.get("value") if isinstance(v, dict) and "value" in v else v
    return out


def _from_git_history(path: Path, current: str) -> str | None:
    if not shutil.which("git"):
        return None
    repo = path.resolve().parent
    try:
        log = subprocess.run(
            ["git", "log", "--format=%H", "--", path.name],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if log.returncode != 0:
        return None

    def versions() -> Any:
        y = YAML(typ="safe")
        for sha in log.stdout.split():
            show = subprocess.run(
                ["git", "show", f"{sha}:./{path.name}"], cwd=repo, capture_output=True, text=True, timeout=60
            )
            if show.returncode == 0:
                try:
                    doc = y.load(show.stdout) or {}
                except Exception:  # noqa: BLE001 - a broken historic file is skipped
                    continue
                yield _model_version_of(doc.get("config"))

    return first_other_version(versions(), current)


def first_other_version(history: Any, current: str) -> str | None:
    """Newest-first versions -> the first one that differs from ``current``, skipping the
    entries that still show ``current`` (the latest commits / updates)."""
    for v in history:
        if v is not None and v != current:
            return v
    return None


# --------------------------------------------------------------------------- status


def status(stack: str, config: Path | None, *, project: Path | None = None) -> int:
    sf = StackFile.load(stack_path(stack, config, project))
    settings = _settings(sf.config)
    uri = _tracking_uri(settings)
    stable = _stable_version(settings)
    cand = settings.candidate
    from components.rollout import plan_traffic

    plan = plan_traffic(stable, cand)
    # ask the registry first: an unreachable one is one error line, not half a report
    registry = {v: _registry_lines(settings.model.name, v, uri) for v in plan.versions}
    print(f"stack:     {stack} ({sf.path.name})")
    print(f"model:     {settings.model.name}  (registry {uri})")
    alias = f"  (alias {settings.model.alias})" if settings.model.alias else ""
    print(f"stable:    {stable}{alias}")
    if cand is None:
        print("candidate: none")
    else:
        print(f"candidate: {cand.version}  strategy {cand.strategy}  percent {cand.effective_percent}")
    split = ", ".join(f"v{v}={w}%" for v, w in plan.weights.items())
    mirror = f"; mirror {plan.mirror.percent}% to v{plan.mirror.version}" if plan.mirror else ""
    print(f"traffic:   {split}{mirror}")
    print(f"targets:   {', '.join(settings.targets)}")
    print()
    missing = []
    for v, lines in registry.items():
        print(f"registry, version {v}:")
        if lines is None:
            missing.append(v)
            lines = ["NOT FOUND in the registry"]
        for line in lines:
            print(f"  {line}")
    if settings.sagemaker is not None:
        print()
        drift = sagemaker_drift(stack, sf.path.parent)
        for line in drift.lines:
            print(f"sagemaker: {line}")
        if drift.drifted:
            return DRIFT_EXIT
    if missing:
        raise CommandError(
            f"model {settings.model.name!r} has no version {', '.join(missing)} in the registry at {uri}: "
            "`pulumi up` would fail"
        )
    return 0


DRIFT_EXIT = 3
"""``modelctl status`` exit code when a SageMaker endpoint is not running what the stack says."""


@dataclass
class Drift:
    lines: list[str]
    drifted: bool = False


def sagemaker_drift(stack: str, cwd: Path, outputs: dict[str, Any] | None = None, session: Any = None) -> Drift:
    """Compare the live SageMaker endpoint with the stack's ``sagemaker`` output.

    SageMaker can roll an endpoint update back by itself while Pulumi's state says the new
    config applied (docs/sagemaker.md). The expected config is the stack's real output (``pulumi
    stack output --json``), not a render: only the deployed stack knows the endpoint's names.
    """
    from modelctl.sagemaker_status import check_stack_output

    if outputs is None:
        outputs = _pulumi_stack_outputs(stack, cwd)
        if outputs is None:
            return Drift(["endpoint drift not checked: needs the Pulumi CLI and the stack's outputs"])
    sm = outputs.get("sagemaker")
    if not sm:
        return Drift(["endpoint drift not checked: the stack has no 'sagemaker' output (not deployed yet?)"])
    problems = check_stack_output(sm, session=session)
    if problems is None:
        return Drift(["endpoint drift not checked: no AWS credentials"])
    if not problems:
        return Drift([f"endpoint {sm.get('endpointName')} runs what the stack declares"])
    return Drift([f"DRIFT: {p}" for p in problems], drifted=True)


def _pulumi_stack_outputs(stack: str, cwd: Path) -> dict[str, Any] | None:
    if not shutil.which("pulumi"):
        return None
    try:
        proc = subprocess.run(
            ["pulumi", "stack", "output", "--json", "--stack", stack],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return dict(json.loads(proc.stdout)) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


def _registry_lines(name: str, version: str, uri: str) -> list[str] | None:
    """What the registry says about one version; None when it has no such version. An
    unreachable registry is an error (bounded retries), never "not found"."""
    import datetime as dt

    from components.registry import RegistryError, describe_version

    try:
        mv = describe_version(name, version, tracking_uri=uri)
    except RegistryError as exc:
        raise CommandError(str(exc)) from exc
    if mv is None:
        return None
    created = dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=dt.UTC).isoformat(timespec="seconds")
    lines = [
        f"status {mv.status}, created {created}",
        f"run {mv.run_id or '-'}",
        f"source {mv.source}",
    ]
    if getattr(mv, "aliases", None):
        lines.append(f"aliases {', '.join(sorted(mv.aliases))}")
    if mv.tags:
        lines.append("tags " + ", ".join(f"{k}={v}" for k, v in sorted(mv.tags.items())))
    if mv.description:
        lines.append(f"description {mv.description}")
    return lines


__all__ = ["PROJECT_ROOT", "previous_version", "promote", "rollback", "status"]
