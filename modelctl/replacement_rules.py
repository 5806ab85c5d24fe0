"""The replacement rules, one per resource type the program declares, with the provider source each
was read from. modelctl/replacements.py explains the rules' meaning and applies them; this module
is the data (split out to keep both small)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    force_new: tuple[str, ...]
    """Input paths (camelCase, dotted, no list indices); a change at or below one replaces."""
    source: str
    """Where the rule was read: repository, file, version, and the schema facts."""
    delete_before_replace: str | None = None
    """The input that, when the program sets it explicitly, makes a replacement delete-first."""
    note: str = ""
    replace_on_presence: tuple[str, ...] = ()
    """ForceNew block collections with non-ForceNew fields: only a change of their presence or
    element count replaces (a change reported exactly at the path), not an edit inside them."""
    cascade_exempt: tuple[str, ...] = ()
    """Provider rules only: types this provider manages that a forcing provider change leaves."""


# --------------------------------------------------------------------------- sources

_TF_AWS = "hashicorp/terraform-provider-aws"
_AWS_REV = "(v6.x, 2026 revision read through the code index)"
_AWS_REGION = (
    f"; region: {_TF_AWS} internal/provider/sdkv2/region.go defaultRegion + forceNewIfRegionChanges "
    "(top-level `region` defaults to the provider's and forces replacement when it changes)"
)
_TF_GOOGLE = "hashicorp/terraform-provider-google (v7.45.0, git mirror)"
_TF_GOOGLE_HEAD = "hashicorp/terraform-provider-google (git mirror at e03b7622, v7.45.0 + unreleased 7.46.0)"
_K8S = "pulumi/pulumi-kubernetes provider/pkg/provider/diff.go (v4.32.0+27)"
_K8S_META = ("metadata.name", "metadata.namespace")
_K8S_NOTE = (
    "apiVersion/kind are part of the type token: changing them makes a different resource "
    "(delete + create). Delete-first when the name and namespace stay the same "
    "(provider.go Diff: named, not auto-named, same name and namespace)."
)
_AZ = "pulumi/pulumi-azure-native provider/pkg/provider/diff.go calculateDetailedDiff"
_AZ_GEN = (
    "pulumi/pulumi-azure-native provider/pkg/gen (properties.go at 000c5318, replacement.go at 1b7112af; "
    "read through the code index)"
)
_APP_API = (
    "Azure/azure-rest-api-specs app/resource-manager/Microsoft.App/preview/2025-02-02-preview (the version "
    "pulumi-azure-native 3.x `app` uses: the SDK docstring 'Uses Azure REST API version 2025-02-02-preview')"
)
_AZ_NOTE = (
    "azure-native replaces on a change of any URL path parameter, of an input listed in "
    "provider/pkg/gen/replacement.go forceNewMap, or of a resource-level input whose x-ms-mutability "
    "lacks `update` (provider/pkg/gen/properties.go forceNew). The properties of an "
    "`x-ms-client-flatten` body (`properties` of most ARM resources: Container Apps, role assignments) "
    "are resource-level inputs, so a create-only one there replaces; a create-only field of an object "
    "type (an unflattened `properties` object, a nested block) does not (ForceNewSetOnReferencedType): "
    "its change is sent as an update that the service may reject. Every replacement is delete-first "
    "(provider.go Diff) because the program names every resource."
)


def _k8s(*extra: str, note: str = "") -> Rule:
    return Rule(
        force_new=("apiVersion", "kind", *_K8S_META, *extra),
        source=(
            f"{_K8S}: forceNewProperties = metadataForceNewProperties(.metadata.name, .metadata.namespace)"
            + (f" + {', '.join('.' + e for e in extra)}" if extra else "; no kind-specific forceNew entry")
        ),
        delete_before_replace="metadata.name",
        note=" ".join(x for x in (note, _K8S_NOTE) if x),
    )


RULES: dict[str, Rule] = {
    # ------------------------------------------------------------------ AWS (pulumi-aws 7.x)
    "aws:sagemaker/endpoint:Endpoint": Rule(
        force_new=("name", "region"),
        replace_on_presence=("deploymentConfig.autoRollbackConfiguration",),
        source=(
            f"{_TF_AWS} internal/service/sagemaker/endpoint.go {_AWS_REV}: name ForceNew; "
            "deployment_config not ForceNew; deployment_config.auto_rollback_configuration ForceNew "
            "(MaxItems 1) but its alarms set and alarm_name are not; blue_green_update_policy, "
            "rolling_update_policy, endpoint_config_name, tags not ForceNew (resourceEndpointUpdate calls "
            "UpdateEndpoint on HasChanges(endpoint_config_name, deployment_config))" + _AWS_REGION
        ),
        delete_before_replace="name",
        note=(
            "A new endpointConfigName or deploymentConfig is an in-place UpdateEndpoint (a SageMaker "
            "blue/green deployment). Adding or removing autoRollbackConfiguration replaces the endpoint; "
            "changing its alarm list does not. The program sets `name`, so a replacement deletes the "
            "serving endpoint before creating the new one."
        ),
    ),
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": Rule(
        force_new=(
            "asyncInferenceConfig",
            "dataCaptureConfig",
            "executionRoleArn",
            "kmsKeyArn",
            "name",
            "namePrefix",
            "productionVariants",
            "region",
            "shadowProductionVariants",
        ),
        source=(
            f"{_TF_AWS} internal/service/sagemaker/endpoint_configuration.go {_AWS_REV}: every "
            "argument but tags is ForceNew (async_inference_config, data_capture_config and their fields, "
            "kms_key_arn, name, name_prefix, execution_role_arn; production_variants and "
            "shadow_production_variants are not ForceNew themselves but every field in them is); "
            "resourceEndpointConfigurationUpdate: `// Tags only.`" + _AWS_REGION
        ),
        delete_before_replace="name",
        note=(
            "Immutable: any change but tags replaces it. The program leaves `name` to auto-naming, so "
            "the replacement is create-first and the Endpoint moves to the new name by an in-place "
            "update."
        ),
    ),
    "aws:sagemaker/model:Model": Rule(
        force_new=(
            "containers",
            "enableNetworkIsolation",
            "executionRoleArn",
            "name",
            "primaryContainer",
            "region",
            "vpcConfig",
        ),
        replace_on_presence=("inferenceExecutionConfig",),
        source=(
            f"{_TF_AWS} internal/service/sagemaker/model.go {_AWS_REV}: name, execution_role_arn, "
            "enable_network_isolation, vpc_config (+ fields) ForceNew; every field of primary_container and "
            "container (image, environment, mode, model_data_url, image_config.*, model_data_source.*, "
            "multi_model_config ...) ForceNew; inference_execution_config ForceNew but its mode is not; "
            "resourceModelUpdate: `// Tags only.`" + _AWS_REGION
        ),
        delete_before_replace="name",
        note="Immutable: any change but tags replaces it (auto-named here, so create-first).",
    ),
    "aws:cloudwatch/metricAlarm:MetricAlarm": Rule(
        force_new=("name", "region"),
        source=(
            f"{_TF_AWS} internal/service/cloudwatch/metric_alarm.go {_AWS_REV}: alarm_name ForceNew, "
            "nothing else (resourceMetricAlarmUpdate re-puts the alarm on any other change); pulumi/pulumi-aws "
            'provider/resources.go: alarm_name is tfbridge.AutoName("name", 255, "-")' + _AWS_REGION
        ),
        delete_before_replace="name",
    ),
    "aws:cloudwatch/dashboard:Dashboard": Rule(
        force_new=("dashboardName", "region"),
        source=(
            f"{_TF_AWS} internal/service/cloudwatch/dashboard.go {_AWS_REV}: dashboard_name ForceNew "
            "(Required, not auto-named); dashboard_body updated by PutDashboard" + _AWS_REGION
        ),
        note="dashboardName is not auto-named, so a replacement is create-first under the new name.",
    ),
    "aws:cloudwatch/logGroup:LogGroup": Rule(
        force_new=("logGroupClass", "name", "namePrefix", "region"),
        source=(
            f"{_TF_AWS} internal/service/logs/group.go {_AWS_REV}: name, name_prefix, log_group_class "
            "ForceNew; retention_in_days, kms_key_id, deletion_protection_enabled updated in place" + _AWS_REGION
        ),
        delete_before_replace="name",
    ),
    "aws:iam/role:Role": Rule(
        force_new=("name", "namePrefix", "path"),
        source=(
            f"{_TF_AWS} internal/service/iam/role.go {_AWS_REV}: name, name_prefix, path ForceNew; "
            "assume_role_policy, description, max_session_duration, permissions_boundary updated in place "
            "(IAM is global: no `region`)"
        ),
        delete_before_replace="name",
    ),
    "aws:iam/rolePolicy:RolePolicy": Rule(
        force_new=("name", "namePrefix", "role"),
        source=(
            f"{_TF_AWS} internal/service/iam/role_policy.go {_AWS_REV}: name, name_prefix, role ForceNew; "
            "policy re-put in place (IAM is global: no `region`)"
        ),
        delete_before_replace="name",
        note="`role` is the Role's auto-generated name: replacing the Role replaces this policy too.",
    ),
    "aws:ecr/repository:Repository": Rule(
        force_new=("encryptionConfigurations", "name", "region"),
        source=(
            f"{_TF_AWS} internal/service/ecr/repository.go {_AWS_REV}: name ForceNew; encryption_configuration "
            "ForceNew with encryption_type and kms_key ForceNew; image_tag_mutability, "
            "image_scanning_configuration updated in place" + _AWS_REGION
        ),
        delete_before_replace="name",
        note="The program sets `name`: a replacement deletes the repository first (forceDelete if it holds images).",
    ),
    "aws:appautoscaling/target:Target": Rule(
        force_new=("region", "resourceId", "scalableDimension", "serviceNamespace"),
        source=(
            f"{_TF_AWS} internal/service/appautoscaling/target.go (v5.x aws-sdk-go-v2 revision): resource_id, "
            "scalable_dimension, service_namespace ForceNew; min/max_capacity, role_arn re-registered in place"
            + _AWS_REGION
        ),
        note="resourceId is endpoint/<name>/variant/<variant>: renaming the endpoint or variant replaces it.",
    ),
    "aws:appautoscaling/policy:Policy": Rule(
        force_new=("name", "region", "resourceId", "scalableDimension", "serviceNamespace"),
        source=(
            f"{_TF_AWS} internal/service/appautoscaling/policy.go {_AWS_REV}: name, resource_id, "
            "scalable_dimension, service_namespace ForceNew; the scaling configurations re-put in place" + _AWS_REGION
        ),
        delete_before_replace="name",
    ),
    "aws:scheduler/schedule:Schedule": Rule(
        force_new=("groupName", "name", "namePrefix", "region"),
        source=(
            f"{_TF_AWS} internal/service/scheduler/schedule.go {_AWS_REV}: group_name, name, name_prefix "
            "ForceNew; schedule_expression, flexible_time_window, target (arn, role_arn, input, retry_policy) "
            "not ForceNew (resourceScheduleUpdate calls UpdateSchedule with the whole definition)" + _AWS_REGION
        ),
        delete_before_replace="name",
        note=(
            "A rollout changes the target's input (the monitor job's --versions/--stable/--candidate): "
            "an in-place UpdateSchedule."
        ),
    ),
    "aws:s3/bucket:Bucket": Rule(
        force_new=("bucket", "bucketPrefix", "objectLockEnabled", "region"),
        source=(
            f"{_TF_AWS} internal/service/s3/bucket.go {_AWS_REV}: bucket, bucket_prefix, object_lock_enabled "
            "ForceNew; force_destroy, tags update in place" + _AWS_REGION
        ),
        note=(
            "The default data-capture bucket (monitoring.drift without sagemaker.dataCapture): its name derives "
            "from the endpoint name and region, which a rollout never changes. `bucket` is not auto-named by "
            "the program's choice, so a replacement is create-first and fails while the old bucket holds the name."
        ),
    ),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": Rule(
        force_new=("bucket", "expectedBucketOwner", "region"),
        source=(
            f"{_TF_AWS} internal/service/s3/bucket_lifecycle_configuration.go {_AWS_REV} (a plugin-framework "
            "resource): bucket and expected_bucket_owner have stringplanmodifier.RequiresReplace(); rule "
            "(id, status, filter, expiration.days ...) and transition_default_minimum_object_size have no "
            "RequiresReplace, and Update calls PutBucketLifecycleConfiguration with the whole rule list" + _AWS_REGION
        ),
        note=(
            "The capture bucket's expiry (monitoring.drift.retention): a new retention is an in-place update of "
            "the rule's expiration.days; the bucket name never changes with a rollout."
        ),
    ),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": Rule(
        force_new=("bucket", "region"),
        source=(
            f"{_TF_AWS} internal/service/s3/bucket_public_access_block.go {_AWS_REV}: bucket ForceNew; "
            "block_public_acls, block_public_policy, ignore_public_acls, restrict_public_buckets, skip_destroy "
            "not ForceNew (resourceBucketPublicAccessBlockUpdate calls PutPublicAccessBlock)" + _AWS_REGION
        ),
        note="The capture bucket's public access block: all four flags on, never changed by a rollout.",
    ),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": Rule(
        force_new=("bucket", "expectedBucketOwner", "region"),
        source=(
            f"{_TF_AWS} internal/service/s3/bucket_server_side_encryption_configuration.go {_AWS_REV}: bucket, "
            "expected_bucket_owner ForceNew; rule (apply_server_side_encryption_by_default.sse_algorithm, "
            "kms_master_key_id, bucket_key_enabled) not ForceNew (Update calls PutBucketEncryption)" + _AWS_REGION
        ),
        note="The capture bucket's default encryption (SSE-S3): never changed by a rollout.",
    ),
    "pulumi:providers:aws": Rule(
        force_new=("region",),
        source=(
            "pulumi/pulumi-aws#5656 removed ForcesProviderReplace from `region` (v7 relies on per-resource "
            f"region instead); {_TF_AWS} internal/provider/sdkv2/region.go: defaultRegion sets each "
            "resource's unset `region` to the provider's, forceNewIfRegionChanges replaces on a change; "
            "docs/enhanced-region-support.md: 'Changing the value of region will force resource replacement.'"
        ),
        cascade_exempt=("aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy"),
        note=(
            "The provider itself is updated in place, but a new region replaces every regional resource "
            "it manages (all but IAM). defaultTags changes update tags in place."
        ),
    ),
    # ------------------------------------------------------------------ Azure (pulumi-azure-native 3.x)
    "azure-native:machinelearningservices:OnlineEndpoint": Rule(
        force_new=("endpointName", "location", "resourceGroupName", "workspaceName"),
        source=(
            f"{_AZ}: PUT path parameters resourceGroupName, workspaceName, endpointName replace; "
            "Azure/azure-rest-api-specs machinelearningservices stable/2025-12-01/mfe.json "
            "OnlineEndpointTrackedResource: identity, kind, properties, sku have no x-ms-mutability; "
            "common-types v3 TrackedResource.location x-ms-mutability [read, create] (ForceNew)"
        ),
        delete_before_replace="endpointName",
        note="properties (authMode, publicNetworkAccess, traffic, mirrorTraffic), identity, tags update in place. "
        + _AZ_NOTE,
    ),
    "azure-native:machinelearningservices:OnlineDeployment": Rule(
        force_new=("deploymentName", "endpointName", "location", "resourceGroupName", "workspaceName"),
        source=(
            f"{_AZ}: PUT path parameters resourceGroupName, workspaceName, endpointName, deploymentName "
            "replace; mfe.json 2025-12-01 OnlineDeploymentTrackedResource: identity, kind, properties, sku "
            "have no x-ms-mutability, location [read, create]; OnlineDeployment.instanceType is "
            "[create, read] but nested under `properties`"
        ),
        delete_before_replace="deploymentName",
        note=(
            "sku.capacity, properties.environmentId/model, environmentVariables, probes and requestSettings "
            "update the deployment in place. A changed properties.instanceType is not a replacement in "
            "azure-native: it is sent as an update Azure refuses. " + _AZ_NOTE
        ),
    ),
    "azure-native:machinelearningservices:EnvironmentVersion": Rule(
        force_new=("name", "resourceGroupName", "version", "workspaceName"),
        source=(
            f"{_AZ}: PUT path parameters resourceGroupName, workspaceName, name, version replace; "
            "mfe.json 2025-12-01 *VersionResource: ProxyResource with `properties` only"
        ),
        delete_before_replace="name",
        note="In this program `version` is derived from the image reference, so a new image is a new version. "
        + _AZ_NOTE,
    ),
    "azure-native:machinelearningservices:ModelVersion": Rule(
        force_new=("name", "resourceGroupName", "version", "workspaceName"),
        source=(
            f"{_AZ}: PUT path parameters resourceGroupName, workspaceName, name, version replace; "
            "mfe.json 2025-12-01 ModelVersionResource: ProxyResource with `properties` only"
        ),
        delete_before_replace="name",
        note=_AZ_NOTE,
    ),
    "azure-native:monitor:AutoscaleSetting": Rule(
        force_new=("autoscaleSettingName", "location", "resourceGroupName"),
        source=(
            f"{_AZ}: PUT path parameters resourceGroupName, autoscaleSettingName replace; "
            "Azure/azure-rest-api-specs monitor Microsoft.Insights preview/2021-05-01-preview/autoscale_API.json "
            "AutoscaleSettingResource.location x-ms-mutability [create, read]; the flattened AutoscaleSetting "
            "properties (profiles, enabled, targetResourceUri, notifications) have none"
        ),
        delete_before_replace="autoscaleSettingName",
        note=_AZ_NOTE,
    ),
    "azure-native:monitor:MetricAlert": Rule(
        force_new=("location", "resourceGroupName", "ruleName"),
        source=(
            f"{_AZ}: PUT path parameters resourceGroupName, ruleName replace; monitor Microsoft.Insights "
            "stable/2018-03-01/metricAlert_API.json Resource.location x-ms-mutability [create, read]; the "
            "flattened MetricAlertProperties (criteria, scopes, severity, actions, windowSize ...) have none"
        ),
        delete_before_replace="ruleName",
        note=_AZ_NOTE,
    ),
    "azure-native:storage:Blob": Rule(
        force_new=(
            "accountName",
            "blobName",
            "containerName",
            "contentMd5",
            "resourceGroupName",
            "source",
            "type",
        ),
        source=(
            "pulumi/pulumi-azure-native provider/pkg/resources/customresources/custom_storage.go newBlob: "
            "path parameters resourceGroupName, accountName, containerName, blobName; body contentMd5, source, "
            "type ForceNew (WillReplaceOnChanges); accessTier, contentType, metadata update in place"
        ),
        delete_before_replace="blobName",
        note="A new artifact file (source asset hash) replaces the blob. " + _AZ_NOTE,
    ),
    "azure-native:managedidentity:UserAssignedIdentity": Rule(
        force_new=("location", "resourceGroupName", "resourceName"),
        source=(
            f"{_AZ}: PUT path parameters resourceGroupName, resourceName replace; Azure/azure-rest-api-specs "
            "msi Microsoft.ManagedIdentity stable/2023-01-31/ManagedIdentity.json Identity: TrackedResource "
            "(location x-ms-mutability [read, create]); tags update in place"
        ),
        delete_before_replace="resourceName",
        note="Replacing the identity gives it a new principal: its role assignments are replaced too. " + _AZ_NOTE,
    ),
    "azure-native:authorization:RoleAssignment": Rule(
        force_new=("principalId", "roleAssignmentName", "scope"),
        source=(
            f"{_AZ}: PUT path parameters scope, roleAssignmentName replace; {_AZ_GEN} replacement.go forceNewMap "
            '"Authorization": {"RoleAssignment": principalId, scope}; Azure/azure-rest-api-specs authorization '
            "stable/2022-04-01/authorization-RoleAssignmentsCalls.json RoleAssignmentProperties: roleDefinitionId, "
            "principalId, principalType, description, condition have no x-ms-mutability (the flattened body), so "
            "roleDefinitionId is not ForceNew"
        ),
        delete_before_replace="roleAssignmentName",
        note=(
            "A changed roleDefinitionId is sent as a PUT to the same assignment. The service answers a changed "
            "principal or scope with RoleAssignmentUpdateNotPermitted ('Tenant ID, application ID, principal ID, "
            "and scope are not allowed to be updated': a service error, not in the spec), which azure-native "
            "avoids by replacing. The name is a GUID derived from (resource group, endpoint, role), so a new "
            "principal keeps the name and the replacement is delete-first (the job loses the grant for the "
            "moment between; it runs on a schedule). " + _AZ_NOTE
        ),
    ),
    "azure-native:app:ManagedEnvironment": Rule(
        force_new=("environmentName", "infrastructureResourceGroup", "location", "resourceGroupName", "zoneRedundant"),
        source=(
            f"{_AZ}: PUT path parameters resourceGroupName, environmentName replace; {_APP_API} "
            "ManagedEnvironments.json ManagedEnvironment: common-types v5 TrackedResource.location [read, create]; "
            "`properties` is x-ms-client-flatten and its zoneRedundant and infrastructureResourceGroup are "
            f"[create, read] (resource-level inputs: ForceNew, {_AZ_GEN} properties.go); VnetConfiguration's "
            "internal, infrastructureSubnetId, dockerBridgeCidr, platformReservedCidr, platformReservedDnsIP are "
            "[create, read] inside the vnetConfiguration object type (ForceNewSetOnReferencedType: no replace)"
        ),
        delete_before_replace="environmentName",
        note=(
            "The program sets only the name, resource group, location and tags (created when "
            "azureml.monitor.environmentId is not given). " + _AZ_NOTE
        ),
    ),
    "azure-native:app:Job": Rule(
        force_new=("environmentId", "jobName", "location", "resourceGroupName"),
        source=(
            f"{_AZ}: PUT path parameters resourceGroupName, jobName replace; {_APP_API} Jobs.json Job: "
            "common-types v5 TrackedResource.location [read, create]; `properties` is x-ms-client-flatten and "
            "its environmentId is [create, read] (a resource-level input: ForceNew, "
            f"{_AZ_GEN} properties.go); configuration, template, identity have no x-ms-mutability (the PATCH "
            "body JobPatchProperties even lists environmentId [create, read, update], but azure-native reads "
            "the PUT body); workloadProfileName and extendedLocation (CommonDefinitions.json) not checked: the "
            "program does not set them"
        ),
        delete_before_replace="jobName",
        note=(
            "A rollout changes the container's args (the deployment -> version map, the shadow pair): an "
            "in-place update of the job's template. Switching azureml.monitor.environmentId (or between it and "
            "the environment the program creates) replaces the job, delete-first. " + _AZ_NOTE
        ),
    ),
    "pulumi:providers:azure-native": Rule(
        force_new=(),
        source=(
            "pulumi/pulumi-azure-native provider/pkg/provider/provider.go DiffConfig: always returns "
            "Changes 0, no replaces"
        ),
        note=(
            "No provider change replaces anything: a new subscriptionId is not seen as a change of the "
            "resources, whose IDs keep the old subscription. Resources set location explicitly."
        ),
    ),
    # ------------------------------------------------------------------ GCP (pulumi-gcp 9.x)
    "gcp:vertex/aiEndpoint:AiEndpoint": Rule(
        force_new=(
            "encryptionSpec",
            "location",
            "name",
            "network",
            "privateServiceConnectConfig.enablePrivateServiceConnect",
            "project",
            "region",
        ),
        source=(
            f"{_TF_GOOGLE} google/services/vertexai/resource_vertex_ai_endpoint.go: location, name, region, "
            "project, network, encryption_spec (+ kms_key_name), "
            "private_service_connect_config.enable_private_service_connect ForceNew; labels, display_name, "
            "description, traffic_split, dedicated_endpoint_enabled, predict_request_response_logging_config, "
            "private_service_connect_config (other fields) are in the PATCH updateMask"
        ),
        delete_before_replace="name",
        note="Labels update in place. The program sets `name` (the endpoint ID), so a replacement is delete-first.",
    ),
    "gcp:artifactregistry/repository:Repository": Rule(
        force_new=(
            "format",
            "kmsKeyName",
            "location",
            "mavenConfig.allowSnapshotOverwrites",
            "mavenConfig.versionPolicy",
            "mode",
            "project",
            "remoteRepositoryConfig.aptRepository",
            "remoteRepositoryConfig.commonRepository",
            "remoteRepositoryConfig.description",
            "remoteRepositoryConfig.dockerRepository",
            "remoteRepositoryConfig.mavenRepository",
            "remoteRepositoryConfig.noCache",
            "remoteRepositoryConfig.npmRepository",
            "remoteRepositoryConfig.pythonRepository",
            "remoteRepositoryConfig.yumRepository",
            "repositoryId",
        ),
        replace_on_presence=("remoteRepositoryConfig",),
        source=(
            f"{_TF_GOOGLE} google/services/artifactregistry/resource_artifact_registry_repository.go: format, "
            "repository_id, kms_key_name, location, mode, project, maven_config.{allow_snapshot_overwrites, "
            "version_policy}, remote_repository_config (block; all fields but disable_upstream_validation and "
            "upstream_credentials) ForceNew; labels, description, docker_config, cleanup_policies update"
        ),
        note=(
            "repositoryId is not auto-named: a replacement is create-first and fails if the ID is unchanged "
            "(the old repository still holds it)."
        ),
    ),
    "gcp:projects/service:Service": Rule(
        force_new=("project", "service"),
        source=(
            f"{_TF_GOOGLE} google/services/resourcemanager/resource_google_project_service.go: service, project "
            "ForceNew; disable_on_destroy, disable_dependent_services update"
        ),
    ),
    "gcp:monitoring/alertPolicy:AlertPolicy": Rule(
        force_new=("project",),
        source=(
            f"{_TF_GOOGLE} google/services/monitoring/resource_monitoring_alert_policy.go: only project "
            "ForceNew; conditions, display_name, notification_channels, documentation, user_labels, "
            "severity, alert_strategy update in place"
        ),
    ),
    # The BigQuery / IAM / Cloud Run / Scheduler / metric descriptor rules below were re-read in
    # the mirror (hashicorp/terraform-provider-google at e03b7622, after v7.45.0: CHANGELOG's top
    # entry is "7.46.0 (Unreleased)"), file by file; the generated files name their magic-modules
    # YAML in their header, and an `immutable: true` field there is `ForceNew: true` in the .go.
    "gcp:bigquery/dataset:Dataset": Rule(
        force_new=("datasetId", "externalDatasetReference", "location", "project"),
        source=(
            f"{_TF_GOOGLE_HEAD} google/services/bigquery/resource_bigquery_dataset.go (generated from "
            "mmv1/products/bigquery/Dataset.yaml): dataset_id, location, project, external_dataset_reference "
            "(and its connection, external_source) ForceNew; labels, description, friendly_name, "
            "delete_contents_on_destroy, default_*_expiration_ms, max_time_travel_hours update in place"
        ),
        note="The monitor's request-log dataset: not touched by a rollout.",
    ),
    "gcp:bigquery/table:Table": Rule(
        force_new=(
            "biglakeConfiguration",
            "datasetId",
            "externalDataConfiguration.schema",
            "materializedView.allowNonIncrementalDefinition",
            "materializedView.query",
            "project",
            "rangePartitioning.field",
            "schemaForeignTypeInfo",
            "tableId",
            "tableReplicationInfo",
            "timePartitioning.field",
        ),
        replace_on_presence=("encryptionConfiguration",),
        source=(
            f"{_TF_GOOGLE_HEAD} google/services/bigquery/resource_bigquery_table.go (hand-written): table_id, "
            "dataset_id, project, time_partitioning.field, range_partitioning.field, "
            "external_data_configuration.schema, materialized_view.query/.allow_non_incremental_definition, "
            "biglake_configuration (+ all fields), schema_foreign_type_info, table_replication_info (+ all fields) "
            "ForceNew; encryption_configuration ForceNew but its kms_key_name is not; time_partitioning itself, "
            "time_partitioning.type and .expiration_ms are NOT ForceNew (updated by the table PUT). `schema` is "
            'not ForceNew: CustomizeDiff resourceBigQueryTableSchemaCustomizeDiff calls d.ForceNew("schema") '
            "when resourceBigQueryTableSchemaIsChangeable is false: a renamed or retyped column (INTEGER/INT64, "
            "FLOAT/FLOAT64, BOOLEAN/BOOL are equal), a mode change other than REQUIRED -> NULLABLE, a new REQUIRED "
            "column, a dropped nested column, dropping top-level columns together with adding others, or dropping "
            "one on a table with row access policies (or an external table); adding NULLABLE columns, or only "
            "dropping top-level ones, updates in place"
        ),
        note=(
            "The `schema` rule depends on the two schemas, so it is not a path here: the logging schema is fixed "
            "by Vertex AI (components/vertex_quality.py LOGGING_SCHEMA) and the program never changes it. "
            "monitoring.drift / vertex.requestLogging retention changes only timePartitioning.expirationMs: an "
            "update."
        ),
    ),
    "gcp:bigquery/iamMember:IamMember": Rule(
        force_new=("condition", "datasetId", "member", "project", "role", "tableId"),
        source=(
            f"{_TF_GOOGLE_HEAD}: pulumi-gcp maps google_bigquery_TABLE_iam_member to this token (the dataset one "
            "is bigquery/datasetIamMember; the SDK class takes table_id); google/services/bigquery/"
            "iam_bigquery_table.go (generated) BigQueryTableIamSchema: project, dataset_id, table_id ForceNew; "
            "google/tpgiamresource/resource_iam_member.go: role, member, condition (+ expression, title, "
            "description) ForceNew and no Update function"
        ),
        note="The monitor's read grant on the request-log table (components/vertex_quality.py).",
    ),
    "gcp:projects/iAMMember:IAMMember": Rule(
        force_new=("condition", "member", "project", "role"),
        source=(
            f"{_TF_GOOGLE_HEAD} google/services/resourcemanager/iam_project.go ProjectIamMemberResource = "
            "tpgiamresource.ResourceIamMember(IamProjectSchema ...): IamProjectSchema.project ForceNew; "
            "google/tpgiamresource/resource_iam_member.go: role, member, condition ForceNew, no Update"
        ),
    ),
    "gcp:serviceaccount/account:Account": Rule(
        force_new=("accountId", "project"),
        source=(
            f"{_TF_GOOGLE_HEAD} google/services/resourcemanager/resource_google_service_account.go: account_id, "
            "project ForceNew; resourceGoogleServiceAccountUpdate patches description, display_name and "
            "enables/disables on `disabled`"
        ),
        note="Replacing the account gives it a new unique id: its IAM members are replaced too.",
    ),
    "gcp:cloudrunv2/job:Job": Rule(
        force_new=("location", "name", "project", "tags"),
        source=(
            f"{_TF_GOOGLE_HEAD} google/services/cloudrunv2/resource_cloud_run_v2_job.go (generated from "
            "mmv1/products/cloudrunv2/Job.yaml): name, location, project, tags ForceNew; "
            "resourceCloudRunV2JobUpdate PATCHes client, client_version, launch_stage, binary_authorization, "
            "start/run_execution_token, template (containers, args, image, service_account ...), labels, "
            "annotations"
        ),
        note="A rollout changes the container args (deployed model -> version map): an in-place PATCH.",
    ),
    "gcp:cloudrunv2/jobIamMember:JobIamMember": Rule(
        force_new=("condition", "location", "member", "name", "project", "role"),
        source=(
            f"{_TF_GOOGLE_HEAD} google/services/cloudrunv2/iam_cloud_run_v2_job.go (generated) "
            "CloudRunV2JobIamSchema: project, location, name ForceNew; google/tpgiamresource/"
            "resource_iam_member.go: role, member, condition ForceNew, no Update"
        ),
    ),
    "gcp:cloudscheduler/job:Job": Rule(
        force_new=("name", "project", "region"),
        source=(
            f"{_TF_GOOGLE_HEAD} google/services/cloudscheduler/resource_cloud_scheduler_job.go (generated from "
            "mmv1/products/cloudscheduler/Job.yaml): name, region, project ForceNew; the update PATCHes "
            "schedule, time_zone, http_target, retry_config, attempt_deadline, description (and pause/resume "
            "on `paused`)"
        ),
        note="The program's schedule and target (the job's :run URI) do not change with a rollout.",
    ),
    "gcp:monitoring/metricDescriptor:MetricDescriptor": Rule(
        force_new=("labels", "launchStage", "metricKind", "project", "type", "valueType"),
        source=(
            f"{_TF_GOOGLE_HEAD} google/services/monitoring/resource_monitoring_metric_descriptor.go (generated "
            'from mmv1/products/monitoring/MetricDescriptor.yaml): metric_kind, type, value_type, labels ("In order '
            'to delete a label, the entire resource must be deleted"), launch_stage, project ForceNew; '
            "description, display_name, unit, metadata are not: the update re-POSTs the descriptor to "
            "v3/projects/{project}/metricDescriptors"
        ),
        note=(
            "Fixed by the program (components/vertex_quality.py ALERTED_METRICS): a rollout never changes a "
            "descriptor; adding a label key to a metric would replace it."
        ),
    ),
    "pulumi:providers:gcp": Rule(
        force_new=(),
        source=(
            f"{_TF_GOOGLE} google/tpgresource/utils.go DefaultProviderProject: a resource's unset `project` "
            "is the provider's and `project` is ForceNew; pulumi-gcp sets no ForcesProviderReplace"
        ),
        note=(
            "Not declared by this program (it uses the default provider) and every GCP resource sets "
            "`project` explicitly, so a provider project change replaces nothing."
        ),
    ),
    # ------------------------------------------------------------------ Kubernetes (pulumi-kubernetes 4.x)
    "kubernetes:apps/v1:Deployment": _k8s(
        "spec.selector",
        note="spec.selector (matchLabels, matchExpressions) replaces; spec.template changes roll the pods in place.",
    ),
    "kubernetes:core/v1:Service": _k8s(
        "spec.clusterIP",
        note="spec.type, ports and selector update in place.",
    ),
    "kubernetes:core/v1:ServiceAccount": _k8s(),
    "kubernetes:core/v1:Namespace": _k8s(note="Cluster-scoped: the provider clears metadata.namespace."),
    "kubernetes:core/v1:ConfigMap": _k8s(
        "binaryData",
        "data",
        note=(
            "data and binaryData replace unless the provider sets enableConfigMapMutable "
            "(diff.go: clients.IsConfigMap && (!k.enableConfigMapMutable || immutable)); default false."
        ),
    ),
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler": _k8s(),
    "kubernetes:core/v1:PersistentVolumeClaim": _k8s(
        "spec.accessModes",
        "spec.selector",
        "spec.storageClassName",
        "spec.volumeName",
        note=(
            "spec.resources (the requested size) updates in place: the volume grows where the StorageClass "
            "allows expansion, the API server refuses a shrink. The model monitor's claim ignores "
            "spec.storageClassName after creation and is retained on delete (components/quality.py), so "
            "no config edit deletes its records."
        ),
    ),
    "kubernetes:policy/v1:PodDisruptionBudget": _k8s(
        note="The `.spec` forceNew entry is for policy/v1beta1 only; a policy/v1 PDB updates in place."
    ),
    "kubernetes:networking.k8s.io/v1:Ingress": _k8s(),
    # the `networking.k8s.io` group has no entry in diff.go's forceNew table: metadata only
    "kubernetes:networking.k8s.io/v1:NetworkPolicy": _k8s(),
    "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute": _k8s(note="A CustomResource: no kind-specific rule."),
    "kubernetes:monitoring.coreos.com/v1:PodMonitor": _k8s(note="A CustomResource: no kind-specific rule."),
    "kubernetes:keda.sh/v1alpha1:ScaledObject": _k8s(
        note=(
            "A CustomResource: no kind-specific rule, every spec field (triggers, replica bounds, "
            "scaleTargetRef) updates in place; KEDA reconciles the HPA it owns "
            "(kedacore/keda v2.20.2 controllers/keda/scaledobject_controller.go updates the HPA on "
            "a changed ScaledObject)."
        )
    ),
    "kubernetes:monitoring.coreos.com/v1:PrometheusRule": _k8s(note="A CustomResource: no kind-specific rule."),
    "kubernetes:helm.sh/v3:Release": Rule(
        force_new=("name", "namespace"),
        source=(
            "pulumi/pulumi-kubernetes provider/pkg/provider/helm_release.go Diff: forceNewFields "
            "[.name, .namespace]; DeleteBeforeReplace: false"
        ),
        note="values, version, chart upgrade the release in place.",
    ),
    "pulumi:providers:kubernetes": Rule(
        force_new=("cluster", "clusterIdentifier", "context", "kubeconfig", "renderYamlToDirectory"),
        source=(
            "pulumi/pulumi-kubernetes provider/pkg/provider/provider.go DiffConfig: replaces on a changed "
            "clusterIdentifier, a computed kubeconfig/context/cluster, a changed renderYamlToDirectory, and on "
            "kubeconfig/context/cluster changes that change the active cluster"
        ),
        note=(
            "Replacing the provider replaces every Kubernetes object it manages. A context/kubeconfig/cluster "
            "change that keeps the same active cluster is an update, which only the real kubeconfig can tell; "
            "with clusterIdentifier set and unchanged nothing is replaced."
        ),
    ),
    # ------------------------------------------------------------------ docker-build
    "docker-build:index:Image": Rule(
        force_new=(),
        source=(
            "pulumi/pulumi-docker-build provider/internal/image.go (v0.0.22) Diff: every changed input "
            "(context hash, tags, labels, platforms, push, registries ...) is a provider.Update; Update "
            "rebuilds without deleting"
        ),
        note="Never replaced: a changed image is rebuilt and pushed in place.",
    ),
}
