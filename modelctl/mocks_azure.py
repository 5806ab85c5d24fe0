"""Plausible outputs for Azure resources under the mock runtime (``modelctl render``).

What the Azure ML target reads back from Azure (the endpoint's scoring URI) is made up here in
the shape Azure answers with. Imported by ``modelctl/render.py``.
"""

from __future__ import annotations

from typing import Any

from modelctl.render import MOCK_OUTPUTS


def _online_endpoint(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    ep = inputs.get("endpointName", name)
    region = inputs.get("location", "region")
    props = dict(inputs.get("properties") or {})
    props["scoringUri"] = f"https://{ep}.{region}.inference.ml.azure.com/score"
    props["swaggerUri"] = f"https://{ep}.{region}.inference.ml.azure.com/swagger.json"
    return {"properties": props}


MOCK_OUTPUTS["azure-native:machinelearningservices:OnlineEndpoint"] = _online_endpoint
