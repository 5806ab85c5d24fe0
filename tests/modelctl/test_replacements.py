"""The replacement rules: every type the program declares has one, paths match on component
boundaries, and the facts read from the providers' sources hold (modelctl/replacements.py)."""

from __future__ import annotations

import copy
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest

from modelctl.render import Rendered, read_stack_config, run_program
from modelctl.replacements import (
    RULES,
    changed_paths,
    forces_replacement,
    replacements,
    rule_for,
    split_path,
)
from modelctl.sample import SampleRegistry

ROOT = Path(__file__).resolve().parents[2]
DYNAMIC = "pulumi-python:dynamic:Resource"

CANDIDATES: dict[str, dict[str, Any] | None] = {
    "none": None,
    "canary": {"version": "2", "strategy": "canary", "percent": 10},
    "blue-green": {"version": "2", "strategy": "blue-green", "percent": 0},
    "shadow": {"version": "2", "strategy": "shadow", "percent": 10},
}


def prod_config(registry: SampleRegistry, candidate: dict[str, Any] | None) -> dict[str, Any]:
    """Pulumi.prod.yaml as shipped, pointed at the test registry, with ``candidate``."""
    cfg = copy.deepcopy(read_stack_config(ROOT / "Pulumi.prod.yaml"))
    cfg["mlflow-deploy:mlflow"]["trackingUri"] = registry.tracking_uri
    cfg["mlflow-deploy:model"]["version"] = "1"
    if candidate is not None:
        cfg["mlflow-deploy:candidate"] = candidate
        if candidate["strategy"] == "shadow":
            cfg.pop("mlflow-deploy:vertex")  # Vertex AI cannot mirror: the program refuses it
    return cfg


def every_option(registry: SampleRegistry) -> dict[str, Any]:
    """The prod example with the options that declare further types switched on."""
    cfg = prod_config(registry, CANDIDATES["canary"])
    # an Ingress is an entry of the service router only (with the gateway router the HTTPRoute is
    # the one entry point)
    k8s = cfg["mlflow-deploy:kubernetes"]
    k8s.pop("gateway", None)
    k8s.update(
        router="service",
        createNamespace=True,
        kubeContext="prod",
        ingress={"host": "fraud.example.com"},
        networkPolicy={"entryNamespaces": ["ingress-nginx"]},
    )
    cfg["mlflow-deploy:monitoring"]["installStack"] = True
    cfg["mlflow-deploy:vertex"]["enableApis"] = True
    cfg["mlflow-deploy:azureml"].update(
        modelSource="mlflow_model", modelStore={"storageAccount": "acmemlprod", "container": "models"}
    )
    return cfg


@pytest.fixture(scope="module")
def renders(registry: SampleRegistry) -> dict[str, Rendered]:
    out = {name: run_program(prod_config(registry, c), stack="prod") for name, c in CANDIDATES.items()}
    out["every-option"] = run_program(every_option(registry), stack="prod")
    return out


# --------------------------------------------------------------------------- coverage


def test_every_declared_custom_type_has_a_rule(renders: dict[str, Rendered]) -> None:
    seen: set[str] = set()
    for name, rendered in renders.items():
        custom = {r.type for r in rendered.resources if r.custom and r.type != DYNAMIC}
        missing = sorted(t for t in custom if rule_for(t) is None)
        assert not missing, f"{name}: no replacement rule for {missing}"
        seen |= custom
    # the renders reach every target and the optional types, so the check above is not vacuous
    for expected in (
        "aws:sagemaker/endpoint:Endpoint",
        "azure-native:machinelearningservices:OnlineDeployment",
        "azure-native:storage:Blob",
        "gcp:vertex/aiEndpoint:AiEndpoint",
        "gcp:projects/service:Service",
        "kubernetes:apps/v1:Deployment",
        "kubernetes:core/v1:Namespace",
        "kubernetes:networking.k8s.io/v1:Ingress",
        "kubernetes:helm.sh/v3:Release",
        "pulumi:providers:kubernetes",
        "docker-build:index:Image",
    ):
        assert expected in seen


