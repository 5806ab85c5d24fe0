"""monitoring.drift on Vertex AI: request-response logging on the endpoint to a BigQuery table the
stack declares, a Cloud Scheduler + Cloud Run job under a least-privilege service account, metric
descriptors and alert policies; a VPC-peered endpoint with drift is refused."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from components.settings import SettingsError
from components.vertex_quality import LOGGING_SCHEMA, METRIC_PREFIX
from modelctl.render import Rendered, run_program
from modelctl.sample import SampleRegistry
from tests.conftest import base_config

VERTEX = {"project": "acme-ml", "region": "europe-west4", "minReplicas": 1, "maxReplicas": 3}
IMAGE = "europe-west4-docker.pkg.dev/acme-ml/tools/mlflow-deploy-monitor:1.0"
ENDPOINT = "gcp:vertex/aiEndpoint:AiEndpoint"


def drift_cfg(registry: SampleRegistry, tmp_path: Any, candidate: dict[str, Any] | None = None,
              **vertex: Any) -> dict[str, Any]:  # fmt: skip
    ref = tmp_path / "reference.parquet"
    pd.DataFrame({"a": [1.0, 2.0, 3.0]}).to_parquet(ref)
    cfg = base_config(
        registry, kubernetes=None, model={"name": registry.name, "version": "1"}, vertex={**VERTEX, **vertex},
        monitoring={"enabled": True, "drift": {"enabled": True, "reference": str(ref), "image": IMAGE,
                                                "interval": "10m", "sample": 0.25}},
    )  # fmt: skip
    if candidate is not None:
        cfg["mlflow-deploy:candidate"] = candidate
    return cfg


@pytest.fixture(scope="module")
def canary(registry: SampleRegistry, tmp_path_factory) -> Rendered:
    cfg = drift_cfg(registry, tmp_path_factory.mktemp("ref"), {"version": "2", "strategy": "canary", "percent": 10})
    return run_program(cfg, stack="prod")


def test_the_endpoint_logs_requests_to_the_declared_table(canary: Rendered) -> None:
    [ep] = canary.of_type(ENDPOINT)
    [table] = canary.of_type("gcp:bigquery/table:Table")
    [dataset] = canary.of_type("gcp:bigquery/dataset:Dataset")
    logging = ep.inputs["predictRequestResponseLoggingConfig"]
    uri = f"bq://acme-ml.{dataset.inputs['datasetId']}.{table.inputs['tableId']}"
    assert logging == {"enabled": True, "samplingRate": 0.25, "bigqueryDestination": {"outputUri": uri}}
    assert json.loads(table.inputs["schema"]) == LOGGING_SCHEMA
    assert table.inputs["timePartitioning"]["field"] == "logging_time"
    assert dataset.inputs["location"] == "europe-west4"


def test_a_cloud_run_job_on_a_schedule_runs_run_once(canary: Rendered) -> None:
    [job] = canary.of_type("gcp:cloudrunv2/job:Job")
    [sched] = canary.of_type("gcp:cloudscheduler/job:Job")
    [container] = job.inputs["template"]["template"]["containers"]
    assert container["image"] == IMAGE
    assert container["commands"] == ["python", "-m", "monitor", "run-once"]
    args = container["args"]
    assert args[args.index("--format") + 1] == "vertex"
    assert args[args.index("--source") + 1].startswith("bq://acme-ml.")
    assert args[args.index("--publish") + 1] == "cloudmonitoring:acme-ml"
    versions = dict(p.split("=") for p in args[args.index("--versions") + 1].split(","))
    assert sorted(versions.values()) == ["1", "2"]
    assert sched.inputs["schedule"] == "*/10 * * * *"
    target = sched.inputs["httpTarget"]
    assert target["uri"].endswith(f"/jobs/{job.inputs['name']}:run")
    assert target["uri"].startswith("https://run.googleapis.com/v2/projects/acme-ml/locations/europe-west4/")
    assert target["httpMethod"] == "POST" and "serviceAccountEmail" in target["oauthToken"]


def test_the_job_identity_holds_only_the_roles_it_needs(canary: Rendered) -> None:
    project = {r.inputs["role"] for r in canary.of_type("gcp:projects/iAMMember:IAMMember")}
    assert project == {"roles/bigquery.jobUser", "roles/monitoring.metricWriter"}
    [table_grant] = canary.of_type("gcp:bigquery/iamMember:IamMember")
    assert table_grant.inputs["role"] == "roles/bigquery.dataViewer" and table_grant.inputs["tableId"]
    [invoker] = canary.of_type("gcp:cloudrunv2/jobIamMember:JobIamMember")
    assert invoker.inputs["role"] == "roles/run.invoker"
    # no project-wide owner/editor/admin role, no wildcard
    types = ("gcp:projects/iAMMember:IAMMember", "gcp:bigquery/iamMember:IamMember",
             "gcp:cloudrunv2/jobIamMember:JobIamMember")  # fmt: skip
    every = [r.inputs["role"] for t in types for r in canary.of_type(t)]
    assert not [r for r in every if "*" in r or r.split(".")[-1] in ("admin", "owner", "editor")]


def test_alert_policies_on_drift_per_version_after_their_descriptors(canary: Rendered) -> None:
    descs = {r.inputs["type"] for r in canary.of_type("gcp:monitoring/metricDescriptor:MetricDescriptor")}
    assert METRIC_PREFIX + "model_drift_share" in descs
    policies = [p for p in canary.of_type("gcp:monitoring/alertPolicy:AlertPolicy") if "drift share" in
                p.inputs["displayName"]]  # fmt: skip
    assert len(policies) == 2
    flt = {p.inputs["conditions"][0]["conditionThreshold"]["filter"] for p in policies}
    assert any('metric.label.version="2"' in f for f in flt) and any('metric.label.version="1"' in f for f in flt)
    for p in policies:
        c = p.inputs["conditions"][0]["conditionThreshold"]
        assert c["comparison"] == "COMPARISON_GT" and c["thresholdValue"] == 0.5


def test_drift_with_a_vpc_peered_endpoint_is_refused(registry: SampleRegistry, tmp_path: Any) -> None:
    cfg = drift_cfg(registry, tmp_path, network="projects/123/global/networks/ml")
    with pytest.raises(SettingsError, match=r"mlflow-deploy:vertex\.network: .*request-response logging"):
        run_program(cfg, stack="prod")


def test_drift_off_has_no_logging(registry: SampleRegistry, tmp_path: Any) -> None:
    cfg = drift_cfg(registry, tmp_path)
    cfg["mlflow-deploy:monitoring"]["drift"]["enabled"] = False
    out = run_program(cfg, stack="prod")
    assert out.of_type(ENDPOINT)[0].inputs.get("predictRequestResponseLoggingConfig") is None
    assert out.of_type("gcp:cloudrunv2/job:Job") == []
