"""VertexModelQuality: drift and shadow agreement for a Vertex AI endpoint (``monitoring.drift``).

The capture is the endpoint's own request-response logging: :func:`logging_config` is set on the
``AiEndpoint`` (components/vertex.py) and writes to the BigQuery dataset and table declared here
(schema as Vertex AI documents it). Changing ``predictRequestResponseLoggingConfig`` on a live
endpoint is an in-place PATCH: the Vertex AI docs enable it by "create an endpoint ... or patch an
existing endpoint" (online-prediction-logging), and terraform-provider-google
``resource_vertex_ai_endpoint.go`` puts ``predict_request_response_logging_config`` in the update
mask, not ForceNew (modelctl/replacements.py, ``gcp:vertex/aiEndpoint:AiEndpoint``). A replaced
endpoint would undeploy every served model; the lifecycle matrix checks it is never replaced with
drift on.

What it declares, children of the component:

* a **service account** for the monitor job, granted exactly: ``roles/bigquery.dataViewer`` on the
  logging *table*, ``roles/bigquery.jobUser`` on the project (running the window's query needs
  ``bigquery.jobs.create``, which exists only at project level) and
  ``roles/monitoring.metricWriter`` on the project (``monitoring.timeSeries.create``);
* a **Cloud Run job** running the monitor image with ``python -m monitor run-once``;
* a **scheduler service account** with ``roles/run.invoker`` on that job only, and a **Cloud
  Scheduler job** calling the Cloud Run Admin API ``jobs.run`` with an OAuth token of it;
* **metric descriptors** for the alerted custom metrics (an alert policy cannot name a metric that
  does not exist yet) and **alert policies**: drift share per live version, shadow agreement
  (never fires here: Vertex endpoints cannot mirror, shadow is refused by the settings).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from components.names import base_name
from components.rollout import TrafficPlan, monitor_version_args
from components.settings import AlertThresholds, DriftSettings
from components.validation import duration_seconds
from components.vertex_settings import VertexSettings

COMPONENT_TYPE = "mlflow-deploy:vertex:ModelQuality"
METRIC_PREFIX = "custom.googleapis.com/mlflow_deploy/"
"""monitor/publish.py GCP_PREFIX."""
RUN_API = "https://run.googleapis.com/v2"
DRIFT_APIS = ("bigquery.googleapis.com", "run.googleapis.com", "cloudscheduler.googleapis.com", "iam.googleapis.com")
JOB_TIMEOUT = "3600s"
# the BigQuery schema Vertex AI writes (online-prediction-logging, "Request-response logging")
LOGGING_SCHEMA = [
    {"name": "endpoint", "type": "STRING", "mode": "NULLABLE"},
    {"name": "deployed_model_id", "type": "STRING", "mode": "NULLABLE"},
    {"name": "logging_time", "type": "TIMESTAMP", "mode": "NULLABLE"},
    {"name": "request_id", "type": "NUMERIC", "mode": "NULLABLE"},
    {"name": "request_payload", "type": "STRING", "mode": "REPEATED"},
    {"name": "response_payload", "type": "STRING", "mode": "REPEATED"},
]
ALERTED_METRICS = {
    "model_drift_share": ("Drift share", ["model", "version"]),
    "model_shadow_agreement_ratio": ("Shadow agreement", ["model", "stable", "candidate"]),
    "model_shadow_pairs_total": ("Shadow pairs", ["model", "stable", "candidate"]),
}


def dataset_id(model: str, cfg: VertexSettings) -> str:
    return cfg.request_logging.dataset or f"{base_name(model).replace('-', '_')}_requests"


def table_uri(model: str, cfg: VertexSettings) -> str:
    """``bq://project.dataset.table``: the logging destination and the monitor's source."""
    return f"bq://{cfg.project}.{dataset_id(model, cfg)}.{cfg.request_logging.table}"


def logging_config(model: str, cfg: VertexSettings, drift: DriftSettings) -> dict[str, Any]:
    """The endpoint's ``predictRequestResponseLoggingConfig`` (snake_case, as the SDK takes it)."""
    return {
        "enabled": True,
        "sampling_rate": drift.sample,
        "bigquery_destination": {"output_uri": table_uri(model, cfg)},
    }


def schedule(interval: str) -> str:
    """Cloud Scheduler's unix-cron for ``monitoring.drift.interval`` (same steps as Azure's)."""
    from components.azureml_quality import cron_expression

    return cron_expression(interval)


def run_once_arguments(
    *, model: str, cfg: VertexSettings, drift: DriftSettings, deployed: Mapping[str, str], plan: TrafficPlan
) -> list[str]:
    """``deployed`` maps version -> deployed model ID (deterministic, components/vertex_provider.py)."""
    args = [
        "--model", model,
        "--source", table_uri(model, cfg),
        "--format", "vertex",
        "--versions", ",".join(f"{d}={v}" for v, d in sorted(deployed.items())),
        "--reference", drift.reference or "",
        "--since", drift.window,
        "--publish", f"cloudmonitoring:{cfg.project}",
        "--task", drift.task,
        "--max-reference-rows", str(drift.max_reference_rows),
    ]  # fmt: skip
    return args + monitor_version_args(plan)


