"""Plausible outputs for Azure resources under the mock runtime (``modelctl render``).

What the Azure ML target reads back from Azure (the endpoint's scoring URI) is made up here in
the shape Azure answers with. Imported by ``modelctl/render.py``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from modelctl.render import MOCK_IDS, MOCK_OUTPUTS

# The subscription of every ARM ID the mocks make up (a provider's subscription is not visible here).
MOCK_SUBSCRIPTION = "00000000-0000-4000-8000-00000000aaaa"


def _online_endpoint(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    ep = inputs.get("endpointName", name)
    region = inputs.get("location", "region")
    props = dict(inputs.get("properties") or {})
    props["scoringUri"] = f"https://{ep}.{region}.inference.ml.azure.com/score"
    props["swaggerUri"] = f"https://{ep}.{region}.inference.ml.azure.com/swagger.json"
    return {"properties": props}


def _online_endpoint_id(name: str, inputs: dict[str, Any]) -> str:
    """The ARM ID Azure gives an online endpoint: the monitor's role assignment on the endpoint
    reads its subscription from it (components/azureml_quality.py role_definition_for_scope)."""
    return (
        f"/subscriptions/{MOCK_SUBSCRIPTION}/resourceGroups/{inputs.get('resourceGroupName', 'rg')}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{inputs.get('workspaceName', 'ws')}"
        f"/onlineEndpoints/{inputs.get('endpointName', name)}"
    )


MOCK_OUTPUTS["azure-native:machinelearningservices:OnlineEndpoint"] = _online_endpoint
MOCK_IDS["azure-native:machinelearningservices:OnlineEndpoint"] = _online_endpoint_id


def _with_identity_map(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Azure answers ``identity.userAssignedIdentities`` as a map (id -> principal/client ids)
    where the request gave a list of ids."""
    identity = dict(inputs.get("identity") or {})
    ids = identity.get("userAssignedIdentities")
    if isinstance(ids, list):
        identity["userAssignedIdentities"] = {i: {"principalId": f"{name}-principal", "clientId": f"{name}-client"}
                                              for i in ids}  # fmt: skip
    return {"identity": identity} if identity else {}


def _user_assigned_identity(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return {"principalId": f"00000000-0000-4000-8000-{digest}", "clientId": f"11111111-0000-4000-8000-{digest}",
            "tenantId": "22222222-0000-4000-8000-000000000000"}  # fmt: skip


MOCK_OUTPUTS["azure-native:app:Job"] = _with_identity_map
MOCK_OUTPUTS["azure-native:managedidentity:UserAssignedIdentity"] = _user_assigned_identity
