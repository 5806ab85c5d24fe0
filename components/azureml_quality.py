"""AzureMlModelQuality: drift and shadow agreement for an Azure ML endpoint (``monitoring.drift``).

What it declares, children of the component (the deployments' ``dataCollector`` is set by
:func:`data_collector` on each OnlineDeployment in components/azureml.py):

* a **user-assigned managed identity** for the monitor job, with exactly:
  - ``Storage Blob Data Reader`` on the data collection's container (not the account), and
  - ``Monitoring Metrics Publisher`` on the online endpoint (the custom metrics' resource),
  - ``AcrPull`` on ``azureml.monitor.registryId`` when the monitor image is in an ACR.
  Role assignments name role definitions, so no wildcard action is granted anywhere.
* a **Container Apps job** (schedule trigger, cron from ``monitoring.drift.interval``) running the
  monitor image with ``python -m monitor run-once`` in a Container Apps environment
  (``azureml.monitor.environmentId`` or one the stack declares);
* **Azure Monitor metric alerts** on the custom metrics (namespace ``mlflow-deploy``) of the
  endpoint: drift share per live deployment above ``monitoring.thresholds.driftShare``, and for a
  shadow deployment agreement below ``shadowAgreement`` *and* at least ``shadowMinPairs`` pairs
  (two criteria of one alert: Azure fires when all hold).

Why a Container Apps job rather than an Azure ML schedule: an Azure ML schedule starts an Azure ML
command job, which runs as the workspace's identity or the submitting user's (the workspace
identity holds Contributor-level rights on the workspace's storage and registry), needs an
Environment asset around the image, and a compute target. A Container Apps job runs the monitor
image unchanged under an identity that holds nothing but the roles above, takes a standard cron
schedule, and has a per-run timeout. Logic Apps could only start something else that runs the image.

Changing the data collection of a live deployment is an in-place update: Azure ML documents
enabling collection "for new or existing deployments" (how-to-collect-production-data), and
azure-native sends ``properties`` changes as an update (modelctl/replacements.py,
``OnlineDeployment``). The collector depends only on the settings, never on the rollout, so a
canary or rollback never touches it.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.azureml_alerts import metric_alert, window_size
from components.azureml_settings import AzureMlSettings
from components.names import base_name
from components.rollout import TrafficPlan, monitor_version_args
from components.settings import AlertThresholds, DriftSettings
from components.validation import duration_seconds

COMPONENT_TYPE = "mlflow-deploy:azureml:ModelQuality"
METRIC_NAMESPACE = "mlflow-deploy"
"""monitor/publish.py AZURE_NAMESPACE: the custom metrics' namespace."""
COLLECTOR_PREFIX = "modelDataCollector"
"""Where data collection writes in the workspace's blob store (how-to-collect-production-data)."""
# Built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles)
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
JOB_TIMEOUT_SECONDS = 3600
_ROLE_NAMESPACE = uuid.UUID("5b0c6a8e-3f0d-4c1e-9a59-2f3c9f1d6a10")


def data_collector(drift: DriftSettings) -> dict[str, Any]:
    """The deployment's ``dataCollector``: payload logging (the reserved ``request`` and ``response``
    collections) at ``monitoring.drift.sample``, rolled hourly (``yyyy/MM/dd/HH``, what the monitor
    reads). Snake_case, as ``ml.DataCollectorArgs`` takes it."""
    collection = {"data_collection_mode": "Enabled", "sampling_rate": drift.sample}
    return {"collections": {"request": dict(collection), "response": dict(collection)}, "rolling_rate": "Hour"}


