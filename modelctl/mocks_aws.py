"""Plausible outputs for AWS resources and invokes under the mock runtime (``modelctl render``).

The real provider computes ARNs, repository URLs and auto-names; the mocks only echo inputs. What
the SageMaker target reads back (a role ARN for a Model, a Model's name for an EndpointConfig, a
repository URL to push to, the account id for IAM ARNs) is made up here in the shapes AWS uses,
so that rendered inputs look like what the engine would send and validate against the AWS API
shapes. Imported by ``modelctl/render.py``, which registers nothing else for AWS.
"""

from __future__ import annotations

import hashlib
from typing import Any

from components.sagemaker import partition_of
from modelctl.render import MOCK_CALLS, MOCK_OUTPUTS

ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"
# The region of the AWS provider declared last (programs here declare one per target).
_state = {"region": DEFAULT_REGION}


def autoname(name: str) -> str:
    """Pulumi's auto-naming: the logical name plus a random suffix (here: a stable hash)."""
    return f"{name}-{hashlib.sha256(name.encode()).hexdigest()[:7]}"




def _arn(service: str, resource: str, region: str | None = None) -> str:
    reg = _state["region"] if region is None else region
    return f"arn:{partition_of(_state['region'])}:{service}:{reg}:{ACCOUNT_ID}:{resource}"


def _provider(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    _state["region"] = str(inputs.get("region") or DEFAULT_REGION)
    return {}


def _ecr_repository(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    repo = inputs.get("name") or autoname(name)
    region = _state["region"]
    suffix = ".cn" if region.startswith("cn-") else ""
    return {
        "name": repo,
        "arn": _arn("ecr", f"repository/{repo}"),
        "registryId": ACCOUNT_ID,
        "repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com{suffix}/{repo}",
    }


def _iam_role(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    role = inputs.get("name") or autoname(name)
    path = inputs.get("path") or "/"
    return {
        "name": role,
        "arn": f"arn:{partition_of(_state['region'])}:iam::{ACCOUNT_ID}:role{path}{role}",
        "uniqueId": "AROA" + hashlib.sha256(role.encode()).hexdigest()[:17].upper(),
    }


def _named(service: str, kind: str) -> Any:
    def fn(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        physical = inputs.get("name") or autoname(name)
        return {"name": physical, "arn": _arn(service, f"{kind}/{physical.lower()}")}

    return fn


def _log_group(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    group = inputs.get("name") or autoname(name)
    return {"name": group, "arn": _arn("logs", f"log-group:{group}")}


def _alarm(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    alarm = inputs.get("name") or autoname(name)
    return {"name": alarm, "arn": _arn("cloudwatch", f"alarm:{alarm}")}


def _dashboard(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    board = inputs.get("dashboardName") or autoname(name)
    return {"dashboardArn": f"arn:{partition_of(_state['region'])}:cloudwatch::{ACCOUNT_ID}:dashboard/{board}"}


def _scaling_target(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"arn": _arn("application-autoscaling", f"scalable-target/{hashlib.sha256(name.encode()).hexdigest()[:24]}")}


def _caller_identity(args: dict[str, Any]) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT_ID,
        "arn": f"arn:{partition_of(_state['region'])}:iam::{ACCOUNT_ID}:user/mock",
        "userId": "AIDAMOCKUSER",
        "id": ACCOUNT_ID,
    }


def _ecr_token(args: dict[str, Any]) -> dict[str, Any]:
    registry = args.get("registryId") or ACCOUNT_ID
    region = args.get("region") or _state["region"]
    return {
        "id": region,
        "userName": "AWS",
        "password": "mock-ecr-password",
        "authorizationToken": "QVdTOm1vY2stZWNyLXBhc3N3b3Jk",
        "proxyEndpoint": f"https://{registry}.dkr.ecr.{region}.amazonaws.com",
        "expiresAt": "2099-01-01T00:00:00Z",
        "registryId": registry,
    }


MOCK_OUTPUTS.update(
    {
        "pulumi:providers:aws": _provider,
        "aws:ecr/repository:Repository": _ecr_repository,
        "aws:iam/role:Role": _iam_role,
        "aws:sagemaker/model:Model": _named("sagemaker", "model"),
        "aws:sagemaker/endpointConfiguration:EndpointConfiguration": _named("sagemaker", "endpoint-config"),
        "aws:sagemaker/endpoint:Endpoint": _named("sagemaker", "endpoint"),
        "aws:cloudwatch/logGroup:LogGroup": _log_group,
        "aws:cloudwatch/metricAlarm:MetricAlarm": _alarm,
        "aws:cloudwatch/dashboard:Dashboard": _dashboard,
        "aws:appautoscaling/target:Target": _scaling_target,
    }
)
MOCK_CALLS.update(
    {
        "aws:index/getCallerIdentity:getCallerIdentity": _caller_identity,
        "aws:ecr/getAuthorizationToken:getAuthorizationToken": _ecr_token,
    }
)
