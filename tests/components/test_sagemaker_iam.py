"""The SageMaker execution role's policies, parsed and audited: no wildcard action, no ``*``
resource where the action can be scoped (checked with parliament's IAM action database), and
each permission limited to what the endpoint needs."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from parliament import analyze_policy_string

from components.sagemaker import assume_role_policy, execution_policy
from components.sagemaker_settings import SageMakerDataCaptureSettings
from modelctl.render import Rendered, run_program
from modelctl.sample import SampleRegistry
from tests.components.sagemaker_cases import full_config, sm_config

ACCOUNT = "123456789012"
REPO_ARN = f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/mlflow-deploy/fraud-detector"
KMS = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def policy(data_capture: SageMakerDataCaptureSettings | None = None, repos: list[str] | None = None) -> dict[str, Any]:
    return execution_policy(
        partition="aws",
        region="eu-west-1",
        account_id=ACCOUNT,
        endpoint="fraud-detector",
        repository_arns=repos or [REPO_ARN],
        data_capture=data_capture,
    )


def as_list(v: str | list[str]) -> list[str]:
    return [v] if isinstance(v, str) else list(v)


def audit(doc: dict[str, Any]) -> list[str]:
    """parliament's findings: RESOURCE_STAR (a '*' resource for an action that takes resources),
    RESOURCE_MISMATCH (an ARN of the wrong type for an action), UNKNOWN_ACTION, MALFORMED ..."""
    return [f"{f.issue}: {f.detail}" for f in analyze_policy_string(json.dumps(doc)).findings]


NO_RESOURCE_TYPES = frozenset({"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"})
"""Actions IAM defines no resource type for (the Service Authorization Reference); parliament's
database agrees (test_the_only_star_resources_are_for_actions_that_take_none)."""
SERVICE_WIDE = re.compile(r"^arn:[^:]+:[^:]+:[^:]*:[^:]*:\*$|^arn:[^:]+:s3:::\*$")


def wildcard_problems(doc: dict[str, Any]) -> list[str]:
    out = []
    for s in doc["Statement"]:
        assert s["Effect"] == "Allow"
        assert "NotAction" not in s and "NotResource" not in s
        actions = as_list(s["Action"])
        out += [f"{s['Sid']}: wildcard action {a}" for a in actions if "*" in a]
        for resource in as_list(s["Resource"]):
            if (resource == "*" or SERVICE_WIDE.match(resource)) and not set(actions) <= NO_RESOURCE_TYPES:
                out.append(f"{s['Sid']}: resource {resource}")
    return out


CAPTURE = SageMakerDataCaptureSettings(destination_s3_uri="s3://acme-ml-capture/fraud-detector/")
CAPTURE_KMS = SageMakerDataCaptureSettings(destination_s3_uri="s3://acme-ml-capture/fraud", kms_key_arn=KMS)


@pytest.mark.parametrize("capture", [None, CAPTURE, CAPTURE_KMS], ids=["no-capture", "capture", "capture-kms"])
def test_execution_policy_passes_the_audit(capture: SageMakerDataCaptureSettings | None) -> None:
    doc = policy(capture)
    assert audit(doc) == []
    assert wildcard_problems(doc) == []


def test_the_audit_catches_a_star_where_a_resource_fits() -> None:
    doc = policy()
    broken = copy.deepcopy(doc)
    (pull,) = [s for s in broken["Statement"] if s["Sid"] == "EcrPullModelImages"]
    pull["Resource"] = "*"
    assert any(f.startswith("RESOURCE_STAR") for f in audit(broken))
    assert wildcard_problems(broken) == ["EcrPullModelImages: resource *"]
    broken = copy.deepcopy(doc)
    broken["Statement"][1]["Action"] = ["ecr:*"]
    assert wildcard_problems(broken) == ["EcrPullModelImages: wildcard action ecr:*"]


def test_the_only_star_resources_are_for_actions_that_take_none() -> None:
    stars = {a for s in policy(CAPTURE_KMS)["Statement"] if s["Resource"] == "*" for a in as_list(s["Action"])}
    assert stars == {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
    # and parliament agrees that neither can be scoped: a policy of just those is clean
    only = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": sorted(stars), "Resource": "*"}]}
    assert audit(only) == []


def test_metrics_are_limited_to_sagemaker_namespaces() -> None:
    (metrics,) = [s for s in policy()["Statement"] if "cloudwatch:PutMetricData" in s["Action"]]
    namespaces = metrics["Condition"]["StringLike"]["cloudwatch:namespace"]
    assert namespaces and all(n.startswith(("/aws/sagemaker/", "AWS/SageMaker")) for n in namespaces)


def test_ecr_pull_only_from_the_model_repositories() -> None:
    other = "arn:aws:ecr:eu-west-1:210987654321:repository/shared/fraud"
    (pull,) = [s for s in policy(repos=[REPO_ARN, other, REPO_ARN])["Statement"] if s["Sid"] == "EcrPullModelImages"]
    assert sorted(pull["Action"]) == [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    ]
    assert pull["Resource"] == sorted([REPO_ARN, other])


def test_logs_only_in_the_endpoints_log_group() -> None:
    (logs,) = [s for s in policy()["Statement"] if s["Sid"] == "EndpointLogs"]
    group = f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/fraud-detector"
    assert logs["Resource"] == [group, f"{group}:log-stream:*"]
    assert all(a.startswith("logs:") for a in logs["Action"])


def test_s3_write_only_under_the_capture_prefix() -> None:
    assert not [s for s in policy()["Statement"] if any(a.startswith("s3:") for a in as_list(s["Action"]))]
    s3 = [s for s in policy(CAPTURE)["Statement"] if any(a.startswith("s3:") for a in as_list(s["Action"]))]
    assert [(s["Action"], s["Resource"]) for s in s3] == [
        (["s3:PutObject"], ["arn:aws:s3:::acme-ml-capture/fraud-detector/*"])
    ]
    # a bucket-wide capture (no prefix) is the bucket's objects, never other buckets
    whole = SageMakerDataCaptureSettings(destination_s3_uri="s3://acme-ml-capture")
    (s,) = [s for s in policy(whole)["Statement"] if s["Sid"] == "DataCaptureWrite"]
    assert s["Resource"] == ["arn:aws:s3:::acme-ml-capture/*"]
    # KMS only when capture is encrypted, and only that key
    assert not [s for s in policy(CAPTURE)["Statement"] if s["Sid"] == "DataCaptureEncrypt"]
    (kms,) = [s for s in policy(CAPTURE_KMS)["Statement"] if s["Sid"] == "DataCaptureEncrypt"]
    assert kms["Resource"] == [KMS]


def test_trust_policy_is_sagemaker_for_this_account_only() -> None:
    doc = assume_role_policy(ACCOUNT)
    (s,) = doc["Statement"]
    assert s["Effect"] == "Allow"
    assert s["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert s["Action"] == "sts:AssumeRole"
    assert s["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


# --------------------------------------------------------------------------- as declared


@pytest.fixture(scope="module")
def declared(registry: SampleRegistry) -> dict[str, Rendered]:
    return {
        "minimal": run_program(sm_config(registry), stack="test"),
        "full": run_program(full_config(registry), stack="test"),
    }


@pytest.mark.parametrize("case", ["minimal", "full"])
def test_declared_policies_parse_and_pass_the_audit(declared: dict[str, Rendered], case: str) -> None:
    out = declared[case]
    (role_policy,) = out.of_type("aws:iam/rolePolicy:RolePolicy")
    doc = json.loads(role_policy.inputs["policy"])
    assert audit(doc) == []
    assert wildcard_problems(doc) == []
    (repo,) = out.of_type("aws:ecr/repository:Repository")
    (pull,) = [s for s in doc["Statement"] if s["Sid"] == "EcrPullModelImages"]
    assert pull["Resource"] == [f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/{repo.inputs['name']}"]
    (role,) = out.of_type("aws:iam/role:Role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust == assume_role_policy(ACCOUNT)
    capture = [s for s in doc["Statement"] if s["Sid"] == "DataCaptureWrite"]
    if case == "full":
        assert capture[0]["Resource"] == ["arn:aws:s3:::acme-ml-capture/fraud-detector/*"]
    else:
        assert capture == []