def test_component_and_dynamic_types_are_left_to_their_owners(renders: dict[str, Rendered]) -> None:
    rendered = renders["canary"]
    components = {r.type for r in rendered.resources if not r.custom}
    assert components and all(rule_for(t) is None for t in components)
    assert any(r.type == DYNAMIC for r in rendered.resources)
    assert rule_for(DYNAMIC) is None


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _sdk_inputs(type_token: str) -> set[str] | None:
    """The input names (camelCase) of ``type_token``'s class in the installed Python SDK, or None
    for a kind that has no generated class (a Kubernetes CustomResource)."""
    package = {
        "aws": "pulumi_aws",
        "gcp": "pulumi_gcp",
        "azure-native": "pulumi_azure_native",
        "kubernetes": "pulumi_kubernetes",
        "docker-build": "pulumi_docker_build",
    }
    pkg, mod, name = type_token.split(":")
    if pkg == "pulumi":  # pulumi:providers:aws -> pulumi_aws.Provider
        modules, name = [package[name]], "Provider"
    else:
        parts = [p for p in mod.split("/") if p != "index"]
        if pkg == "kubernetes":
            group = {"helm.sh": "helm"}.get(parts[0], parts[0].removesuffix(".k8s.io"))
            if "." in group:
                return None
            parts = [group, *parts[1:]]
        else:
            parts = parts[:1]  # aws:sagemaker/endpoint -> pulumi_aws.sagemaker
        modules = [package[pkg], *parts]
    try:
        module = importlib.import_module(".".join(modules))
    except ModuleNotFoundError:
        return None
    params = inspect.signature(getattr(module, name)._internal_init).parameters
    skip = {"self", "__self__", "resource_name", "opts", "__props__"}
    return {_camel(p) for p in params if p not in skip}


@pytest.mark.parametrize("type_token", sorted(RULES))
def test_rule_paths_start_at_real_inputs(type_token: str) -> None:
    """A typo in a rule path would silently never match: every path's first component must be an
    input of the resource (or provider) in the installed SDK."""
    rule = RULES[type_token]
    inputs = _sdk_inputs(type_token)
    if inputs is None:
        inputs = {"apiVersion", "kind", "metadata", "spec"}
    for path in (*rule.force_new, *rule.replace_on_presence):
        assert split_path(path)[0] in inputs, f"{type_token}: {path} is not an input ({sorted(inputs)})"
    if rule.delete_before_replace:
        assert split_path(rule.delete_before_replace)[0] in inputs
    assert rule.source


def test_every_rule_is_in_the_docs_table() -> None:
    """docs/replacements.md is the readable copy of RULES: a new rule must be tabulated there."""
    doc = (ROOT / "docs" / "replacements.md").read_text()
    missing = [t for t in RULES if f"`{t}`" not in doc]
    assert not missing, f"not in docs/replacements.md: {missing}"


# --------------------------------------------------------------------------- path matching


def test_split_path_drops_indices_and_keeps_quoted_keys() -> None:
    assert split_path("productionVariants[1].initialVariantWeight") == ("productionVariants", "initialVariantWeight")
    assert split_path('metadata.labels["app.kubernetes.io/name"]') == ("metadata", "labels", "app.kubernetes.io/name")
    assert split_path("a[0][2].b") == ("a", "b")
    with pytest.raises(ValueError):
        split_path("a[x].b")


def test_forces_replacement_strips_indices() -> None:
    ep_config = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
    assert forces_replacement(ep_config, "productionVariants[1].initialVariantWeight") == "productionVariants"
    assert forces_replacement(ep_config, "shadowProductionVariants[0]") == "shadowProductionVariants"
    assert forces_replacement(ep_config, "tags.team") is None


def test_forces_replacement_matches_on_component_boundaries_only() -> None:
    deployment = "kubernetes:apps/v1:Deployment"
    assert forces_replacement(deployment, "spec.selector") == "spec.selector"
    assert forces_replacement(deployment, "spec.selector.matchLabels.version") == "spec.selector"
    assert forces_replacement(deployment, "spec.selectorX") is None
    assert forces_replacement(deployment, "spec") is None  # above the path: the differ must descend
    assert forces_replacement(deployment, "metadata.namespaceX") is None
    assert forces_replacement(deployment, "metadata.namespace") == "metadata.namespace"
    assert forces_replacement("no:such:Type", "name") is None


