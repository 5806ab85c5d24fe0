"""What the SageMaker modules share: the variant roles, the CloudWatch namespaces and ``Variant``.

A leaf module (no imports from the other ``sagemaker*`` modules), so ``sagemaker.py`` (the
component), ``sagemaker_monitoring.py`` (alarms, dashboard) and ``sagemaker_quality.py`` all
import it without a circle.
"""

from __future__ import annotations

from dataclasses import dataclass

STABLE_VARIANT = "stable"
CANDIDATE_VARIANT = "candidate"
METRICS_NAMESPACE = "AWS/SageMaker"
"""Invocations, errors and latencies, per EndpointName and VariantName."""
INSTANCE_METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"
"""CPU, memory and disk utilization of a variant's instances."""


@dataclass(frozen=True)
class Variant:
    """One variant of the endpoint config, as the TrafficPlan and the settings decide."""

    name: str
    version: str
    role: str
    weight: float
    """Production variants: share of live traffic (the plan's percent). A shadow variant: its
    weight relative to the production variant's (1.0) is the share of requests mirrored."""
    instance_count: int
    shadow: bool = False
    autoscaled: bool = False
