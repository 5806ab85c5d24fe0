"""Run the real Pulumi program under Pulumi's mock runtime and write what it declares.

``python -m modelctl render --stack dev --out out/`` writes

* ``out/resources.json``: every declared resource as ``{type, name, parent, inputs}``, inputs
  as the engine would receive them (camelCase keys), provider references as URNs;
* ``out/kubernetes/<NN>-<kind>-<name>.yaml``: every Kubernetes object as the manifest the API
  server would receive (``apiVersion``, ``kind``, ``metadata``, ``spec``/``data``/…);
* ``out/outputs.json``: the stack's exports.

No credentials, no Pulumi CLI, no provider plugins: the mock runtime stands in for the engine,
and the program itself (settings, registry resolution, components) runs for real.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "mlflow-deploy"
SECRET_PLACEHOLDER = "[secret]"

# Resource outputs the mocks invent beyond the inputs, by type token. Targets whose code reads
# an output of a resource (an ARN, a repository URL) register a function here.
OutputFn = Callable[[str, dict[str, Any]], dict[str, Any]]
MOCK_OUTPUTS: dict[str, OutputFn] = {}
# Resource IDs in the provider's own shape (an ARM ID), by type token, for targets whose code parses
# an ID; every other resource's mock ID is ``<name>-id``.
IdFn = Callable[[str, dict[str, Any]], str]
MOCK_IDS: dict[str, IdFn] = {}
# Results of provider functions (invokes), by token.
CallFn = Callable[[dict[str, Any]], dict[str, Any]]
MOCK_CALLS: dict[str, CallFn] = {}
# each registers its cloud's made-up outputs (ARNs, URLs, auto-names, scoring URIs)
from modelctl import mocks_aws, mocks_azure, mocks_gcp  # noqa: E402, F401


@dataclass
class Declared:
    type: str
    name: str
    parent: str | None
    inputs: dict[str, Any]
    custom: bool
    urn: str = ""
    depends_on: list[str] = field(default_factory=list)
    """Names of the resources it depends on (``depends_on`` and the resources its inputs come from)."""
    provider: str | None = None
    """Name of the explicit provider resource it was declared with (None: the default one)."""
    property_deps: dict[str, list[str]] = field(default_factory=dict)
    """Per top-level input: the URNs of the resources whose outputs it was computed from."""
    options: dict[str, Any] = field(default_factory=dict)
    """The resource options the engine's diff honours: ``ignoreChanges``, ``replaceOnChanges``
    (input paths), ``deleteBeforeReplace``, ``retainOnDelete``."""
    dynamic_provider: str | None = None
    """A dynamic resource's serialized provider (``__provider``, masked in ``inputs``): what
    ``modelctl diff`` asks for the provider's own ``diff``. Never written out."""
    outputs: dict[str, Any] = field(default_factory=dict)
    """The state the mocks gave it (inputs plus the made-up ARNs, names, URLs), and ``id``: what
    a resource that refers to it reads. Never written out."""

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "parent": self.parent, "inputs": self.inputs}


@dataclass
class Rendered:
    resources: list[Declared] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_token: str) -> list[Declared]:
        return [r for r in self.resources if r.type == type_token]

    def named(self, name: str) -> Declared:
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r}")
        return found[0]

    def kubernetes_manifests(self) -> list[dict[str, Any]]:
        """Every Kubernetes object, in a stable order (kind, namespace, name)."""
        manifests = [m for r in self.resources if (m := to_manifest(r)) is not None]
        return sorted(manifests, key=manifest_file_name)

    def sorted_resources(self) -> list[Declared]:
        """The resources in an order that depends on what was declared, not on when: by URN
        (parent types, type and name), so two renders of one config write identical files."""
        return sorted(self.resources, key=lambda r: (r.urn, r.type, r.name))


# --------------------------------------------------------------------------- stack files


def read_stack_config(path: Path) -> dict[str, Any]:
    """The ``config:`` mapping of a ``Pulumi.<stack>.yaml`` (``secure:`` values masked)."""
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load(path.read_text()) or {}
    config = dict(data.get("config") or {})
    return {k: _mask_secure(v) for k, v in config.items()}


