"""Render the stacks the policy tests run over: ``python policy/tests/render_cases.py OUT``.

Runs in the *program's* environment (it imports modelctl, which needs the provider SDKs), not in
the policy pack's venv: it registers the sample model in a temp MLflow registry, renders each
case with ``modelctl render``'s mock runtime and writes ``OUT/<case>/resources.json``. The
policy tests (policy venv) only read those files.

Cases: the real ``Pulumi.dev.yaml`` and ``Pulumi.prod.yaml`` (pointed at the sample registry),
a gateway canary, prod with a private Vertex endpoint, and two "lax" stacks whose config is
accepted by the program but breaks policies (what the pack is there to catch).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from modelctl.render import read_stack_config, run_program, write_outputs  # noqa: E402
from modelctl.sample import register_sample_model  # noqa: E402

NS = "mlflow-deploy"


def _stack(stack: str, tracking_uri: str) -> dict[str, Any]:
    cfg = read_stack_config(ROOT / f"Pulumi.{stack}.yaml")
    cfg[f"{NS}:mlflow"] = {"trackingUri": tracking_uri}
    cfg[f"{NS}:model"] = {"name": "fraud-detector", "version": "2"}
    return cfg


def cases(tracking_uri: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """case -> (stack name, config)."""
    dev = _stack("dev", tracking_uri)
    prod = _stack("prod", tracking_uri)
    prod[f"{NS}:candidate"] = {"version": "3", "strategy": "canary", "percent": 10}

    canary = copy.deepcopy(dev)
    canary[f"{NS}:candidate"] = {"version": "3", "strategy": "canary", "percent": 10}
    canary[f"{NS}:kubernetes"].update(
        {"router": "gateway", "gateway": {"name": "public", "namespace": "gateway-system"}}
    )

    private = copy.deepcopy(prod)
    private[f"{NS}:vertex"]["network"] = "projects/123456789012/global/networks/ml-vpc"
    # a VPC-peered private endpoint holds one deployed model: the program refuses a candidate there
    private.pop(f"{NS}:candidate")

    # Kubernetes only: a public LoadBalancer (allowed explicitly), no limits, a prebuilt image by
    # a mutable tag. Each is a setting the program accepts; the policy pack is what stops it.
    lax_k8s: dict[str, Any] = {
        f"{NS}:mlflow": {"trackingUri": tracking_uri},
        f"{NS}:model": {"name": "fraud-detector", "version": "2"},
        f"{NS}:image": {"uris": {"2": "ghcr.io/acme/fraud-detector:latest"}},
        f"{NS}:kubernetes": {
            "namespace": "models",
            "serviceType": "LoadBalancer",
            "allowPublicLoadBalancer": True,
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {}},
        },
        f"{NS}:monitoring": {"enabled": False},
    }
    # The clouds: SageMaker without network isolation, capturing without a KMS key; an Azure ML
    # endpoint open to public networks; a public Vertex endpoint.
    lax_clouds = copy.deepcopy(prod)
    del lax_clouds[f"{NS}:kubernetes"]
    lax_clouds[f"{NS}:monitoring"] = {"enabled": False}
    lax_clouds[f"{NS}:sagemaker"]["networkIsolation"] = False
    lax_clouds[f"{NS}:sagemaker"]["dataCapture"].pop("kmsKeyArn", None)
    lax_clouds[f"{NS}:azureml"]["publicNetworkAccess"] = True
    lax_clouds[f"{NS}:azureml"]["authMode"] = "key"
    return {
        "dev": ("dev", dev),
        "prod": ("prod", prod),
        "gateway-canary": ("dev", canary),
        "prod-private-vertex": ("prod", private),
        "lax-kubernetes": ("dev", lax_k8s),
        "lax-clouds": ("prod", lax_clouds),
    }


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        registry = register_sample_model(Path(tmp) / "registry")
        os.environ["MLFLOW_TRACKING_URI"] = registry.tracking_uri
        os.environ["MLFLOW_DEPLOY_BUILD_DIR"] = str(Path(tmp) / "build")
        for name, (stack, config) in cases(registry.tracking_uri).items():
            write_outputs(run_program(config, stack=stack), out / name)
            (out / name / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            print(f"rendered {name}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python policy/tests/render_cases.py OUT")
    main(Path(sys.argv[1]))
