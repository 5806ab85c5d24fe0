"""Stack config validation: every bad input fails with the offending key path."""

from __future__ import annotations

from typing import Any

import pytest

from components.settings import Settings, SettingsError, parse_settings

GOOD: dict[str, Any] = {
    "mlflow-deploy:model": {"name": "fraud-detector", "version": "7"},
    "mlflow-deploy:kubernetes": {"namespace": "models"},
    "mlflow-deploy:image": {"repository": "ghcr.io/acme/models"},
}


def with_(**keys: Any) -> dict[str, Any]:
    cfg = dict(GOOD)
    for k, v in keys.items():
        cfg[f"mlflow-deploy:{k}"] = v
    return cfg


def errors_of(cfg: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SettingsError) as info:
        parse_settings(cfg)
    return dict(info.value.errors)


def test_good_config_parses_with_defaults() -> None:
    s = parse_settings(GOOD)
    assert s.model.version == "7"
    assert s.kubernetes is not None and s.kubernetes.router == "service"
    assert s.candidate is None
    assert s.targets == ["kubernetes"]


def test_keys_without_namespace_prefix_and_other_namespaces() -> None:
    cfg = {
        "model": {"name": "m", "version": 3},
        "kubernetes": {},
        "image": {"uris": {"3": "ghcr.io/acme/m:3"}},
        "kubernetes:context": "kind-kind",
    }
    s = parse_settings(cfg)
    assert s.model.version == "3"  # an int in YAML is accepted and kept as a string


@pytest.mark.parametrize(
    ("cfg", "path", "fragment"),
    [
        ({"mlflow-deploy:kubernetes": {}}, "mlflow-deploy:model", "required"),
        (with_(model={"version": "7"}), "mlflow-deploy:model.name", "required"),
        (with_(model={"name": "m"}), "mlflow-deploy:model", "exactly one of 'version' or 'alias'"),
        (with_(model={"name": "m", "version": "7", "alias": "champion"}), "mlflow-deploy:model", "both"),
        (with_(model={"name": "m", "version": "seven"}), "mlflow-deploy:model.version", "positive integer"),
        (with_(candidate={"version": "8", "percent": 150}), "mlflow-deploy:candidate.percent", "between 0 and 100"),
        (with_(candidate={"version": "8", "percent": -1}), "mlflow-deploy:candidate.percent", "between 0 and 100"),
        (with_(candidate={"version": "8", "strategy": "rainbow"}), "mlflow-deploy:candidate.strategy", "rainbow"),
        (with_(candidate={"version": "8", "precent": 10}), "mlflow-deploy:candidate.precent", "unknown key"),
        (with_(candidate={"strategy": "canary"}), "mlflow-deploy:candidate.version", "required"),
        (with_(candidate={"version": "7"}), "mlflow-deploy:candidate.version", "the candidate is the stable version"),
        (
            with_(candidate={"version": "8", "strategy": "blue-green", "percent": 30}),
            "mlflow-deploy:candidate",
            "blue-green is a switch",
        ),
        (with_(kubernetes={"replicas": "two"}), "mlflow-deploy:kubernetes.replicas", "integer"),
        (with_(kubernetes={"replicas": -1}), "mlflow-deploy:kubernetes.replicas", "greater than or equal to 0"),
        (
            with_(kubernetes={"resources": {"limits": {"cpu": "lots"}}}),
            "mlflow-deploy:kubernetes.resources.limits.cpu",
            "Kubernetes quantity",
        ),
        (with_(kubernetes={"router": "gateway"}), "mlflow-deploy:kubernetes", "needs 'gateway'"),
        (
            with_(kubernetes={"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}),
            "mlflow-deploy:kubernetes.autoscaling",
            "greater than maxReplicas",
        ),
        (
            with_(kubernetes={"loadBalancerSourceRanges": ["10.0.0.0/8"]}),
            "mlflow-deploy:kubernetes",
            "serviceType 'LoadBalancer'",
        ),
        (
            with_(candidate={"version": "8", "strategy": "shadow", "percent": 20}),
            "mlflow-deploy:candidate.strategy",
            "router 'gateway'",
        ),
        ({"mlflow-deploy:model": {"name": "m", "version": "1"}}, "mlflow-deploy:kubernetes", "no target"),
        (with_(kubernets={"namespace": "x"}), "mlflow-deploy:kubernets", "unknown key"),
        (with_(image={"uris": {"latest": "x"}}), "mlflow-deploy:image.uris", "positive integer"),
        (with_(image={}), "mlflow-deploy:image.repository", "version(s) 7 are built"),
        (with_(monitoring={"thresholds": {"errorRatio": 2}}), "mlflow-deploy:monitoring.thresholds.errorRatio", "1"),
    ],
)
def test_bad_config_names_the_key(cfg: dict[str, Any], path: str, fragment: str) -> None:
    errs = errors_of(cfg)
    assert path in errs, f"expected an error at {path}, got {errs}"
    assert fragment in errs[path]
    # the rendered message carries the path too, so a CLI user sees it
    with pytest.raises(SettingsError, match=path.replace(".", r"\.")):
        parse_settings(cfg)


def test_every_offending_key_is_listed_in_one_error() -> None:
    cfg = with_(
        candidate={"version": "8", "percent": 150},
        kubernetes={"replicas": "two", "colour": "blue"},
    )
    errs = errors_of(cfg)
    assert {
        "mlflow-deploy:candidate.percent",
        "mlflow-deploy:kubernetes.replicas",
        "mlflow-deploy:kubernetes.colour",
    } <= set(errs)
    with pytest.raises(SettingsError) as info:
        parse_settings(cfg)
    assert str(info.value).startswith(f"invalid stack config ({len(info.value.errors)} errors)")


@pytest.mark.parametrize(("strategy", "expected"), [("canary", 10), ("blue-green", 0), ("shadow", 100)])
def test_percent_default_per_strategy(strategy: str, expected: int) -> None:
    k8s = {"router": "gateway", "gateway": {"name": "gw"}}
    s = parse_settings(with_(candidate={"version": "8", "strategy": strategy}, kubernetes=k8s))
    assert s.candidate is not None and s.candidate.effective_percent == expected


def test_secret_keys_are_not_settings() -> None:
    s = parse_settings({**GOOD, "mlflow-deploy:imageRegistryPassword": "hunter2"})
    assert "hunter2" not in s.model_dump_json()


def test_settings_are_immutable() -> None:
    s = parse_settings(GOOD)
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError for frozen models
        s.model.version = "8"  # type: ignore[misc]
    assert isinstance(s, Settings)
