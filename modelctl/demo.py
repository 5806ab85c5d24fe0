"""``modelctl demo``: the whole flow on a machine with no cloud and no cluster.

1. register a sample model (versions 1-3, alias ``champion``) in a sqlite MLflow registry
   under ``.mlflow-demo/``;
2. render the ``dev`` stack against it under Pulumi's mock runtime (``.mlflow-demo/render/``);
3. print what it would deploy;
4. serve the stable version with the project's serving runtime on loopback, send one
   prediction, print it and a few metric lines, stop the server.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from modelctl.commands import load_stack_config
from modelctl.render import PROJECT_ROOT, Declared, run_program, write_outputs
from modelctl.sample import FEATURES, log_sample_references, register_sample_model, sample_frame


def summarize(r: Declared) -> str:
    """Key settings of one declared resource, in a few words."""
    i = r.inputs
    spec = i.get("spec") or {}
    t = r.type
    if t == "kubernetes:apps/v1:Deployment":
        c = spec["template"]["spec"]["containers"][0]
        res = c.get("resources", {})
        replicas = spec.get("replicas", "HPA")
        return (
            f"replicas={replicas} image={c['image']} "
            f"requests={_q(res.get('requests'))} limits={_q(res.get('limits'))}"
        )
    if t == "kubernetes:core/v1:Service":
        sel = ",".join(f"{k}={v}" for k, v in spec.get("selector", {}).items())
        return f"{spec.get('type', 'ClusterIP')} selector {sel}"
    if t == "kubernetes:autoscaling/v2:HorizontalPodAutoscaler":
        return f"{spec.get('minReplicas')}-{spec.get('maxReplicas')} pods"
    if t == "kubernetes:policy/v1:PodDisruptionBudget":
        return f"maxUnavailable={spec.get('maxUnavailable')}"
    if t == "docker-build:index:Image":
        return f"build {', '.join(i.get('tags', []))}"
    if t.startswith("kubernetes:") and "kind" in i:
        return str(i.get("kind"))
    return ""


def _q(q: dict[str, Any] | None) -> str:
    return "/".join(str(v) for v in (q or {}).values()) or "-"


def _short_type(t: str) -> str:
    pkg, _, rest = t.partition(":")
    return f"{pkg} {rest.split(':')[-1]}"


def print_table(rendered_resources: list[Declared]) -> None:
    rows = [
        (_short_type(r.type), r.name, summarize(r))
        for r in rendered_resources
        if r.custom and not r.type.startswith("pulumi:providers:")
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'RESOURCE':<{w0}}  {'NAME':<{w1}}  KEY SETTINGS")
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:<{w1}}  {c}")


def demo(workdir: Path, *, serve: bool = True, port: int = 0, project: Path | None = None) -> int:
    project = project or PROJECT_ROOT
    workdir = workdir.resolve()
    print(f"1. registering the sample model in {workdir} ...")
    reg = register_sample_model(workdir)
    print(f"   {reg.name}: versions {', '.join(reg.versions)}; alias {reg.alias} -> {reg.versions[-1]}")
    ref = log_sample_references(reg, workdir)
    print(
        f"   reference data (the training features and each version's predictions, {ref}) logged into "
        f"every version's run: monitoring.drift.reference: models:/{reg.name}/<version>"
    )

    print("2. rendering the dev stack under Pulumi's mock runtime ...")
    _, cfg = load_stack_config("dev", None, project)
    cfg["mlflow-deploy:mlflow"] = {"trackingUri": reg.tracking_uri}
    rendered = run_program(cfg, stack="dev", program=project / "__main__.py")
    out = workdir / "render"
    write_outputs(rendered, out)
    print(f"   {len(rendered.resources)} resources -> {out}/resources.json, manifests -> {out}/kubernetes/")
    print()
    print_table(rendered.resources)
    print()
    print("   stack outputs:", json.dumps(rendered.outputs, sort_keys=True))

    if not serve:
        return 0
    from serving.local import run_local

    stable = str(rendered.outputs["model"]["stable"])
    uri = f"models:/{reg.name}/{stable}"
    print(f"3. serving {uri} with the serving runtime on loopback ...")
    x, _ = sample_frame(rows=2, seed=1)
    body = {"dataframe_split": {"columns": list(FEATURES), "data": x.round(4).values.tolist()}}
    env = {"MLFLOW_TRACKING_URI": reg.tracking_uri, "MODEL_NAME": reg.name, "MODEL_VERSION": stable}
    with run_local(uri, port=port, workers=1, env=env) as base:
        print(f"   POST {base}/invocations")
        print(f"   {json.dumps(body)}")
        req = urllib.request.Request(
            f"{base}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            print(f"   -> {resp.status} {resp.read().decode().strip()}")
        with urllib.request.urlopen(f"{base.metrics_url}/metrics", timeout=30) as resp:
            metrics = resp.read().decode().splitlines()
        # the prediction's own counters: /ping and /metrics requests (503 while the model was
        # loading is how readiness works) would read like errors here
        shown = [
            ln
            for ln in metrics
            if ln.startswith(("model_requests_total", "model_prediction_rows_total", "model_info"))
            and 'route="/ping"' not in ln
            and 'route="/metrics"' not in ln
        ]
        print(f"   GET {base.metrics_url}/metrics (excerpt):")
        for ln in shown[:6]:
            print(f"     {ln}")
    print("   server stopped.")
    print()
    print("Next: `modelctl render --stack dev --out out/` renders the dev stack against this registry;")
    print("      docs/getting-started.md deploys it for real (Pulumi, kind, a local registry).")
    return 0
