"""The TrafficPlan: which model versions are live, and with what share of traffic or mirror.

Pure and target-agnostic. Every target component turns the same plan into its platform's own
mechanism (HTTPRoute weights, SageMaker variant weights, Azure ML traffic maps, Vertex traffic
splits). See ``docs/rollouts.md`` for the vocabulary.

Rules:

* no candidate: the stable version alone, weight 100.
* canary N%: stable weight 100-N, candidate weight N (N=0 keeps the candidate deployed and
  idle; N=100 sends it everything — the step before ``promote --finish``).
* blue-green: the candidate is deployed beside stable; percent 0 = stable takes all (the
  candidate is reachable only on its preview endpoint), percent 100 = switched.
* shadow N%: stable takes all live traffic; N% of requests are mirrored to the candidate,
  whose responses are discarded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from components.settings import CandidateSettings, Strategy


class RolloutError(ValueError):
    """An impossible rollout; ``key`` is the config key it is about."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"mlflow-deploy:{key}: {message}")


@dataclass(frozen=True)
class Backend:
    """One live model version and its share of live traffic (0..100)."""

    version: str
    weight: int
    role: str  # "stable" | "candidate"


@dataclass(frozen=True)
class Mirror:
    """Requests mirrored (copied, responses discarded) to ``version``."""

    version: str
    percent: int


@dataclass(frozen=True)
class TrafficPlan:
    stable: str
    backends: tuple[Backend, ...]
    strategy: Strategy | None = None
    candidate: str | None = None
    mirror: Mirror | None = None
    preview: str | None = field(default=None)
    """blue-green: the version reachable on the preview endpoint (the one not taking traffic)."""

    @property
    def versions(self) -> tuple[str, ...]:
        """Every deployed version, stable first."""
        return tuple(b.version for b in self.backends)

    @property
    def weights(self) -> dict[str, int]:
        return {b.version: b.weight for b in self.backends}

    @property
    def serving_version(self) -> str:
        """The version with the largest share of live traffic (stable on ties)."""
        return max(self.backends, key=lambda b: (b.weight, b.role == "stable")).version


def plan_traffic(stable_version: str, candidate: CandidateSettings | None) -> TrafficPlan:
    """Compute the TrafficPlan for a resolved stable version and an optional candidate."""
    if candidate is None:
        return TrafficPlan(stable=stable_version, backends=(Backend(stable_version, 100, "stable"),))
    if candidate.version == stable_version:
        raise RolloutError(
            "candidate.version",
            f"the candidate is the stable version ({stable_version}); to promote, set "
            "model.version to it and drop candidate",
        )
    pct = candidate.effective_percent
    if not 0 <= pct <= 100:
        raise RolloutError("candidate.percent", f"must be between 0 and 100 (got {pct})")
    strategy = candidate.strategy
    if strategy == "shadow":
        backends = (Backend(stable_version, 100, "stable"), Backend(candidate.version, 0, "candidate"))
        return TrafficPlan(
            stable=stable_version,
            backends=backends,
            strategy=strategy,
            candidate=candidate.version,
            mirror=Mirror(candidate.version, pct) if pct > 0 else None,
        )
    if strategy == "blue-green" and pct not in (0, 100):
        raise RolloutError("candidate.percent", f"blue-green is 0 or 100 (got {pct})")
    backends = (
        Backend(stable_version, 100 - pct, "stable"),
        Backend(candidate.version, pct, "candidate"),
    )
    preview = None
    if strategy == "blue-green":
        preview = candidate.version if pct == 0 else stable_version
    return TrafficPlan(
        stable=stable_version,
        backends=backends,
        strategy=strategy,
        candidate=candidate.version,
        preview=preview,
    )


def monitor_version_args(plan: TrafficPlan) -> list[str]:
    """``python -m monitor``'s ``--stable/--candidate/--strategy`` for a plan with a candidate (none
    without one): the two versions whose outputs it pairs, and whether requests are mirrored."""
    if plan.candidate is None:
        return []
    return ["--stable", plan.stable, "--candidate", plan.candidate, "--strategy", plan.strategy or "canary"]


def candidate_replicas(stable_replicas: int, weight: int, cap_factor: int = 4) -> int:
    """Pods for a candidate taking ``weight``% of traffic when a Service spreads requests evenly
    over pods (the Kubernetes ``router: service`` mode) and stable keeps ``stable_replicas``.

    Stable's pod count never changes (a rollout or rollback restarts nothing that serves), so
    the candidate's count carries the ratio: ``c / (stable + c)`` approximates ``weight``.
    At least one pod (a 1% canary is never silently off) and at most ``cap_factor`` times
    stable's. The achievable shares are therefore coarse: see ``effective_weights`` and
    docs/rollouts.md.
    """
    if not 0 <= weight <= 100:
        raise ValueError(f"weight must be 0..100 (got {weight})")
    if stable_replicas <= 0:
        return 1
    if weight in (0, 100):
        # no split: the entry Service selects one version; the other runs full size
        # (blue-green's idle environment, ready to take everything)
        return stable_replicas
    ideal = stable_replicas * weight / (100 - weight)
    return max(1, min(cap_factor * stable_replicas, round(ideal)))


def effective_weights(replicas: dict[str, int]) -> dict[str, float]:
    """The share of traffic (percent) a Service spreading evenly over pods actually sends."""
    total = sum(replicas.values())
    return {v: (100.0 * n / total if total else 0.0) for v, n in replicas.items()}
