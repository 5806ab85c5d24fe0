"""The declared SageMaker, CloudWatch and Application Auto Scaling inputs, converted to the AWS API
requests the provider makes (CreateModel, CreateEndpointConfig, CreateEndpoint/UpdateEndpoint,
PutMetricAlarm, RegisterScalableTarget, PutScalingPolicy), validated against the API shapes
shipped in botocore: required members, unknown members, enum values, min/max ranges and lengths,
patterns. botocore's own ParamValidator checks types and minimums only; the rest is checked here.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import botocore.session
import pytest
from botocore.model import Shape
from botocore.validate import ParamValidator

from modelctl.mocks_aws import autoname
from modelctl.render import Declared, Rendered, run_program
from modelctl.sample import SampleRegistry
from tests.components.sagemaker_cases import SCENARIOS, SM, full_config, sm_config
from tests.gpu_models import GpuModels

SESSION = botocore.session.get_session()


def input_shape(service: str, operation: str) -> Shape:
    return SESSION.get_service_model(service).operation_model(operation).input_shape


# --------------------------------------------------------------------------- validation


def _range(value: float, meta: dict[str, Any], path: str, what: str) -> list[str]:
    out = []
    if "min" in meta and value < meta["min"]:
        out.append(f"{path}: {what}{value} is below the minimum {meta['min']}")
    if "max" in meta and value > meta["max"]:
        out.append(f"{path}: {what}{value} is above the maximum {meta['max']}")
    return out


def shape_errors(shape: Shape, value: Any, path: str) -> list[str]:
    """Every way ``value`` breaks ``shape`` (recursively)."""
    t, meta = shape.type_name, shape.metadata
    if t == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected a {shape.name} structure, got {type(value).__name__}"]
        errs = [f"{path}.{m}: required member is missing" for m in shape.required_members if m not in value]
        for key, item in value.items():
            if key not in shape.members:
                errs.append(f"{path}.{key}: not a member of {shape.name}")
            else:
                errs += shape_errors(shape.members[key], item, f"{path}.{key}")
        return errs
    if t == "list":
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        errs = _range(len(value), meta, path, "length ")
        for i, item in enumerate(value):
            errs += shape_errors(shape.member, item, f"{path}[{i}]")
        return errs
    if t == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {type(value).__name__}"]
        errs = _range(len(value), meta, path, "entries ")
        for key, item in value.items():
            errs += shape_errors(shape.key, key, f"{path}<key {key}>")
            errs += shape_errors(shape.value, item, f"{path}.{key}")
        return errs
    if t == "string":
        if not isinstance(value, str):
            return [f"{path}: expected a string, got {value!r}"]
        errs = _range(len(value), meta, path, "length ")
        if shape.enum and value not in shape.enum:
            errs.append(f"{path}: {value!r} is not one of {shape.name}'s {len(shape.enum)} values")
        pattern = meta.get("pattern")
        if pattern:
            try:
                ok = re.fullmatch(pattern, value, re.DOTALL) is not None
            except re.error:  # a Java-only construct (\p{L}): not checkable with re
                ok = True
            if not ok:
                errs.append(f"{path}: {value!r} does not match {pattern!r}")
        return errs
    if t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{path}: expected an integer, got {value!r}"]
        return _range(value, meta, path, "")
    if t in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [f"{path}: expected a number, got {value!r}"]
        return _range(value, meta, path, "")
    if t == "boolean":
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean, got {value!r}"]
    return []


def validate(service: str, operation: str, request: dict[str, Any]) -> list[str]:
    """Errors of ``request`` against the operation's input shape: ours plus botocore's."""
    shape = input_shape(service, operation)
    errs = shape_errors(shape, request, operation)
    report = ParamValidator().validate(request, shape)
    if report.has_errors():
        errs.append(report.generate_report())
    return errs


# --------------------------------------------------------------------------- Pulumi -> API


def to_api(value: Any, shape: Shape) -> Any:
    """Pulumi's camelCase input to the API's member names (``variantName`` -> ``VariantName``),
    guided by the shape; a key without a member keeps its name, for the validator to flag."""
    if shape.type_name == "structure" and isinstance(value, dict):
        members = {m.lower(): m for m in shape.members}
        out = {}
        for key, item in value.items():
            api_key = members.get(key.lower(), key[:1].upper() + key[1:])
            out[api_key] = to_api(item, shape.members[api_key]) if api_key in shape.members else item
        return out
    if shape.type_name == "list" and isinstance(value, list):
        return [to_api(item, shape.member) for item in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: to_api(v, shape.value) for k, v in value.items()}
    return value


def request(service: str, operation: str, r: Declared, name_key: str | None, **extra: Any) -> dict[str, Any]:
    """The request the provider sends for declared resource ``r``: its inputs, renamed; the
    physical name (given, or auto-named) under ``name_key``."""
    inputs = {k: v for k, v in r.inputs.items() if k not in ("name", "region", "tags")}
    body = to_api(inputs, input_shape(service, operation))
    if name_key is not None:
        body[name_key] = r.inputs.get("name") or autoname(r.name)
    body.update(extra)
    return body


def alarm_request(r: Declared) -> dict[str, Any]:
    """PutMetricAlarm: ``dimensions`` maps become Name/Value lists, ``metricQueries`` become
    ``Metrics`` with a ``MetricStat``."""
    inputs = dict(r.inputs)
    dims = inputs.pop("dimensions", None)
    queries = inputs.pop("metricQueries", None)
    body = request("cloudwatch", "PutMetricAlarm", Declared(r.type, r.name, r.parent, inputs, r.custom), "AlarmName")
    if dims is not None:
        body["Dimensions"] = [{"Name": k, "Value": v} for k, v in dims.items()]
    if queries is not None:
        body["Metrics"] = []
        for q in queries:
            m: dict[str, Any] = {"Id": q["id"], "ReturnData": q.get("returnData", False)}
            for key in ("expression", "label"):
                if key in q:
                    m[key.capitalize()] = q[key]
            if "metric" in q:
                metric = q["metric"]
                m["MetricStat"] = {
                    "Metric": {
                        "Namespace": metric["namespace"],
                        "MetricName": metric["metricName"],
                        "Dimensions": [{"Name": k, "Value": v} for k, v in metric.get("dimensions", {}).items()],
                    },
                    "Period": metric["period"],
                    "Stat": metric["stat"],
                }
            body["Metrics"].append(m)
    return body


# --------------------------------------------------------------------------- renders


@pytest.fixture(scope="module")
def renders(registry: SampleRegistry, gpu_models: GpuModels) -> dict[str, Rendered]:
    out = {name: run_program(sm_config(registry, **extra), stack="test") for name, extra in SCENARIOS.items()}
    out["full"] = run_program(full_config(registry), stack="test")
    serverless = {**SM, "serverless": {"memorySizeMb": 3072, "maxConcurrency": 50, "provisionedConcurrency": 5}}
    serverless.pop("instanceCount")
    out["serverless"] = run_program(sm_config(registry, serverless), stack="test")
    gpu = {**SM, "instanceType": "ml.g5.12xlarge", "autoscaling": {"metric": "concurrency", "minInstances": 2}}
    gpu_model = {"name": gpu_models.name, "version": "1"}  # torch: a model a GPU can serve
    out["gpu-concurrency"] = run_program(sm_config(registry, gpu, model=gpu_model), stack="test")
    return out


CASES = [*SCENARIOS, "full", "serverless", "gpu-concurrency"]


def of(out: Rendered, type_: str) -> list[Declared]:
    found = out.of_type(type_)
    assert found, type_
    return found


@pytest.mark.parametrize("case", CASES)
def test_create_endpoint_config_request_is_valid(renders: dict[str, Rendered], case: str) -> None:
    (cfg,) = of(renders[case], "aws:sagemaker/endpointConfiguration:EndpointConfiguration")
    body = request("sagemaker", "CreateEndpointConfig", cfg, "EndpointConfigName")
    assert validate("sagemaker", "CreateEndpointConfig", body) == []
    # what the shapes cannot say (CreateEndpointConfig's documentation): with a shadow variant,
    # exactly one production and one shadow variant; variant names unique; some traffic somewhere
    prod, shadow = body["ProductionVariants"], body.get("ShadowProductionVariants", [])
    if shadow:
        assert (len(prod), len(shadow)) == (1, 1)
    names = [v["VariantName"] for v in prod + shadow]
    assert len(names) == len(set(names))
    assert sum(v["InitialVariantWeight"] for v in prod) > 0


@pytest.mark.parametrize("case", CASES)
def test_create_and_update_endpoint_requests_are_valid(renders: dict[str, Rendered], case: str) -> None:
    (ep,) = of(renders[case], "aws:sagemaker/endpoint:Endpoint")
    for operation in ("CreateEndpoint", "UpdateEndpoint"):
        body = request("sagemaker", operation, ep, "EndpointName")
        assert validate("sagemaker", operation, body) == [], operation
        assert body["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] in (
            "ALL_AT_ONCE",
            "CANARY",
            "LINEAR",
        )


@pytest.mark.parametrize("case", CASES)
def test_create_model_requests_are_valid(renders: dict[str, Rendered], case: str) -> None:
    for m in of(renders[case], "aws:sagemaker/model:Model"):
        body = request("sagemaker", "CreateModel", m, "ModelName")
        assert validate("sagemaker", "CreateModel", body) == [], m.name


@pytest.mark.parametrize("case", CASES)
def test_put_metric_alarm_requests_are_valid(renders: dict[str, Rendered], case: str) -> None:
    for a in of(renders[case], "aws:cloudwatch/metricAlarm:MetricAlarm"):
        body = alarm_request(a)
        assert validate("cloudwatch", "PutMetricAlarm", body) == [], a.name
        # a metric alarm watches either one metric or a math expression, never both
        assert ("MetricName" in body) != ("Metrics" in body)


def test_autoscaling_requests_are_valid(renders: dict[str, Rendered]) -> None:
    out = renders["full"]
    for t in of(out, "aws:appautoscaling/target:Target"):
        body = request("application-autoscaling", "RegisterScalableTarget", t, None)
        assert validate("application-autoscaling", "RegisterScalableTarget", body) == []
    for p in of(out, "aws:appautoscaling/policy:Policy"):
        body = request("application-autoscaling", "PutScalingPolicy", p, "PolicyName")
        assert validate("application-autoscaling", "PutScalingPolicy", body) == []


# --------------------------------------------------------------------------- the validator bites


def _mutated(body: dict[str, Any], path: list[Any], value: Any = ...) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (["ProductionVariants", 0, "InstanceType"], "ml.m5.huge", "is not one of"),
        (["ProductionVariants", 0, "InitialVariantWeight"], -1, "below the minimum 0"),
        (["ProductionVariants", 0, "InitialInstanceCount"], 0, "below the minimum 1"),
        (["ProductionVariants", 0, "ContainerStartupHealthCheckTimeoutInSeconds"], 4000, "above the maximum 3600"),
        (["ProductionVariants", 0, "VariantName"], ..., "required member is missing"),
        (["ProductionVariants", 0, "VariantName"], "has_underscore", "does not match"),
        (["ProductionVariants", 0, "Weight"], 1, "not a member of ProductionVariant"),
        (["DataCaptureConfig", "InitialSamplingPercentage"], 101, "above the maximum 100"),
        (["DataCaptureConfig", "CaptureOptions", 0, "CaptureMode"], "Both", "is not one of"),
    ],
)
def test_validator_rejects_broken_endpoint_configs(
    renders: dict[str, Rendered], path: list[Any], value: Any, fragment: str
) -> None:
    (cfg,) = of(renders["full"], "aws:sagemaker/endpointConfiguration:EndpointConfiguration")
    good = request("sagemaker", "CreateEndpointConfig", cfg, "EndpointConfigName")
    errs = validate("sagemaker", "CreateEndpointConfig", _mutated(good, path, value))
    assert any(fragment in e for e in errs), errs


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (["TrafficRoutingConfiguration", "Type"], "SLOW", "is not one of"),
        (["TrafficRoutingConfiguration", "WaitIntervalInSeconds"], 3601, "above the maximum 3600"),
        (["TrafficRoutingConfiguration", "CanarySize", "Type"], "PERCENT", "is not one of"),
        (["TrafficRoutingConfiguration", "CanarySize", "Value"], 0, "below the minimum 1"),
        (["MaximumExecutionTimeoutInSeconds"], 300, "below the minimum 600"),
        (["TrafficRoutingConfiguration"], ..., "required member is missing"),
    ],
)
def test_validator_rejects_broken_deployment_configs(
    renders: dict[str, Rendered], path: list[Any], value: Any, fragment: str
) -> None:
    (ep,) = of(renders["full"], "aws:sagemaker/endpoint:Endpoint")
    good = request("sagemaker", "UpdateEndpoint", ep, "EndpointName")
    bad = _mutated(good, ["DeploymentConfig", "BlueGreenUpdatePolicy", *path], value)
    errs = validate("sagemaker", "UpdateEndpoint", bad)
    assert any(fragment in e for e in errs), errs


def test_validator_rejects_too_many_rollback_alarms(renders: dict[str, Rendered]) -> None:
    (ep,) = of(renders["full"], "aws:sagemaker/endpoint:Endpoint")
    good = request("sagemaker", "UpdateEndpoint", ep, "EndpointName")
    alarms = [{"AlarmName": f"a{i}"} for i in range(11)]
    bad = _mutated(good, ["DeploymentConfig", "AutoRollbackConfiguration", "Alarms"], alarms)
    assert any("above the maximum 10" in e for e in validate("sagemaker", "UpdateEndpoint", bad))