def _mask_secure(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"secure"}:
            return SECRET_PLACEHOLDER
        return {k: _mask_secure(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_mask_secure(x) for x in v]
    return v


def stack_file(stack: str, root: Path = PROJECT_ROOT) -> Path:
    return root / f"Pulumi.{stack}.yaml"


# --------------------------------------------------------------------------- mock runtime


def _plain(value: Any) -> Any:
    """Inputs as JSON: resource references become URNs, unknowns a marker."""
    import pulumi
    from pulumi.runtime import rpc

    if value is rpc.UNKNOWN:
        return "<computed>"
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        return SECRET_PLACEHOLDER
    if isinstance(value, dict):
        return {k: _plain(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, pulumi.Resource):
        return f"<resource {type(value).__name__}>"
    if isinstance(value, pulumi.Asset | pulumi.Archive):
        return f"<{type(value).__name__}>"
    if isinstance(value, float) and value.is_integer():
        return int(value)  # protobuf Structs carry every number as a double
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


STACK_TYPE = "pulumi:pulumi:Stack"


def _urn_type(urn: str) -> str:
    """The resource's own type token (the last of the qualified ``parent$child`` types)."""
    return urn.split("::")[2].split("$")[-1] if urn.count("::") >= 3 else ""


def _name_of(urn: str) -> str | None:
    """A parent URN's resource name, or None for the root stack."""
    if not urn or _urn_type(urn) == STACK_TYPE:
        return None
    return urn.split("::")[-1]


def _outputs(resp: Any) -> dict[str, Any]:
    from pulumi.runtime import rpc

    state = rpc.deserialize_properties(resp.object, keep_unknowns=True, keep_internal=False)
    out = {k: v for k, v in _plain(state).items() if k != "__provider"}
    out["id"] = resp.id
    return out


def _dynamic_provider(inputs: Mapping[str, Any]) -> str | None:
    from pulumi.runtime import rpc

    value = inputs.get("__provider")
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        value = value.get("value")
    return value if isinstance(value, str) else None


def _options(request: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if list(request.ignoreChanges):
        out["ignoreChanges"] = list(request.ignoreChanges)
    if list(request.replaceOnChanges):
        out["replaceOnChanges"] = list(request.replaceOnChanges)
    if request.deleteBeforeReplace:
        out["deleteBeforeReplace"] = True
    if request.HasField("retainOnDelete") and request.retainOnDelete:
        out["retainOnDelete"] = True
    return out


def _make_mocks() -> Any:
    import pulumi

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            state = dict(args.inputs)
            fn = MOCK_OUTPUTS.get(args.typ)
            if fn is not None:
                state.update(fn(args.name, dict(args.inputs)))
            id_fn = MOCK_IDS.get(args.typ)
            return (id_fn(args.name, dict(args.inputs)) if id_fn else f"{args.name}-id"), state

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
            fn = MOCK_CALLS.get(args.token)
            return (fn(dict(args.args)) if fn else {}), []

    return Mocks()


def _make_monitor(mocks: Any, rendered: Rendered) -> Any:
    from pulumi.runtime import rpc
    from pulumi.runtime.mocks import MockMonitor

    class Monitor(MockMonitor):
        def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC name
            resp = super().RegisterResource(request)
            if request.type != STACK_TYPE:
                inputs = rpc.deserialize_properties(request.object, keep_unknowns=True, keep_internal=False)
                rendered.resources.append(
                    Declared(
                        type=request.type,
                        name=request.name,
                        parent=_name_of(request.parent),
                        inputs=_plain(inputs),
                        custom=bool(request.custom),
                        urn=resp.urn,
                        depends_on=[u.split("::")[-1] for u in request.dependencies],
                        provider=request.provider.split("::")[-2] if request.provider else None,
                        property_deps={
                            k: sorted(v.urns) for k, v in request.propertyDependencies.items() if list(v.urns)
                        },
                        options=_options(request),
                        dynamic_provider=_dynamic_provider(inputs),
                        outputs=_outputs(resp),
                    )
                )
            return resp

        def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC name
            if _urn_type(request.urn) == STACK_TYPE:
                rendered.outputs.update(
                    _plain(rpc.deserialize_properties(request.outputs, keep_unknowns=True, keep_internal=False))
                )
            return super().RegisterResourceOutputs(request)

    return Monitor(mocks)


def config_for_runtime(config: Mapping[str, Any]) -> dict[str, str]:
    """Stack-file config as the engine hands it to a program: namespaced keys, JSON for objects."""
    out: dict[str, str] = {}
    for k, v in config.items():
        key = k if ":" in k else f"{NAMESPACE}:{k}"
        out[key] = v if isinstance(v, str) else json.dumps(v)
    return out


def _ensure_event_loop() -> None:
    """Pulumi's runtime drives its RPCs on the thread's current event loop; code that ran
    ``asyncio.run`` before (a server, a test) leaves none, or a closed one."""
    import asyncio
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


def run_program(
    config: Mapping[str, Any],
    stack: str = "dev",
    program: Path = PROJECT_ROOT / "__main__.py",
    env: Mapping[str, str] | None = None,
) -> Rendered:
    """Run ``program`` under the mock runtime with ``config``; return what it declared.

    Raises whatever the program raises (a SettingsError for bad config, before any resource).
    """
    import pulumi
    from pulumi.runtime import settings as rt_settings
    from pulumi.runtime.stack import run_in_stack
    from pulumi.runtime.sync_await import _sync_await

    _ensure_event_loop()
    rendered = Rendered()
    mocks = _make_mocks()
    monitor = _make_monitor(mocks, rendered)
    rt_settings.SETTINGS.rpc_manager.clear()
    rt_settings.SETTINGS.outputs.clear()
    rt_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=NAMESPACE, stack=stack, preview=False, monitor=monitor)
    # set_mocks made a root Stack of its own; run_in_stack makes the one exports land on
    rt_settings.ROOT.set(None)
    # A secure value is masked in a stack file read here ("[secret]"): the registry token is not
    # handed to the program then (MLflow would send the mask), MLFLOW_TRACKING_TOKEN from the
    # environment is used instead, as the program does when the key is absent.
    config = {
        k: v for k, v in config.items() if not (k.endswith("mlflowTrackingToken") and v == SECRET_PLACEHOLDER)
    }
    pulumi.runtime.set_all_config(config_for_runtime(config))

    # what the program sets in the environment (the registry token) is undone after it, so one
    # render never leaks into the next
    saved_env = {k: os.environ.get(k) for k in {*(env or {}), "MLFLOW_TRACKING_TOKEN"}}
    os.environ.update(env or {})
    root = str(program.parent.resolve())
    added = root not in sys.path
    if added:
        sys.path.insert(0, root)
    try:
        def program_func() -> None:
            runpy.run_path(str(program), run_name="__main__")

        _sync_await(run_in_stack(program_func))
    finally:
        if added:
            sys.path.remove(root)
        for k, old in saved_env.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old
    return rendered


# --------------------------------------------------------------------------- manifests


def to_manifest(r: Declared) -> dict[str, Any] | None:
    """The Kubernetes object a ``kubernetes:`` resource sends to the API server, or None."""
    if not r.type.startswith("kubernetes:") or r.type.startswith("kubernetes:helm.sh"):
        return None
    if r.type in ("pulumi:providers:kubernetes",) or "apiVersion" not in r.inputs:
        return None
    order = ["apiVersion", "kind", "metadata"]
    inputs = {k: v for k, v in r.inputs.items() if v is not None}
    manifest = {k: inputs[k] for k in order if k in inputs}
    manifest.update({k: v for k, v in sorted(inputs.items()) if k not in order})
    return manifest


def manifest_file_name(m: Mapping[str, Any]) -> str:
    """``<kind>-<namespace>-<name>.yaml`` (cluster-scoped: ``<kind>-<name>.yaml``): a name that
    follows from the object itself, so renders of one config name their files alike."""
    meta = m.get("metadata") or {}
    parts = [str(m.get("kind", "object")).lower(), meta.get("namespace"), meta.get("name", "unnamed")]
    return "-".join(str(p) for p in parts if p) + ".yaml"


def write_outputs(rendered: Rendered, out: Path) -> list[Path]:
    """Write resources.json, outputs.json and the Kubernetes manifests; return the paths."""
    from ruamel.yaml import YAML

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "resources.json", out / "outputs.json"]
    written[0].write_text(json.dumps([r.as_json() for r in rendered.sorted_resources()], indent=2) + "\n")
    written[1].write_text(json.dumps(rendered.outputs, indent=2, sort_keys=True) + "\n")
    kdir = out / "kubernetes"
    if kdir.exists():
        for old in kdir.glob("*.yaml"):
            old.unlink()
    manifests = rendered.kubernetes_manifests()
    if manifests:
        kdir.mkdir(exist_ok=True)
        yaml = YAML()
        yaml.default_flow_style = False
        seen: set[str] = set()
        for m in manifests:
            file_name = manifest_file_name(m)
            if file_name in seen:  # same kind/namespace/name in two API groups
                group = str(m.get("apiVersion", "")).split("/")[0].replace(".", "-")
                file_name = file_name.removesuffix(".yaml") + f"-{group}.yaml"
            seen.add(file_name)
            p = kdir / file_name
            with p.open("w") as fh:
                yaml.dump(m, fh)
            written.append(p)
    return written
