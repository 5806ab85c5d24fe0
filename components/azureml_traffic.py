"""EndpointTraffic: an Azure ML online endpoint's ``traffic`` / ``mirror_traffic``, set once the
deployments it names exist.

Why a resource of its own: Azure accepts a traffic map only for deployments that already exist,
and a deployment can only be created under an existing endpoint. Declaring the traffic on the
``OnlineEndpoint`` itself would need the deployments first, which need the endpoint first. So the
endpoint is declared without traffic (and told to ignore ``traffic``/``mirrorTraffic``), the
``OnlineDeployment``\\ s under it, and then this dynamic resource, which ``depends_on`` the
deployments, reads the endpoint and writes its traffic maps (GET, then PUT of the same endpoint
with the new maps, as ``az ml online-endpoint update --traffic`` does). One ``pulumi up`` does all
three in order; on a rollout change only this resource (and the deployments added or dropped)
changes.

Ordering on a change, as Pulumi runs it:

* promote / rollback / widen: the deployments still declared are created or updated first, then
  this resource moves the traffic, and only then are the deployments that left the config deleted
  (Pulumi runs deletes of removed resources last), so Azure never refuses to delete a deployment
  that still takes traffic.
* destroy: this resource is deleted first (it depends on the deployments): it clears the maps, so
  the deployments can then be deleted.

The provider talks to the ARM REST API with ``requests`` and an ``azure-identity`` credential,
both imported lazily (the program and ``modelctl render`` never need them). The provider is
serialized by reference to this module, so the module must stay importable on its own: no
resources at import time, no project imports beyond the standard library and ``pulumi``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

ARM_ENDPOINT = "https://management.azure.com"
API_VERSION = "2025-12-01"
"""ARM api-version of Microsoft.MachineLearningServices for the traffic calls when the endpoint's own
is not known (a preview, a test): the one pulumi-azure-native 3.x manages OnlineEndpoint with
("Uses Azure REST API version 2025-12-01", pulumi_azure_native/machinelearningservices/online_endpoint.py;
tests/components/test_azureml_probes.py keeps the two equal). The component passes the endpoint's
``azure_api_version`` output, so the GET and the PUT of the whole endpoint speak the version the
provider wrote it with: an older one would drop, on the PUT, every property it does not know."""
MAX_MIRROR_PERCENT = 50
_READ_ONLY_PROPERTIES = ("provisioningState", "scoringUri", "swaggerUri")
_TERMINAL = {"succeeded", "failed", "canceled", "cancelled"}


# --------------------------------------------------------------------------- pure checks


def traffic_problems(traffic: Mapping[str, int], mirror: Mapping[str, int]) -> list[tuple[str, str]]:
    """What Azure would refuse in a traffic/mirror pair, as ``(property, reason)``; empty if fine.

    Live traffic sums to 100 (or 0: nothing routed); mirrored traffic sums to at most 50; a
    deployment that is mirrored to takes no live traffic.
    """
    problems: list[tuple[str, str]] = []
    for prop, m in (("traffic", traffic), ("mirrorTraffic", mirror)):
        bad = {k: v for k, v in m.items() if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 100}
        if bad:
            problems.append((prop, f"percentages are integers 0..100 (got {bad})"))
    if problems:
        return problems
    total = sum(traffic.values())
    if total not in (0, 100):
        problems.append(("traffic", f"live traffic sums to 100 (or 0), got {total}: {dict(traffic)}"))
    mirrored = sum(mirror.values())
    if mirrored > MAX_MIRROR_PERCENT:
        problems.append(("mirrorTraffic", f"Azure ML mirrors at most {MAX_MIRROR_PERCENT}% of traffic, got {mirrored}"))
    both = sorted(d for d, p in mirror.items() if p > 0 and traffic.get(d, 0) > 0)
    if both:
        problems.append(
            ("mirrorTraffic", f"deployment(s) {', '.join(both)} take live traffic and cannot be mirrored to")
        )
    return problems


# --------------------------------------------------------------------------- clients


class TrafficClient(Protocol):
    """What the provider needs from Azure: read and write one endpoint's traffic maps."""

    def get(self, endpoint_id: str) -> tuple[dict[str, int], dict[str, int]] | None:
        """``(traffic, mirror_traffic)`` of the endpoint, or None when it does not exist."""
        ...

    def set(self, endpoint_id: str, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> None:
        """Replace both maps (and wait until Azure has applied them)."""
        ...


class ArmError(RuntimeError):
    def __init__(self, method: str, url: str, status: int, body: str):
        self.status = status
        super().__init__(f"{method} {url} -> HTTP {status}: {body[:2000]}")


class ArmTrafficClient:
    """:class:`TrafficClient` over the ARM REST API (``requests`` + an azure-identity credential).

    ``credential`` is anything with ``get_token(scope)`` (default ``DefaultAzureCredential``:
    environment, workload identity / OIDC in CI, managed identity, az CLI login).
    """

    def __init__(
        self,
        arm_endpoint: str = ARM_ENDPOINT,
        api_version: str = API_VERSION,
        credential: Any = None,
        session: Any = None,
        poll_interval: float = 5.0,
        timeout: float = 1800.0,
    ):
        self.arm_endpoint = arm_endpoint.rstrip("/")
        self.api_version = api_version
        self._credential = credential
        self._session = session
        self.poll_interval = poll_interval
        self.timeout = timeout

    # -- plumbing

    def _http(self) -> Any:
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def _token(self) -> str:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return str(self._credential.get_token(f"{self.arm_endpoint}/.default").token)

    def _request(self, method: str, url: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        resp = self._http().request(method, url, headers=headers, json=body, timeout=60)
        if resp.status_code >= 400 and resp.status_code != 404:
            raise ArmError(method, url, resp.status_code, resp.text)
        return resp

    def _url(self, endpoint_id: str) -> str:
        if not endpoint_id.startswith("/subscriptions/"):
            raise ValueError(f"not an ARM resource id: {endpoint_id!r}")
        return f"{self.arm_endpoint}{endpoint_id}?api-version={self.api_version}"

    # -- TrafficClient

    def get(self, endpoint_id: str) -> tuple[dict[str, int], dict[str, int]] | None:
        resp = self._request("GET", self._url(endpoint_id))
        if resp.status_code == 404:
            return None
        props = resp.json().get("properties") or {}
        return _ints(props.get("traffic")), _ints(props.get("mirrorTraffic"))

    def set(self, endpoint_id: str, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> None:
        url = self._url(endpoint_id)
        resp = self._request("GET", url)
        if resp.status_code == 404:
            raise ArmError("GET", url, 404, "the online endpoint does not exist")
        body = put_body(resp.json(), traffic, mirror)
        put = self._request("PUT", url, body)
        if put.status_code == 404:
            raise ArmError("PUT", url, 404, put.text)
        operation = put.headers.get("Azure-AsyncOperation") or put.headers.get("Location")
        if put.status_code in (201, 202) and operation:
            self._wait(operation)

    def _wait(self, operation_url: str) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            resp = self._request("GET", operation_url)
            status = str((resp.json() or {}).get("status", "")).lower() if resp.content else ""
            if status in _TERMINAL:
                if status != "succeeded":
                    raise ArmError("GET", operation_url, resp.status_code, resp.text)
                return
            if not status and resp.status_code == 200:
                return  # a Location poll answers the resource itself when done
            if time.monotonic() > deadline:
                raise TimeoutError(f"traffic update still running after {self.timeout:.0f}s: {operation_url}")
            time.sleep(self.poll_interval)


def put_body(current: Mapping[str, Any], traffic: Mapping[str, int], mirror: Mapping[str, int]) -> dict[str, Any]:
    """The PUT body that changes only the traffic maps of ``current`` (a GET of the endpoint)."""
    body: dict[str, Any] = {k: current[k] for k in ("location", "identity", "kind", "sku", "tags") if current.get(k)}
    props = {k: v for k, v in (current.get("properties") or {}).items() if k not in _READ_ONLY_PROPERTIES}
    props["traffic"] = dict(traffic)
    props["mirrorTraffic"] = dict(mirror)
    body["properties"] = props
    identity = body.get("identity")
    if isinstance(identity, dict):
        # principalId / tenantId are read-only; user-assigned identities are sent as keys only
        ident = {k: v for k, v in identity.items() if k in ("type", "userAssignedIdentities")}
        if isinstance(ident.get("userAssignedIdentities"), dict):
            ident["userAssignedIdentities"] = {k: {} for k in ident["userAssignedIdentities"]}
        body["identity"] = ident
    return body


def _ints(m: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in (m or {}).items()}


# --------------------------------------------------------------------------- the provider

ClientFactory = Callable[[Mapping[str, Any]], TrafficClient]


class EndpointTrafficProvider(ResourceProvider):
    """Create/update set the maps, delete clears them (if the endpoint still exists), read
    returns what Azure has. ``client_factory`` is for tests; by default an :class:`ArmTrafficClient`."""

    def __init__(self, client_factory: ClientFactory | None = None):
        super().__init__()
        self._client_factory = client_factory

    def _client(self, props: Mapping[str, Any]) -> TrafficClient:
        if self._client_factory is not None:
            return self._client_factory(props)
        return ArmTrafficClient(
            arm_endpoint=str(props.get("armEndpoint") or ARM_ENDPOINT),
            api_version=str(props.get("apiVersion") or API_VERSION),
        )

    @staticmethod
    def _maps(props: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
        return _ints(props.get("traffic")), _ints(props.get("mirrorTraffic"))

    @staticmethod
    def _outs(props: Mapping[str, Any], traffic: Mapping[str, int], mirror: Mapping[str, int]) -> dict[str, Any]:
        outs = {k: v for k, v in props.items() if k != "__provider"}
        outs["traffic"] = dict(traffic)
        outs["mirrorTraffic"] = dict(mirror)
        return outs

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        if not news.get("endpointId"):
            failures.append(CheckFailure("endpointId", "the endpoint's ARM id is required"))
        if isinstance(news.get("traffic"), dict) and isinstance(news.get("mirrorTraffic") or {}, dict):
            traffic, mirror = self._maps(news)
            failures += [CheckFailure(p, r) for p, r in traffic_problems(traffic, mirror)]
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        traffic, mirror = self._maps(props)
        endpoint_id = str(props["endpointId"])
        self._client(props).set(endpoint_id, traffic, mirror)
        return CreateResult(id_=f"{endpoint_id}/traffic", outs=self._outs(props, traffic, mirror))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("endpointId", "traffic", "mirrorTraffic", "revision", "armEndpoint", "apiVersion")
        changed = [k for k in keys if _norm(olds.get(k)) != _norm(news.get(k))]
        replaces = ["endpointId"] if "endpointId" in changed else []
        return DiffResult(changes=bool(changed), replaces=replaces, stables=[], delete_before_replace=bool(replaces))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        traffic, mirror = self._maps(news)
        self._client(news).set(str(news["endpointId"]), traffic, mirror)
        return UpdateResult(outs=self._outs(news, traffic, mirror))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        client = self._client(props)
        endpoint_id = str(props["endpointId"])
        if client.get(endpoint_id) is None:
            return  # the endpoint is gone already: nothing routes anywhere
        client.set(endpoint_id, {}, {})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        live = self._client(props).get(str(props["endpointId"]))
        if live is None:
            return ReadResult(id_="", outs={})  # gone: the engine drops it from state
        return ReadResult(id_=id_, outs=self._outs(props, live[0], live[1]))


def _norm(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _norm(x) for k, x in sorted(v.items())}
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


class EndpointTraffic(pulumi.dynamic.Resource):
    """The traffic maps of one online endpoint. Give it ``depends_on`` = the deployments.

    Outputs (dynamic resources keep the property names): ``endpointId``, ``traffic``,
    ``mirrorTraffic``."""

    def __init__(
        self,
        name: str,
        endpoint_id: pulumi.Input[str],
        traffic: Mapping[str, int],
        mirror_traffic: Mapping[str, int],
        revision: pulumi.Input[str] = "",
        arm_endpoint: str = ARM_ENDPOINT,
        api_version: pulumi.Input[str] = API_VERSION,
        opts: pulumi.ResourceOptions | None = None,
    ):
        problems = traffic_problems(traffic, mirror_traffic)
        if problems:
            raise ValueError("; ".join(f"{p}: {r}" for p, r in problems))
        props = {
            "endpointId": endpoint_id,
            "traffic": dict(traffic),
            "mirrorTraffic": dict(mirror_traffic),
            "revision": revision,
            "armEndpoint": arm_endpoint,
            "apiVersion": api_version,
        }
        super().__init__(EndpointTrafficProvider(), name, props, opts)
