"""The policies of the mlflow-deploy CrossGuard pack, as pure functions.

Every check takes one resource as ``{"type", "name", "inputs"}`` (the shape of ``modelctl render``'s
``resources.json``; ``inputs`` keyed as the engine sees them, camelCase) and the policy's config,
and returns the violations as sentences. Nothing here imports ``pulumi_policy``: the pack's
``__main__.py`` wraps these in ``ResourceValidationPolicy`` objects, and the tests run them over
the project's own rendered stacks.

A value not known yet (``<computed>`` in a render; the SDK raises on it in a real preview, and
reports that the policy could not run until ``pulumi up``) is never called a violation here.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MANDATORY = "mandatory"
ADVISORY = "advisory"
COMPUTED = "<computed>"
PART_OF = "mlflow-deploy"

Resource = Mapping[str, Any]
Check = Callable[[Resource, Mapping[str, Any]], list[str]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    level: str
    check: Check
    config_schema: dict[str, dict[str, Any]] = field(default_factory=dict)
    """JSON-schema properties of the policy's own config (beside ``enforcementLevel``)."""


def _known(v: Any) -> bool:
    return v is not None and v != COMPUTED


def _inputs(r: Resource) -> Mapping[str, Any]:
    return r.get("inputs") or {}


# --------------------------------------------------------------------------- kubernetes

WORKLOAD_POD_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}


