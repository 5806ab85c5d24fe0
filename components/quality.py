"""ModelQualityMonitor: the model monitor (payload capture receiver, drift with Evidently, shadow
output comparison) beside a model served on Kubernetes (``monitoring.drift``).

Objects, for model ``fraud-detector`` in namespace ``models``:

* the monitor image (Docker Build provider): ``monitor/`` and its requirements, the ``monitor/Dockerfile``,
  and the reference data the program loaded at preview (``reference/reference.parquet``), tagged
  ``monitor-<content hash>``; or the prebuilt ``monitoring.drift.image``;
* ``PersistentVolumeClaim fraud-detector-monitor``: the record store (``storageSize``,
  ``storageClass``), ReadWriteOnce, kept when Pulumi would delete or replace it (see
  :func:`pvc_options`);
* ``Deployment fraud-detector-monitor``: one pod, strategy ``Recreate`` (the claim is
  ReadWriteOnce), the model pods' security context (non-root, read-only root file system; the store
  and ``/tmp`` are the writable mounts), probes on ``/healthz``; its arguments follow the
  TrafficPlan (``--stable``, ``--candidate``, ``--strategy``), so a rollout step restarts the
  monitor, never a model pod;
* ``Service fraud-detector-monitor`` (port ``http`` 8080): what the model pods POST captures to;
* ``NetworkPolicy fraud-detector-monitor`` (with the model's policy on): its port from the model's
  pods and the scrapers, egress DNS only (components/network_policy.py);
* ``PodMonitor fraud-detector-monitor`` (with ``monitoring.enabled``): scrapes its ``/metrics``.

The capture URL is a pure function of the model name and namespace (:func:`capture_target`), so the
model pods can be given it before anything here is declared. Builders are pure; tests call them
without Pulumi.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.image import (
    PROJECT_ROOT,
    RUNTIME_UID,
    SERVING_DIR,
    BuildContext,
    content_hash,
    normalize_modes,
)
from components.kubernetes import PART_OF, CaptureTarget, checkov_annotations, common_labels, selector_labels
from components.kubernetes_settings import KubernetesSettings
from components.names import base_name, dns_label
from components.network_policy import monitor_network_policy_spec
from components.rollout import TrafficPlan
from components.settings import DriftSettings
from components.settings_base import NAMESPACE, SettingsError

MONITOR_DIR = PROJECT_ROOT / "monitor"
MONITOR_PORT = 8080
PORT_NAME = "http"
"""The monitor's one port: captures, evaluations, reports and ``/metrics``."""
STORE_DIR = "/var/lib/model-monitor"
REFERENCE_DIR = "/opt/reference"
REFERENCE_FILE = "reference.parquet"
MONITOR_SUFFIX = "-monitor"
REFERENCE_KEY = f"{NAMESPACE}:monitoring.drift.reference"
MONITOR_CHECKOV_SKIPS = {
    "CKV_K8S_43": "the image is pinned by content: a built monitor image is deployed by the digest its "
    "push returns (the tag monitor-<content hash> stands in only in a preview); the policy pack's "
    "immutable-image-reference holds a prebuilt monitoring.drift.image to a digest or content tag",
    "CKV_K8S_15": "tags are content-addressed (monitor-<hash of monitor/ and the reference>) and never "
    "re-pushed, so IfNotPresent cannot run stale code and avoids a registry round-trip on every pod start",
}
"""The checkov findings on the monitor Deployment that do not apply (the model pods' two, for the
monitor's own image), skipped with checkov's annotation and a reason."""


# --------------------------------------------------------------------------- names and labels


def monitor_name(model: str) -> str:
    """``fraud-detector-monitor``: the Deployment, Service, claim and policy of the monitor."""
    return f"{base_name(model, 63 - len(MONITOR_SUFFIX))}{MONITOR_SUFFIX}"


def monitor_selector(model: str) -> dict[str, str]:
    """The monitor pods' selector. Its ``app`` differs from the model pods' on purpose: the model's
    Services, PodMonitor and NetworkPolicy select ``app: <model>`` and must not pick the monitor."""
    return {"app": monitor_name(model)}