def test_presence_rule_matches_only_the_block_itself() -> None:
    endpoint = "aws:sagemaker/endpoint:Endpoint"
    block = "deploymentConfig.autoRollbackConfiguration"
    assert forces_replacement(endpoint, block) == block
    assert forces_replacement(endpoint, block + ".alarms[3].alarmName") is None
    assert forces_replacement(endpoint, block + ".alarms[2]") is None


def test_changed_paths_are_the_deepest_differences() -> None:
    old = {"a": {"b": 1, "c": [1, 2]}, "gone": 1, "k": {"x.y": 1}}
    new = {"a": {"b": 2, "c": [1, 2, 3]}, "new": 1, "k": {"x.y": 2}}
    assert changed_paths(old, new) == ["a.b", "a.c[2]", "gone", 'k["x.y"]', "new"]
    assert changed_paths(old, copy.deepcopy(old)) == []


# --------------------------------------------------------------------------- facts read in the sources


def test_sagemaker_endpoint_rules() -> None:
    ep = "aws:sagemaker/endpoint:Endpoint"
    rule = RULES[ep]
    assert forces_replacement(ep, "name") == "name" and rule.delete_before_replace == "name"
    # endpoint_config_name and the blue/green policy are updated by UpdateEndpoint
    assert forces_replacement(ep, "endpointConfigName") is None
    assert forces_replacement(ep, "deploymentConfig.blueGreenUpdatePolicy.terminationWaitInSeconds") is None
    assert forces_replacement(ep, "tags.team") is None
    alarms = {"alarms": [{"alarmName": "a"}, {"alarmName": "b"}]}
    old = {"name": "e", "deploymentConfig": {"autoRollbackConfiguration": alarms}}
    more = copy.deepcopy(old)
    more["deploymentConfig"]["autoRollbackConfiguration"]["alarms"].append({"alarmName": "c"})
    assert replacements(ep, old, more) == []  # a nested change in a ForceNew block is an update
    without = {"name": "e", "deploymentConfig": {"blueGreenUpdatePolicy": {}}}
    assert replacements(ep, old, without) == ["deploymentConfig.autoRollbackConfiguration"]
    assert replacements(ep, without, old) == ["deploymentConfig.autoRollbackConfiguration"]
    assert replacements(ep, old, {"name": "e"}) == ["deploymentConfig.autoRollbackConfiguration"]


def test_sagemaker_config_and_model_are_immutable_but_for_tags() -> None:
    cfg = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
    for path in (
        "productionVariants[0].initialVariantWeight",
        "productionVariants[0].initialInstanceCount",
        "dataCaptureConfig.initialSamplingPercentage",
        "shadowProductionVariants[0].modelName",
    ):
        assert forces_replacement(cfg, path) is not None, path
    model = "aws:sagemaker/model:Model"
    assert forces_replacement(model, "primaryContainer.environment.MODEL_VERSION") == "primaryContainer"
    assert forces_replacement(model, "primaryContainer.image") == "primaryContainer"
    assert forces_replacement(model, "executionRoleArn") == "executionRoleArn"
    assert forces_replacement(model, "tags.team") is None
    assert RULES[model].delete_before_replace == "name"  # only when the program names it (it doesn't)


def test_other_aws_rules() -> None:
    assert forces_replacement("aws:cloudwatch/metricAlarm:MetricAlarm", "threshold") is None
    assert forces_replacement("aws:cloudwatch/metricAlarm:MetricAlarm", "name") == "name"
    assert forces_replacement("aws:ecr/repository:Repository", "imageTagMutability") is None
    assert forces_replacement("aws:ecr/repository:Repository", "encryptionConfigurations[0].kmsKey") is not None
    assert forces_replacement("aws:cloudwatch/logGroup:LogGroup", "retentionInDays") is None
    assert forces_replacement("aws:appautoscaling/target:Target", "maxCapacity") is None
    assert forces_replacement("aws:appautoscaling/target:Target", "resourceId") == "resourceId"
    assert RULES["aws:cloudwatch/dashboard:Dashboard"].delete_before_replace is None
    aws = RULES["pulumi:providers:aws"]
    assert "region" in aws.force_new and "aws:iam/role:Role" in aws.cascade_exempt


