"""TrafficPlan: pure, exhaustive over strategies and percents."""

from __future__ import annotations

import itertools

import pytest

from components.rollout import (
    RolloutError,
    candidate_replicas,
    effective_weights,
    plan_traffic,
)
from components.settings import CandidateSettings


def cand(version: str = "8", strategy: str = "canary", percent: int | None = None) -> CandidateSettings:
    return CandidateSettings(version=version, strategy=strategy, percent=percent)  # type: ignore[arg-type]


def test_no_candidate_is_stable_alone() -> None:
    p = plan_traffic("7", None)
    assert p.versions == ("7",)
    assert p.weights == {"7": 100}
    assert p.mirror is None and p.preview is None and p.strategy is None
    assert p.serving_version == "7"


@pytest.mark.parametrize("percent", range(0, 101))
def test_canary_weights_sum_to_100_for_every_percent(percent: int) -> None:
    p = plan_traffic("7", cand(percent=percent))
    assert p.weights == {"7": 100 - percent, "8": percent}
    assert sum(p.weights.values()) == 100
    assert p.versions == ("7", "8")  # stable first
    assert p.mirror is None and p.preview is None
    assert p.serving_version == ("8" if percent > 50 else "7")


def test_canary_default_percent() -> None:
    assert plan_traffic("7", cand()).weights == {"7": 90, "8": 10}


def test_canary_at_0_keeps_the_candidate_deployed_and_idle() -> None:
    p = plan_traffic("7", cand(percent=0))
    assert p.versions == ("7", "8") and p.weights["8"] == 0


def test_canary_at_100_sends_everything_to_the_candidate() -> None:
    p = plan_traffic("7", cand(percent=100))
    assert p.weights == {"7": 0, "8": 100} and p.serving_version == "8"


def test_blue_green_before_the_switch() -> None:
    p = plan_traffic("7", cand(strategy="blue-green"))
    assert p.weights == {"7": 100, "8": 0}
    assert p.preview == "8"  # the candidate is reachable on the preview endpoint
    assert p.serving_version == "7"


def test_blue_green_after_the_switch() -> None:
    p = plan_traffic("7", cand(strategy="blue-green", percent=100))
    assert p.weights == {"7": 0, "8": 100}
    assert p.preview == "7"  # the old version stays up, reachable for a quick switch back
    assert p.serving_version == "8"


@pytest.mark.parametrize("percent", [0, 1, 10, 50, 100])
def test_shadow_mirrors_and_keeps_live_traffic_on_stable(percent: int) -> None:
    p = plan_traffic("7", cand(strategy="shadow", percent=percent))
    assert p.weights == {"7": 100, "8": 0}
    assert p.serving_version == "7"
    if percent == 0:
        assert p.mirror is None
    else:
        assert p.mirror is not None and (p.mirror.version, p.mirror.percent) == ("8", percent)


def test_shadow_default_mirrors_everything() -> None:
    p = plan_traffic("7", cand(strategy="shadow"))
    assert p.mirror is not None and p.mirror.percent == 100


@pytest.mark.parametrize("strategy", ["canary", "blue-green", "shadow"])
def test_candidate_equal_to_stable_is_an_error(strategy: str) -> None:
    with pytest.raises(RolloutError, match=r"mlflow-deploy:candidate\.version: the candidate is the stable version"):
        plan_traffic("8", cand(strategy=strategy))


def test_roles() -> None:
    p = plan_traffic("7", cand(percent=25))
    assert {b.version: b.role for b in p.backends} == {"7": "stable", "8": "candidate"}


@pytest.mark.parametrize(("stable", "weight"), itertools.product([1, 2, 3, 5, 10], [1, 5, 10, 25, 50, 75, 90, 99]))
def test_candidate_replicas_approximate_the_weight(stable: int, weight: int) -> None:
    c = candidate_replicas(stable, weight)
    assert 1 <= c <= 4 * stable
    share = effective_weights({"s": stable, "c": c})["c"]
    # no other pod count (within the same bounds) gets closer to the asked-for share
    best = min(range(1, 4 * stable + 1), key=lambda n: abs(100 * n / (stable + n) - weight))
    best_share = 100 * best / (stable + best)
    assert abs(share - weight) <= abs(best_share - weight) + 100 / (stable + c)


def test_candidate_replicas_edges() -> None:
    assert candidate_replicas(4, 50) == 4
    assert candidate_replicas(9, 10) == 1
    assert candidate_replicas(3, 0) == 3 and candidate_replicas(3, 100) == 3
    with pytest.raises(ValueError):
        candidate_replicas(3, 101)


def test_effective_weights() -> None:
    assert effective_weights({"7": 3, "8": 1}) == {"7": 75.0, "8": 25.0}
    assert effective_weights({"7": 0}) == {"7": 0.0}


@pytest.mark.parametrize("strategy", ["canary", "blue-green", "shadow"])
def test_the_monitor_compares_stable_and_the_candidate_under_the_plans_strategy(strategy: str) -> None:
    from components.rollout import monitor_version_args

    assert monitor_version_args(plan_traffic("7", None)) == []
    args = monitor_version_args(plan_traffic("7", cand(strategy=strategy)))
    assert args == ["--stable", "7", "--candidate", "8", "--strategy", strategy]
    # the monitor's own parser takes them
    from monitor.__main__ import parser

    parsed = parser().parse_args(["serve", "--model", "m", "--reference", "r", "--store", "s", *args])
    assert (parsed.stable, parsed.candidate, parsed.strategy) == ("7", "8", strategy)
