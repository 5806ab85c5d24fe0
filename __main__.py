"""mlflow-deploy: serve an MLflow registry model version on the targets the stack config names.

Read settings -> resolve the model versions -> plan traffic -> declare targets -> export.
Config errors (SettingsError, RegistryError, RolloutError) are raised before any resource.
"""

import pulumi

from components import targets
from components.registry import resolve_model
from components.rollout import plan_traffic
from components.settings import load_settings

settings = load_settings()
config = pulumi.Config("mlflow-deploy")
targets.apply_secrets(config)

stable = resolve_model(
    settings.model.name,
    settings.model.version,
    settings.model.alias,
    tracking_uri=settings.mlflow.tracking_uri,
    registry_uri=settings.mlflow.registry_uri,
)
candidate = settings.candidate
models = {stable.version: stable}
if candidate is not None:
    models[candidate.version] = resolve_model(
        settings.model.name,
        candidate.version,
        tracking_uri=settings.mlflow.tracking_uri,
        registry_uri=settings.mlflow.registry_uri,
    )
plan = plan_traffic(stable.version, candidate)

exports = targets.declare(settings, plan, models, config)

pulumi.export("model", {"name": stable.name, "stable": stable.version, "alias": stable.alias})
pulumi.export("liveVersions", list(plan.versions))
pulumi.export("traffic", plan.weights)
mirror = plan.mirror
pulumi.export("mirror", None if mirror is None else {"version": mirror.version, "percent": mirror.percent})
for key, value in exports.items():
    pulumi.export(key, value)