def _dig(m: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(m, Mapping):
            return None
        m = m.get(key)
    return m


def model_pod_spec(r: Resource) -> Mapping[str, Any] | None:
    """The pod spec of a workload this project declares (labelled part-of mlflow-deploy)."""
    path = WORKLOAD_POD_PATHS.get(r.get("type", ""))
    if path is None:
        return None
    inputs = _inputs(r)
    labels = dict(_dig(inputs, ("metadata", "labels")) or {})
    labels.update(_dig(inputs, (*path[:-1], "metadata", "labels")) or {})
    if labels.get("app.kubernetes.io/part-of") != PART_OF:
        return None
    spec = _dig(inputs, path)
    return spec if isinstance(spec, Mapping) else None


def _containers(pod: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in ("initContainers", "containers"):
        yield from pod.get(key) or []


def check_public_load_balancer(r: Resource, config: Mapping[str, Any]) -> list[str]:
    if r.get("type") != "kubernetes:core/v1:Service":
        return []
    spec = _inputs(r).get("spec") or {}
    if spec.get("type") != "LoadBalancer":
        return []
    ranges = list(spec.get("loadBalancerSourceRanges") or [])
    annotation = (_dig(_inputs(r), ("metadata", "annotations")) or {}).get(
        "service.beta.kubernetes.io/load-balancer-source-ranges"
    )
    if _known(annotation) and annotation:
        ranges += [c.strip() for c in str(annotation).split(",") if c.strip()]
    if not ranges:
        return [f"Service {r['name']} is a LoadBalancer without loadBalancerSourceRanges: open to the internet"]
    open_ = [c for c in ranges if _known(c) and ipaddress.ip_network(c, strict=False).prefixlen == 0]
    if open_:
        return [f"Service {r['name']} is a LoadBalancer whose source ranges include {open_[0]}: open to the internet"]
    return []


def check_container_resources(r: Resource, config: Mapping[str, Any]) -> list[str]:
    pod = model_pod_spec(r)
    if pod is None:
        return []
    out = []
    for c in _containers(pod):
        res = c.get("resources") or {}
        missing = [
            f"{kind}.{q}"
            for kind in ("requests", "limits")
            for q in ("cpu", "memory")
            if not (res.get(kind) or {}).get(q)
        ]
        if missing:
            out.append(f"{r['name']}: container {c.get('name')} has no {', '.join(missing)}")
    return out


def check_container_hardened(r: Resource, config: Mapping[str, Any]) -> list[str]:
    pod = model_pod_spec(r)
    if pod is None:
        return []
    psc = pod.get("securityContext") or {}
    out = []
    for c in _containers(pod):
        sc = c.get("securityContext") or {}
        name = f"{r['name']}: container {c.get('name')}"
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        uid = sc.get("runAsUser", psc.get("runAsUser"))
        if non_root is not True or uid == 0:
            out.append(f"{name} may run as root (runAsNonRoot is not true{', runAsUser is 0' if uid == 0 else ''})")
        if sc.get("readOnlyRootFilesystem") is not True:
            out.append(f"{name} has a writable root filesystem (readOnlyRootFilesystem is not true)")
        if sc.get("allowPrivilegeEscalation") is not False or sc.get("privileged") is True:
            out.append(f"{name} may escalate privileges (allowPrivilegeEscalation is not false, or privileged)")
    return out


# --------------------------------------------------------------------------- images

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
CONTENT_TAG = re.compile(r":(v[0-9]+|monitor)-[0-9a-f]{12}$")
"""The tags the program gives a built image: ``v<version>-<content hash>`` (components/image.py, a
model) and ``monitor-<content hash>`` (components/quality.py, the model monitor)."""


def image_is_immutable(ref: str) -> bool:
    return bool(DIGEST.search(ref) or CONTENT_TAG.search(ref))


def image_refs(r: Resource) -> Iterator[tuple[str, Any]]:
    """``(where, reference)`` for every container image a resource runs, on every target."""
    t, inputs = r.get("type", ""), _inputs(r)
    pod = model_pod_spec(r)
    if pod is not None:
        for c in _containers(pod):
            yield f"container {c.get('name')}", c.get("image")
    elif t == "aws:sagemaker/model:Model":
        if inputs.get("primaryContainer"):
            yield "primaryContainer", (inputs.get("primaryContainer") or {}).get("image")
        for i, c in enumerate(inputs.get("containers") or []):
            yield f"containers[{i}]", c.get("image")
    elif t == "azure-native:machinelearningservices:EnvironmentVersion":
        props = inputs.get("properties") or {}
        if "image" in props:
            yield "properties.image", props.get("image")
    elif t == "pulumi-python:dynamic:Resource" and isinstance(inputs.get("container"), Mapping):
        # the Vertex AI model upload + deploy (components/vertex_provider.py)
        yield "container.imageUri", inputs["container"].get("imageUri")


def check_immutable_images(r: Resource, config: Mapping[str, Any]) -> list[str]:
    return [
        f"{r['name']}: {where} image {ref!r} is neither digest-pinned (@sha256:...) nor a content tag "
        "(:v<version>-<hash>): a rollback could run other code than it ran before"
        for where, ref in image_refs(r)
        if _known(ref) and not image_is_immutable(str(ref))
    ]


# --------------------------------------------------------------------------- sagemaker


def check_sagemaker_network_isolation(r: Resource, config: Mapping[str, Any]) -> list[str]:
    if r.get("type") != "aws:sagemaker/model:Model":
        return []
    v = _inputs(r).get("enableNetworkIsolation")
    if v is None or (_known(v) and v is not True):
        return [f"SageMaker model {r['name']} runs without network isolation (enableNetworkIsolation is not true)"]
    return []


def check_sagemaker_capture_kms(r: Resource, config: Mapping[str, Any]) -> list[str]:
    if r.get("type") != "aws:sagemaker/endpointConfiguration:EndpointConfiguration":
        return []
    dc = _inputs(r).get("dataCaptureConfig")
    if not dc or dc.get("enableCapture") is False:
        return []
    if not dc.get("kmsKeyId"):
        return [
            f"EndpointConfiguration {r['name']} captures requests/responses to "
            f"{dc.get('destinationS3Uri')} without a KMS key (dataCaptureConfig.kmsKeyId)"
        ]
    return []


# --------------------------------------------------------------------------- azure ml

AZURE_ENDPOINT = "azure-native:machinelearningservices:OnlineEndpoint"


def check_azure_private_network(r: Resource, config: Mapping[str, Any]) -> list[str]:
    if r.get("type") != AZURE_ENDPOINT:
        return []
    access = (_inputs(r).get("properties") or {}).get("publicNetworkAccess")
    if access is None or (_known(access) and access != "Disabled"):
        return [f"Azure ML endpoint {r['name']} is reachable from public networks (publicNetworkAccess is {access})"]
    return []


def check_azure_auth(r: Resource, config: Mapping[str, Any]) -> list[str]:
    if r.get("type") != AZURE_ENDPOINT:
        return []
    mode = (_inputs(r).get("properties") or {}).get("authMode")
    if mode is None or (_known(mode) and mode not in ("Key", "AADToken")):
        return [f"Azure ML endpoint {r['name']} authenticates with {mode}; use Key or AADToken (Microsoft Entra)"]
    return []


# --------------------------------------------------------------------------- vertex ai

VERTEX_PRIVATE_TAG = "mlflow-deploy:vertex-private-endpoint"
"""A stack tag (``pulumi stack tag set mlflow-deploy:vertex-private-endpoint true``) that makes the
Vertex policy apply to that stack, beside the policy's own ``required`` config."""


def vertex_private_required(config: Mapping[str, Any], stack_tags: Mapping[str, str] | None = None) -> bool:
    tag = (stack_tags or {}).get(VERTEX_PRIVATE_TAG, "")
    return bool(config.get("required")) or tag.strip().lower() in ("true", "1", "yes")


def check_vertex_private_endpoint(r: Resource, config: Mapping[str, Any]) -> list[str]:
    if r.get("type") != "gcp:vertex/aiEndpoint:AiEndpoint" or not config.get("required"):
        return []
    inputs = _inputs(r)
    psc = (inputs.get("privateServiceConnectConfig") or {}).get("enablePrivateServiceConnect")
    if inputs.get("network") or psc:
        if inputs.get("dedicatedEndpointEnabled"):
            return [f"Vertex endpoint {r['name']} is private but also has a public dedicated endpoint"]
        return []
    return [
        f"Vertex endpoint {r['name']} is public; this stack requires a private one "
        "(vertex.network for VPC peering or vertex.privateServiceConnect)"
    ]


# --------------------------------------------------------------------------- aws iam

IAM_POLICY_TYPES = (
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/policy:Policy",
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy",
)
RESOURCE_WILDCARD_OK = frozenset({"ecr:GetAuthorizationToken"})
"""Actions IAM offers no resource scoping for, allowed on Resource "*"."""
RESOURCE_WILDCARD_IF_CONDITIONED = {"cloudwatch:PutMetricData": "cloudwatch:namespace"}
"""Actions with no resource type that a condition key narrows instead: allowed on Resource "*"
only with that condition."""


def _policy_documents(r: Resource) -> Iterator[tuple[str, Any]]:
    t, inputs = r.get("type"), _inputs(r)
    if t in IAM_POLICY_TYPES:
        yield "policy", inputs.get("policy")
    elif t == "aws:iam/role:Role":
        for i, p in enumerate(inputs.get("inlinePolicies") or []):
            yield f"inlinePolicies[{i}]", (p or {}).get("policy")


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list | tuple) else [v]


def _condition_keys(stmt: Mapping[str, Any]) -> set[str]:
    keys: set[str] = set()
    for body in (stmt.get("Condition") or {}).values():
        if isinstance(body, Mapping):
            keys |= {str(k).lower() for k in body}
    return keys


def statement_violations(stmt: Mapping[str, Any]) -> list[str]:
    if stmt.get("Effect", "Allow") != "Allow":
        return []
    sid = f"statement {stmt.get('Sid')!r}" if stmt.get("Sid") else "a statement"
    out = []
    if "NotAction" in stmt or "NotResource" in stmt:
        out.append(f"{sid} allows with NotAction/NotResource (everything but a list)")
    actions = [str(a) for a in _as_list(stmt.get("Action", []))]
    wild_actions = [a for a in actions if a == "*" or a.endswith(":*")]
    if wild_actions:
        out.append(f"{sid} allows every action ({wild_actions[0]})")
    resources = [str(x) for x in _as_list(stmt.get("Resource", []))]
    if "*" in resources:
        conds = _condition_keys(stmt)
        unscoped = [
            a
            for a in actions
            if a not in RESOURCE_WILDCARD_OK
            and not (a in RESOURCE_WILDCARD_IF_CONDITIONED and RESOURCE_WILDCARD_IF_CONDITIONED[a].lower() in conds)
        ]
        if unscoped:
            out.append(f"{sid} allows {', '.join(unscoped)} on Resource '*'")
    return out


def check_iam_least_privilege(r: Resource, config: Mapping[str, Any]) -> list[str]:
    out = []
    for where, doc in _policy_documents(r):
        if not _known(doc):
            continue
        parsed = json.loads(doc) if isinstance(doc, str) else doc
        for stmt in _as_list(parsed.get("Statement", [])):
            out += [f"{r['name']} {where}: {v}" for v in statement_violations(stmt)]
    return out


# --------------------------------------------------------------------------- the pack

RULES: tuple[Rule, ...] = (
    Rule(
        "no-public-load-balancer",
        "A Kubernetes LoadBalancer Service must list loadBalancerSourceRanges (none, or 0.0.0.0/0, is the "
        "whole internet).",
        MANDATORY,
        check_public_load_balancer,
    ),
    Rule(
        "model-container-resources",
        "Every container of a model workload sets CPU and memory requests and limits.",
        MANDATORY,
        check_container_resources,
    ),
    Rule(
        "model-container-hardened",
        "Every container of a model workload runs as non-root, with a read-only root filesystem and no "
        "privilege escalation.",
        MANDATORY,
        check_container_hardened,
    ),
    Rule(
        "immutable-image-reference",
        "Model images (Kubernetes, SageMaker, Azure ML, Vertex AI) are referenced by digest or by the "
        "content tag v<version>-<hash>, so a rollback runs exactly what ran before.",
        MANDATORY,
        check_immutable_images,
    ),
    Rule(
        "sagemaker-network-isolation",
        "SageMaker models run with network isolation (the model is in the image; the container needs no network).",
        MANDATORY,
        check_sagemaker_network_isolation,
    ),
    Rule(
        "sagemaker-data-capture-kms",
        "SageMaker data capture (requests and predictions, often personal data) is encrypted with a customer KMS key.",
        MANDATORY,
        check_sagemaker_capture_kms,
    ),
    Rule(
        "azureml-no-public-network",
        "Azure ML online endpoints are reached through the workspace's private endpoint only "
        "(publicNetworkAccess Disabled).",
        ADVISORY,
        check_azure_private_network,
    ),
    Rule(
        "azureml-endpoint-auth",
        "Azure ML online endpoints authenticate callers with keys or Microsoft Entra (AAD) tokens.",
        MANDATORY,
        check_azure_auth,
    ),
    Rule(
        "vertex-private-endpoint",
        "Where the stack says so (policy config required: true, or the stack tag "
        f"{VERTEX_PRIVATE_TAG}=true), Vertex AI endpoints are private (VPC peering or Private Service "
        "Connect).",
        MANDATORY,
        check_vertex_private_endpoint,
        {"required": {"type": "boolean", "default": False}},
    ),
    Rule(
        "iam-least-privilege",
        "IAM policies allow no Action '*' or '<service>:*', no NotAction/NotResource, and Resource '*' "
        "only for actions IAM cannot scope (ecr:GetAuthorizationToken; cloudwatch:PutMetricData under a "
        "cloudwatch:namespace condition).",
        MANDATORY,
        check_iam_least_privilege,
    ),
)


def rule(name: str) -> Rule:
    (found,) = [r for r in RULES if r.name == name]
    return found


def evaluate(
    resources: Sequence[Resource], config: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, list[str]]:
    """Every rule over every resource: rule name -> violations (tests and local runs)."""
    config = config or {}
    return {ru.name: [v for r in resources for v in ru.check(r, config.get(ru.name, {}))] for ru in RULES}
