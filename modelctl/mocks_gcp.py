"""Plausible outputs for GCP resources under the mock runtime (``modelctl render``).

What the monitor job's resources read back from GCP (a service account's email) is made up here in
the shape GCP answers with. Imported by ``modelctl/render.py``.
"""

from __future__ import annotations

from typing import Any

from modelctl.render import MOCK_OUTPUTS


def _service_account(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    account, project = inputs.get("accountId", name), inputs.get("project", "project")
    email = f"{account}@{project}.iam.gserviceaccount.com"
    return {"email": email, "member": f"serviceAccount:{email}", "name": f"projects/{project}/serviceAccounts/{email}"}


MOCK_OUTPUTS["gcp:serviceaccount/account:Account"] = _service_account