def test_azure_rules() -> None:
    dep = "azure-native:machinelearningservices:OnlineDeployment"
    assert forces_replacement(dep, "deploymentName") == "deploymentName"
    assert forces_replacement(dep, "location") == "location"
    assert forces_replacement(dep, "sku.capacity") is None
    assert forces_replacement(dep, "properties.instanceType") is None  # nested create-only: no replace
    assert RULES[dep].delete_before_replace == "deploymentName"
    ep = "azure-native:machinelearningservices:OnlineEndpoint"
    assert forces_replacement(ep, "properties.traffic.v2") is None
    assert forces_replacement(ep, "tags.team") is None
    assert forces_replacement("azure-native:storage:Blob", "source") == "source"
    assert RULES["pulumi:providers:azure-native"].force_new == ()


def test_gcp_rules() -> None:
    ep = "gcp:vertex/aiEndpoint:AiEndpoint"
    assert forces_replacement(ep, "labels.team") is None
    assert forces_replacement(ep, "displayName") is None
    assert forces_replacement(ep, "name") == "name" and RULES[ep].delete_before_replace == "name"
    repo = "gcp:artifactregistry/repository:Repository"
    assert forces_replacement(repo, "dockerConfig.immutableTags") is None
    assert forces_replacement(repo, "format") == "format"
    assert forces_replacement("gcp:monitoring/alertPolicy:AlertPolicy", "conditions[0].displayName") is None


def test_gcp_monitor_rules_read_in_terraform_provider_google() -> None:
    """The Vertex model monitor's types (components/vertex_quality.py), as the provider decides."""
    job = "gcp:cloudrunv2/job:Job"
    # a rollout rewrites the container args (deployed model -> version map): a PATCH
    assert forces_replacement(job, "template.template.containers[0].args[3]") is None
    assert forces_replacement(job, "labels.model") is None
    assert forces_replacement(job, "tags") == "tags"
    assert forces_replacement(job, "name") == "name"
    table = "gcp:bigquery/table:Table"
    assert forces_replacement(table, "timePartitioning.type") is None  # not ForceNew in the provider
    assert forces_replacement(table, "timePartitioning.expirationMs") is None  # the retention setting
    assert forces_replacement(table, "timePartitioning.field") == "timePartitioning.field"
    assert forces_replacement(table, "schema") is None  # decided by CustomizeDiff on the two schemas
    assert replacements(table, {"tableId": "t"}, {"tableId": "t", "encryptionConfiguration": {"kmsKeyName": "k"}}) == [
        "encryptionConfiguration"
    ]
    key = {"tableId": "t", "encryptionConfiguration": {"kmsKeyName": "k"}}
    assert replacements(table, key, {"tableId": "t", "encryptionConfiguration": {"kmsKeyName": "k2"}}) == []
    assert forces_replacement("gcp:bigquery/dataset:Dataset", "externalDatasetReference.connection") is not None
    assert forces_replacement("gcp:bigquery/dataset:Dataset", "defaultTableExpirationMs") is None
    descriptor = "gcp:monitoring/metricDescriptor:MetricDescriptor"
    assert forces_replacement(descriptor, "labels[1].key") == "labels"
    for updated in ("description", "displayName", "unit", "metadata.samplePeriod"):
        assert forces_replacement(descriptor, updated) is None, updated
    assert forces_replacement("gcp:bigquery/iamMember:IamMember", "tableId") == "tableId"
    assert forces_replacement("gcp:serviceaccount/account:Account", "displayName") is None
    assert forces_replacement("gcp:cloudscheduler/job:Job", "httpTarget.uri") is None