def cron_expression(interval: str) -> str:
    """``monitoring.drift.interval`` as a 5-field cron: ``*/10 * * * *``, ``0 */2 * * *``.
    Intervals that do not divide an hour (or a day) run at the next step that does."""
    minutes = max(1, int(duration_seconds(interval) // 60))
    if minutes < 60:
        step = next(m for m in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60) if m >= minutes)
        return {1: "* * * * *", 60: "0 * * * *"}.get(step, f"*/{step} * * * *")
    hours = -(-minutes // 60)
    step = next(h for h in (1, 2, 3, 4, 6, 8, 12, 24) if h >= hours)
    return {1: "0 * * * *", 24: "0 0 * * *"}.get(step, f"0 */{step} * * *")


def role_assignment_name(*parts: str) -> str:
    """Role assignment names are GUIDs: a deterministic one per (scope, role, principal key)."""
    return str(uuid.uuid5(_ROLE_NAMESPACE, "|".join(parts)))


def role_definition_id(subscription: str, role: str) -> str:
    return f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role}"


def subscription_of(arm_id: str) -> str:
    """The subscription of an ARM resource ID (``/subscriptions/<id>/...``)."""
    parts = arm_id.split("/")
    if len(parts) < 3 or parts[0] != "" or parts[1].lower() != "subscriptions" or not parts[2]:
        raise ValueError(f"not an ARM resource ID under a subscription: {arm_id!r}")
    return parts[2]


def role_definition_for_scope(scope: str, role: str) -> str:
    """A built-in role's definition ID under the subscription of the assignment's *scope*.

    The role assignment PUT takes the definition ID under the scope's subscription
    (Azure/azure-rest-api-specs authorization stable/2022-04-01 examples/
    RoleAssignments_CreateForResource.json: scope and roleDefinitionId name the same subscription).
    Given another subscription's ID, Azure stores and reads back the scope's
    (Azure/azure-rest-api-specs#10939, hashicorp/terraform-provider-azurerm#8558: perpetual diff), so
    an ACR in another subscription than the storage account needs its own subscription here."""
    return role_definition_id(subscription_of(scope), role)


def _role_definition_in(role: str, scope: str) -> str:
    return role_definition_for_scope(scope, role)


def container_scope(cfg: AzureMlSettings) -> str:
    assert cfg.monitor is not None
    return f"{cfg.monitor.storage_account_id}/blobServices/default/containers/{cfg.monitor.container}"


def source_uri(cfg: AzureMlSettings, endpoint: str) -> str:
    assert cfg.monitor is not None
    m = cfg.monitor
    return f"https://{m.storage_account}.blob.core.windows.net/{m.container}/{COLLECTOR_PREFIX}/{endpoint}"


def run_once_arguments(
    *,
    model: str,
    endpoint: str,
    endpoint_id: str,
    cfg: AzureMlSettings,
    drift: DriftSettings,
    deployments: Mapping[str, str],
    plan: TrafficPlan,
) -> list[str]:
    """``python -m monitor run-once`` for the endpoint; ``deployments`` maps version -> deployment."""
    args = [
        "python", "-m", "monitor", "run-once",
        "--model", model,
        "--source", source_uri(cfg, endpoint),
        "--format", "azureml",
        "--versions", ",".join(f"{d}={v}" for v, d in sorted(deployments.items())),
        "--reference", drift.reference or "",
        "--since", drift.window,
        "--publish", f"azuremonitor:{endpoint_id}?region={cfg.location}",
        "--task", drift.task,
        "--shadow-tolerance", str(drift.shadow_tolerance),
        "--shadow-window", drift.shadow_window,
        "--max-reference-rows", str(drift.max_reference_rows),
    ]  # fmt: skip
    return args + monitor_version_args(plan)


def _window(drift: DriftSettings) -> str:
    """An alert window of at least the evaluation interval (Azure's allowed sizes)."""
    minutes = max(1, int(duration_seconds(drift.interval) // 60))
    return window_size(f"{minutes}m")


def alert_specs(
    model: str, endpoint: str, plan: TrafficPlan, thresholds: AlertThresholds, drift: DriftSettings
) -> dict[str, dict[str, Any]]:
    """Metric alerts by short name: ``drift-v<version>`` per live version, ``shadow-agreement`` with
    a shadow candidate. Criteria in ``ml.MetricCriteriaArgs`` shape (snake_case).
    ``skip_metric_validation``: the custom metric exists only after the job's first publish."""

    def crit(name: str, metric: str, op: str, threshold: float, agg: str, dims: dict[str, str]) -> dict[str, Any]:
        return {
            "criterion_type": "StaticThresholdCriterion",
            "name": name,
            "metric_namespace": METRIC_NAMESPACE,
            "metric_name": metric,
            "operator": op,
            "threshold": threshold,
            "time_aggregation": agg,
            "dimensions": [{"name": k, "operator": "Include", "values": [v]} for k, v in dims.items()],
            "skip_metric_validation": True,
        }

    window = _window(drift)
    out: dict[str, dict[str, Any]] = {}
    for v in plan.versions:
        out[f"drift-v{v}"] = {
            "description": f"{endpoint}: share of drifted input columns of {model} v{v} above "
            f"monitoring.thresholds.driftShare ({thresholds.drift_share})",
            "severity": 2,
            "window_size": window,
            "criteria": [
                crit("drift-share", "model_drift_share", "GreaterThan", thresholds.drift_share, "Maximum",
                     {"model": model, "version": v}),
            ],
        }  # fmt: skip
    stable = next((b.version for b in plan.backends if b.role == "stable"), None)
    if plan.mirror is not None and stable is not None:
        dims = {"model": model, "stable": stable, "candidate": plan.mirror.version}
        out["shadow-agreement"] = {
            "description": f"{endpoint}: shadow v{plan.mirror.version} agrees with v{stable} on less than "
            f"{thresholds.shadow_agreement} of at least {thresholds.shadow_min_pairs} paired requests",
            "severity": 2,
            "window_size": window,
            "criteria": [
                crit("agreement", "model_shadow_agreement_ratio", "LessThan", thresholds.shadow_agreement,
                     "Minimum", dims),
                # fewer pairs: agreement is not known yet (monitoring.thresholds.shadowMinPairs)
                crit("pairs", "model_shadow_pairs_total", "GreaterThanOrEqual", thresholds.shadow_min_pairs,
                     "Maximum", dims),
            ],
        }  # fmt: skip
    return out


@dataclass
class AzureMlModelQualityArgs:
    model_name: str
    plan: TrafficPlan
    settings: AzureMlSettings
    drift: DriftSettings
    thresholds: AlertThresholds
    endpoint_name: str
    endpoint_id: pulumi.Input[str]
    deployments: Mapping[str, str]
    """version -> Azure deployment name"""
    tags: Mapping[str, str]
    after: Sequence[pulumi.Resource] = ()


class AzureMlModelQuality(pulumi.ComponentResource):
    """Outputs: ``job_name``, ``identity_principal_id``, ``alerts``, ``exports``."""

    def __init__(self, name: str, args: AzureMlModelQualityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        import pulumi_azure_native.app as app
        import pulumi_azure_native.authorization as authorization
        import pulumi_azure_native.managedidentity as managedidentity

        cfg, drift, model, ep = args.settings, args.drift, args.model_name, args.endpoint_name
        mon = cfg.monitor
        if mon is None or not drift.image:
            raise ValueError("mlflow-deploy:azureml.monitor: needed with monitoring.drift (see docs/quality.md)")
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"azureml-{base_name(model)}-monitor"
        tags = dict(args.tags)

        identity = managedidentity.UserAssignedIdentity(
            prefix,
            resource_name_=f"{ep}-monitor",
            resource_group_name=cfg.resource_group,
            location=cfg.location,
            tags=tags,
            opts=child,
        )
        grants: list[tuple[str, str, pulumi.Input[str]]] = [
            ("blob-reader", STORAGE_BLOB_DATA_READER, container_scope(cfg)),
            ("metrics-publisher", MONITORING_METRICS_PUBLISHER, args.endpoint_id),
        ]
        if mon.registry_id:
            grants.append(("acr-pull", ACR_PULL, mon.registry_id))
        assignments = []
        for short, role, scope in grants:
            assignments.append(
                authorization.RoleAssignment(
                    f"{prefix}-{short}",
                    # one GUID per (endpoint, role): the principal is the identity declared above
                    role_assignment_name=role_assignment_name(cfg.resource_group, ep, role),
                    scope=scope,
                    # under the scope's own subscription (the endpoint's ID is an Output: parsed
                    # inside an apply, which declares nothing)
                    role_definition_id=pulumi.Output.from_input(scope).apply(
                        functools.partial(_role_definition_in, role)
                    ),
                    principal_id=identity.principal_id,
                    principal_type="ServicePrincipal",
                    description=f"mlflow-deploy model monitor of {ep}",
                    opts=child,
                )
            )

        environment_id: pulumi.Input[str]
        if mon.environment_id:
            environment_id = mon.environment_id
        else:
            env = app.ManagedEnvironment(
                f"{prefix}-env",
                environment_name=f"{ep}-monitor"[:32],
                resource_group_name=cfg.resource_group,
                location=cfg.location,
                tags=tags,
                opts=child,
            )
            environment_id = env.id

        arguments = pulumi.Output.from_input(args.endpoint_id).apply(
            lambda eid: run_once_arguments(
                model=model, endpoint=ep, endpoint_id=eid, cfg=cfg, drift=drift, deployments=args.deployments,
                plan=args.plan,
            )
        )  # fmt: skip
        registries = [{"server": drift.image.split("/", 1)[0], "identity": identity.id}] if mon.registry_id else None
        job = app.Job(
            prefix,
            job_name=f"{ep}-monitor"[:32],
            resource_group_name=cfg.resource_group,
            location=cfg.location,
            environment_id=environment_id,
            identity={"type": "UserAssigned", "user_assigned_identities": [identity.id]},
            configuration=app.JobConfigurationArgs(
                trigger_type="Schedule",
                replica_timeout=JOB_TIMEOUT_SECONDS,
                replica_retry_limit=0,
                schedule_trigger_config=app.JobConfigurationScheduleTriggerConfigArgs(
                    cron_expression=cron_expression(drift.interval), parallelism=1, replica_completion_count=1
                ),
                registries=registries,
            ),
            template=app.JobTemplateArgs(
                containers=[
                    app.ContainerArgs(
                        name="monitor",
                        image=drift.image,
                        command=arguments.apply(lambda a: a[:4]),
                        args=arguments.apply(lambda a: a[4:]),
                        # DefaultAzureCredential picks the user-assigned identity by its client id
                        env=[app.EnvironmentVarArgs(name="AZURE_CLIENT_ID", value=identity.client_id)],
                        resources=app.ContainerResourcesArgs(cpu=1.0, memory="2Gi"),
                    )
                ]
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*assignments, *args.after]),
        )

        specs = alert_specs(model, ep, args.plan, args.thresholds, drift)
        for short, spec in specs.items():
            metric_alert(
                f"{prefix}-{short}-alert",
                rule_name=f"{ep}-{short}",
                cfg=cfg,
                spec=spec,
                criteria=spec["criteria"],
                scope=args.endpoint_id,
                evaluation_frequency="PT5M",
                tags=tags,
                opts=child,
            )
        self.job_name = job.name
        self.identity_principal_id = identity.principal_id
        self.alerts = [f"{ep}-{s}" for s in specs]
        self.exports: dict[str, Any] = {
            "job": f"{ep}-monitor"[:32],
            "source": source_uri(cfg, ep),
            "metricNamespace": METRIC_NAMESPACE,
            "alerts": self.alerts,
        }
        self.register_outputs(dict(self.exports))
