"""EndpointTraffic: the dynamic resource that sets an Azure ML endpoint's traffic once the
deployments exist. Its provider's create/update/delete/read/diff/check run against a fake client
that enforces Azure's rules; the real ARM client runs against a fake ARM server on loopback."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from components.azureml_traffic import (
    ArmError,
    ArmTrafficClient,
    EndpointTrafficProvider,
    put_body,
    traffic_problems,
)

ROOT = Path(__file__).resolve().parents[2]
EP = (
    "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.MachineLearningServices"
    "/workspaces/ws/onlineEndpoints/fd-prod"
)


class AzureRefusedError(RuntimeError):
    pass


class FakeAzure:
    """An endpoint and its deployments, with the rules Azure applies to traffic."""

    def __init__(self, deployments: set[str] | None = None, exists: bool = True):
        self.exists = exists
        self.deployments: set[str] = set(deployments or ())
        self.traffic: dict[str, int] = {}
        self.mirror: dict[str, int] = {}
        self.calls: list[tuple[str, Any]] = []

    # what the provider calls
    def get(self, endpoint_id: str) -> tuple[dict[str, int], dict[str, int]] | None:
        self.calls.append(("get", endpoint_id))
        return (dict(self.traffic), dict(self.mirror)) if self.exists else None

    def set(self, endpoint_id: str, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> None:
        self.calls.append(("set", (endpoint_id, dict(traffic), dict(mirror))))
        if not self.exists:
            raise AzureRefusedError("endpoint not found")
        unknown = sorted((set(traffic) | set(mirror)) - self.deployments)
        if unknown:
            raise AzureRefusedError(f"traffic for deployments that do not exist: {unknown}")
        if sum(traffic.values()) not in (0, 100) or sum(mirror.values()) > 50:
            raise AzureRefusedError("bad sums")
        self.traffic, self.mirror = dict(traffic), dict(mirror)

    # what the other resources do
    def delete_deployment(self, name: str) -> None:
        if self.traffic.get(name, 0) > 0 or self.mirror.get(name, 0) > 0:
            raise AzureRefusedError(f"deployment {name} still takes traffic")
        self.deployments.discard(name)


def provider(fake: FakeAzure) -> EndpointTrafficProvider:
    return EndpointTrafficProvider(client_factory=lambda _props: fake)


def props(traffic: dict[str, int], mirror: dict[str, int] | None = None, **extra: Any) -> dict[str, Any]:
    return {"endpointId": EP, "traffic": traffic, "mirrorTraffic": mirror or {}, "revision": "r1", **extra}


# --------------------------------------------------------------------------- pure checks


@pytest.mark.parametrize(
    "traffic,mirror,bad",
    [
        ({"a": 90, "b": 10}, {}, None),
        ({}, {}, None),
        ({"a": 100}, {"b": 50}, None),
        ({"a": 90, "b": 20}, {}, "traffic"),
        ({"a": 100}, {"b": 51}, "mirrorTraffic"),
        ({"a": 100}, {"a": 10}, "mirrorTraffic"),
        ({"a": 101}, {}, "traffic"),
        ({"a": True}, {}, "traffic"),
    ],
)
def test_traffic_problems(traffic: dict[str, int], mirror: dict[str, int], bad: str | None) -> None:
    found = traffic_problems(traffic, mirror)
    assert [p for p, _ in found][:1] == ([bad] if bad else [])


def test_put_body_changes_only_the_maps() -> None:
    current = {
        "id": EP,
        "name": "fd-prod",
        "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
        "location": "westeurope",
        "tags": {"team": "risk"},
        "identity": {"type": "SystemAssigned", "principalId": "p", "tenantId": "t"},
        "systemData": {"createdBy": "x"},
        "properties": {
            "authMode": "AADToken",
            "publicNetworkAccess": "Disabled",
            "description": "d",
            "traffic": {"old": 100},
            "mirrorTraffic": {"x": 10},
            "provisioningState": "Succeeded",
            "scoringUri": "https://fd-prod.westeurope.inference.ml.azure.com/score",
            "swaggerUri": "https://…/swagger.json",
        },
    }
    body = put_body(current, {"a": 80, "b": 20}, {})
    assert body["properties"]["traffic"] == {"a": 80, "b": 20}
    assert body["properties"]["mirrorTraffic"] == {}
    # what the user declared survives the PUT unchanged
    for k in ("authMode", "publicNetworkAccess", "description"):
        assert body["properties"][k] == current["properties"][k]
    assert body["location"] == "westeurope" and body["tags"] == {"team": "risk"}
    # read-only fields are not sent back
    assert not {"provisioningState", "scoringUri", "swaggerUri"} & set(body["properties"])
    assert not {"id", "name", "type", "systemData"} & set(body)
    assert body["identity"] == {"type": "SystemAssigned"}
    assert current["properties"]["traffic"] == {"old": 100}, "the input is not mutated"


# --------------------------------------------------------------------------- the provider


def test_create_sets_the_maps_and_outputs_them() -> None:
    fake = FakeAzure({"fd-v7", "fd-v8"})
    res = provider(fake).create(props({"fd-v7": 90, "fd-v8": 10}))
    assert (fake.traffic, fake.mirror) == ({"fd-v7": 90, "fd-v8": 10}, {})
    assert res.id == f"{EP}/traffic"
    assert res.outs is not None
    assert res.outs["traffic"] == {"fd-v7": 90, "fd-v8": 10} and res.outs["endpointId"] == EP


def test_create_fails_like_azure_when_a_deployment_does_not_exist_yet() -> None:
    """Why the resource exists: traffic for a deployment not created yet is refused."""
    fake = FakeAzure({"fd-v7"})
    with pytest.raises(AzureRefusedError, match="fd-v8"):
        provider(fake).create(props({"fd-v7": 90, "fd-v8": 10}))


def test_shadow_sets_mirror_traffic() -> None:
    fake = FakeAzure({"fd-v7", "fd-v8"})
    provider(fake).create(props({"fd-v7": 100}, {"fd-v8": 20}))
    assert fake.traffic == {"fd-v7": 100} and fake.mirror == {"fd-v8": 20}


def test_update_moves_traffic_and_clears_a_mirror() -> None:
    fake = FakeAzure({"fd-v7", "fd-v8"})
    p = provider(fake)
    p.create(props({"fd-v7": 100}, {"fd-v8": 20}))
    res = p.update(f"{EP}/traffic", props({"fd-v7": 100}, {"fd-v8": 20}), props({"fd-v7": 50, "fd-v8": 50}))
    assert (fake.traffic, fake.mirror) == ({"fd-v7": 50, "fd-v8": 50}, {})
    assert res.outs is not None and res.outs["mirrorTraffic"] == {}


def test_promote_in_pulumi_order_lets_the_old_deployment_go() -> None:
    """Promote 7 -> 8: Pulumi updates the traffic (it depends on the live deployments) before it
    deletes the deployment that left the config; in the other order Azure would refuse."""
    fake = FakeAzure({"fd-v7", "fd-v8"})
    p = provider(fake)
    old = props({"fd-v7": 90, "fd-v8": 10})
    p.create(old)
    with pytest.raises(AzureRefusedError):
        fake.delete_deployment("fd-v7")  # the wrong order fails
    p.update(f"{EP}/traffic", old, props({"fd-v8": 100}))
    fake.delete_deployment("fd-v7")
    assert fake.deployments == {"fd-v8"} and fake.traffic == {"fd-v8": 100}


def test_delete_clears_the_maps_so_deployments_can_be_deleted() -> None:
    fake = FakeAzure({"fd-v7", "fd-v8"})
    p = provider(fake)
    p.create(props({"fd-v7": 100}, {"fd-v8": 30}))
    p.delete(f"{EP}/traffic", props({"fd-v7": 100}, {"fd-v8": 30}))
    assert (fake.traffic, fake.mirror) == ({}, {})
    fake.delete_deployment("fd-v7")
    fake.delete_deployment("fd-v8")


def test_delete_when_the_endpoint_is_gone_is_a_no_op() -> None:
    fake = FakeAzure(exists=False)
    provider(fake).delete(f"{EP}/traffic", props({"fd-v7": 100}))
    assert [c for c, _ in fake.calls] == ["get"]


def test_read_reports_what_azure_has() -> None:
    fake = FakeAzure({"fd-v7", "fd-v8"})
    fake.traffic = {"fd-v7": 60, "fd-v8": 40}  # changed outside Pulumi
    res = provider(fake).read(f"{EP}/traffic", props({"fd-v7": 100}))
    assert res.id == f"{EP}/traffic" and res.outs is not None
    assert res.outs["traffic"] == {"fd-v7": 60, "fd-v8": 40}
    gone = provider(FakeAzure(exists=False)).read(f"{EP}/traffic", props({"fd-v7": 100}))
    assert not gone.id


def test_diff() -> None:
    p = provider(FakeAzure())
    same = p.diff("id", props({"a": 100}), props({"a": 100.0}))  # numbers come back as floats
    assert same.changes is False
    weights = p.diff("id", props({"a": 100}), props({"a": 90, "b": 10}))
    assert weights.changes is True and not weights.replaces
    endpoint_update = p.diff("id", props({"a": 100}), props({"a": 100}, revision="r2"))
    assert endpoint_update.changes is True and not endpoint_update.replaces
    moved = p.diff("id", props({"a": 100}), props({"a": 100}, endpointId=EP + "2"))
    assert moved.replaces == ["endpointId"] and moved.delete_before_replace is True


def test_check_reports_impossible_maps() -> None:
    p = provider(FakeAzure())
    assert p.check({}, props({"a": 100}, {"b": 50})).failures == []
    failures = p.check({}, props({"a": 100}, {"b": 60})).failures
    assert [f.property for f in failures] == ["mirrorTraffic"]
    assert [f.property for f in p.check({}, {"traffic": {"a": 100}}).failures] == ["endpointId"]


def test_the_resource_refuses_an_impossible_map_before_registering() -> None:
    from components.azureml_traffic import EndpointTraffic

    with pytest.raises(ValueError, match="at most 50%"):
        EndpointTraffic("t", endpoint_id=EP, traffic={"a": 100}, mirror_traffic={"b": 80})


def test_provider_survives_the_dynamic_provider_host() -> None:
    """Pulumi serializes the provider with dill and loads it in a separate process started in
    the project directory: it must load there (no resources declared on import)."""
    from pulumi.dynamic.dynamic import serialize_provider

    blob = serialize_provider(EndpointTrafficProvider())
    code = (
        "import base64, sys, dill\n"
        "p = dill.loads(base64.b64decode(sys.stdin.read()))\n"
        "print(type(p).__module__, type(p).__name__, p._client_factory)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=blob, capture_output=True, text=True, cwd=ROOT, timeout=120, check=True
    )
    assert out.stdout.split() == ["components.azureml_traffic", "EndpointTrafficProvider", "None"]
    assert base64.b64decode(blob)  # it is what the engine stores in state


# --------------------------------------------------------------------------- the ARM client


class FakeArm:
    """Just enough of ARM: GET/PUT of one endpoint, an async operation that runs for two polls."""

    def __init__(self, op_outcome: str = "Succeeded", exists: bool = True):
        self.op_outcome = op_outcome
        self.exists = exists
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.polls = 0
        self.resource = {
            "id": EP,
            "name": "fd-prod",
            "location": "westeurope",
            "identity": {"type": "SystemAssigned", "principalId": "p"},
            "properties": {
                "authMode": "Key",
                "traffic": {},
                "provisioningState": "Succeeded",
                "scoringUri": "https://x/score",
            },
        }


@pytest.fixture
def arm() -> Iterator[tuple[FakeArm, str]]:
    state = FakeArm()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path, dict(self.headers), None))
            if self.path.startswith("/operations/1"):
                state.polls += 1
                status = "InProgress" if state.polls < 2 else state.op_outcome
                self._send(200, {"status": status, "error": {"message": "boom"} if status == "Failed" else None})
            elif self.path.startswith(EP) and state.exists:
                self._send(200, state.resource)
            else:
                self._send(404, {"error": {"code": "NotFound"}})

        def do_PUT(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(("PUT", self.path, dict(self.headers), body))
            host = f"http://{self.headers['Host']}"
            state.resource["properties"].update(
                {"traffic": body["properties"]["traffic"], "mirrorTraffic": body["properties"]["mirrorTraffic"]}
            )
            self._send(201, state.resource, {"Azure-AsyncOperation": f"{host}/operations/1?api-version=x"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class StaticToken:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, scope: str) -> Any:
        self.scopes.append(scope)

        class Tok:
            token = "t0k3n"

        return Tok()


def test_arm_client_get_put_and_wait(arm: tuple[FakeArm, str]) -> None:
    state, url = arm
    cred = StaticToken()
    client = ArmTrafficClient(arm_endpoint=url, api_version="2024-10-01", credential=cred, poll_interval=0.01)
    client.set(EP, {"fd-v7": 80, "fd-v8": 20}, {})
    methods = [(m, p.split("?")[0]) for m, p, _, _ in state.requests]
    assert methods[:2] == [("GET", EP), ("PUT", EP)]
    assert methods[2:] == [("GET", "/operations/1"), ("GET", "/operations/1")], "polled until Succeeded"
    _, path, headers, body = state.requests[1]
    assert "api-version=2024-10-01" in path
    assert headers["Authorization"] == "Bearer t0k3n" and cred.scopes[0] == f"{url}/.default"
    assert body["properties"]["traffic"] == {"fd-v7": 80, "fd-v8": 20}
    assert "provisioningState" not in body["properties"] and body["identity"] == {"type": "SystemAssigned"}
    assert client.get(EP) == ({"fd-v7": 80, "fd-v8": 20}, {})


def test_arm_client_raises_when_the_operation_fails(arm: tuple[FakeArm, str]) -> None:
    state, url = arm
    state.op_outcome = "Failed"
    client = ArmTrafficClient(arm_endpoint=url, credential=StaticToken(), poll_interval=0.01)
    with pytest.raises(ArmError, match="boom"):
        client.set(EP, {"fd-v7": 100}, {})


def test_arm_client_on_a_missing_endpoint(arm: tuple[FakeArm, str]) -> None:
    state, url = arm
    state.exists = False
    client = ArmTrafficClient(arm_endpoint=url, credential=StaticToken(), poll_interval=0.01)
    assert client.get(EP) is None
    with pytest.raises(ArmError, match="404"):
        client.set(EP, {"fd-v7": 100}, {})
    # the provider's delete on top of the real client: nothing to clear, no PUT
    EndpointTrafficProvider(client_factory=lambda _p: client).delete(f"{EP}/traffic", props({"fd-v7": 100}))
    assert all(m == "GET" for m, *_ in state.requests)


def test_arm_client_refuses_a_non_arm_id() -> None:
    with pytest.raises(ValueError, match="ARM resource id"):
        ArmTrafficClient(credential=StaticToken()).get("fd-prod")