def alert_policies(
    model: str, cfg: VertexSettings, plan: TrafficPlan, thresholds: AlertThresholds, drift: DriftSettings
) -> dict[str, dict[str, Any]]:
    """Alert policies by suffix (camelCase, as sent; components/vertex.py ``_snake`` converts)."""
    period = f"{max(60, int(duration_seconds(drift.interval)))}s"

    def cond(display: str, metric: str, labels: dict[str, str], comparison: str, value: float) -> dict[str, Any]:
        flt = f'metric.type="{METRIC_PREFIX}{metric}" AND resource.type="global"' + "".join(
            f' AND metric.label.{k}="{v}"' for k, v in labels.items()
        )
        return {
            "displayName": display,
            "conditionThreshold": {
                "filter": flt,
                "aggregations": [{"alignmentPeriod": period, "perSeriesAligner": "ALIGN_MAX"}],
                "comparison": comparison,
                "thresholdValue": value,
                "duration": "0s",
                "trigger": {"count": 1},
            },
        }

    common = {
        "project": cfg.project,
        "notificationChannels": list(cfg.notification_channels),
        "userLabels": {**cfg.labels, "model": base_name(model), "part-of": "mlflow-deploy"},
        "alertStrategy": {"autoClose": "1800s"},
        "severity": "WARNING",
    }
    out: dict[str, dict[str, Any]] = {}
    for v in plan.versions:
        out[f"drift-v{v}"] = {
            **common,
            "displayName": f"{base_name(model)} v{v}: drift share above {thresholds.drift_share:g}",
            "combiner": "OR",
            "conditions": [
                cond(f"model_drift_share > {thresholds.drift_share:g}", "model_drift_share",
                     {"model": model, "version": v}, "COMPARISON_GT", thresholds.drift_share),
            ],
        }  # fmt: skip
    stable = next((b.version for b in plan.backends if b.role == "stable"), None)
    if plan.mirror is not None and stable is not None:  # not reachable on Vertex today (no mirroring)
        labels = {"model": model, "stable": stable, "candidate": plan.mirror.version}
        out["shadow-agreement"] = {
            **common,
            "displayName": f"{base_name(model)}: shadow agreement below {thresholds.shadow_agreement:g}",
            "combiner": "AND",
            "conditions": [
                cond("agreement", "model_shadow_agreement_ratio", labels, "COMPARISON_LT", thresholds.shadow_agreement),
                cond("enough pairs", "model_shadow_pairs_total", labels, "COMPARISON_GT",
                     thresholds.shadow_min_pairs - 1),
            ],
        }  # fmt: skip
    return out


