"""``monitoring.drift`` on Kubernetes: the model monitor's objects, the capture URL on every model
pod, the network policies, the reference check at preview, the drift on/off transitions.

Renders the real program under the mock runtime against the real sqlite registry, with a real
reference logged into the versions' runs (``modelctl reference log``'s code path).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pandas as pd
import pytest
import yaml

from components.quality import capture_url, monitor_name
from components.settings import AlertThresholds, SettingsError
from modelctl.diff import diff_renders, restarts
from modelctl.render import Rendered, to_manifest
from modelctl.sample import SampleRegistry, log_sample_references, sample_frame
from tests.components.netpol_eval import Cluster, External, Pod
from tests.conftest import base_config

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
IMAGE = "docker-build:index:Image"
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CRD = Path(__file__).resolve().parents[1] / "data" / "crds" / "prometheus-operator-v0.92.1-podmonitors.yaml"
MONITOR = "fraud-detector-monitor"
GATEWAY = {"namespace": "models", "replicas": 2, "router": "gateway", "gateway": {"name": "public", "namespace": "gw"}}
SHADOW = {"version": "2", "strategy": "shadow", "percent": 50}


@pytest.fixture(scope="module")
def referenced(registry: SampleRegistry, tmp_path_factory: pytest.TempPathFactory) -> SampleRegistry:
    """The session registry with the sample's training features logged as every version's reference."""
    log_sample_references(registry, tmp_path_factory.mktemp("reference"))
    return registry


def drift_on(**extra: Any) -> dict[str, Any]:
    return {"enabled": True, "drift": {"enabled": True, "reference": "models:/fraud-detector/1", **extra}}


def config(reg: SampleRegistry, **overrides: Any) -> dict[str, Any]:
    return base_config(reg, **{"kubernetes": GATEWAY, "monitoring": drift_on(), **overrides})


@pytest.fixture(scope="module")
def shadow(referenced: SampleRegistry) -> Rendered:
    from modelctl.render import run_program

    return run_program(config(referenced, candidate=SHADOW), stack="test")


def env_of(d: Any) -> dict[str, str]:
    return {e["name"]: e["value"] for e in d.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_sample_reference_carries_each_versions_predictions(referenced: SampleRegistry) -> None:
    """``modelctl demo``'s references: the training features and, as ``prediction``, the version's
    own outputs on them, which the monitor reads as the reference outputs (prediction drift)."""
    import mlflow.sklearn

    from modelctl.sample import FEATURES
    from monitor.drift import evaluate
    from monitor.records import schema_of
    from monitor.reference import load

    x, _ = sample_frame()
    outputs = {}
    for v in referenced.versions:
        frame = load(f"models:/{referenced.name}/{v}", referenced.tracking_uri)
        schema = schema_of(frame)
        assert schema.prediction == "prediction" and schema.features == list(FEATURES)
        pd.testing.assert_frame_equal(frame[list(FEATURES)], x)
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(referenced.tracking_uri)
        try:
            model = mlflow.sklearn.load_model(f"models:/{referenced.name}/{v}")  # the sklearn flavour itself
        finally:
            mlflow.set_tracking_uri(previous)
        assert frame["prediction"].tolist() == model.predict(x).tolist()
        outputs[v] = frame["prediction"]
    assert outputs["1"].tolist() != outputs["3"].tolist()  # each version's own, not one copy
    # the monitor computes prediction drift against it: outputs all 1 drift, its own do not
    ref = outputs["1"]
    same = evaluate(x, x, ref, ref)
    ones = evaluate(x, x, ref, pd.Series([1] * len(x)))
    assert same.prediction_drift_score is not None and ones.prediction_drift_score is not None
    assert ones.prediction_drift_score > same.prediction_drift_score


# --------------------------------------------------------------------------- the objects


def test_every_model_pod_captures_to_the_monitor(shadow: Rendered) -> None:
    url = f"http://{MONITOR}.models.svc:8080/v1/capture"
    assert capture_url("fraud-detector", "models") == url
    for v in ("1", "2"):
        env = env_of(shadow.named(f"fraud-detector-v{v}"))
        assert env["SERVING_CAPTURE_URL"] == url
        assert float(env["SERVING_CAPTURE_SAMPLE"]) == 1.0
    # the URL the serving runtime will be given is one it accepts
    from serving.config import parse_settings

    settings = parse_settings(["serve"], {"SERVING_CAPTURE_URL": url, "SERVING_CAPTURE_SAMPLE": "0.25"})
    assert settings.capture_url is not None and url.startswith(settings.capture_url.rstrip("/"))
    assert settings.capture_sample == 0.25


def test_the_monitor_deployment(shadow: Rendered) -> None:
    dep = shadow.named(MONITOR)
    spec = dep.inputs["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}  # the store is ReadWriteOnce
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    args = c["args"]
    assert args[0] == "serve"

    def arg(flag: str) -> str:
        return str(args[args.index(flag) + 1])

    assert (arg("--model"), arg("--stable"), arg("--candidate"), arg("--strategy")) == (
        "fraud-detector",
        "1",
        "2",
        "shadow",
    )
    assert arg("--port") == "8080" and arg("--interval") == "10m" and arg("--window") == "1h"
    assert arg("--reference") == "/opt/reference/reference.parquet"  # baked into the built image
    assert "--tracking-uri" not in args
    # the flags are the monitor's own: its real parser takes them, with the alert's drift share
    from monitor.__main__ import parser as monitor_parser

    parsed = monitor_parser().parse_args(args)
    assert parsed.drift_share == AlertThresholds().drift_share
    assert parsed.shadow_window == 30 and parsed.max_reference_rows == 50_000
    sec = c["securityContext"]
    assert sec["runAsNonRoot"] and sec["readOnlyRootFilesystem"] and not sec["allowPrivilegeEscalation"]
    assert sec["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["store"] == arg("--store")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert (
        volumes["store"]["persistentVolumeClaim"]["claimName"]
        == shadow.named(f"{MONITOR}-store").inputs["metadata"]["name"]
    )
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_the_monitor_is_not_selected_as_a_model_pod(shadow: Rendered) -> None:
    """The model's Services, PodMonitor and NetworkPolicy select ``app: fraud-detector``: the
    monitor's pods must not match, or they would take predictions and be scraped as a version."""
    labels = shadow.named(MONITOR).inputs["spec"]["template"]["metadata"]["labels"]
    model_selectors = [
        shadow.named("fraud-detector-svc").inputs["spec"]["selector"],
        shadow.named("fraud-detector-podmonitor").inputs["spec"]["selector"]["matchLabels"],
        shadow.named("fraud-detector-netpol").inputs["spec"]["podSelector"]["matchLabels"],
    ]
    for sel in model_selectors:
        assert not all(labels.get(k) == v for k, v in sel.items()), sel
    # the monitor's own Service and PodMonitor do select it
    svc = shadow.named(f"{MONITOR}-svc").inputs["spec"]
    assert all(labels.get(k) == v for k, v in svc["selector"].items())
    assert svc["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    pm = shadow.named(f"{MONITOR}-podmonitor").inputs["spec"]
    assert all(labels.get(k) == v for k, v in pm["selector"]["matchLabels"].items())
    assert pm["podMetricsEndpoints"][0]["port"] == "http"


def test_the_store_claim_is_kept(shadow: Rendered, referenced: SampleRegistry) -> None:
    pvc = shadow.named(f"{MONITOR}-store")
    assert pvc.inputs["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
    assert pvc.options.get("retainOnDelete") is True
    assert pvc.options.get("ignoreChanges") == ["spec.storageClassName"]


def test_manifests_validate_and_the_pod_monitor_fits_its_crd(shadow: Rendered) -> None:
    import jsonschema

    from tests.components.test_guardrails import _strict

    manifests = shadow.kubernetes_manifests()
    builtin = [m for m in manifests if not m["apiVersion"].startswith(("monitoring.coreos.com", "gateway."))]
    assert {m["kind"] for m in builtin} >= {"Deployment", "Service", "PersistentVolumeClaim", "NetworkPolicy"}
    for version in K8S_VERSIONS:
        for m in builtin:
            kubernetes_validate.validate(m, version, strict=True)
    crd = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = _strict(v1["schema"]["openAPIV3Schema"]["properties"]["spec"])
    pod_monitors = [m for m in manifests if m["kind"] == "PodMonitor"]
    assert {m["metadata"]["name"] for m in pod_monitors} == {"fraud-detector", MONITOR}
    for m in pod_monitors:
        jsonschema.validate(m["spec"], schema)
    bad = copy.deepcopy(pod_monitors[0]["spec"])
    bad["podMetricsEndpoints"][0]["portName"] = "http"  # not a field: the strict schema refuses it
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_the_image_holds_the_reference(shadow: Rendered) -> None:
    (img,) = [r for r in shadow.of_type(IMAGE) if r.name == f"{MONITOR}-image"]
    (tag,) = img.inputs["tags"]
    assert tag.startswith(f"registry.example.com/models/{MONITOR}:monitor-")
    ctx = Path(img.inputs["context"]["location"])
    assert Path(img.inputs["dockerfile"]["location"]) == ctx / "monitor" / "Dockerfile"
    assert (ctx / "monitor" / "requirements.txt").read_text() == (Path("monitor") / "requirements.txt").read_text()
    baked = pd.read_parquet(ctx / "reference" / "reference.parquet")
    x, _ = sample_frame()
    pd.testing.assert_frame_equal(baked.drop(columns="prediction"), x)  # + version 1's outputs
    # the Dockerfile copies it where --reference points
    assert "COPY reference /opt/reference" in (ctx / "monitor" / "Dockerfile").read_text()
    image = shadow.named(MONITOR).inputs["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == tag  # a preview: the tag stands in for the digest


# --------------------------------------------------------------------------- network policy

MODEL_PORTS = {"http": 8080, "metrics": 9090}
NAMESPACES = {"models": {}, "gw": {}, "monitoring": {}, "default": {}, "kube-system": {}, "mlflow": {}}
STABLE = Pod("models", {"app": "fraud-detector", "version": "1", "model": "fraud-detector"}, "10.1.0.10", MODEL_PORTS)
CANDIDATE = Pod(
    "models", {"app": "fraud-detector", "version": "2", "model": "fraud-detector"}, "10.1.0.11", MODEL_PORTS
)
NEIGHBOUR = Pod("models", {"app": "other"}, "10.1.0.99", {"http": 8080})
STRANGER = Pod("default", {"app": "curl"}, "10.4.0.5")
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"}, "10.3.0.5")
COREDNS = Pod("kube-system", {"k8s-app": "kube-dns"}, "10.96.0.10", {"dns": 53})
MLFLOW = Pod("mlflow", {"app": "mlflow"}, "10.6.0.5", {"http": 5000})


def monitor_pod(out: Rendered) -> Pod:
    labels = out.named(MONITOR).inputs["spec"]["template"]["metadata"]["labels"]
    return Pod("models", labels, "10.1.0.50", {"http": 8080})


def cluster_of(out: Rendered) -> Cluster:
    pols = [m for r in out.of_type(NETPOL) if (m := to_manifest(r)) is not None]
    assert len(pols) == 2, "the model's policy and the monitor's"
    return Cluster(pols, NAMESPACES)


def test_model_pods_reach_the_monitor_and_nothing_else_does(shadow: Rendered) -> None:
    cluster, mon = cluster_of(shadow), monitor_pod(shadow)
    flows = [
        (STABLE, mon, 8080, True),  # capture
        (CANDIDATE, mon, 8080, True),
        (PROMETHEUS, mon, 8080, True),  # /metrics
        (NEIGHBOUR, mon, 8080, False),
        (STRANGER, mon, 8080, False),
        (External("198.51.100.9"), mon, 8080, False),
        (STABLE, mon, 9090, False),
        (STABLE, NEIGHBOUR, 8080, False),  # the new egress is to the monitor only
        (STABLE, STRANGER, 8080, False),
        (mon, STABLE, 8080, False),  # the monitor calls nobody
        (mon, MLFLOW, 5000, False),  # its image holds the reference
        (mon, External("52.216.0.1"), 443, False),
        (mon, COREDNS, 53, True),
    ]
    wrong = [(s.ip, d.ip, p, want) for s, d, p, want in flows if cluster.allows(s, d, p) != want]
    assert not wrong, wrong


def test_a_prebuilt_monitor_reaches_what_egress_to_lists(
    render: Callable[..., Rendered], referenced: SampleRegistry
) -> None:
    drift = drift_on(
        image="ghcr.io/acme/model-monitor@sha256:" + "a" * 64,
        egressTo=[{"namespace": "mlflow", "podLabels": {"app": "mlflow"}, "ports": [5000]}],
    )
    out = render(config(referenced, monitoring=drift))
    args = out.named(MONITOR).inputs["spec"]["template"]["spec"]["containers"][0]["args"]
    # the image downloads the reference itself, from the stack's registry
    assert args[args.index("--reference") + 1] == "models:/fraud-detector/1"
    assert args[args.index("--tracking-uri") + 1] == referenced.tracking_uri
    assert not [r for r in out.of_type(IMAGE) if r.name == f"{MONITOR}-image"]
    cluster, mon = cluster_of(out), monitor_pod(out)
    assert cluster.allows(mon, MLFLOW, 5000)
    assert not cluster.allows(mon, MLFLOW, 5001)
    assert not cluster.allows(mon, Pod("mlflow", {"app": "minio"}, "10.6.0.6"), 5000)
    assert not cluster.allows(mon, STRANGER, 5000)


# --------------------------------------------------------------------------- config errors


def errors_of(exc: SettingsError) -> dict[str, str]:
    return dict(exc.errors)


def test_an_unloadable_reference_fails_the_preview_saying_how_to_log_one(
    render: Callable[..., Rendered], referenced: SampleRegistry, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.parquet"
    for ref, why in (
        (str(missing), "does not exist"),
        ("runs:/0123456789abcdef0123456789abcdef/reference", "cannot download"),
        ("models:/fraud-detector/9", "not found"),
    ):
        with pytest.raises(SettingsError) as info:
            render(config(referenced, monitoring=drift_on(reference=ref)))
        msg = errors_of(info.value)["mlflow-deploy:monitoring.drift.reference"]
        assert why in msg.lower(), msg
        assert "python -m modelctl reference log --model" in msg


def test_a_reference_with_no_rows_is_refused(
    render: Callable[..., Rendered], referenced: SampleRegistry, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("amount,age,score,hour\n")
    with pytest.raises(SettingsError, match=r"monitoring\.drift\.reference.*no rows"):
        render(config(referenced, monitoring=drift_on(reference=str(empty))))


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        # a cloud target runs the monitor as a scheduled job: it needs a prebuilt image to pull
        ({"sagemaker": {"region": "eu-west-1"}}, "monitoring.drift.image", "scheduled job"),
        (
            {"kubernetes": None, "vertex": {"project": "p", "region": "europe-west4"}},
            "monitoring.drift.image",
            "vertex runs the monitor image",
        ),
        ({"image": {"uris": {"1": "ghcr.io/acme/m@sha256:" + "b" * 64}}}, "monitoring.drift.image", "image.repository"),
        (
            {"monitoring": drift_on(image="ghcr.io/acme/mon:1")},
            "monitoring.drift.egressTo",
            "downloads the reference",
        ),
        ({"monitoring": drift_on(egressTo=[{"cidr": "10.0.0.0/8"}])}, "monitoring.drift.egressTo", "prebuilt"),
    ],
)
def test_drift_config_errors(referenced: SampleRegistry, overrides: dict[str, Any], key: str, words: str) -> None:
    from components.settings import parse_settings

    with pytest.raises(SettingsError) as info:
        parse_settings(config(referenced, **overrides))
    msg = errors_of(info.value)[f"mlflow-deploy:{key}"]
    assert words in msg, msg


# --------------------------------------------------------------------------- transitions


def test_drift_on_and_off_rolls_the_model_pods_in_place(
    render: Callable[..., Rendered], referenced: SampleRegistry
) -> None:
    off = render(config(referenced, monitoring={"enabled": True}))
    on = render(config(referenced))
    diff = diff_renders(off, on)
    stable = diff.find("fraud-detector-v1", DEPLOYMENT)
    assert stable is not None and stable.action == "update"
    assert all(p.startswith("spec.template.spec.containers") for p in stable.paths), stable.paths
    assert restarts(stable) == "rolls the Deployment's pods (pod template changed)"
    created = {c.name for c in diff.of("create")}
    assert {MONITOR, f"{MONITOR}-svc", f"{MONITOR}-store", f"{MONITOR}-netpol", f"{MONITOR}-podmonitor"} <= created
    # the dashboard gains its quality rows: a ConfigMap's data replaces it (as any dashboard edit
    # does, modelctl/replacements.py); nothing else is replaced or deleted
    assert [(c.type, c.name) for c in diff.of("replace")] == [
        ("kubernetes:core/v1:ConfigMap", "fraud-detector-dashboard")
    ]
    assert not diff.of("delete")
    policy = diff.find("fraud-detector-netpol")
    assert policy is not None and policy.action == "update" and all(p.startswith("spec.egress") for p in policy.paths)

    back = diff_renders(on, off)
    assert {c.name for c in back.of("replace")} == {"fraud-detector-dashboard"}
    stable = back.find("fraud-detector-v1", DEPLOYMENT)
    assert stable is not None and stable.action == "update"
    deleted = {c.name for c in back.of("delete")}
    assert f"{MONITOR}-store" in deleted  # from the stack; retainOnDelete keeps it in the cluster
    assert on.named(f"{MONITOR}-store").options.get("retainOnDelete") is True


def test_a_storage_class_edit_replaces_nothing_and_a_bigger_store_updates(
    render: Callable[..., Rendered], referenced: SampleRegistry
) -> None:
    before = render(config(referenced, monitoring=drift_on(storageClass="standard")))
    after = render(config(referenced, monitoring=drift_on(storageClass="premium", storageSize="20Gi")))
    diff = diff_renders(before, after)
    claim = diff.find(f"{MONITOR}-store")
    assert claim is not None and claim.action == "update", claim
    assert claim.paths == ("spec.resources.requests.storage",)
    # the control: without the ignore, the provider's rule would replace the claim (delete-first)
    from modelctl.replacements import forces_replacement

    assert forces_replacement(PVC, "spec.storageClassName") == "spec.storageClassName"


def test_a_rollout_step_restarts_the_monitor_not_the_models(
    render: Callable[..., Rendered], referenced: SampleRegistry
) -> None:
    one = render(config(referenced))
    canary = render(config(referenced, candidate={"version": "2", "strategy": "canary", "percent": 10}))
    diff = diff_renders(one, canary)
    mon = diff.find(MONITOR, DEPLOYMENT)
    assert mon is not None and mon.action == "update" and restarts(mon)
    stable = diff.find("fraud-detector-v1", DEPLOYMENT)
    assert stable is None  # untouched
    args = canary.named(MONITOR).inputs["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--strategy") + 1] == "canary"
    # the capture URL does not depend on the rollout
    assert (
        env_of(canary.named("fraud-detector-v2"))["SERVING_CAPTURE_URL"]
        == env_of(one.named("fraud-detector-v1"))["SERVING_CAPTURE_URL"]
    )
    assert monitor_name("fraud-detector") == MONITOR


def test_the_monitor_build_context_runs_on_its_own(tmp_path: Path) -> None:
    """The image holds only its build context: every monitor module (the cloud normalisers and
    run-once included) imports from it with the project's folders out of reach."""
    import subprocess
    import sys

    from components.quality import write_monitor_context

    ctx = write_monitor_context(sample_frame(50)[0], tmp_path / "ctx")
    modules = sorted(
        ".".join(p.relative_to(ctx.path).with_suffix("").parts)
        for p in (ctx.path / "monitor").rglob("*.py")
        if p.name != "__init__.py"
    )
    assert "monitor.normalise.body" in modules and "monitor.run_once" in modules
    code = "import importlib, sys; sys.path.insert(0, '.'); [importlib.import_module(m) for m in sys.argv[1:]]"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, *modules],
        cwd=ctx.path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (ctx.path / "reference" / "reference.parquet").is_file()
