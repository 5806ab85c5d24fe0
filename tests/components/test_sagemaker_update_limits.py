"""How long a SageMaker endpoint update may take, and what outlives a silent rollback.

* The AWS provider (terraform-provider-aws, bridged by pulumi-aws) waits at most 60 minutes for
  the endpoint to be ``InService`` after an UpdateEndpoint, and accepts
  ``maximum_execution_timeout_in_seconds`` of 600-14400 only (the API allows 28800). An update the
  settings plan to last longer cannot finish inside one ``pulumi up``: the settings refuse it,
  naming the key, and the deploy workflow's job timeout and AWS session fit the longest one they
  allow.
* After SageMaker rolls an update back, the endpoint runs the retained old EndpointConfiguration,
  whose variants name the old Models: those Models are retained too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from components.sagemaker_settings import PROVIDER_ENDPOINT_WAIT_SECONDS, longest_update_seconds
from components.settings import parse_settings
from modelctl.render import run_program
from modelctl.sample import SampleRegistry
from tests.components.sagemaker_cases import config, errors_of, sm_config

ROOT = Path(__file__).resolve().parents[2]
MODEL = "aws:sagemaker/model:Model"
CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"



# --------------------------------------------------------------------------- update length


def test_the_provider_wait_is_the_one_terraform_provider_aws_hard_codes() -> None:
    # internal/service/sagemaker/endpoint.go, waitEndpointInService: `timeout = 60 * time.Minute`
    assert PROVIDER_ENDPOINT_WAIT_SECONDS == 60 * 60


@pytest.mark.parametrize("seconds", [3601, 14400, 28800])
def test_a_maximum_execution_timeout_past_the_providers_wait_is_refused(seconds: int) -> None:
    errs = errors_of(config(deployment={"maximumExecutionTimeoutSeconds": seconds}))
    message = errs["mlflow-deploy:sagemaker.deployment.maximumExecutionTimeoutSeconds"]
    assert "3600" in message and "60 minutes" in message


def test_a_maximum_execution_timeout_inside_the_wait_is_accepted() -> None:
    s = parse_settings(config(deployment={"maximumExecutionTimeoutSeconds": 3600})).sagemaker
    assert s is not None and s.deployment.maximum_execution_timeout_seconds == 3600


@pytest.mark.parametrize(
    ("deployment", "startup", "planned"),
    [
        # one baking period after the shift
        ({"type": "ALL_AT_ONCE", "waitIntervalSeconds": 300}, 600, 600 + 300),
        # canary: bake the canary, shift the rest, bake again; then the termination wait
        (
            {
                "type": "CANARY",
                "canarySize": {"type": "CAPACITY_PERCENT", "value": 10},
                "waitIntervalSeconds": 600,
                "terminationWaitSeconds": 300,
            },
            600,
            600 + 2 * 600 + 300,
        ),
        # linear 25%: four steps, each baked
        (
            {"type": "LINEAR", "linearStepSize": {"type": "CAPACITY_PERCENT", "value": 25}, "waitIntervalSeconds": 300},
            300,
            300 + 4 * 300,
        ),
    ],
)
def test_the_longest_update_is_startup_plus_every_baking_period(
    deployment: dict[str, Any], startup: int, planned: int
) -> None:
    s = parse_settings(config(deployment=deployment, containerStartupTimeoutSeconds=startup, instanceCount=4)).sagemaker
    assert s is not None
    assert longest_update_seconds(s) == planned


def test_a_planned_update_longer_than_the_providers_wait_is_refused_naming_the_key() -> None:
    # ten linear steps of ten minutes: 100 minutes of baking alone
    deployment = {
        "type": "LINEAR",
        "linearStepSize": {"type": "CAPACITY_PERCENT", "value": 10},
        "waitIntervalSeconds": 600,
    }
    errs = errors_of(config(deployment=deployment))
    message = errs["mlflow-deploy:sagemaker.deployment.waitIntervalSeconds"]
    assert "60 minutes" in message and "6600" in message  # 600 startup + 10 x 600


def test_the_maximum_execution_timeout_bounds_the_longest_update() -> None:
    s = parse_settings(
        config(deployment={"waitIntervalSeconds": 300, "maximumExecutionTimeoutSeconds": 1200})
    ).sagemaker
    assert s is not None and longest_update_seconds(s) == 1200


def test_the_deploy_workflow_outlasts_the_longest_update_the_settings_allow() -> None:
    """The job timeout and the AWS session (OIDC) must cover building the images plus the longest
    endpoint update; the session must not end before the job does."""
    workflow = YAML(typ="safe").load((ROOT / ".github/workflows/deploy.yml").read_text())
    job = workflow["jobs"]["up"]
    aws = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials"))
    session = int(aws["with"]["role-duration-seconds"])
    timeout = int(job["timeout-minutes"]) * 60
    assert timeout >= PROVIDER_ENDPOINT_WAIT_SECONDS + 30 * 60, "room for setup, image builds and the other targets"
    assert session >= timeout, "credentials outlive the job"
    assert session <= 12 * 3600  # an IAM role's MaxSessionDuration is at most 12 hours


# --------------------------------------------------------------------------- silent rollback




@pytest.mark.parametrize("retain", [True, False])
def test_models_are_retained_with_the_endpoint_configs_they_serve(
    retain: bool, registry: SampleRegistry, requests: list[Any]
) -> None:
    run_program(
        sm_config(
            registry,
            {"region": "eu-west-1", "retainReplacedConfigs": retain},
            candidate={"version": "2", "strategy": "canary", "percent": 10},
        ),
        stack="test",
    )
    by_type: dict[str, list[Any]] = {}
    for r in requests:
        by_type.setdefault(r.type, []).append(r)
    assert len(by_type[MODEL]) == 2 and len(by_type[CONFIG]) == 1
    assert [bool(r.retainOnDelete) for r in by_type[CONFIG]] == [retain]
    assert [bool(r.retainOnDelete) for r in by_type[MODEL]] == [retain, retain]
