"""Is the SageMaker endpoint running what the stack says it runs?

When an endpoint update fails its health checks or trips a rollback alarm, SageMaker rolls the
endpoint back to the previous EndpointConfig by itself and returns it to ``InService``. The AWS
provider only waits for ``InService``, so ``pulumi up`` reports success and the Pulumi state
records the new config as applied (terraform-provider-aws issue 48997). ``endpoint_drift``
compares ``DescribeEndpoint`` with the stack's ``sagemaker`` output and says what differs.

``modelctl status`` calls :func:`check_stack_output` with the stack output when AWS credentials
are present::

    problems = check_stack_output(outputs["sagemaker"])   # None: no credentials, not checked
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

IN_PROGRESS = ("Creating", "Updating", "SystemUpdating")
BROKEN = ("Failed", "UpdateRollbackFailed", "OutOfService", "Deleting")
WEIGHT_TOLERANCE = 0.005
"""Traffic shares within half a percentage point are equal."""


@dataclass(frozen=True)
class ExpectedVariant:
    name: str
    version: str
    weight: float
    """Production: the weight in the endpoint config. Shadow: relative to the production variant's."""
    image: str | None = None
    """The image URI the variant's Model names (DescribeEndpoint's ``SpecifiedImage``)."""
    shadow: bool = False


@dataclass(frozen=True)
class ExpectedEndpoint:
    """What the stack declared, as exported in the stack output ``sagemaker``."""

    name: str
    config_name: str
    region: str
    variants: tuple[ExpectedVariant, ...]

    @classmethod
    def from_stack_output(cls, out: Mapping[str, Any]) -> ExpectedEndpoint:
        """From ``pulumi stack output sagemaker --json`` (see components/sagemaker.py)."""
        return cls(
            name=str(out["endpointName"]),
            config_name=str(out["endpointConfigName"]),
            region=str(out["region"]),
            variants=tuple(
                ExpectedVariant(
                    name=str(v["name"]),
                    version=str(v["version"]),
                    weight=float(v["weight"]),
                    image=v.get("image"),
                    shadow=bool(v.get("shadow", False)),
                )
                for v in out.get("variants") or []
            ),
        )


def endpoint_drift(expected: ExpectedEndpoint, sm_client: Any) -> list[str]:
    """What differs between the live endpoint and ``expected``; empty when they agree.

    ``sm_client`` is a boto3/botocore SageMaker client for the endpoint's region. Only
    ``DescribeEndpoint`` is called.
    """
    from botocore.exceptions import ClientError

    try:
        desc = sm_client.describe_endpoint(EndpointName=expected.name)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        if err.get("Code") == "ValidationException" and "Could not find" in str(err.get("Message", "")):
            return [f"endpoint {expected.name} does not exist in {expected.region}; the stack expects it"]
        raise

    status = desc["EndpointStatus"]
    live_config = desc.get("EndpointConfigName")
    reason = f" ({desc['FailureReason']})" if desc.get("FailureReason") else ""
    if status in IN_PROGRESS:
        pending = (desc.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")
        target = f" to {pending}" if pending else ""
        note = "" if pending in (None, expected.config_name) else f"; the stack expects {expected.config_name}"
        return [f"endpoint {expected.name} is {status}{target}: a deployment is in progress{note}"]
    if status == "RollingBack":
        return [
            f"endpoint {expected.name} is RollingBack{reason}: SageMaker is undoing an update "
            f"(a rollback alarm fired or the new fleet failed); it will stay on {live_config}"
        ]

    problems: list[str] = []
    if status in BROKEN:
        problems.append(f"endpoint {expected.name} is {status}{reason}")
    if live_config != expected.config_name:
        problems.append(
            f"endpoint {expected.name} runs endpoint config {live_config}, the stack expects "
            f"{expected.config_name}: SageMaker rolled the last update back (or it was changed outside "
            "Pulumi) and the Pulumi state is stale (terraform-provider-aws#48997). Find why in the "
            "endpoint's events and logs, then `pulumi refresh` and `pulumi up` again"
        )
    problems += _variant_drift(
        [v for v in expected.variants if not v.shadow], desc.get("ProductionVariants") or [], "production"
    )
    problems += _variant_drift(
        [v for v in expected.variants if v.shadow], desc.get("ShadowProductionVariants") or [], "shadow"
    )
    problems += _weight_drift(expected, desc)
    return problems


def _variant_drift(expected: Sequence[ExpectedVariant], live: Sequence[Mapping[str, Any]], kind: str) -> list[str]:
    out: list[str] = []
    want = {v.name: v for v in expected}
    have = {str(v["VariantName"]): v for v in live}
    for name in sorted(set(want) - set(have)):
        out.append(f"{kind} variant {name} (version {want[name].version}) is not on the endpoint")
    for name in sorted(set(have) - set(want)):
        out.append(f"{kind} variant {name} is on the endpoint but not in the stack")
    for name in sorted(set(want) & set(have)):
        image = want[name].image
        specified = [i.get("SpecifiedImage") for i in have[name].get("DeployedImages") or []]
        if image and specified and image not in specified:
            out.append(
                f"{kind} variant {name} runs {', '.join(str(s) for s in specified)}; the stack expects "
                f"{image} (version {want[name].version})"
            )
    return out


def _weight_drift(expected: ExpectedEndpoint, desc: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    prod = {v.name: v.weight for v in expected.variants if not v.shadow}
    live = {
        str(v["VariantName"]): float(v["CurrentWeight"])
        for v in desc.get("ProductionVariants") or []
        if "CurrentWeight" in v
    }
    if set(prod) == set(live) and sum(prod.values()) > 0 and sum(live.values()) > 0:
        want_total, have_total = sum(prod.values()), sum(live.values())
        for name in sorted(prod):
            want, have = prod[name] / want_total, live[name] / have_total
            if abs(want - have) > WEIGHT_TOLERANCE:
                out.append(f"production variant {name} takes {have:.1%} of traffic; the stack expects {want:.1%}")
    shadows = [v for v in expected.variants if v.shadow]
    live_shadow = {
        str(v["VariantName"]): float(v["CurrentWeight"])
        for v in desc.get("ShadowProductionVariants") or []
        if "CurrentWeight" in v
    }
    if shadows and len(prod) == 1 and len(live) == 1:
        want_base, have_base = next(iter(prod.values())), next(iter(live.values()))
        for s in shadows:
            if s.name in live_shadow and want_base > 0 and have_base > 0:
                want, have = s.weight / want_base, live_shadow[s.name] / have_base
                if abs(want - have) > WEIGHT_TOLERANCE:
                    out.append(f"shadow variant {s.name} samples {have:.1%} of requests; the stack expects {want:.1%}")
    return out


def check_stack_output(sagemaker_output: Mapping[str, Any], session: Any = None) -> list[str] | None:
    """``endpoint_drift`` for a stack's ``sagemaker`` output, with the default AWS credentials
    (or ``session``, a boto3 Session). None when no credentials are available: nothing checked."""
    import boto3

    sess = session or boto3.Session()
    if sess.get_credentials() is None:
        return None
    expected = ExpectedEndpoint.from_stack_output(sagemaker_output)
    return endpoint_drift(expected, sess.client("sagemaker", region_name=expected.region))
