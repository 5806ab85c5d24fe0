"""What ``pulumi up`` would do with a config edit, worked out offline.

``python -m modelctl diff --stack prod --from A.yaml --to B.yaml`` renders both configs under the
mock runtime (:func:`modelctl.render.run_program`) and compares what they declare, resource by
resource (matched by URN, as the engine matches them):

* ``create`` / ``delete``: a URN only one side declares;
* ``update``: inputs changed, none of which forces a replacement (the changed input paths);
* ``replace``: an input changed that the provider cannot update in place. Which inputs those
  are comes from :mod:`modelctl.replacements` (a table per resource type, each entry citing the
  provider source it was read from); a dynamic resource's own provider ``diff`` is asked
  directly; a resource whose explicit provider is replaced is replaced too (as the engine does);
* an input computed from a replaced resource (its new name, id or ARN) counts as changed, so a
  replacement propagates to what refers to it, as it does in a real preview.

The mock runtime shows inputs only, so this answers "which kind of change", not "what the cloud
does during it": an ``update`` of a SageMaker Endpoint is still a blue/green deployment, a
Kubernetes Deployment whose pod template changes rolls its pods. :func:`restarts` names those.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelctl.cli import CommandError
from modelctl.render import Declared, Rendered
from modelctl.replacements import changed_paths, replacements, rule_for

COMPUTED = "<computed>"
"""Stands for an input whose value comes from a replaced resource (unknown until it exists)."""
NEW_STACK = "none"
"""``--from none``: the stack does not exist yet; everything it declares is a create."""
SCOPE = (
    "(config against config, both rendered by this checkout's program and the registry as it is now: "
    "a change of the program or the serving runtime is not shown; --from-ref REV compares with the "
    "program at REV too)"
)
SCOPE_REF = (
    "(the stack file and program at the base commit against this checkout's: code and serving-runtime "
    "changes included; aliases resolve in the registry as it is now)"
)
OUTPUTS_CHANGE_ON_UPDATE = frozenset({"docker-build:index:Image"})
"""Types whose in-place update gives new outputs, like a replacement does: a docker-build Image's
update is a rebuild and push (pulumi/pulumi-docker-build provider/internal/image.go: Update calls
Create), so its ``ref``/``digest`` change and whatever names the image (a Deployment's pod
template, a SageMaker Model, an Azure ML environment) changes with it."""
DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"
PROVIDER_PREFIX = "pulumi:providers:"
ACTIONS = ("create", "replace", "update", "delete")
MAX_PATHS = 8
_INDEX = re.compile(r"\[[^\]]*\]")


@dataclass(frozen=True)
class ResourceChange:
    type: str
    name: str
    action: str
    """``create`` | ``delete`` | ``update`` | ``replace``."""
    paths: tuple[str, ...] = ()
    """The changed input paths (``update``/``replace``), dotted, with list indices."""
    reason: str = ""
    """``replace``: the input that forces it and where that rule was read."""
    delete_first: bool = False
    """``replace``: the old one goes before the new one exists (a fixed physical name)."""
    urn: str = ""
    source: str = ""
    """``replace`` by a provider rule: where that rule was read (:mod:`modelctl.replacements`)."""
    identity: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """Output values that a replacement (or a rebuild) changes: where a dependent's input holds
    one, that input changes too."""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "name": self.name, "action": self.action, "paths": list(self.paths)}
        if self.action == "replace":
            out["reason"] = self.reason
            out["deleteBeforeReplace"] = self.delete_first
            if self.source:
                out["source"] = self.source
        return out


@dataclass
class StackDiff:
    changes: list[ResourceChange] = field(default_factory=list)
    unchanged: int = 0

    def of(self, action: str) -> list[ResourceChange]:
        return [c for c in self.changes if c.action == action]

    def find(self, name: str, type_: str | None = None) -> ResourceChange | None:
        """The change of the resource named ``name`` (None: unchanged or not declared)."""
        found = [c for c in self.changes if c.name == name and (type_ is None or c.type == type_)]
        if len(found) > 1:
            raise KeyError(f"{len(found)} changed resources named {name!r}")
        return found[0] if found else None

    def summary(self) -> str:
        counts = [f"{len(self.of(a))} to {a}" for a in ACTIONS if self.of(a)]
        return ", ".join([*counts, f"{self.unchanged} unchanged"])


# --------------------------------------------------------------------------- paths


_TOKEN = re.compile(r'([^.\[\]]+)|\[(\d+|\*|"(?:[^"\\]|\\.)*")\]')


def path_tokens(path: str) -> list[str | int]:
    """``a.b[0]["x.y"][*]`` -> ``["a", "b", 0, "x.y", "*"]`` (Pulumi's property path syntax)."""
    out: list[str | int] = []
    for name, index in _TOKEN.findall(path):
        if name:
            out.append(name)
        elif index.isdigit():
            out.append(int(index))
        elif index == "*":
            out.append("*")
        else:
            out.append(index[1:-1].replace('\\"', '"'))
    return out


def restore_ignored(old: Any, new: Any, paths: Sequence[str]) -> Any:
    """``new`` with the value ``old`` has at each ignored path (absent where ``old`` has none), as
    the engine does for ``ignoreChanges`` before it asks the provider to diff. List indices are
    exact; ``[*]`` matches every element."""
    result = copy.deepcopy(new)
    for path in paths:
        result = _restore(old, result, path_tokens(path))
    return result


_MISSING = object()


def _restore(old: Any, new: Any, tokens: list[str | int]) -> Any:
    if not tokens:
        return new if old is _MISSING else copy.deepcopy(old)
    head, rest = tokens[0], tokens[1:]
    if head == "*":
        if not isinstance(new, list):
            return new
        olds = old if isinstance(old, list) else []
        return [_restore(olds[i] if i < len(olds) else _MISSING, v, rest) for i, v in enumerate(new)]
    if isinstance(head, int):
        if not isinstance(new, list) or head >= len(new):
            return new
        olds = old if isinstance(old, list) else []
        out = list(new)
        out[head] = _restore(olds[head] if head < len(olds) else _MISSING, new[head], rest)
        return out
    if not isinstance(new, dict):
        return new
    out_d = dict(new)
    old_value = old.get(head, _MISSING) if isinstance(old, dict) else _MISSING
    if not rest:
        if old_value is _MISSING:
            out_d.pop(head, None)
        else:
            out_d[head] = copy.deepcopy(old_value)
        return out_d
    if head in new:
        out_d[head] = _restore(old_value, new[head], rest)
    return out_d


def strip_indices(path: str) -> str:
    return _INDEX.sub("", path)


def under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` or inside it, on path-component boundaries (list indices
    and ``[*]`` ignored): ``spec.selector.matchLabels`` is under ``spec.selector``,
    ``spec.selectorX`` is not."""
    p, q = strip_indices(path), strip_indices(prefix)
    return p == q or p.startswith(q + ".")


# --------------------------------------------------------------------------- classification


def _dynamic_diff(old: Declared, new: Declared, news: dict[str, Any]) -> tuple[list[str], list[str], bool]:
    """Ask the dynamic resource's own provider: (changed keys, replacing keys, delete first)."""
    import dill

    if new.dynamic_provider is None:
        raise CommandError(f"{new.name}: a dynamic resource without its provider: cannot ask its diff")
    try:
        provider = dill.loads(base64.b64decode(new.dynamic_provider))
    except Exception as exc:  # whatever unpickling raises: say which resource
        raise CommandError(f"{new.name}: cannot load its dynamic provider to ask its diff ({exc})") from exc
    olds = {k: v for k, v in old.inputs.items() if k != "__provider"}
    news = {k: v for k, v in news.items() if k != "__provider"}
    result = provider.diff(f"{old.name}-id", olds, news)
    # changes=None is "unknown": the engine then diffs the inputs itself
    # (pulumi/dynamic/__main__.py passes DiffResult.changes through as DIFF_UNKNOWN)
    if result.changes is None or result.changes:
        changed = sorted({*(result.replaces or []), *changed_top_level(olds, news)})
    else:
        changed = []
    return changed, list(result.replaces or []), bool(result.delete_before_replace)


MIN_IDENTITY = 6
"""Shorter output strings ("1", "true", a region) would match unrelated inputs."""


def identity_strings(d: Declared) -> tuple[str, ...]:
    """The values a replacement or a rebuild of ``d`` gives anew: its id, the outputs the provider
    computes (those that are not one of its inputs: ARNs, auto-names, URLs) and, for an image,
    the references it is pushed as (the real ``ref`` is ``<tag>@sha256:<new digest>``)."""
    inputs = {json.dumps(v, sort_keys=True) for v in d.inputs.values()}
    out = {str(v) for k, v in d.outputs.items() if isinstance(v, str) and (k == "id" or json.dumps(v) not in inputs)}
    if d.type in OUTPUTS_CHANGE_ON_UPDATE:
        out |= {t for t in d.inputs.get("tags") or [] if isinstance(t, str)}
    return tuple(sorted(s for s in out if len(s) >= MIN_IDENTITY))


def mark_computed(value: Any, identity: Sequence[str]) -> Any:
    """``value`` with every string that holds one of ``identity`` made ``<computed>``; the whole
    value when none does (the dependency reaches it some other way: assume all of it changes)."""
    hits = [False]

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str) and any(i in v for i in identity):
            hits[0] = True
            return COMPUTED
        return v

    marked = walk(value)
    return marked if hits[0] else COMPUTED


def changed_top_level(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    return [k for k in sorted(set(olds) | set(news)) if olds.get(k) != news.get(k)]


def classify(
    old: Declared,
    new: Declared,
    replaced: Mapping[str, ResourceChange],
) -> ResourceChange | None:
    """The change the engine would make to one resource both renders declare (None: same)."""

    def change(
        action: str, paths: Sequence[str], reason: str = "", delete_first: bool = False, source: str = ""
    ) -> ResourceChange:
        return ResourceChange(new.type, new.name, action, tuple(paths), reason, delete_first, new.urn, source)

    ignore = [str(p) for p in new.options.get("ignoreChanges", [])]
    news = dict(new.inputs)
    for prop, urns in new.property_deps.items():
        renewed = [replaced[u] for u in urns if u in replaced]
        if prop in news and renewed:
            news[prop] = mark_computed(news[prop], [s for c in renewed for s in c.identity])
    # ignoreChanges: the engine sends the old value of an ignored path to the provider's diff
    news = restore_ignored(old.inputs, news, ignore)

    # A resource goes with its explicit provider when that provider is replaced.
    prov = next(
        (
            c
            for c in replaced.values()
            if new.provider and c.name == new.provider and c.type.startswith(PROVIDER_PREFIX) and c.action == "replace"
        ),
        None,
    )
    prov_rule = rule_for(prov.type) if prov is not None else None
    if prov is not None and not (prov_rule is not None and new.type in prov_rule.cascade_exempt):
        return change("replace", ["<provider>"], f"its provider {prov.name} is replaced")
    if (old.provider or None) != (new.provider or None):
        return change("replace", ["<provider>"], f"provider {old.provider} -> {new.provider}")

    if new.type == DYNAMIC_TYPE:
        changed, replaces, dbr = _dynamic_diff(old, new, news)
        if not changed:
            return None
        replaces = [p for p in replaces if p in changed]
        if replaces:
            return change("replace", changed, f"the dynamic provider's own diff replaces on {', '.join(replaces)}", dbr)
        return change("update", changed)

    paths = changed_paths(old.inputs, news)
    if not paths:
        return None
    rule = rule_for(new.type)
    reasons: list[str] = []
    by_option = [str(r) for r in new.options.get("replaceOnChanges", []) if any(under(p, str(r)) for p in paths)]
    reasons += [f"replaceOnChanges {r}" for r in by_option]
    if rule is None:
        reasons.append(f"no replacement rule is known for {new.type}: assumed to replace")
    else:
        reasons += [f"{r} forces a new resource" for r in replacements(new.type, old.inputs, news)]
    if not reasons:
        return change("update", paths)
    delete_first = bool(new.options.get("deleteBeforeReplace"))
    if rule is not None and rule.delete_before_replace is not None:
        delete_first = delete_first or _is_set(new.inputs, rule.delete_before_replace)
    return change("replace", paths, "; ".join(reasons), delete_first, rule.source if rule is not None else "")


def _is_set(inputs: Mapping[str, Any], path: str) -> bool:
    value: Any = inputs
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return value not in (None, "")


def _custom(rendered: Rendered) -> dict[str, Declared]:
    out: dict[str, Declared] = {}
    for r in rendered.resources:
        if r.custom:
            if r.urn in out:
                raise ValueError(f"two resources with URN {r.urn}")
            out[r.urn] = r
    return out


def _dependency_order(resources: Iterable[Declared]) -> Iterator[Declared]:
    """Dependencies first (providers, then what their outputs flow into), stable otherwise."""
    pending = list(resources)
    urns = {r.urn for r in pending}
    done: set[str] = set()
    names = {r.name: r.urn for r in pending}

    def deps(r: Declared) -> set[str]:
        out = {u for us in r.property_deps.values() for u in us}
        if r.provider and r.provider in names:
            out.add(names[r.provider])
        return out & urns

    while pending:
        ready = [r for r in pending if deps(r) <= done] or pending[:1]  # a cycle cannot happen; never stall
        for r in ready:
            done.add(r.urn)
            yield r
        pending = [r for r in pending if r.urn not in done]


def diff_renders(old: Rendered, new: Rendered) -> StackDiff:
    """Compare two renders of a stack as the engine would compare state with a new program run."""
    olds, news = _custom(old), _custom(new)
    result = StackDiff()
    replaced: dict[str, ResourceChange] = {}
    for r in _dependency_order(sorted(news.values(), key=lambda d: d.urn)):
        if r.urn not in olds:
            result.changes.append(ResourceChange(r.type, r.name, "create", urn=r.urn))
            continue
        change = classify(olds[r.urn], r, replaced)
        if change is None:
            result.unchanged += 1
            continue
        if change.action == "replace" or (change.action == "update" and r.type in OUTPUTS_CHANGE_ON_UPDATE):
            identity = {*identity_strings(olds[r.urn]), *identity_strings(r)}
            replaced[r.urn] = dataclasses.replace(change, identity=tuple(sorted(identity)))
        result.changes.append(change)
    for urn in sorted(set(olds) - set(news)):
        d = olds[urn]
        result.changes.append(ResourceChange(d.type, d.name, "delete", urn=urn))
    order = {a: i for i, a in enumerate(ACTIONS)}
    result.changes.sort(key=lambda c: (order[c.action], c.type, c.name))
    return result


# --------------------------------------------------------------------------- what a change does


def restarts(change: ResourceChange) -> str | None:
    """What a change does to running model servers beyond its action, where the action alone
    does not say it (None: nothing restarts)."""
    if change.action in ("replace", "delete"):
        return f"{change.action}s {change.name}"
    if change.action != "update":
        return None
    if change.type == "kubernetes:apps/v1:Deployment" and any(
        under(p, "spec.template") or under("spec.template", p) for p in change.paths
    ):
        return "rolls the Deployment's pods (pod template changed)"
    if change.type == "aws:sagemaker/endpoint:Endpoint" and any(
        under(p, "endpointConfigName") for p in change.paths
    ):
        return "SageMaker deploys the new endpoint config (blue/green, with the rollback alarms)"
    if change.type == "azure-native:machinelearningservices:OnlineDeployment":
        return "Azure ML rolls the deployment's instances"
    return None


# --------------------------------------------------------------------------- printing


def format_text(diff: StackDiff) -> str:
    marks = {"create": "+", "delete": "-", "update": "~", "replace": "+-"}
    lines: list[str] = []
    for c in diff.changes:
        head = f"{marks[c.action]:>2} {c.action:<8} {c.type}  {c.name}"
        lines.append(head)
        if c.paths:
            lines.append(f"      inputs: {_wrap(c.paths)}")
        if c.action == "replace":
            lines.append(f"      because: {c.reason}")
            if c.source:
                lines.append(f"      rule read in: {short_source(c.source)}")
            if c.delete_first:
                lines.append("      delete-before-replace: the old one is deleted before the new one exists (downtime)")
        effect = restarts(c)
        if effect and c.action == "update":
            lines.append(f"      note: {effect}")
    lines.append(diff.summary())
    return "\n".join(lines)


def short_source(source: str) -> str:
    """The file a rule was read in (its full text, with the facts, is in ``--json``)."""
    return source.split(": ", 1)[0]


def _wrap(paths: Sequence[str]) -> str:
    """The paths, the first ``MAX_PATHS`` of them."""
    shown = list(paths[:MAX_PATHS])
    if len(paths) > MAX_PATHS:
        shown.append(f"... ({len(paths) - MAX_PATHS} more)")
    return ", ".join(shown)


# --------------------------------------------------------------------------- the command


def committed_stack_file(stack: str, root: Path, dest: Path) -> Path:
    """The stack file as committed at HEAD, copied to ``dest`` (what ``--from`` defaults to)."""
    name = f"Pulumi.{stack}.yaml"
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "show", f"HEAD:./{name}"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandError(f"cannot read the committed {name} with git ({exc}); pass --from FILE") from exc
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"git exited {proc.returncode}"
        raise CommandError(f"no committed {name} in {root} ({why}); pass --from FILE")
    dest.write_text(proc.stdout)
    return dest


_RENDER_AT_REF = r"""
import dataclasses, json, sys
sys.path.insert(0, sys.argv[1])
from modelctl.render import read_stack_config, run_program
rendered = run_program(read_stack_config(__import__("pathlib").Path(sys.argv[3])), stack=sys.argv[2],
                       program=__import__("pathlib").Path(sys.argv[1]) / "__main__.py")
fields = ("type", "name", "parent", "inputs", "custom", "urn", "depends_on", "provider", "property_deps",
          "options", "dynamic_provider")
json.dump([{f: getattr(r, f, None) for f in fields} for r in rendered.resources], open(sys.argv[4], "w"))
"""


def render_at_ref(stack: str, ref: str, root: Path, tmp: Path) -> tuple[Rendered, str]:
    """Render the stack as committed at ``ref`` with the program as committed at ``ref`` (a
    checkout of that commit, run in its own interpreter): what a stack last deployed from ``ref``
    declared, code and serving runtime included. Returns the render and the commit's short id."""
    import sys

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CommandError(f"git {args[0]} failed ({exc})") from exc

    rev = git("rev-parse", "--verify", "--short", f"{ref}^{{commit}}")
    if rev.returncode != 0:
        raise CommandError(f"--from-ref {ref}: not a commit in {root}")
    commit = rev.stdout.strip()
    checkout = tmp / f"at-{commit}"
    checkout.mkdir(parents=True)
    tar = tmp / f"{commit}.tar"
    archive = git("archive", "--format=tar", "-o", str(tar), commit)
    if archive.returncode != 0:
        raise CommandError(f"--from-ref {ref}: cannot check out {commit} ({archive.stderr.strip()})")
    with tarfile.open(tar) as fh:
        fh.extractall(checkout, filter="data")
    stack_path = checkout / f"Pulumi.{stack}.yaml"
    if not stack_path.is_file():
        raise CommandError(f"--from-ref {ref}: no Pulumi.{stack}.yaml at {commit}")
    out = tmp / "at-ref.json"
    # run in the project folder (relative registry paths mean what they mean to `pulumi up`), with
    # the commit's code first on the path
    # the same build folder as this checkout's render (the context's location is an input of the
    # image: another folder would be an image update that `up` would not make)
    env = {**os.environ, "MLFLOW_DEPLOY_BUILD_DIR": os.environ.get("MLFLOW_DEPLOY_BUILD_DIR", str(root / "build"))}
    proc = subprocess.run(
        [sys.executable, "-c", _RENDER_AT_REF, str(checkout), stack, str(stack_path), str(out)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit {proc.returncode}"
        raise CommandError(f"--from-ref {ref}: the program at {commit} did not render: {why}")
    data = json.loads(out.read_text())
    resources = [
        Declared(**{k: v for k, v in d.items() if v is not None or k in ("parent", "provider", "dynamic_provider")})
        for d in data
    ]
    return Rendered(resources=resources), commit


def diff_command(
    stack: str,
    from_file: Path | None,
    to_file: Path | None,
    *,
    as_json: bool,
    project: Path | None = None,
    from_ref: str | None = None,
) -> int:
    """``modelctl diff``: render both sides and print what ``pulumi up`` would do."""
    from modelctl.commands import render_stack
    from modelctl.render import PROJECT_ROOT, stack_file

    root = project or PROJECT_ROOT
    if from_ref is not None and from_file is not None:
        raise CommandError("--from and --from-ref name the same side: give one")
    with tempfile.TemporaryDirectory(prefix="modelctl-diff-") as tmp:
        new_stack = from_file is not None and from_file.name == NEW_STACK
        new_path = to_file or stack_file(stack, root)
        if from_ref is not None:
            old, commit = render_at_ref(stack, from_ref, root, Path(tmp))
            old_label = f"{from_ref} ({commit}: its stack file and program)"
            scope = SCOPE_REF
        else:
            old_path = from_file or committed_stack_file(stack, root, Path(tmp) / f"Pulumi.{stack}.yaml")
            old = Rendered() if new_stack else render_stack(stack, old_path, root)
            old_label = "(a new stack)" if new_stack else str(from_file or f"HEAD:Pulumi.{stack}.yaml")
            scope = SCOPE
        new = render_stack(stack, new_path, root)
    result = diff_renders(old, new)
    if as_json:
        print(json.dumps([c.as_json() for c in result.changes], indent=2))
    else:
        print(f"stack {stack}: {old_label} -> {new_path}")
        print(scope)
        print(format_text(result))
    return 0
