"""The pack's policies over the project's own rendered stacks: the real stacks pass, and every
policy has at least one violating stack.

Violations come from two places: configs the program accepts but the pack stops (lax-kubernetes,
lax-clouds, prod when a private Vertex endpoint is required), and rendered stacks changed the way
a Pulumi transformation or a hand edit of the program would (what the program's own settings
cannot produce: a root container, AMLToken auth, a wildcard IAM statement).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from model_serving_policies import (
    ADVISORY,
    MANDATORY,
    RULES,
    check_iam_least_privilege,
    check_immutable_images,
    check_public_load_balancer,
    evaluate,
    image_is_immutable,
    image_refs,
    rule,
    statement_violations,
    vertex_private_required,
)

Stack = Callable[[str], list[dict[str, Any]]]
REQUIRE_PRIVATE_VERTEX = {"vertex-private-endpoint": {"required": True}}


def named(resources: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    found = [r for r in resources if r["type"] == type_]
    assert found, f"no {type_} in the stack"
    return found


def violated(resources: list[dict[str, Any]], config: dict[str, Any] | None = None) -> dict[str, list[str]]:
    return {k: v for k, v in evaluate(resources, config).items() if v}


# --------------------------------------------------------------------------- passing stacks


@pytest.mark.parametrize("case", ["dev", "prod", "gateway-canary", "prod-private-vertex"])
def test_the_projects_stacks_pass(stack: Stack, case: str) -> None:
    assert violated(stack(case)) == {}


def test_a_private_vertex_stack_passes_when_private_is_required(stack: Stack) -> None:
    assert violated(stack("prod-private-vertex"), REQUIRE_PRIVATE_VERTEX) == {}


def test_every_policy_sees_the_resources_it_is_about(stack: Stack) -> None:
    """The passing results mean something: prod holds every resource type the policies check."""
    prod = stack("prod")
    for t in (
        "kubernetes:apps/v1:Deployment",
        "aws:sagemaker/model:Model",
        "aws:sagemaker/endpointConfiguration:EndpointConfiguration",
        "aws:iam/rolePolicy:RolePolicy",
        "azure-native:machinelearningservices:OnlineEndpoint",
        "azure-native:machinelearningservices:EnvironmentVersion",
        "gcp:vertex/aiEndpoint:AiEndpoint",
    ):
        named(prod, t)
    images = [ref for r in prod for _, ref in image_refs(r)]
    # Kubernetes (2 versions), SageMaker (2), Azure ML (2), Vertex AI (2)
    assert len(images) == 8 and all(image_is_immutable(i) for i in images), images


# --------------------------------------------------------------------------- violating stacks

# policy -> (case, config): a rendered stack that violates it
RENDERED_VIOLATIONS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "no-public-load-balancer": ("lax-kubernetes", None),
    "model-container-resources": ("lax-kubernetes", None),
    "immutable-image-reference": ("lax-kubernetes", None),
    "sagemaker-network-isolation": ("lax-clouds", None),
    "sagemaker-data-capture-kms": ("lax-clouds", None),
    "azureml-no-public-network": ("lax-clouds", None),
    "vertex-private-endpoint": ("prod", REQUIRE_PRIVATE_VERTEX),
}


def _deployment_container(resources: list[dict[str, Any]]) -> dict[str, Any]:
    dep = named(resources, "kubernetes:apps/v1:Deployment")[0]
    return dep["inputs"]["spec"]["template"]["spec"]["containers"][0]


def _root_container(resources: list[dict[str, Any]]) -> None:
    sc = _deployment_container(resources)["securityContext"]
    sc["runAsNonRoot"] = False
    sc["runAsUser"] = 0


def _writable_root(resources: list[dict[str, Any]]) -> None:
    _deployment_container(resources)["securityContext"]["readOnlyRootFilesystem"] = False


def _escalation(resources: list[dict[str, Any]]) -> None:
    del _deployment_container(resources)["securityContext"]["allowPrivilegeEscalation"]


def _aml_token(resources: list[dict[str, Any]]) -> None:
    named(resources, "azure-native:machinelearningservices:OnlineEndpoint")[0]["inputs"]["properties"]["authMode"] = (
        "AMLToken"
    )


def _iam_statement(stmt: dict[str, Any]) -> Callable[[list[dict[str, Any]]], None]:
    def mutate(resources: list[dict[str, Any]]) -> None:
        pol = named(resources, "aws:iam/rolePolicy:RolePolicy")[0]["inputs"]
        doc = json.loads(pol["policy"])
        doc["Statement"].append(stmt)
        pol["policy"] = json.dumps(doc)

    return mutate


# policy -> (passing case, mutation, expected fragment)
MUTATED_VIOLATIONS: list[tuple[str, str, Callable[[list[dict[str, Any]]], None], str]] = [
    ("model-container-hardened", "dev", _root_container, "may run as root"),
    ("model-container-hardened", "gateway-canary", _writable_root, "writable root filesystem"),
    ("model-container-hardened", "prod", _escalation, "escalate privileges"),
    ("azureml-endpoint-auth", "prod", _aml_token, "AMLToken"),
    ("iam-least-privilege", "prod", _iam_statement({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}), "s3:*"),
    (
        "iam-least-privilege",
        "prod",
        _iam_statement({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}),
        "s3:GetObject on Resource '*'",
    ),
    (
        "iam-least-privilege",
        "prod",
        _iam_statement({"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"}),
        "cloudwatch:PutMetricData on Resource '*'",
    ),
    (
        "iam-least-privilege",
        "prod",
        _iam_statement({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}),
        "NotAction",
    ),
]


@pytest.mark.parametrize(("policy", "case_config"), sorted(RENDERED_VIOLATIONS.items()))
def test_rendered_violating_stacks(stack: Stack, policy: str, case_config: tuple[str, Any]) -> None:
    case, config = case_config
    found = violated(stack(case), config)
    assert found.get(policy), f"{case} should violate {policy}; violations: {found}"


@pytest.mark.parametrize(
    ("policy", "case", "mutate", "fragment"), MUTATED_VIOLATIONS, ids=[f"{m[0]}-{m[1]}" for m in MUTATED_VIOLATIONS]
)
def test_mutated_violating_stacks(stack: Stack, policy: str, case: str, mutate: Any, fragment: str) -> None:
    resources = copy.deepcopy(stack(case))
    assert violated(resources) == {}
    mutate(resources)
    found = violated(resources)
    assert set(found) == {policy}, found
    assert any(fragment in v for v in found[policy]), found[policy]


def test_every_policy_has_a_violating_stack() -> None:
    covered = set(RENDERED_VIOLATIONS) | {m[0] for m in MUTATED_VIOLATIONS}
    assert covered == {r.name for r in RULES}


def test_levels() -> None:
    levels = {r.name: r.level for r in RULES}
    assert set(levels.values()) == {MANDATORY, ADVISORY}
    assert levels["azureml-no-public-network"] == ADVISORY
    assert levels["no-public-load-balancer"] == MANDATORY
    assert len({r.name for r in RULES}) == len(RULES)


# --------------------------------------------------------------------------- edge cases


def _svc(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "x"}
    if annotations:
        meta["annotations"] = annotations
    return {"type": "kubernetes:core/v1:Service", "name": "x", "inputs": {"metadata": meta, "spec": spec}}


def test_load_balancer_ranges() -> None:
    assert (
        check_public_load_balancer(_svc({"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/8"]}), {}) == []
    )
    assert check_public_load_balancer(_svc({"type": "LoadBalancer", "loadBalancerSourceRanges": ["0.0.0.0/0"]}), {})
    assert check_public_load_balancer(_svc({"type": "LoadBalancer", "loadBalancerSourceRanges": ["::/0"]}), {})
    annotated = _svc({"type": "LoadBalancer"}, {"service.beta.kubernetes.io/load-balancer-source-ranges": "10.0.0.0/8"})
    assert check_public_load_balancer(annotated, {}) == []
    assert check_public_load_balancer(_svc({"type": "ClusterIP"}), {}) == []


@pytest.mark.parametrize(
    ("ref", "ok"),
    [
        ("ghcr.io/acme/m:v7-0123456789ab", True),
        ("ghcr.io/acme/m@sha256:" + "0" * 64, True),
        ("ghcr.io/acme/m:v7-0123456789ab@sha256:" + "f" * 64, True),
        ("ghcr.io/acme/m:latest", False),
        ("ghcr.io/acme/m", False),
        ("ghcr.io/acme/m:7", False),
        ("ghcr.io/acme/m:v7-0123456789ab-dirty", False),
        ("ghcr.io/acme/m-monitor:monitor-0123456789ab", True),  # components/quality.py monitor_tag
        ("ghcr.io/acme/m-monitor:monitor-latest", False),
        ("ghcr.io/acme/m-monitor:monitor", False),
    ],
)
def test_image_references(ref: str, ok: bool) -> None:
    assert image_is_immutable(ref) is ok
    r = {"type": "aws:sagemaker/model:Model", "name": "m", "inputs": {"primaryContainer": {"image": ref}}}
    assert (check_immutable_images(r, {}) == []) is ok


def test_unknown_values_are_not_violations() -> None:
    r = {"type": "aws:sagemaker/model:Model", "name": "m", "inputs": {"primaryContainer": {"image": "<computed>"}}}
    assert check_immutable_images(r, {}) == []
    iam = {"type": "aws:iam/rolePolicy:RolePolicy", "name": "p", "inputs": {"policy": "<computed>"}}
    assert check_iam_least_privilege(iam, {}) == []


def test_iam_statements() -> None:
    assert statement_violations({"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}) == []
    assert statement_violations({"Effect": "Deny", "Action": "*", "Resource": "*"}) == []
    assert statement_violations({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b/*"})
    conditioned = {
        "Effect": "Allow",
        "Action": "cloudwatch:PutMetricData",
        "Resource": "*",
        "Condition": {"StringLike": {"cloudwatch:namespace": "AWS/SageMaker"}},
    }
    assert statement_violations(conditioned) == []
    # a role's inline policies are checked like a RolePolicy
    role = {
        "type": "aws:iam/role:Role",
        "name": "r",
        "inputs": {
            "inlinePolicies": [
                {"policy": json.dumps({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})}
            ]
        },
    }
    found = check_iam_least_privilege(role, {})
    assert any("every action" in v for v in found) and any("on Resource" in v for v in found)


def test_vertex_requirement_from_config_or_stack_tag() -> None:
    assert vertex_private_required({}, {}) is False
    assert vertex_private_required({"required": True}, {}) is True
    assert vertex_private_required({}, {"mlflow-deploy:vertex-private-endpoint": "true"}) is True
    assert vertex_private_required({}, {"mlflow-deploy:vertex-private-endpoint": "false"}) is False
    assert rule("vertex-private-endpoint").config_schema == {"required": {"type": "boolean", "default": False}}


# --------------------------------------------------------------------------- the per-stack pack config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_pack_config_names_real_policies_and_the_stack_passes_under_it(stack: Stack, stack_name: str) -> None:
    """policy/config/<stack>.json, what the PR workflow passes as --policy-pack-config."""
    config = json.loads((CONFIG_DIR / f"{stack_name}.json").read_text())
    names = {r.name: r for r in RULES}
    levels = {"advisory", "mandatory", "disabled"}
    for key, value in config.items():
        assert key == "all" or key in names, key
        if isinstance(value, str):
            assert value in levels
        else:
            props = {k: v for k, v in value.items() if k != "enforcementLevel"}
            assert set(props) <= set(names[key].config_schema), (key, props)
    policy_config = {k: v for k, v in config.items() if isinstance(v, dict)}
    assert violated(stack(stack_name), policy_config) == {}
