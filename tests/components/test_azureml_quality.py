"""monitoring.drift on Azure ML: the deployments' data collection, the Container Apps job running
``python -m monitor run-once`` under its own identity (two role assignments, no wildcard), and the
metric alerts on the custom metrics; rendered through the real program and the provider's typed
args."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from components.azureml_quality import (
    ACR_PULL,
    MONITORING_METRICS_PUBLISHER,
    STORAGE_BLOB_DATA_READER,
    cron_expression,
    role_assignment_name,
    role_definition_for_scope,
    subscription_of,
)
from components.settings import SettingsError
from modelctl.mocks_azure import MOCK_SUBSCRIPTION
from modelctl.render import Rendered, run_program
from modelctl.sample import SampleRegistry
from tests.conftest import base_config

DEPLOYMENT = "azure-native:machinelearningservices:OnlineDeployment"
JOB = "azure-native:app:Job"
ROLE = "azure-native:authorization:RoleAssignment"
ALERT = "azure-native:monitor:MetricAlert"
STORAGE = "/subscriptions/0000-sub/resourceGroups/ml-rg/providers/Microsoft.Storage/storageAccounts/acmemlstore"
ACR = "/subscriptions/0000-sub/resourceGroups/ml-rg/providers/Microsoft.ContainerRegistry/registries/acmeml"
MONITOR = {"storageAccountId": STORAGE, "container": "azureml-blobstore-1234"}
AZ = {"resourceGroup": "ml-rg", "workspace": "ml-ws", "location": "westeurope",
      "containerRegistry": "acmeml.azurecr.io"}  # fmt: skip
IMAGE = "acmeml.azurecr.io/mlflow-deploy-monitor:1.0"


def drift_cfg(
    registry: SampleRegistry, tmp_path: Any, candidate: dict[str, Any] | None = None, **az: Any
) -> dict[str, Any]:
    ref = tmp_path / "reference.parquet"
    pd.DataFrame({"a": [1.0, 2.0, 3.0]}).to_parquet(ref)
    cfg = base_config(
        registry,
        kubernetes=None,
        model={"name": registry.name, "version": "1"},
        azureml={**AZ, "monitor": MONITOR, **az},
        monitoring={"enabled": True, "drift": {"enabled": True, "reference": str(ref), "image": IMAGE,
                                                "interval": "15m", "sample": 0.5}},
    )  # fmt: skip
    if candidate is not None:
        cfg["mlflow-deploy:candidate"] = candidate
    return cfg


@pytest.fixture(scope="module")
def shadow(registry: SampleRegistry, tmp_path_factory) -> Rendered:
    cfg = drift_cfg(
        registry, tmp_path_factory.mktemp("ref"), {"version": "2", "strategy": "shadow", "percent": 20},
        monitor={**MONITOR, "registryId": ACR},
    )  # fmt: skip
    return run_program(cfg, stack="prod")


def test_every_deployment_logs_request_and_response_payloads(shadow: Rendered) -> None:
    deps = shadow.of_type(DEPLOYMENT)
    assert len(deps) == 2
    for d in deps:
        dc = d.inputs["properties"]["dataCollector"]
        assert set(dc["collections"]) == {"request", "response"}
        for c in dc["collections"].values():
            assert c == {"dataCollectionMode": "Enabled", "samplingRate": 0.5}
        assert dc["rollingRate"] == "Hour"


def test_the_job_runs_run_once_on_a_schedule_under_its_own_identity(shadow: Rendered) -> None:
    [job] = shadow.of_type(JOB)
    conf = job.inputs["configuration"]
    assert conf["triggerType"] == "Schedule"
    assert conf["scheduleTriggerConfig"]["cronExpression"] == "*/15 * * * *"
    assert job.inputs["identity"]["type"] == "UserAssigned"
    [container] = job.inputs["template"]["containers"]
    assert container["image"] == IMAGE
    assert container["command"] == ["python", "-m", "monitor", "run-once"]
    args = container["args"]
    assert args[args.index("--format") + 1] == "azureml"
    assert args[args.index("--source") + 1] == (
        "https://acmemlstore.blob.core.windows.net/azureml-blobstore-1234/modelDataCollector/"
        + shadow.of_type("azure-native:machinelearningservices:OnlineEndpoint")[0].inputs["endpointName"]
    )
    versions = dict(p.split("=") for p in args[args.index("--versions") + 1].split(","))
    assert sorted(versions.values()) == ["1", "2"]
    assert args[args.index("--publish") + 1].startswith("azuremonitor:")
    assert args[args.index("--publish") + 1].endswith("?region=westeurope")
    assert args[args.index("--strategy") + 1] == "shadow"
    assert conf["registries"][0]["server"] == "acmeml.azurecr.io"


def test_identity_gets_reader_on_the_container_and_publisher_on_the_endpoint_only(shadow: Rendered) -> None:
    roles = {r.inputs["roleDefinitionId"].rsplit("/", 1)[1]: r.inputs for r in shadow.of_type(ROLE)}
    assert set(roles) == {STORAGE_BLOB_DATA_READER, MONITORING_METRICS_PUBLISHER, ACR_PULL}
    container = f"{STORAGE}/blobServices/default/containers/azureml-blobstore-1234"
    assert roles[STORAGE_BLOB_DATA_READER]["scope"] == container
    assert roles[ACR_PULL]["scope"] == ACR
    # the endpoint's ARM id (made up by the Azure mocks)
    endpoint = shadow.of_type("azure-native:machinelearningservices:OnlineEndpoint")[0]
    assert roles[MONITORING_METRICS_PUBLISHER]["scope"] == (
        f"/subscriptions/{MOCK_SUBSCRIPTION}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices"
        f"/workspaces/ml-ws/onlineEndpoints/{endpoint.inputs['endpointName']}"
    )
    for r in roles.values():
        assert r["principalType"] == "ServicePrincipal"
        assert "*" not in r["roleDefinitionId"] and "*" not in r["scope"]


def test_role_definitions_are_under_each_scopes_own_subscription(registry: SampleRegistry, tmp_path) -> None:
    """Storage, registry and endpoint in three subscriptions: each built-in role definition ID names
    the subscription of its own assignment's scope (not the storage account's for all three)."""
    acr_elsewhere = ACR.replace("0000-sub", "1111-sub")
    out = run_program(drift_cfg(registry, tmp_path, monitor={**MONITOR, "registryId": acr_elsewhere}), stack="prod")
    definitions = {r.inputs["roleDefinitionId"].rsplit("/", 1)[1]: r.inputs["roleDefinitionId"]
                   for r in out.of_type(ROLE)}  # fmt: skip
    prefix = "/providers/Microsoft.Authorization/roleDefinitions/"
    assert definitions[ACR_PULL] == f"/subscriptions/1111-sub{prefix}{ACR_PULL}"
    assert definitions[STORAGE_BLOB_DATA_READER] == f"/subscriptions/0000-sub{prefix}{STORAGE_BLOB_DATA_READER}"
    assert definitions[MONITORING_METRICS_PUBLISHER] == (
        f"/subscriptions/{MOCK_SUBSCRIPTION}{prefix}{MONITORING_METRICS_PUBLISHER}"
    )


def test_role_definition_for_scope_parses_the_scope_id() -> None:
    container = f"{STORAGE}/blobServices/default/containers/c"
    assert subscription_of(container) == "0000-sub"
    assert role_definition_for_scope(container, ACR_PULL) == (
        f"/subscriptions/0000-sub/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL}"
    )
    for bad in ("acmeml", "subscriptions/0000-sub/resourceGroups/x", "/subscriptions//x", "/resourceGroups/x"):
        with pytest.raises(ValueError, match="not an ARM resource ID"):
            subscription_of(bad)


def test_alerts_on_drift_per_version_and_agreement_with_min_pairs(shadow: Rendered) -> None:
    alerts = {a.inputs["ruleName"].rsplit("-", 2)[-2] + "-" + a.inputs["ruleName"].rsplit("-", 1)[-1]: a.inputs
              for a in shadow.of_type(ALERT) if "mlflow-deploy" in str(a.inputs["criteria"])}  # fmt: skip
    assert set(alerts) == {"drift-v1", "drift-v2", "shadow-agreement"}
    [drift] = alerts["drift-v2"]["criteria"]["allOf"]
    assert drift["metricName"] == "model_drift_share" and drift["threshold"] == 0.5
    assert {d["name"]: d["values"] for d in drift["dimensions"]}["version"] == ["2"]
    agreement, pairs = alerts["shadow-agreement"]["criteria"]["allOf"]
    assert (agreement["metricName"], agreement["operator"], agreement["threshold"]) == (
        "model_shadow_agreement_ratio", "LessThan", 0.95)
    assert (pairs["metricName"], pairs["operator"], pairs["threshold"]) == (
        "model_shadow_pairs_total", "GreaterThanOrEqual", 100)
    assert all(c["skipMetricValidation"] for a in alerts.values() for c in a["criteria"]["allOf"])


def test_canary_has_no_agreement_alert_and_drift_off_declares_nothing(registry: SampleRegistry, tmp_path) -> None:
    out = run_program(drift_cfg(registry, tmp_path, {"version": "2", "strategy": "canary", "percent": 10}),
                      stack="prod")  # fmt: skip
    names = [a.inputs["ruleName"] for a in out.of_type(ALERT)]
    assert not any(n.endswith("shadow-agreement") for n in names)
    assert len(out.of_type("azure-native:app:ManagedEnvironment")) == 1
    cfg = drift_cfg(registry, tmp_path)
    cfg["mlflow-deploy:monitoring"]["drift"]["enabled"] = False
    off = run_program(cfg, stack="prod")
    assert off.of_type(JOB) == [] and off.of_type(ROLE) == []
    assert all("dataCollector" not in d.inputs["properties"] for d in off.of_type(DEPLOYMENT))


def test_an_existing_environment_is_used(registry: SampleRegistry, tmp_path) -> None:
    env = "/subscriptions/0000-sub/resourceGroups/ml-rg/providers/Microsoft.App/managedEnvironments/shared"
    out = run_program(drift_cfg(registry, tmp_path, monitor={**MONITOR, "environmentId": env}), stack="prod")
    assert out.of_type("azure-native:app:ManagedEnvironment") == []
    assert out.of_type(JOB)[0].inputs["environmentId"] == env


def test_monitor_settings_are_required(registry: SampleRegistry, tmp_path) -> None:
    cfg = drift_cfg(registry, tmp_path)
    cfg["mlflow-deploy:azureml"].pop("monitor")
    with pytest.raises(SettingsError, match=r"mlflow-deploy:azureml\.monitor"):
        run_program(cfg, stack="prod")


@pytest.mark.parametrize(("interval", "cron"), [("10m", "*/10 * * * *"), ("7m", "*/10 * * * *"), ("1h", "0 * * * *"),
                                                 ("90m", "0 */2 * * *"), ("30s", "* * * * *"), ("24h", "0 0 * * *")])
def test_cron_expression(interval: str, cron: str) -> None:
    assert cron_expression(interval) == cron


def test_role_assignment_names_are_stable_guids() -> None:
    a = role_assignment_name("rg", "ep", STORAGE_BLOB_DATA_READER)
    assert a == role_assignment_name("rg", "ep", STORAGE_BLOB_DATA_READER)
    assert a != role_assignment_name("rg", "ep", MONITORING_METRICS_PUBLISHER)
    assert len(a) == 36 and a.count("-") == 4