def monitor_labels(model: str) -> dict[str, str]:
    return {
        **monitor_selector(model),
        "model": dns_label(model),
        "app.kubernetes.io/name": monitor_name(model),
        "app.kubernetes.io/component": "model-monitor",
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def capture_url(model: str, namespace: str) -> str:
    return f"http://{monitor_name(model)}.{namespace}.svc:{MONITOR_PORT}/v1/capture"


def capture_target(model: str, namespace: str, drift: DriftSettings) -> CaptureTarget:
    """What the model pods need to know of the monitor: URL, sample, pod labels and port."""
    return CaptureTarget(
        url=capture_url(model, namespace),
        sample=drift.sample,
        pod_labels=monitor_selector(model),
        port=MONITOR_PORT,
    )


# --------------------------------------------------------------------------- the reference


def load_reference(drift: DriftSettings, tracking_uri: str | None) -> Any:
    """The reference as a DataFrame (sampled to ``maxReferenceRows``), loaded at preview, before any
    resource is declared. A reference that cannot be loaded is a :class:`SettingsError` on
    ``monitoring.drift.reference`` saying how to log one."""
    from monitor.reference import ReferenceError, how_to_log, load

    assert drift.reference is not None  # DriftSettings refuses drift without one
    try:
        return load(drift.reference, tracking_uri, max_rows=drift.max_reference_rows)
    except ReferenceError as exc:
        model = _model_of(drift.reference)
        raise SettingsError([(REFERENCE_KEY, f"cannot load the reference: {exc}; {how_to_log(model)}")]) from None


def _model_of(uri: str) -> str:
    if uri.startswith("models:/"):
        spec = uri[len("models:/") :].split("#", 1)[0]
        return spec.split("@", 1)[0].rsplit("/", 1)[0] or "<model>"
    return "<model>"


SERVING_MODULES = ("__init__.py", "capture.py", "metrics.py")
"""What the monitor image takes from the serving runtime (serving/capture.py and what it imports)."""


def write_monitor_context(reference: Any, dst: Path) -> BuildContext:
    """The monitor image's build context in ``dst``: ``monitor/`` (with its Dockerfile and
    requirements) and ``reference/reference.parquet``. Deterministic: the same package and the same
    reference give the same content hash (and so the same tag, and no rebuild)."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    shutil.copytree(MONITOR_DIR, dst / "monitor", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # the cloud normalisers build records with the serving runtime's own capture functions, so a
    # cloud-captured request hashes as on Kubernetes (monitor/normalise/body.py)
    (dst / "serving").mkdir()
    for name in SERVING_MODULES:
        shutil.copy2(SERVING_DIR / name, dst / "serving" / name)
    (dst / "reference").mkdir()
    reference.to_parquet(dst / "reference" / REFERENCE_FILE, index=False)
    (dst / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n")
    normalize_modes(dst)
    return BuildContext(path=dst, content_hash=content_hash(dst), dockerfile=dst / "monitor" / "Dockerfile")


def monitor_tag(digest: str) -> str:
    return f"monitor-{digest[:12]}"


# --------------------------------------------------------------------------- pure builders


def monitor_args(
    model: str,
    plan: TrafficPlan,
    drift: DriftSettings,
    reference: str,
    tracking_uri: str | None = None,
    drift_share: float | None = None,
) -> list[str]:
    """``python -m monitor serve ...`` for the plan: the live versions and how the candidate gets
    its traffic (shadow agreement is only known for mirrored requests)."""
    args = [
        "serve",
        "--model", model,
        "--reference", reference,
        "--store", STORE_DIR,
        "--host", "0.0.0.0",
        "--port", str(MONITOR_PORT),
        "--interval", drift.interval,
        "--window", drift.window,
        "--retention", drift.retention,
        "--stable", plan.stable,
    ]  # fmt: skip
    if plan.candidate is not None and plan.strategy is not None:
        args += ["--candidate", plan.candidate, "--strategy", plan.strategy]
    args += [
        "--task", drift.task,
        "--shadow-tolerance", repr(float(drift.shadow_tolerance)),
        "--shadow-window", drift.shadow_window,
        "--max-reference-rows", str(drift.max_reference_rows),
    ]  # fmt: skip
    if drift_share is not None:
        # model_drift_detected flips at the same share as the ModelDataDrift alert
        args += ["--drift-share", repr(float(drift_share))]
    if tracking_uri is not None:
        args += ["--tracking-uri", tracking_uri]
    return args


def _resources(drift: DriftSettings) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for kind in ("requests", "limits"):
        q = getattr(drift.resources, kind)
        vals = {k: v for k, v in (("cpu", q.cpu), ("memory", q.memory)) if v is not None}
        if vals:
            out[kind] = vals
    return out


def monitor_deployment_spec(
    model: str,
    image: Any,
    args: list[str],
    drift: DriftSettings,
    cfg: KubernetesSettings,
    service_account: str,
) -> dict[str, Any]:
    labels = monitor_labels(model)
    probe = {"httpGet": {"path": "/healthz", "port": PORT_NAME}}
    spec: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": monitor_selector(model)},
        # Recreate, not RollingUpdate: the store is a ReadWriteOnce claim, which a second pod on
        # another node cannot mount, so a rolling update would wait forever for its surge pod.
        # The old pod stops (flushing its records) before the new one mounts the volume.
        "strategy": {"type": "Recreate"},
        "revisionHistoryLimit": 3,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "serviceAccountName": service_account,
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 30,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": RUNTIME_UID,
                    "runAsGroup": RUNTIME_UID,
                    "fsGroup": RUNTIME_UID,  # the store volume is writable by the monitor's group
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "monitor",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": args,
                        "ports": [{"name": PORT_NAME, "containerPort": MONITOR_PORT, "protocol": "TCP"}],
                        "env": [{"name": "HOME", "value": "/tmp"}],
                        "resources": _resources(drift),
                        # /healthz answers 200 once the reference is loaded
                        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
                        "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
                        "livenessProbe": {**probe, "periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 3},
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": RUNTIME_UID,
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "volumeMounts": [
                            {"name": "store", "mountPath": STORE_DIR},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "store", "persistentVolumeClaim": {"claimName": monitor_name(model)}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                ],
            },
        },
    }
    if cfg.image_pull_secrets:
        spec["template"]["spec"]["imagePullSecrets"] = [{"name": n} for n in cfg.image_pull_secrets]
    return spec


def monitor_service_spec(model: str) -> dict[str, Any]:
    return {
        "type": "ClusterIP",
        "selector": monitor_selector(model),
        "ports": [{"name": PORT_NAME, "port": MONITOR_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
    }


def pvc_spec(drift: DriftSettings) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": drift.storage_size}},
    }
    if drift.storage_class is not None:
        spec["storageClassName"] = drift.storage_class
    return spec


PVC_IGNORED = ("spec.storageClassName",)
"""Claim inputs whose change would replace it (pulumi/pulumi-kubernetes
provider/pkg/provider/diff.go, v4.32.0+27: a PersistentVolumeClaim's forceNew properties are
``.spec.accessModes``, ``.spec.selector``, ``.spec.storageClassName``, ``.spec.volumeName``; a
named object is replaced delete-first) that config can change: only ``storageClass``. Ignored after
creation, so an edit never deletes the records (moving them to another class is a manual step,
docs/kubernetes.md). ``spec.resources`` is not forceNew: a bigger ``storageSize`` updates the claim
in place (the volume grows where its StorageClass allows expansion; the API server refuses a
shrink)."""


def pvc_options() -> pulumi.ResourceOptions:
    """Keep the records: ``retainOnDelete`` (turning drift off, or ``pulumi destroy``, leaves the
    claim and its volume in the cluster) and :data:`PVC_IGNORED`."""
    return pulumi.ResourceOptions(retain_on_delete=True, ignore_changes=list(PVC_IGNORED))


def monitor_pod_monitor_spec(model: str, namespace: str, scrape_interval: str) -> dict[str, Any]:
    """Scrape the monitor's ``/metrics``. Its series carry their own ``model`` and ``version``
    labels (the monitor sets them); the scrape adds ``namespace`` and ``pod``."""
    return {
        "selector": {"matchLabels": monitor_selector(model)},
        "namespaceSelector": {"matchNames": [namespace]},
        "jobLabel": "app",
        "podMetricsEndpoints": [
            {"port": PORT_NAME, "path": "/metrics", "interval": scrape_interval, "scheme": "http"}
        ],
    }


# --------------------------------------------------------------------------- the component


@dataclass
class ModelQualityMonitorArgs:
    model_name: str
    plan: TrafficPlan
    namespace: str
    drift: DriftSettings
    kubernetes: KubernetesSettings
    service_account: str
    """The model's ServiceAccount (no API access, no token mounted)."""
    reference: Any = None
    """The reference DataFrame :func:`load_reference` gave (baked into a built image)."""
    repository: str | None = None
    """``image.repository``: the built image goes to ``<repository>/<model>-monitor``."""
    platform: str = "linux/amd64"
    push: bool = True
    registry_username: pulumi.Input[str] | None = None
    registry_password: pulumi.Input[str] | None = None
    tracking_uri: str | None = None
    """Passed to a prebuilt image, which downloads the reference itself."""
    metrics_namespace: str | None = None
    """Prometheus's namespace (monitoring on), let in by the monitor's network policy."""
    pod_monitor: Mapping[str, str] | None = None
    """Labels of the monitor's PodMonitor (``monitoring.enabled``); None: no PodMonitor."""
    scrape_interval: str = "30s"
    drift_share: float | None = None
    """``monitoring.thresholds.driftShare``: where ``model_drift_detected`` flips."""
    after: list[pulumi.Resource] = field(default_factory=list)
    """What the objects in the namespace wait for (the model's Deployments, which wait for it)."""
    crd_deps: list[pulumi.Resource] = field(default_factory=list)
    """What the PodMonitor waits for besides (the monitoring stack's Helm release: its CRDs)."""
    build_root: Path | None = None


class ModelQualityMonitor(pulumi.ComponentResource):
    """Outputs: ``service_name``, ``capture_url``, ``image``."""

    def __init__(self, name: str, args: ModelQualityMonitorArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-deploy:index:ModelQualityMonitor", name, None, opts)
        model, ns, drift = args.model_name, args.namespace, args.drift
        mname = monitor_name(model)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.after))

        if drift.image is not None:
            image: pulumi.Input[str] = drift.image
            reference, tracking = drift.reference or "", args.tracking_uri
        else:
            image = self._build(mname, args)
            reference, tracking = f"{REFERENCE_DIR}/{REFERENCE_FILE}", None

        labels = monitor_labels(model)
        meta = {"name": mname, "namespace": ns, "labels": labels}
        claim = k8s.core.v1.PersistentVolumeClaim(
            f"{mname}-store",
            metadata=meta,
            spec=pvc_spec(drift),
            opts=pulumi.ResourceOptions.merge(child, pvc_options()),
        )
        k8s.apps.v1.Deployment(
            mname,
            metadata={**meta, "annotations": checkov_annotations(MONITOR_CHECKOV_SKIPS)},
            spec=monitor_deployment_spec(
                model,
                image,
                monitor_args(model, args.plan, drift, reference, tracking, args.drift_share),
                drift,
                args.kubernetes,
                args.service_account,
            ),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[claim])),
        )
        k8s.core.v1.Service(f"{mname}-svc", metadata=meta, spec=monitor_service_spec(model), opts=child)
        if args.kubernetes.network_policy.enabled:
            k8s.networking.v1.NetworkPolicy(
                f"{mname}-netpol",
                metadata=meta,
                spec=monitor_network_policy_spec(
                    monitor_selector(model),
                    selector_labels(model),
                    PORT_NAME,
                    args.kubernetes,
                    args.metrics_namespace,
                    drift.egress_to if drift.image is not None else None,
                ),
                opts=child,
            )
        if args.pod_monitor is not None:
            k8s.apiextensions.CustomResource(
                f"{mname}-podmonitor",
                api_version="monitoring.coreos.com/v1",
                kind="PodMonitor",
                metadata={"name": mname, "namespace": ns, "labels": {**common_labels(model), **args.pod_monitor}},
                spec=monitor_pod_monitor_spec(model, ns, args.scrape_interval),
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(args.crd_deps))),
            )
        self.service_name = mname
        self.capture_url = capture_url(model, ns)
        self.image = pulumi.Output.from_input(image)
        self.register_outputs({"serviceName": mname, "captureUrl": self.capture_url, "image": self.image})

    def _build(self, mname: str, args: ModelQualityMonitorArgs) -> pulumi.Output[str]:
        import os

        import pulumi_docker_build as docker_build

        if args.repository is None:
            raise ValueError("mlflow-deploy:monitoring.drift.image: a built monitor image needs image.repository")
        root = args.build_root or Path(os.environ.get("MLFLOW_DEPLOY_BUILD_DIR", PROJECT_ROOT / "build"))
        ctx = write_monitor_context(args.reference, root / mname)
        repository = f"{args.repository.rstrip('/')}/{mname}"
        tag_ref = f"{repository}:{monitor_tag(ctx.content_hash)}"
        registries = None
        if args.registry_password is not None:
            registries = [
                docker_build.RegistryArgs(
                    address=args.repository.split("/")[0],
                    username=args.registry_username,
                    password=args.registry_password,
                )
            ]
        img = docker_build.Image(
            f"{mname}-image",
            context=docker_build.BuildContextArgs(location=str(ctx.path)),
            dockerfile=docker_build.DockerfileArgs(location=str(ctx.dockerfile)),
            tags=[tag_ref],
            platforms=[docker_build.Platform(args.platform)],
            push=args.push,
            registries=registries,
            labels={"org.opencontainers.image.title": mname},
            opts=pulumi.ResourceOptions(parent=self),
        )
        # digest-pinned after a push; the tag in a preview
        return pulumi.Output.all(img.ref, tag_ref).apply(lambda r: r[0] or r[1])
