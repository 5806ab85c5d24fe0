"""checkov over the rendered Kubernetes manifests of the dev stack, a gateway canary and a shadow
with the model monitor on (``monitoring.drift``): no failed check, and nothing skipped but the two
known false positives, each with checkov's own annotation and a reason (components/kubernetes.py
CHECKOV_SKIPS for the model pods, components/quality.py MONITOR_CHECKOV_SKIPS for the monitor).

checkov runs from its own venv (scripts/test.sh builds ``.venv-checkov``: installed into the
program's environment it would downgrade boto3/botocore and packaging). ``CHECKOV`` names the
binary; without one the tests skip, unless ``MLFLOW_DEPLOY_REQUIRE_TOOLS=1`` (scripts/test.sh)
makes a missing tool a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from components.kubernetes import CHECKOV_SKIPS
from components.quality import MONITOR_CHECKOV_SKIPS, monitor_name
from modelctl.render import Rendered, read_stack_config, write_outputs
from modelctl.sample import SampleRegistry, log_sample_references

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_SKIPS = {"CKV_K8S_43", "CKV_K8S_15"}


def checkov_binary() -> str:
    for candidate in (os.environ.get("CHECKOV"), shutil.which("checkov"), str(ROOT / ".venv-checkov/bin/checkov")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    if os.environ.get("MLFLOW_DEPLOY_REQUIRE_TOOLS") == "1":
        pytest.fail("checkov is not installed (scripts/test.sh installs it into .venv-checkov)")
    pytest.skip("checkov is not installed (bash scripts/test.sh installs it into .venv-checkov)")


def run_checkov(manifests: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [checkov_binary(), "-d", str(manifests), "--framework", "kubernetes", "-o", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=600,
        # no calls home for guideline links (the result does not depend on them)
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    # checkov exits 1 when a check fails: the JSON says which
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert isinstance(report, dict) and report["check_type"] == "kubernetes", proc.stdout[:500]
    return report


def dev_config(registry: SampleRegistry) -> dict[str, Any]:
    cfg = read_stack_config(ROOT / "Pulumi.dev.yaml")
    cfg["mlflow-deploy:mlflow"] = {"trackingUri": registry.tracking_uri}
    return cfg


def gateway_canary(registry: SampleRegistry) -> dict[str, Any]:
    cfg = dev_config(registry)
    cfg["mlflow-deploy:candidate"] = {"version": "3", "strategy": "canary", "percent": 10}
    cfg["mlflow-deploy:kubernetes"] = {
        **cfg["mlflow-deploy:kubernetes"],
        "replicas": 2,
        "autoscaling": {"minReplicas": 2, "maxReplicas": 6},
        "router": "gateway",
        "gateway": {"name": "public", "namespace": "gateway-system"},
    }
    return cfg


def shadow_with_drift(registry: SampleRegistry, reference_dir: Path) -> dict[str, Any]:
    """A gateway shadow with the model monitor on: its Deployment, Service, claim, network policy
    and PodMonitor beside the two versions' objects (the reference logged as ``modelctl demo`` does)."""
    reference_dir.mkdir(parents=True, exist_ok=True)
    log_sample_references(registry, reference_dir)
    cfg = gateway_canary(registry)
    cfg["mlflow-deploy:candidate"] = {"version": "3", "strategy": "shadow", "percent": 100}
    cfg["mlflow-deploy:monitoring"] = {
        **cfg["mlflow-deploy:monitoring"],
        "drift": {"enabled": True, "reference": "models:/fraud-detector/2"},
    }
    return cfg


MONITOR_DEPLOYMENT = f"Deployment.models.{monitor_name('fraud-detector')}"


@pytest.mark.parametrize("stack", ["dev", "gateway-canary", "shadow-drift"])
def test_checkov_passes_with_only_the_two_known_skips(
    render: Callable[..., Rendered], registry: SampleRegistry, tmp_path: Path, stack: str
) -> None:
    if stack == "dev":
        cfg = dev_config(registry)
    elif stack == "gateway-canary":
        cfg = gateway_canary(registry)
    else:
        cfg = shadow_with_drift(registry, tmp_path / "reference")
    write_outputs(render(cfg, stack="dev"), tmp_path / "out")
    manifests = tmp_path / "out" / "kubernetes"
    deployments = sorted(p.name for p in manifests.glob("deployment-*.yaml"))
    assert len(deployments) == {"dev": 1, "gateway-canary": 2, "shadow-drift": 3}[stack], deployments
    report = run_checkov(manifests)
    results = report["results"]
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == [], failed
    assert report["summary"]["parsing_errors"] == 0
    skipped = results["skipped_checks"]
    assert {c["check_id"] for c in skipped} == ALLOWED_SKIPS
    for c in skipped:
        reasons = MONITOR_CHECKOV_SKIPS if c["resource"] == MONITOR_DEPLOYMENT else CHECKOV_SKIPS
        assert c["check_result"]["suppress_comment"] == reasons[c["check_id"]]
    skipped_on = {c["resource"] for c in skipped}
    assert (MONITOR_DEPLOYMENT in skipped_on) is (stack == "shadow-drift")
    # the network policy check ran and passed for every pod (the monitor's has its own policy)
    assert sum(1 for c in results["passed_checks"] if c["check_id"] == "CKV2_K8S_6") == len(deployments)
    # the monitor's CPU limit (its default resources) is checked, not skipped
    if stack == "shadow-drift":
        passed_on_monitor = {c["check_id"] for c in results["passed_checks"] if c["resource"] == MONITOR_DEPLOYMENT}
        assert {"CKV_K8S_11", "CKV_K8S_13", "CKV_K8S_22", "CKV_K8S_28"} <= passed_on_monitor


def test_checkov_would_catch_a_model_without_network_policy(
    render: Callable[..., Rendered], registry: SampleRegistry, tmp_path: Path
) -> None:
    """The control: the same stack with the policy turned off fails CKV2_K8S_6, so the passing run
    above is checkov judging the policy, not checkov skipping the check."""
    cfg = dev_config(registry)
    cfg["mlflow-deploy:kubernetes"] = {**cfg["mlflow-deploy:kubernetes"], "networkPolicy": False}
    write_outputs(render(cfg, stack="dev"), tmp_path)
    report = run_checkov(tmp_path / "kubernetes")
    assert {c["check_id"] for c in report["results"]["failed_checks"]} == {"CKV2_K8S_6"}


def test_skips_are_annotations_on_the_deployment_only(
    render: Callable[..., Rendered], registry: SampleRegistry, tmp_path: Path
) -> None:
    write_outputs(render(dev_config(registry), stack="dev"), tmp_path)
    yaml = YAML(typ="safe")
    for f in (tmp_path / "kubernetes").glob("*.yaml"):
        m = yaml.load(f.read_text())
        skips = [k for k in (m["metadata"].get("annotations") or {}) if k.startswith("checkov.io/skip")]
        assert (m["kind"] == "Deployment") == bool(skips), f.name
