"""The decision ``modelctl analyze`` makes: advance, finish, hold or abort. Pure: figures in,
decision out (the sources that fetch the figures are in :mod:`modelctl.sources`).

Rules, in order:

1. the platform already undid the candidate (SageMaker rolled the endpoint back): **abort**;
2. the step's start is unknown (no ``candidate.since``): **hold** (``--write`` records now);
3. the step has not held for ``analysis.interval`` yet: **hold**;
4. a check that has its data fails (error ratio increase, latency ratio, drift share, shadow
   agreement), with at least ``minRequests`` per version behind it: **abort**;
5. too few requests on either version, or any figure a check needs is missing: **hold**, never
   advance on missing data;
6. every check passed: **advance** to the next step, or after the last step **finish**
   (``analysis.autoFinish``; else hold for a person).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

ADVANCE, FINISH, HOLD, ABORT = "advance", "finish", "hold", "abort"


@dataclass(frozen=True)
class VersionFigures:
    """One version over the window. None: the source has no such figure."""

    requests: float | None = None
    error_ratio: float | None = None
    """5xx / requests."""
    p99_seconds: float | None = None


@dataclass(frozen=True)
class Figures:
    stable: VersionFigures
    candidate: VersionFigures
    drift_share: float | None = None
    """The candidate's ``model_drift_share`` (model monitor)."""
    shadow_agreement: float | None = None
    """``model_shadow_agreement_ratio`` of the candidate against stable (model monitor)."""
    rolled_back: str | None = None
    """The platform undid the candidate already (why), e.g. a SageMaker auto-rollback."""
    notes: tuple[str, ...] = ()
    """What the source wants the reader to know (the queries it ran, a deployment in progress)."""
    hold: str | None = None
    """The source says wait (e.g. an endpoint update in progress)."""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "notes"} | {"notes": list(self.notes)}


@dataclass(frozen=True)
class Rules:
    """The ``analysis`` settings the decision needs (see components/analysis_settings.py)."""

    interval_seconds: float
    min_requests: int
    max_error_ratio_increase: float
    max_latency_ratio: float
    max_drift_share: float | None = None
    min_shadow_agreement: float | None = None
    auto_finish: bool = True
    error_ratio_limit: float | None = None
    """``monitoring.thresholds.errorRatio``: at a 100% canary step stable serves nothing to compare
    with, so the candidate is held to the alert's absolute limits instead."""
    p99_limit_seconds: float | None = None
    """``monitoring.thresholds.p99LatencySeconds`` (the same)."""

    @classmethod
    def from_settings(cls, a: Any, thresholds: Any = None) -> Rules:
        return cls(
            error_ratio_limit=thresholds.error_ratio if thresholds is not None else None,
            p99_limit_seconds=thresholds.p99_latency_seconds if thresholds is not None else None,
            interval_seconds=a.interval_seconds,
            min_requests=a.min_requests,
            max_error_ratio_increase=a.max_error_ratio_increase,
            max_latency_ratio=a.max_latency_ratio,
            max_drift_share=a.max_drift_share,
            min_shadow_agreement=a.min_shadow_agreement,
            auto_finish=a.auto_finish,
        )


@dataclass(frozen=True)
class Step:
    """Where the candidate is: its strategy, steps and current percent, and since when."""

    strategy: str
    steps: tuple[int, ...]
    percent: int
    since: dt.datetime | None

    @property
    def next_percent(self) -> int | None:
        later = [s for s in self.steps if s > self.percent]
        return later[0] if later else None


@dataclass
class Decision:
    decision: str
    reasons: list[str] = field(default_factory=list)
    next_percent: int | None = None
    window: tuple[dt.datetime, dt.datetime] | None = None
    """The metrics window the figures cover (None: no figures were needed)."""