class VertexRequestLog(pulumi.ComponentResource):
    """The BigQuery dataset and table the endpoint's request-response logging writes to; declared
    before the endpoint names them. Outputs: ``table``, ``uri``."""

    def __init__(self, name: str, model: str, cfg: VertexSettings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-deploy:vertex:RequestLog", name, None, opts)
        import pulumi_gcp as gcp

        child = pulumi.ResourceOptions(parent=self)
        rl = cfg.request_logging
        labels = {**cfg.labels, "model": base_name(model), "part-of": "mlflow-deploy"}
        ds = dataset_id(model, cfg)
        dataset = gcp.bigquery.Dataset(
            f"{name}-dataset",
            project=cfg.project,
            dataset_id=ds,
            location=rl.location or cfg.region,
            description=f"Vertex AI request-response logging of {model} (mlflow-deploy)",
            delete_contents_on_destroy=rl.delete_contents_on_destroy,
            labels=labels,
            opts=child,
        )
        partitioning: dict[str, Any] = {"type": "DAY", "field": "logging_time"}
        if rl.retention_days:
            partitioning["expiration_ms"] = rl.retention_days * 86_400_000
        self.table = gcp.bigquery.Table(
            f"{name}-table",
            project=cfg.project,
            dataset_id=dataset.dataset_id,
            table_id=rl.table,
            schema=json.dumps(LOGGING_SCHEMA),
            time_partitioning=partitioning,
            deletion_protection=not rl.delete_contents_on_destroy,
            labels=labels,
            opts=child,
        )

        self.uri = table_uri(model, cfg)
        self.register_outputs({"uri": self.uri})


@dataclass
class VertexModelQualityArgs:
    model_name: str
    plan: TrafficPlan
    settings: VertexSettings
    drift: DriftSettings
    thresholds: AlertThresholds
    deployed_models: Mapping[str, pulumi.Input[str]]
    """version -> deployed model ID"""
    request_log: VertexRequestLog


class VertexModelQuality(pulumi.ComponentResource):
    """Outputs: ``job_name``, ``service_account``, ``alerts``, ``exports``."""

    def __init__(self, name: str, args: VertexModelQualityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        import pulumi_gcp as gcp

        cfg, drift, model = args.settings, args.drift, args.model_name
        if not drift.image:
            raise ValueError("mlflow-deploy:monitoring.drift.image: needed on Vertex AI")
        child = pulumi.ResourceOptions(parent=self)
        base = base_name(model)
        labels = {**cfg.labels, "model": base, "part-of": "mlflow-deploy"}

        table = args.request_log.table
        account = gcp.serviceaccount.Account(
            f"{name}-sa",
            project=cfg.project,
            account_id=f"{base[:20]}-monitor",
            display_name=f"mlflow-deploy model monitor of {model}",
            opts=child,
        )
        member = pulumi.Output.concat("serviceAccount:", account.email)
        grants = [
            gcp.bigquery.IamMember(
                f"{name}-table-reader",
                project=cfg.project,
                dataset_id=table.dataset_id,
                table_id=table.table_id,
                role="roles/bigquery.dataViewer",
                member=member,
                opts=child,
            )
        ]
        for short, role in (("bq-jobs", "roles/bigquery.jobUser"), ("metric-writer", "roles/monitoring.metricWriter")):
            grants.append(gcp.projects.IAMMember(f"{name}-{short}", project=cfg.project, role=role, member=member,
                                                 opts=child))  # fmt: skip

        deployed = pulumi.Output.all(**dict(args.deployed_models))
        job_args = deployed.apply(
            lambda d: run_once_arguments(model=model, cfg=cfg, drift=drift, deployed=dict(d), plan=args.plan)
        )
        job_name = f"{base[:40]}-monitor"
        job = gcp.cloudrunv2.Job(
            f"{name}-job",
            project=cfg.project,
            location=cfg.region,
            name=job_name,
            deletion_protection=False,
            labels=labels,
            template={
                "task_count": 1,
                "template": {
                    "service_account": account.email,
                    "timeout": JOB_TIMEOUT,
                    "max_retries": 0,
                    "containers": [
                        {
                            "image": drift.image,
                            "commands": ["python", "-m", "monitor", "run-once"],
                            "args": job_args,
                            "resources": {"limits": {"cpu": "1", "memory": "2Gi"}},
                        }
                    ],
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=grants),
        )

        invoker = gcp.serviceaccount.Account(
            f"{name}-scheduler-sa",
            project=cfg.project,
            account_id=f"{base[:18]}-scheduler",
            display_name=f"Cloud Scheduler starting the model monitor of {model}",
            opts=child,
        )
        run_grant = gcp.cloudrunv2.JobIamMember(
            f"{name}-scheduler-invoker",
            project=cfg.project,
            location=cfg.region,
            name=job.name,
            role="roles/run.invoker",
            member=pulumi.Output.concat("serviceAccount:", invoker.email),
            opts=child,
        )
        gcp.cloudscheduler.Job(
            f"{name}-schedule",
            project=cfg.project,
            region=cfg.region,
            name=f"{base[:40]}-monitor",
            description=f"python -m monitor run-once for {model} every {drift.interval}",
            schedule=schedule(drift.interval),
            time_zone="Etc/UTC",
            attempt_deadline="60s",
            retry_config={"retry_count": 0},
            http_target={
                "http_method": "POST",
                "uri": pulumi.Output.concat(
                    RUN_API, "/projects/", cfg.project, "/locations/", cfg.region, "/jobs/", job.name, ":run"
                ),
                "oauth_token": {
                    "service_account_email": invoker.email,
                    "scope": "https://www.googleapis.com/auth/cloud-platform",
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[run_grant]),
        )

        descriptors = []
        for metric, (display, keys) in ALERTED_METRICS.items():
            descriptors.append(
                gcp.monitoring.MetricDescriptor(
                    f"{name}-metric-{metric.replace('_', '-')}",
                    project=cfg.project,
                    type=METRIC_PREFIX + metric,
                    metric_kind="GAUGE",
                    value_type="DOUBLE",
                    display_name=display,
                    description=f"mlflow-deploy model monitor: {metric} (docs/quality.md)",
                    labels=[{"key": k, "value_type": "STRING"} for k in keys],
                    opts=child,
                )
            )
        from components.vertex import _snake

        specs = alert_policies(model, cfg, args.plan, args.thresholds, drift)
        for suffix, spec in specs.items():
            gcp.monitoring.AlertPolicy(
                f"{name}-{suffix}", **_snake(spec), opts=pulumi.ResourceOptions(parent=self, depends_on=descriptors)
            )
        self.job_name = job.name
        self.service_account = account.email
        self.alerts = [s["displayName"] for s in specs.values()]
        self.exports: dict[str, Any] = {"job": job_name, "source": table_uri(model, cfg), "alerts": self.alerts}
        self.register_outputs(dict(self.exports))
