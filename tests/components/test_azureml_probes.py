"""Azure ML: probes that let a slow model load finish, and the traffic resource speaking the same
ARM api-version as the azure-native provider that manages the endpoint."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from typing import Any

import pytest

from components import azureml
from components.azureml_settings import AzureMlSettings
from components.azureml_traffic import API_VERSION, EndpointTrafficProvider
from components.image import CONTAINER_PORT
from components.settings import SettingsError, parse_settings
from modelctl.render import Rendered
from modelctl.sample import SampleRegistry
from serving.app import PROBE_PATHS
from tests.components.test_azureml import AZ, DYNAMIC, ENVIRONMENT, cfg, one

DEPLOYMENT = "azure-native:machinelearningservices:OnlineDeployment"


def settings(**keys: Any) -> AzureMlSettings:
    return AzureMlSettings(**{**AZ, **keys})


def seconds(iso: str) -> int:
    m = re.fullmatch(r"PT([0-9]+)S", iso)
    assert m, iso
    return int(m.group(1))


def budget(probe: dict[str, Any]) -> int:
    """How long a probe tolerates failures before it acts (restart / unready)."""
    return seconds(probe["initial_delay"]) + seconds(probe["period"]) * probe["failure_threshold"]


# --------------------------------------------------------------------------- probes


def test_liveness_is_on_a_route_that_answers_while_the_model_loads() -> None:
    routes = azureml.inference_config()
    # /ping answers 503 until the model is loaded (serving/app.py): only readiness and startup use it
    assert routes["liveness_route"] == {"path": "/version", "port": CONTAINER_PORT}
    assert "/version" not in PROBE_PATHS and "/ping" in PROBE_PATHS
    assert routes["readiness_route"] == routes["startup_route"] == {"path": "/ping", "port": CONTAINER_PORT}
    assert routes["scoring_route"] == {"path": "/invocations", "port": CONTAINER_PORT}


@pytest.mark.parametrize("startup", [60, 600, 1800])
def test_the_startup_probe_waits_for_the_model_load_the_settings_allow(startup: int) -> None:
    c = settings(containerStartupTimeoutSeconds=startup)
    props = azureml.deployment_properties("fraud-detector", "7", c, environment_id="env")
    probe = props["startup_probe"]
    assert budget(probe) >= startup and budget(probe) < startup + 2 * seconds(probe["period"])
    assert probe["failure_threshold"] == math.ceil(startup / seconds(probe["period"]))
    # once started, liveness restarts a hung process quickly; readiness only takes it out of rotation
    assert budget(props["liveness_probe"]) <= 120
    assert props["readiness_probe"]["failure_threshold"] >= 1


def test_mlflow_model_mode_keeps_azures_own_routes_and_a_liveness_sized_to_the_load() -> None:
    """Azure's MLflow runtime has its own routes (no environment of ours): no startup probe is
    sent there, so liveness itself must outlast the model load."""
    c = settings(containerStartupTimeoutSeconds=900)
    props = azureml.deployment_properties("fraud-detector", "7", c, model_id="model")
    assert "startup_probe" not in props
    assert budget(props["liveness_probe"]) >= 900


def test_the_startup_timeout_is_bounded_and_named() -> None:
    with pytest.raises(SettingsError) as err:
        parse_settings(
            {"model": {"name": "m", "version": "1"}, "azureml": {**AZ, "containerStartupTimeoutSeconds": 30}}
        )
    [(key, message)] = err.value.errors
    assert key == "mlflow-deploy:azureml.containerStartupTimeoutSeconds" and "60" in message


def test_a_new_inference_config_is_a_new_environment_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """Azure environment versions are immutable: routes that change must name a new version, or
    the update of the existing one fails (or a same-named replacement collides)."""
    before = azureml.environment_version("7", "acr.io/m:7")
    assert before == azureml.environment_version("7", "acr.io/m:7")
    original = azureml.inference_config
    monkeypatch.setattr(
        azureml, "inference_config", lambda: {**original(), "liveness_route": {"path": "/other", "port": 1}}
    )
    assert azureml.environment_version("7", "acr.io/m:7") != before
    assert azureml.environment_version("7", "acr.io/m:7").startswith("7-")


def test_rendered_deployment_and_environment_carry_the_probes(
    registry: SampleRegistry, render: Callable[..., Rendered]
) -> None:
    out = render(cfg(registry, az={"containerStartupTimeoutSeconds": 900}))
    props = one(out, DEPLOYMENT).inputs["properties"]
    assert {"livenessProbe", "readinessProbe", "startupProbe"} <= set(props)
    assert props["startupProbe"]["failureThreshold"] * seconds(props["startupProbe"]["period"]) >= 900
    routes = one(out, ENVIRONMENT).inputs["properties"]["inferenceConfig"]
    assert routes["livenessRoute"]["path"] == "/version" and routes["startupRoute"]["path"] == "/ping"


# --------------------------------------------------------------------------- one ARM api-version


def azure_native_api_version() -> str:
    """The api-version the installed pulumi-azure-native manages OnlineEndpoint with (its docs:
    "Uses Azure REST API version …")."""
    from pulumi_azure_native.machinelearningservices import OnlineEndpoint

    m = re.search(r"Uses Azure REST API version (\S+?)\.", inspect.getsource(OnlineEndpoint))
    assert m is not None
    return m.group(1)


def test_the_traffic_resource_reads_and_writes_the_endpoint_at_the_providers_api_version(
    registry: SampleRegistry, render: Callable[..., Rendered]
) -> None:
    """A GET/PUT at an older api-version than the one azure-native wrote the endpoint with drops
    every property that version does not know: one version for both."""
    assert azure_native_api_version() == API_VERSION
    out = render(cfg(registry))
    assert one(out, DYNAMIC).inputs["apiVersion"] == azure_native_api_version()


def test_only_the_endpoint_id_replaces_the_traffic_resource_and_it_is_its_identity() -> None:
    provider = EndpointTrafficProvider(client_factory=lambda props: None)  # type: ignore[arg-type,return-value]
    base = {
        "endpointId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices"
        "/workspaces/w/onlineEndpoints/e",
        "traffic": {"a": 100},
        "mirrorTraffic": {},
        "revision": "r1",
        "armEndpoint": "https://management.azure.com",
        "apiVersion": API_VERSION,
    }
    changes = {
        "endpointId": base["endpointId"] + "2",
        "traffic": {"b": 100},
        "mirrorTraffic": {"b": 10},
        "revision": "r2",
        "armEndpoint": "https://management.usgovcloudapi.net",
        "apiVersion": "2099-01-01",
    }
    for key, value in changes.items():
        d = provider.diff("id", base, {**base, key: value})
        assert d.changes, key
        if d.replaces:
            assert d.replaces == ["endpointId"] and key == "endpointId"