def window(step: Step, rules: Rules, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """The window to fetch figures for: the last ``interval`` before now, once the step has held
    that long; None when the decision needs no figures (no start, or too early)."""
    if step.since is None or (now - step.since).total_seconds() < rules.interval_seconds:
        return None
    return now - dt.timedelta(seconds=rules.interval_seconds), now


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _check_drift_share(
    rules: Rules, figures: Figures, failed: list[str], passed: list[str], missing: list[str]
) -> None:
    """``maxDriftShare``: the candidate's drift share against it, at any step."""
    if rules.max_drift_share is None:
        return
    if _missing(figures.drift_share):
        missing.append("drift share of the candidate is missing (is the model monitor running?)")
        return
    assert figures.drift_share is not None
    text = f"drift share {figures.drift_share:.2f} (max {rules.max_drift_share:g})"
    (failed if figures.drift_share > rules.max_drift_share else passed).append(text)


def _fmt_s(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def decide(step: Step, rules: Rules, now: dt.datetime, figures: Figures | None) -> Decision:
    """The decision for ``step`` at ``now`` given ``figures`` over :func:`window`."""
    if figures is not None and figures.rolled_back:
        return Decision(ABORT, [f"the platform rolled the candidate back already: {figures.rolled_back}"])
    if step.since is None:
        return Decision(
            HOLD, ["candidate.since is not set: the step's start is unknown; --write records now as its start"]
        )
    held = (now - step.since).total_seconds()
    if held < rules.interval_seconds:
        return Decision(
            HOLD,
            [f"step {step.percent}% has held {_dur(held)} of the {_dur(rules.interval_seconds)} analysis.interval"],
        )
    if figures is None:
        return Decision(HOLD, ["no figures"])
    if figures.hold:
        return Decision(HOLD, [figures.hold])

    s, c = figures.stable, figures.candidate
    if step.strategy == "canary" and step.percent >= 100:
        return _decide_full(step, rules, held, figures)
    failed: list[str] = []
    missing: list[str] = []
    passed: list[str] = []

    enough = True
    for role, v in (("stable", s), ("candidate", c)):
        if _missing(v.requests):
            missing.append(f"{role} request count is missing")
            enough = False
        elif v.requests < rules.min_requests:  # type: ignore[operator]
            missing.append(
                f"{role} served {v.requests:.0f} requests in the window, fewer than analysis.minRequests "
                f"{rules.min_requests}"
            )
            enough = False

    # error ratio
    if _missing(s.error_ratio) or _missing(c.error_ratio):
        missing.append("error ratio is missing for " + _which(s.error_ratio, c.error_ratio))
    else:
        assert s.error_ratio is not None and c.error_ratio is not None
        increase = c.error_ratio - s.error_ratio
        text = (
            f"error ratio candidate {c.error_ratio:.2%} vs stable {s.error_ratio:.2%}: increase {increase:+.2%} "
            f"(max {rules.max_error_ratio_increase:.2%})"
        )
        (failed if increase > rules.max_error_ratio_increase else passed).append(text)

    # latency
    if _missing(s.p99_seconds) or _missing(c.p99_seconds) or (s.p99_seconds or 0) <= 0:
        missing.append("p99 latency is missing for " + _which(s.p99_seconds, c.p99_seconds, zero_missing=True))
    else:
        assert s.p99_seconds is not None and c.p99_seconds is not None
        ratio = c.p99_seconds / s.p99_seconds
        text = (
            f"p99 latency candidate {_fmt_s(c.p99_seconds)} vs stable {_fmt_s(s.p99_seconds)}: ratio {ratio:.2f} "
            f"(max {rules.max_latency_ratio:g})"
        )
        (failed if ratio > rules.max_latency_ratio else passed).append(text)

    _check_drift_share(rules, figures, failed, passed, missing)

    if rules.min_shadow_agreement is not None and step.strategy == "shadow":
        if _missing(figures.shadow_agreement):
            missing.append("shadow agreement is missing (too few paired requests, or no model monitor)")
        else:
            assert figures.shadow_agreement is not None
            text = f"shadow agreement {figures.shadow_agreement:.2%} (min {rules.min_shadow_agreement:.2%})"
            (failed if figures.shadow_agreement < rules.min_shadow_agreement else passed).append(text)

    share = _deployed_share_problem(step, s.requests, c.requests)
    if share:
        missing.append(share)

    if failed and enough:
        return Decision(ABORT, [f"FAILED {t}" for t in failed] + [f"ok {t}" for t in passed] + missing)
    if failed:  # a regression on too few requests: not enough to judge either way
        return Decision(HOLD, missing + [f"not judged yet: {t}" for t in failed] + [f"ok {t}" for t in passed])
    if missing:
        return Decision(HOLD, missing + [f"ok {t}" for t in passed])

    nxt = step.next_percent
    oks = [f"ok {t}" for t in passed]
    if nxt is not None:
        return Decision(ADVANCE, [f"step {step.percent}% held {_dur(held)} and passed: next step {nxt}%", *oks], nxt)
    if rules.auto_finish:
        return Decision(FINISH, [f"the last step ({step.percent}%) held {_dur(held)} and passed: finish", *oks])
    return Decision(
        HOLD,
        [
            f"the last step ({step.percent}%) held and passed; analysis.autoFinish is false: "
            "finish with `modelctl promote --finish`",
            *oks,
        ],
    )


def _deployed_share_problem(step: Step, stable: float | None, candidate: float | None) -> str | None:
    """Why the measured traffic says the step is not live yet, or None. ``candidate.since`` is when
    the edit was written, not when ``pulumi up`` applied it: a step still waiting for its PR or its
    deploy must not count as held. A canary taking under half of its step's share is that."""
    if step.strategy != "canary" or step.percent <= 0 or _missing(stable) or _missing(candidate):
        return None
    assert stable is not None and candidate is not None
    total = stable + candidate
    if total <= 0:
        return None
    share = 100.0 * candidate / total
    if share >= step.percent / 2:
        return None
    return (
        f"the candidate took {share:.1f}% of the requests, under half of the step's {step.percent}%: "
        "the step does not look deployed yet (PR not merged or pulumi up not run)"
    )


def _decide_full(step: Step, rules: Rules, held: float, figures: Figures) -> Decision:
    """A 100% canary step: stable serves nothing, so the candidate alone is held to the alerts'
    absolute limits (monitoring.thresholds); missing figures or limits hold, never finish."""
    c = figures.candidate
    failed: list[str] = []
    missing: list[str] = []
    passed: list[str] = []
    enough = not _missing(c.requests) and c.requests >= rules.min_requests  # type: ignore[operator]
    if not enough:
        missing.append(f"candidate request count is missing or under analysis.minRequests {rules.min_requests}")
    for what, value, limit, fmt in (
        ("error ratio", c.error_ratio, rules.error_ratio_limit, lambda x: f"{x:.2%}"),
        ("p99 latency", c.p99_seconds, rules.p99_limit_seconds, _fmt_s),
    ):
        if limit is None:
            missing.append(f"no absolute {what} limit to judge a 100% step by (monitoring.thresholds)")
        elif _missing(value):
            missing.append(f"candidate {what} is missing")
        else:
            assert value is not None
            text = f"{what} candidate {fmt(value)} at 100% (max {fmt(limit)}, monitoring.thresholds)"
            (failed if value > limit else passed).append(text)
    _check_drift_share(rules, figures, failed, passed, missing)
    if failed and enough:
        return Decision(ABORT, [f"FAILED {t}" for t in failed] + [f"ok {t}" for t in passed] + missing)
    if failed or missing:
        return Decision(HOLD, missing + [f"not judged yet: {t}" for t in failed] + [f"ok {t}" for t in passed])
    oks = [f"ok {t}" for t in passed]
    if rules.auto_finish:
        return Decision(FINISH, [f"the last step ({step.percent}%) held {_dur(held)} and passed: finish", *oks])
    return Decision(
        HOLD,
        [
            f"the last step ({step.percent}%) held and passed; analysis.autoFinish is false: "
            "finish with `modelctl promote --finish`",
            *oks,
        ],
    )


def _which(stable: float | None, candidate: float | None, *, zero_missing: bool = False) -> str:
    def gone(x: float | None) -> bool:
        return _missing(x) or (zero_missing and (x or 0) <= 0)

    both = [r for r, x in (("stable", stable), ("candidate", candidate)) if gone(x)]
    return " and ".join(both) or "stable"


def _dur(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
