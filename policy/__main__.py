"""mlflow-deploy's CrossGuard policy pack: ``pulumi preview --policy-pack policy``.

Thin glue: each rule of model_serving_policies.py (pure functions over ``{type, name, inputs}``,
unit-tested on the project's rendered stacks) becomes a ResourceValidationPolicy. Never imported
by tests: it runs inside the Pulumi policy analyzer.
"""

from collections.abc import Callable
from typing import Any

from model_serving_policies import RULES, Rule, vertex_private_required
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

LEVELS = {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY}


def _validator(rule: Rule) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        config: dict[str, Any] = dict(args.get_config() or {})
        if rule.name == "vertex-private-endpoint":
            config["required"] = vertex_private_required(config, args.stack_tags)
        resource = {"type": args.resource_type, "name": args.name, "inputs": args.props}
        for message in rule.check(resource, config):
            report_violation(message, None)

    return validate


PolicyPack(
    name="mlflow-deploy",
    policies=[
        ResourceValidationPolicy(
            name=r.name,
            description=r.description,
            enforcement_level=LEVELS[r.level],
            validate=_validator(r),
            config_schema=PolicyConfigSchema(properties=r.config_schema) if r.config_schema else None,
        )
        for r in RULES
    ],
)
