"""Which input changes replace a resource, per resource type, read from the providers' sources.

``modelctl diff`` renders two stack configs under the mock runtime and compares each resource's
inputs. The mock runtime cannot tell whether the engine will *update* a changed resource in place
or *replace* it: that is the provider's decision. This module is that decision, as data:

* :data:`RULES` (the data: modelctl/replacement_rules.py) maps a type token
  (``aws:sagemaker/endpoint:Endpoint``) to a :class:`Rule` naming the inputs whose change forces
  a replacement, where the fact was read, and which input, when the program sets it explicitly,
  makes the replacement *delete-first* (the old object is gone
  before the new one exists: an outage for anything that serves traffic).
* :func:`forces_replacement` answers for one changed input path; :func:`replacements` answers for
  a pair of input bags (it walks them itself, so block presence and element counts are exact).

Paths are the engine's camelCase input names as ``modelctl render`` writes them, dotted, without
list indices (``productionVariants``, ``spec.selector``). A change *at or below* a
:attr:`Rule.force_new` path replaces. A :attr:`Rule.replace_on_presence` path is weaker: it is a
Terraform block collection marked ``ForceNew`` whose own fields are not, so only adding or
removing it (its element count changing) replaces, while an edit inside an existing element is an
in-place update (pulumi-terraform-bridge ``pkg/tests/cross-tests/diff_cross_test.go``
``TestBlockCollectionForceNew``: a nested change in a ForceNew block list or set is an ``update``
in Terraform and in Pulumi; ``changed to empty`` / ``changed from empty`` are ``create, delete``).

Provider versions the rules were read against (the ones requirements.txt allows and the image
installs): pulumi-aws 7.x (terraform-provider-aws v6.x, files read at their 2026 revisions,
after v6.53.0), pulumi-azure-native 3.x (Azure REST API versions named per rule),
pulumi-gcp 9.x (terraform-provider-google v7.45.0), pulumi-kubernetes 4.x (provider HEAD
v4.32.0+27; ``diff.go`` unchanged since 2024), pulumi-docker-build 0.0.22.

Delete-before-replace, per provider:

* Terraform-bridged (aws, gcp): pulumi-terraform-bridge ``pkg/tfbridge/provider.go`` ``Diff``:
  ``deleteBeforeReplace := len(replaces) > 0 && (res.Schema.DeleteBeforeReplace ||
  nameRequiresDeleteBeforeReplace(news, olds, schema, res.Schema))``; ``pkg/tfbridge/schema.go``
  ``nameRequiresDeleteBeforeReplace`` is true when an auto-nameable property (``AutoName`` /
  ``SetAutonaming``: every input called ``name``) holds a value the auto-namer did not make, i.e.
  the program set it. None of the resources here has ``DeleteBeforeReplace`` set in
  pulumi-aws/pulumi-gcp ``provider/resources.go``.
* azure-native: ``provider/pkg/provider/provider.go`` ``Diff``: ``deleteBeforeReplace :=
  len(replaces) > 0`` unless ``Check`` auto-named the resource with a random name
  (``__createBeforeDelete``); every name here is set by the program, so every replacement is
  delete-first.
* kubernetes: ``provider/pkg/provider/provider.go`` ``Diff``: delete-first when the object is
  named, not auto-named, and keeps the same name and namespace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from modelctl.replacement_rules import RULES, Rule

__all__ = [
    "RULES",
    "Rule",
    "changed_paths",
    "forces_replacement",
    "replacements",
    "rule_for",
    "split_path",
]


# --------------------------------------------------------------------------- helpers

_INDEX = re.compile(r"\[(?:\d+|\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')\]")


def split_path(path: str) -> tuple[str, ...]:
    """``productionVariants[1].initialVariantWeight`` -> ``("productionVariants", "initialVariantWeight")``.

    Numeric indices are dropped; a quoted index (``labels["app.kubernetes.io/name"]``) is a key.
    """
    parts: list[str] = []
    pos = 0
    current = ""
    while pos < len(path):
        ch = path[pos]
        if ch == ".":
            if current:
                parts.append(current)
            current = ""
            pos += 1
        elif ch == "[":
            m = _INDEX.match(path, pos)
            if m is None:
                raise ValueError(f"malformed input path {path!r} at {pos}")
            if current:
                parts.append(current)
            current = ""
            token = m.group(0)[1:-1]
            if token[:1] in ("'", '"'):
                parts.append(token[1:-1].replace("\\" + token[0], token[0]))
            pos = m.end()
        else:
            current += ch
            pos += 1
    if current:
        parts.append(current)
    return tuple(parts)


def rule_for(type_token: str) -> Rule | None:
    return RULES.get(type_token)


def forces_replacement(type_token: str, changed_path: str) -> str | None:
    """The rule path that makes a change at ``changed_path`` replace a ``type_token`` resource, or None.

    ``force_new`` paths match on component boundaries at or above the change (``spec.selector``
    matches ``spec.selector.matchLabels.app``, not ``spec.selectorX``). A ``replace_on_presence``
    path matches only a change reported at that path itself (the block added, removed, or its
    element count changed). Unknown types return None: :func:`rule_for` tells them apart.
    """
    rule = RULES.get(type_token)
    if rule is None:
        return None
    changed = split_path(changed_path)
    for p in rule.force_new:
        parts = split_path(p)
        if changed[: len(parts)] == parts:
            return p
    for p in rule.replace_on_presence:
        if changed == split_path(p):
            return p
    return None


def _count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, list | tuple):
        return len(value)
    return 1


def _values_at(value: Any, parts: tuple[str, ...]) -> Iterator[Any]:
    """Every value at ``parts`` below ``value``, fanning out over lists."""
    if isinstance(value, list | tuple):
        for v in value:
            yield from _values_at(v, parts)
        return
    if not parts:
        yield value
        return
    if isinstance(value, Mapping):
        yield from _values_at(value.get(parts[0]), parts[1:])


def _fmt(path: tuple[str | int, ...]) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif "." in p or "[" in p:
            out += f'["{p}"]'
        else:
            out += f".{p}" if out else p
    return out


def changed_paths(old: Any, new: Any, _path: tuple[str | int, ...] = ()) -> list[str]:
    """Paths of the deepest differences between two input bags (added or removed keys and list
    elements at their own path, changed scalars at theirs)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for k in sorted(set(old) | set(new)):
            if k not in old or k not in new:
                if old.get(k) is None and new.get(k) is None:
                    continue  # absent and null are the same input to the engine
                out.append(_fmt((*_path, k)))
            else:
                out.extend(changed_paths(old[k], new[k], (*_path, k)))
        return out
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        out = []
        for i in range(max(len(old), len(new))):
            if i >= len(old) or i >= len(new):
                out.append(_fmt((*_path, i)))
            else:
                out.extend(changed_paths(old[i], new[i], (*_path, i)))
        return out
    return [] if old == new else [_fmt(_path)]


def replacements(type_token: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The rule paths that make the change from ``old`` to ``new`` inputs replace the resource
    (empty: an in-place update, or no change). Unknown types return an empty list."""
    rule = RULES.get(type_token)
    if rule is None:
        return []
    found: list[str] = []
    for changed in changed_paths(old, new):
        parts = split_path(changed)
        for p in rule.force_new:
            rp = split_path(p)
            # at or below a force-new path, or a whole subtree added/removed that holds one
            below = parts[: len(rp)] == rp
            holds = rp[: len(parts)] == parts and any(
                v is not None for side in (old, new) for v in _values_at(side, rp)
            )
            if (below or holds) and p not in found:
                found.append(p)
    for p in rule.replace_on_presence:
        rp = split_path(p)
        if sum(map(_count, _values_at(old, rp))) != sum(map(_count, _values_at(new, rp))) and p not in found:
            found.append(p)
    return found
