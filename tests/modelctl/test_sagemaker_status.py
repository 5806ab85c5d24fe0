"""endpoint_drift: the live endpoint (DescribeEndpoint) against the stack's expected config, on a
real botocore SageMaker client whose requests and responses botocore's Stubber checks against
the API shapes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber

from modelctl.sagemaker_status import ExpectedEndpoint, ExpectedVariant, check_stack_output, endpoint_drift

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlflow-deploy/fraud-detector"
IMG7 = f"{ECR}@sha256:" + "7" * 64
IMG8 = f"{ECR}@sha256:" + "8" * 64
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

CANARY = ExpectedEndpoint(
    name="fraud-detector",
    config_name="fraud-detector-sm-config-new",
    region="eu-west-1",
    variants=(
        ExpectedVariant("stable", "7", 90.0, IMG7),
        ExpectedVariant("candidate", "8", 10.0, IMG8),
    ),
)
SHADOW = ExpectedEndpoint(
    name="fraud-detector",
    config_name="fraud-detector-sm-config-shadow",
    region="eu-west-1",
    variants=(
        ExpectedVariant("stable", "7", 1.0, IMG7),
        ExpectedVariant("candidate", "8", 0.3, IMG8, shadow=True),
    ),
)


@pytest.fixture
def client() -> Iterator[tuple[Any, Stubber]]:
    c = botocore.session.get_session().create_client(
        "sagemaker", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with Stubber(c) as stub:
        yield c, stub
        stub.assert_no_pending_responses()


def variant(name: str, image: str, weight: float, count: int = 2) -> dict[str, Any]:
    return {
        "VariantName": name,
        "DeployedImages": [{"SpecifiedImage": image, "ResolvedImage": image, "ResolutionTime": NOW}],
        "CurrentWeight": weight,
        "DesiredWeight": weight,
        "CurrentInstanceCount": count,
        "DesiredInstanceCount": count,
    }


def described(config: str, status: str = "InService", **extra: Any) -> dict[str, Any]:
    return {
        "EndpointName": "fraud-detector",
        "EndpointArn": "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/fraud-detector",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
        **extra,
    }


def expect(stub: Stubber, response: dict[str, Any]) -> None:
    stub.add_response("describe_endpoint", response, {"EndpointName": "fraud-detector"})


def test_no_drift_when_the_endpoint_runs_the_expected_config(client: tuple[Any, Stubber]) -> None:
    c, stub = client
    expect(
        stub,
        described(
            "fraud-detector-sm-config-new",
            ProductionVariants=[variant("stable", IMG7, 90.0), variant("candidate", IMG8, 10.0)],
        ),
    )
    assert endpoint_drift(CANARY, c) == []


def test_silent_rollback_is_detected(client: tuple[Any, Stubber]) -> None:
    """SageMaker rolled the canary update back: InService again, on the old config, stable only."""
    c, stub = client
    expect(
        stub,
        described("fraud-detector-sm-config-old", ProductionVariants=[variant("stable", IMG7, 100.0)]),
    )
    problems = endpoint_drift(CANARY, c)
    assert any(
        "runs endpoint config fraud-detector-sm-config-old" in p and "expects fraud-detector-sm-config-new" in p
        for p in problems
    ), problems
    assert any("48997" in p for p in problems)
    assert "production variant candidate (version 8) is not on the endpoint" in problems


def test_a_rollback_in_progress_is_reported(client: tuple[Any, Stubber]) -> None:
    c, stub = client
    expect(
        stub,
        described(
            "fraud-detector-sm-config-old",
            status="RollingBack",
            ProductionVariants=[variant("stable", IMG7, 100.0)],
        ),
    )
    (problem,) = endpoint_drift(CANARY, c)
    assert "RollingBack" in problem and "fraud-detector-sm-config-old" in problem


def test_an_update_in_progress_names_its_target(client: tuple[Any, Stubber]) -> None:
    c, stub = client
    expect(
        stub,
        described(
            "fraud-detector-sm-config-old",
            status="Updating",
            PendingDeploymentSummary={"EndpointConfigName": "fraud-detector-sm-config-new", "StartTime": NOW},
        ),
    )
    (problem,) = endpoint_drift(CANARY, c)
    assert "Updating to fraud-detector-sm-config-new" in problem
    assert "the stack expects" not in problem  # it is heading where the stack wants


def test_weights_changed_outside_pulumi(client: tuple[Any, Stubber]) -> None:
    """Someone ran UpdateEndpointWeightsAndCapacities: same config, other traffic split."""
    c, stub = client
    expect(
        stub,
        described(
            "fraud-detector-sm-config-new",
            ProductionVariants=[variant("stable", IMG7, 100.0), variant("candidate", IMG8, 0.0)],
        ),
    )
    assert endpoint_drift(CANARY, c) == [
        "production variant candidate takes 0.0% of traffic; the stack expects 10.0%",
        "production variant stable takes 100.0% of traffic; the stack expects 90.0%",
    ]


def test_weights_compare_as_shares(client: tuple[Any, Stubber]) -> None:
    c, stub = client
    expect(
        stub,
        described(
            "fraud-detector-sm-config-new",
            ProductionVariants=[variant("stable", IMG7, 0.9), variant("candidate", IMG8, 0.1)],
        ),
    )
    assert endpoint_drift(CANARY, c) == []


def test_a_variant_running_another_image(client: tuple[Any, Stubber]) -> None:
    c, stub = client
    expect(
        stub,
        described(
            "fraud-detector-sm-config-new",
            ProductionVariants=[variant("stable", IMG8, 90.0), variant("candidate", IMG8, 10.0)],
        ),
    )
    (problem,) = endpoint_drift(CANARY, c)
    assert problem.startswith(f"production variant stable runs {IMG8}; the stack expects {IMG7} (version 7)")


def test_shadow_sampling_and_presence(client: tuple[Any, Stubber]) -> None:
    c, stub = client
    expect(
        stub,
        described(
            "fraud-detector-sm-config-shadow",
            ProductionVariants=[variant("stable", IMG7, 1.0)],
            ShadowProductionVariants=[variant("candidate", IMG8, 0.3)],
        ),
    )
    assert endpoint_drift(SHADOW, c) == []
    expect(
        stub,
        described(
            "fraud-detector-sm-config-shadow",
            ProductionVariants=[variant("stable", IMG7, 1.0)],
            ShadowProductionVariants=[variant("candidate", IMG8, 1.0)],
        ),
    )
    assert endpoint_drift(SHADOW, c) == ["shadow variant candidate samples 100.0% of requests; the stack expects 30.0%"]
    expect(stub, described("fraud-detector-sm-config-shadow", ProductionVariants=[variant("stable", IMG7, 1.0)]))
    assert endpoint_drift(SHADOW, c) == ["shadow variant candidate (version 8) is not on the endpoint"]


def test_failed_endpoint_is_reported_with_its_reason(client: tuple[Any, Stubber]) -> None:
    c, stub = client
    expect(
        stub,
        described(
            "fraud-detector-sm-config-new",
            status="Failed",
            FailureReason="The primary container for production variant candidate did not pass the ping health check.",
            ProductionVariants=[variant("stable", IMG7, 90.0), variant("candidate", IMG8, 10.0)],
        ),
    )
    (problem,) = endpoint_drift(CANARY, c)
    assert problem.startswith("endpoint fraud-detector is Failed (The primary container")


def test_missing_endpoint(client: tuple[Any, Stubber]) -> None:
    c, stub = client
    stub.add_client_error(
        "describe_endpoint",
        service_error_code="ValidationException",
        service_message='Could not find endpoint "fraud-detector".',
        http_status_code=400,
        expected_params={"EndpointName": "fraud-detector"},
    )
    assert endpoint_drift(CANARY, c) == ["endpoint fraud-detector does not exist in eu-west-1; the stack expects it"]


def test_other_errors_are_not_swallowed(client: tuple[Any, Stubber]) -> None:
    from botocore.exceptions import ClientError

    c, stub = client
    stub.add_client_error("describe_endpoint", service_error_code="AccessDeniedException", http_status_code=403)
    with pytest.raises(ClientError):
        endpoint_drift(CANARY, c)


def test_expected_endpoint_from_the_stack_output() -> None:
    out = {
        "region": "eu-west-1",
        "endpointName": "fraud-detector",
        "endpointConfigName": "cfg-1",
        "variants": [
            {"name": "stable", "version": "7", "weight": 1, "shadow": False, "image": IMG7},
            {"name": "candidate", "version": "8", "weight": 0.3, "shadow": True, "image": IMG8},
        ],
    }
    exp = ExpectedEndpoint.from_stack_output(out)
    assert exp.variants == (
        ExpectedVariant("stable", "7", 1.0, IMG7),
        ExpectedVariant("candidate", "8", 0.3, IMG8, True),
    )


def test_check_stack_output_without_credentials_checks_nothing() -> None:
    no_creds = boto3.Session(
        botocore_session=_session_without_credentials(),
        region_name="eu-west-1",
    )
    assert check_stack_output({"region": "eu-west-1"}, session=no_creds) is None


def test_check_stack_output_with_credentials_describes_the_endpoint() -> None:
    bc = botocore.session.get_session()
    bc.set_credentials("testing", "testing")
    session = boto3.Session(botocore_session=bc, region_name="eu-west-1")
    stubbed: list[Stubber] = []
    original = session.client

    def client(*args: Any, **kwargs: Any) -> Any:
        c = original(*args, **kwargs)
        stub = Stubber(c)
        stub.add_response(
            "describe_endpoint",
            described("cfg-1", ProductionVariants=[variant("stable", IMG7, 1.0)]),
            {"EndpointName": "fraud-detector"},
        )
        stub.activate()
        stubbed.append(stub)
        return c

    session.client = client  # type: ignore[method-assign]
    out = {
        "region": "eu-west-1",
        "endpointName": "fraud-detector",
        "endpointConfigName": "cfg-2",
        "variants": [{"name": "stable", "version": "7", "weight": 100, "shadow": False, "image": IMG7}],
    }
    problems = check_stack_output(out, session=session)
    assert problems is not None and len(problems) == 1 and "runs endpoint config cfg-1" in problems[0]
    (stub,) = stubbed
    stub.assert_no_pending_responses()


def _session_without_credentials() -> botocore.session.Session:
    bc = botocore.session.get_session()

    class NoCredentials:
        def load_credentials(self) -> None:
            return None

    bc.register_component("credential_provider", NoCredentials())
    return bc
