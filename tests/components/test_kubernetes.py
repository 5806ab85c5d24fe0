"""KubernetesModelService under the mock runtime: what every object is declared with."""

from __future__ import annotations

from typing import Any

import pytest

from modelctl.render import Rendered
from modelctl.sample import SampleRegistry
from tests.conftest import base_config

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"


def container(out: Rendered, name: str = "fraud-detector-v1") -> dict[str, Any]:
    return out.named(name).inputs["spec"]["template"]["spec"]["containers"][0]


@pytest.fixture
def plain(render, registry: SampleRegistry) -> Rendered:  # type: ignore[no-untyped-def]
    return render(base_config(registry))


def test_one_version_one_deployment_with_version_labels(plain: Rendered) -> None:
    deps = plain.of_type(DEPLOYMENT)
    assert [d.name for d in deps] == ["fraud-detector-v1"]
    meta = deps[0].inputs["metadata"]
    spec = deps[0].inputs["spec"]
    assert meta["namespace"] == "models"
    for labels in (meta["labels"], spec["template"]["metadata"]["labels"]):
        assert labels["app"] == "fraud-detector"
        assert labels["model"] == "fraud-detector"
        assert labels["version"] == "1"
    # the selector picks exactly this version's pods
    assert spec["selector"]["matchLabels"] == {"app": "fraud-detector", "version": "1"}
    assert spec["replicas"] == 2
    # every child is parented to the component
    comp = plain.of_type("mlflow-deploy:index:KubernetesModelService")[0]
    k8s_children = [r for r in plain.resources if r.type.startswith("kubernetes:")]
    assert k8s_children and all(r.parent == comp.name for r in k8s_children)


def test_container_contract_matches_the_serving_runtime(plain: Rendered) -> None:
    c = container(plain)
    assert c["ports"] == [
        {"containerPort": 8080, "name": "http", "protocol": "TCP"},
        {"containerPort": 9090, "name": "metrics", "protocol": "TCP"},
    ]
    assert c["readinessProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/version", "port": "http"}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["MODEL_NAME"] == "fraud-detector" and env["MODEL_VERSION"] == "1"
    assert env["SERVING_PORT"] == "8080"


def test_resources_come_from_config(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    k8s = {"resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "3Gi"}}}
    c = container(render(base_config(registry, kubernetes=k8s)))
    assert c["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "3Gi"},
    }


def test_hardened_security_context(plain: Rendered) -> None:
    pod = plain.named("fraud-detector-v1").inputs["spec"]["template"]["spec"]
    c = pod["containers"][0]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # a writable /tmp on an emptyDir, since the root filesystem is read-only
    tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp and any(v["name"] == tmp[0]["name"] and "emptyDir" in v for v in pod["volumes"])


def test_service_account_and_services(plain: Rendered) -> None:
    sa = plain.of_type("kubernetes:core/v1:ServiceAccount")
    assert [s.inputs["metadata"]["name"] for s in sa] == ["fraud-detector"]
    pod = plain.named("fraud-detector-v1").inputs["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "fraud-detector"
    svcs = {s.inputs["metadata"]["name"]: s.inputs["spec"] for s in plain.of_type(SERVICE)}
    assert set(svcs) == {"fraud-detector", "fraud-detector-v1"}
    assert svcs["fraud-detector"]["type"] == "ClusterIP"
    assert svcs["fraud-detector"]["ports"][0]["targetPort"] == "http"
    assert svcs["fraud-detector-v1"]["selector"] == {"app": "fraud-detector", "version": "1"}


def test_pdb_only_with_more_than_one_replica(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    two = render(base_config(registry, kubernetes={"replicas": 2}))
    one = render(base_config(registry, kubernetes={"replicas": 1}))
    pdbs = two.of_type(PDB)
    assert len(pdbs) == 1
    assert pdbs[0].inputs["spec"]["selector"]["matchLabels"] == {"app": "fraud-detector", "version": "1"}
    assert one.of_type(PDB) == []


def test_hpa_when_configured(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    k8s = {"autoscaling": {"minReplicas": 3, "maxReplicas": 9, "targetCpuUtilization": 60}}
    out = render(base_config(registry, kubernetes=k8s))
    (hpa,) = out.of_type(HPA)
    spec = hpa.inputs["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud-detector-v1"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 9)
    assert spec["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    # the HPA owns the replica count
    assert "replicas" not in out.named("fraud-detector-v1").inputs["spec"]
    assert render(base_config(registry)).of_type(HPA) == []


def test_ingress(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    k8s = {
        "ingress": {"host": "fraud.example.com", "className": "nginx", "tlsSecret": "fraud-tls"},
        "networkPolicy": {"entryNamespaces": ["ingress-nginx"]},
    }
    out = render(base_config(registry, kubernetes=k8s))
    (ing,) = out.of_type(INGRESS)
    spec = ing.inputs["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["fraud.example.com"], "secretName": "fraud-tls"}]
    backend = spec["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "fraud-detector"
    assert out.outputs["kubernetes"]["url"] == "https://fraud.example.com"


def test_load_balancer_with_source_ranges(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    k8s = {"serviceType": "LoadBalancer", "loadBalancerSourceRanges": ["203.0.113.0/24"]}
    out = render(base_config(registry, kubernetes=k8s))
    svcs = {s.inputs["metadata"]["name"]: s.inputs["spec"] for s in out.of_type(SERVICE)}
    assert svcs["fraud-detector"]["type"] == "LoadBalancer"
    assert svcs["fraud-detector"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    # only the entry Service is exposed
    assert svcs["fraud-detector-v1"]["type"] == "ClusterIP"


def test_namespace_only_when_asked(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    ns = "kubernetes:core/v1:Namespace"
    assert render(base_config(registry)).of_type(ns) == []
    out = render(base_config(registry, kubernetes={"namespace": "ml", "createNamespace": True}))
    assert [n.inputs["metadata"]["name"] for n in out.of_type(ns)] == ["ml"]


def test_kube_context_gives_an_explicit_provider(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    out = render(base_config(registry, kubernetes={"kubeContext": "kind-kind"}))
    (prov,) = out.of_type("pulumi:providers:kubernetes")
    assert prov.inputs["context"] == "kind-kind"


def test_outputs(plain: Rendered) -> None:
    k = plain.outputs["kubernetes"]
    assert k["serviceDns"] == "fraud-detector.models.svc.cluster.local"
    assert k["url"] == "http://fraud-detector.models.svc.cluster.local"
    assert k["liveVersions"] == ["1"]
    assert plain.outputs["liveVersions"] == ["1"]


def test_alias_resolves_to_a_versioned_deployment(render, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    out = render(base_config(registry, model={"name": registry.name, "alias": "champion"}))
    assert [d.name for d in out.of_type(DEPLOYMENT)] == [f"fraud-detector-v{registry.versions[-1]}"]
    assert out.outputs["model"]["alias"] == "champion"


def test_load_balancer_url_from_the_service_status() -> None:
    from types import SimpleNamespace as Ns

    from components.kubernetes import _lb_url

    assert _lb_url(Ns(load_balancer=Ns(ingress=[Ns(hostname="a.elb.example.com", ip=None)]))) == (
        "http://a.elb.example.com"
    )
    assert _lb_url(Ns(load_balancer=Ns(ingress=[Ns(hostname=None, ip="203.0.113.7")]))) == "http://203.0.113.7"
    assert _lb_url(Ns(load_balancer=Ns(ingress=None))).startswith("(pending")
    assert _lb_url(None).startswith("(pending")