def test_azure_monitor_rules_read_in_the_specs_and_azure_native() -> None:
    """The Azure ML model monitor's types (components/azureml_quality.py), as azure-native decides."""
    job = "azure-native:app:Job"
    assert forces_replacement(job, "template.containers[0].args[5]") is None  # what a rollout changes
    assert forces_replacement(job, "configuration.scheduleTriggerConfig.cronExpression") is None
    # a flattened create-only property is a resource-level input: it replaces
    assert forces_replacement(job, "environmentId") == "environmentId"
    env = "azure-native:app:ManagedEnvironment"
    assert forces_replacement(env, "zoneRedundant") == "zoneRedundant"
    assert forces_replacement(env, "vnetConfiguration.infrastructureSubnetId") is None  # in an object type
    ra = "azure-native:authorization:RoleAssignment"
    assert forces_replacement(ra, "principalId") == "principalId"  # forceNewMap
    assert forces_replacement(ra, "roleDefinitionId") is None  # not in forceNewMap, no x-ms-mutability
    assert forces_replacement(ra, "description") is None


def test_kubernetes_rules() -> None:
    assert forces_replacement("kubernetes:core/v1:Service", "spec.clusterIP") == "spec.clusterIP"
    assert forces_replacement("kubernetes:core/v1:Service", "spec.type") is None
    assert forces_replacement("kubernetes:policy/v1:PodDisruptionBudget", "spec.maxUnavailable") is None
    assert forces_replacement("kubernetes:core/v1:ConfigMap", 'data["x.json"]') == "data"
    assert forces_replacement("kubernetes:apps/v1:Deployment", "spec.template.spec.containers[0].image") is None
    assert forces_replacement("kubernetes:helm.sh/v3:Release", "values.grafana") is None
    assert forces_replacement("pulumi:providers:kubernetes", "context") == "context"
    assert all(
        RULES[t].delete_before_replace == "metadata.name"
        for t in RULES
        if t.startswith("kubernetes:") and "helm.sh" not in t
    )
    assert RULES["docker-build:index:Image"].force_new == ()


def test_replacements_sees_removed_subtrees_that_hold_a_forcing_input() -> None:
    dep = "kubernetes:apps/v1:Deployment"
    old = {"metadata": {"name": "a"}, "spec": {"selector": {"matchLabels": {"app": "a"}}, "replicas": 2}}
    assert replacements(dep, old, {"metadata": {"name": "a"}}) == ["spec.selector"]
    assert replacements(dep, old, {"metadata": {"name": "a"}, "spec": {"selector": old["spec"]["selector"]}}) == []
    assert replacements("no:such:Type", old, {}) == []


# --------------------------------------------------------------------------- on the real program


def _by_name(rendered: Rendered) -> dict[str, Any]:
    return {r.name: r for r in rendered.resources if r.custom}


def test_starting_a_canary_replaces_only_what_the_sources_say(renders: dict[str, Rendered]) -> None:
    """From no candidate to a canary on the prod example: the SageMaker endpoint config is
    immutable (replaced), the endpoint itself only gets the new config's name (an update, which the
    mock runtime cannot show: the replaced config's new name is only known at `up`; ``modelctl
    diff`` propagates it); the stable Kubernetes Deployment and Azure ML deployment are untouched."""
    old, new = _by_name(renders["none"]), _by_name(renders["canary"])
    replaced = {n: replacements(old[n].type, old[n].inputs, new[n].inputs) for n in old.keys() & new.keys()}
    by_type = {old[n].type: p for n, p in replaced.items() if p}
    assert by_type.get("aws:sagemaker/endpointConfiguration:EndpointConfiguration") == ["productionVariants"]
    assert "aws:sagemaker/endpoint:Endpoint" not in by_type
    endpoint = next(n for n in old if old[n].type == "aws:sagemaker/endpoint:Endpoint")
    # its deployment config (the rollback alarms) is the same in both states
    assert old[endpoint].inputs["deploymentConfig"] == new[endpoint].inputs["deploymentConfig"]
    assert "kubernetes:apps/v1:Deployment" not in by_type
    assert "azure-native:machinelearningservices:OnlineDeployment" not in by_type
