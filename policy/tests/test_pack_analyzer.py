"""The pack as the Pulumi CLI runs it: ``policy/__main__.py`` started as its own process (never
imported), serving the Analyzer gRPC protocol on loopback; the test plays the engine's part
(GetAnalyzerInfo, ConfigureStack, Analyze) with the rendered resources.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from model_serving_policies import RULES, evaluate

grpc = pytest.importorskip("grpc")
pytest.importorskip("pulumi_policy")
from google.protobuf import empty_pb2, json_format, struct_pb2  # noqa: E402
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc  # noqa: E402

POLICY_DIR = Path(__file__).resolve().parents[1]
Stack = Callable[[str], list[dict[str, Any]]]
LEVEL_NAMES = {0: "advisory", 1: "mandatory", 2: "disabled", 3: "remediate"}


@pytest.fixture(scope="module")
def analyzer() -> Iterator[Any]:
    proc = subprocess.Popen(
        [sys.executable, str(POLICY_DIR / "__main__.py")],
        cwd=POLICY_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.isdigit(), (
            f"the pack did not start: {port!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def analyze(stub: Any, resource: dict[str, Any]) -> list[tuple[str, str]]:
    props = struct_pb2.Struct()
    json_format.ParseDict(json.loads(json.dumps(resource["inputs"])), props)
    req = analyzer_pb2.AnalyzeRequest(
        type=resource["type"],
        name=resource["name"],
        urn=f"urn:pulumi:test::mlflow-deploy::{resource['type']}::{resource['name']}",
        properties=props,
    )
    resp = stub.Analyze(req, timeout=30)
    # the SDK puts the policy's description above the reported message
    return [(d.policyName, d.message.split("\n", 1)[-1]) for d in resp.diagnostics]


def test_the_pack_declares_every_rule_at_its_level(analyzer: Any) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "mlflow-deploy"
    got = {p.name: LEVEL_NAMES[p.enforcementLevel] for p in info.policies}
    assert got == {r.name: r.level for r in RULES}
    vertex = next(p for p in info.policies if p.name == "vertex-private-endpoint")
    assert "required" in json_format.MessageToDict(vertex.configSchema)["properties"]


def test_analyze_reports_what_the_pure_rules_find(analyzer: Any, stack: Stack) -> None:
    for case in ("lax-kubernetes", "lax-clouds", "prod"):
        resources = stack(case)
        expected = sorted((name, v) for name, vs in evaluate(resources).items() for v in vs)
        got = sorted(d for r in resources for d in analyze(analyzer, r))
        assert got == expected, case
    assert any(
        name == "no-public-load-balancer"
        for name, _ in (d for r in stack("lax-kubernetes") for d in analyze(analyzer, r))
    )


def test_stack_tag_requires_a_private_vertex_endpoint(analyzer: Any, stack: Stack) -> None:
    endpoint = next(r for r in stack("prod") if r["type"] == "gcp:vertex/aiEndpoint:AiEndpoint")
    assert analyze(analyzer, endpoint) == []
    analyzer.ConfigureStack(
        analyzer_pb2.AnalyzerStackConfigureRequest(
            stack="prod", project="mlflow-deploy", tags={"mlflow-deploy:vertex-private-endpoint": "true"}
        ),
        timeout=30,
    )
    try:
        found = analyze(analyzer, endpoint)
        assert [name for name, _ in found] == ["vertex-private-endpoint"]
        private = next(r for r in stack("prod-private-vertex") if r["type"] == "gcp:vertex/aiEndpoint:AiEndpoint")
        assert analyze(analyzer, private) == []
    finally:
        analyzer.ConfigureStack(analyzer_pb2.AnalyzerStackConfigureRequest(stack="prod", tags={}), timeout=30)
