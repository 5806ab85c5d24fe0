"""The decision of `modelctl analyze` on a table of figures: every branch, and never an advance on
missing data."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from modelctl.analysis import ABORT, ADVANCE, FINISH, HOLD, Figures, Rules, Step, VersionFigures, decide, window

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
RULES = Rules(
    interval_seconds=1800,
    min_requests=100,
    max_error_ratio_increase=0.01,
    max_latency_ratio=1.5,
    error_ratio_limit=0.05,
    p99_limit_seconds=1.0,
)
DRIFT_RULES = Rules(1800, 100, 0.01, 1.5, max_drift_share=0.5, min_shadow_agreement=0.95)
HELD = NOW - dt.timedelta(minutes=31)
HEALTHY = VersionFigures(requests=5000, error_ratio=0.001, p99_seconds=0.080)
CANARY = VersionFigures(requests=400, error_ratio=0.002, p99_seconds=0.090)


def canary(percent: int, steps: tuple[int, ...] = (5, 25, 50, 100), since: dt.datetime | None = HELD) -> Step:
    return Step("canary", steps, percent, since)


def figs(stable: VersionFigures = HEALTHY, candidate: VersionFigures = CANARY, **kw: object) -> Figures:
    return Figures(stable, candidate, **kw)  # type: ignore[arg-type]


TABLE = [
    # (id, step, rules, figures, decision, next percent, a phrase the reasons must hold)
    ("healthy first step advances", canary(5), RULES, figs(), ADVANCE, 25, "next step 25%"),
    (
        "healthy middle step advances",
        canary(25),
        RULES,
        figs(candidate=VersionFigures(1700, 0.002, 0.090)),
        ADVANCE,
        50,
        "next step 50%",
    ),
    # candidate.since is when the edit was written: a step whose traffic is still the last one's
    # (its PR not merged, pulumi up not run) has not held
    ("a step not deployed yet holds", canary(25), RULES, figs(), HOLD, None, "does not look deployed yet"),
    # 100%: stable serves nothing; the candidate alone against the alerts' absolute limits
    (
        "100% with no stable traffic finishes on absolute limits",
        canary(100),
        RULES,
        figs(stable=VersionFigures(0, None, None), candidate=VersionFigures(5000, 0.004, 0.2)),
        FINISH,
        None,
        "at 100% (max 5.00%",
    ),
    (
        "100% above the error limit aborts",
        canary(100),
        RULES,
        figs(stable=VersionFigures(0, None, None), candidate=VersionFigures(5000, 0.08, 0.2)),
        ABORT,
        None,
        "FAILED error ratio candidate 8.00%",
    ),
    (
        "100% without absolute limits holds",
        canary(100),
        Rules(1800, 100, 0.01, 1.5),
        figs(stable=VersionFigures(0, None, None), candidate=VersionFigures(5000, 0.004, 0.2)),
        HOLD,
        None,
        "no absolute error ratio limit",
    ),
    ("last step 100 finishes", canary(100), RULES, figs(), FINISH, None, "finish"),
    (
        "steps that skip 100: 50 is the last",
        canary(50, (5, 25, 50)),
        RULES,
        figs(candidate=VersionFigures(5000, 0.002, 0.090)),
        FINISH,
        None,
        "last step (50%)",
    ),
    ("equal versions advance", canary(5), RULES, figs(HEALTHY, HEALTHY), ADVANCE, 25, "increase +0.00%"),
    (
        "autoFinish off holds at the last step",
        canary(100),
        Rules(1800, 100, 0.01, 1.5, auto_finish=False, error_ratio_limit=0.05, p99_limit_seconds=1.0),
        figs(),
        HOLD,
        None,
        "promote --finish",
    ),
    ("window not elapsed", canary(5, since=NOW - dt.timedelta(minutes=10)), RULES, figs(), HOLD, None, "10m00s of"),
    ("no since: unknown start", canary(5, since=None), RULES, figs(), HOLD, None, "candidate.since is not set"),
    (
        "candidate with zero traffic",
        canary(5),
        RULES,
        figs(candidate=VersionFigures(0, None, None)),
        HOLD,
        None,
        "candidate served 0 requests",
    ),
    (
        "too few candidate requests",
        canary(5),
        RULES,
        figs(candidate=VersionFigures(99, 0.0, 0.05)),
        HOLD,
        None,
        "fewer than analysis.minRequests 100",
    ),
    (
        "too few stable requests",
        canary(5),
        RULES,
        figs(stable=VersionFigures(3, 0.0, 0.05)),
        HOLD,
        None,
        "stable served 3 requests",
    ),
    (
        "request count missing",
        canary(5),
        RULES,
        figs(candidate=VersionFigures(None, 0.0, 0.05)),
        HOLD,
        None,
        "candidate request count is missing",
    ),
    (
        "error ratio missing",
        canary(5),
        RULES,
        figs(candidate=VersionFigures(400, None, 0.05)),
        HOLD,
        None,
        "error ratio is missing for candidate",
    ),
    (
        "latency missing (NaN from histogram_quantile)",
        canary(5),
        RULES,
        figs(stable=VersionFigures(5000, 0.0, math.nan)),
        HOLD,
        None,
        "p99 latency is missing for stable",
    ),
    (
        "stable p99 zero is no baseline",
        canary(5),
        RULES,
        figs(stable=VersionFigures(5000, 0.0, 0.0)),
        HOLD,
        None,
        "p99 latency is missing for stable",
    ),
    (
        "error ratio regression aborts",
        canary(25),
        RULES,
        figs(candidate=VersionFigures(400, 0.25, 0.08)),
        ABORT,
        None,
        "FAILED error ratio candidate 25.00%",
    ),
    (
        "an increase just under the limit passes",
        canary(5),
        RULES,
        figs(candidate=VersionFigures(400, 0.0109, 0.08)),
        ADVANCE,
        25,
        "increase +0.99%",
    ),
    (
        "latency regression aborts",
        canary(25),
        RULES,
        figs(candidate=VersionFigures(400, 0.001, 0.200)),
        ABORT,
        None,
        "ratio 2.50",
    ),
    (
        "a regression with a latency figure missing still aborts",
        canary(25),
        RULES,
        figs(candidate=VersionFigures(400, 0.30, None)),
        ABORT,
        None,
        "p99 latency is missing",
    ),
    (
        "a regression on too few requests is not judged",
        canary(5),
        RULES,
        figs(candidate=VersionFigures(10, 0.5, 0.08)),
        HOLD,
        None,
        "not judged yet",
    ),
    (
        "drift above the limit aborts",
        canary(5),
        DRIFT_RULES,
        figs(drift_share=0.7),
        ABORT,
        None,
        "FAILED drift share 0.70",
    ),
    ("drift missing holds", canary(5), DRIFT_RULES, figs(), HOLD, None, "drift share of the candidate is missing"),
    ("drift under the limit advances", canary(5), DRIFT_RULES, figs(drift_share=0.2), ADVANCE, 25, "drift share 0.20"),
    (
        "shadow agreement low aborts",
        Step("shadow", (100,), 100, HELD),
        DRIFT_RULES,
        figs(drift_share=0.1, shadow_agreement=0.80),
        ABORT,
        None,
        "FAILED shadow agreement 80.00%",
    ),
    (
        "shadow agreement missing holds",
        Step("shadow", (100,), 100, HELD),
        DRIFT_RULES,
        figs(drift_share=0.1),
        HOLD,
        None,
        "shadow agreement is missing",
    ),
    (
        "shadow passing finishes (one step)",
        Step("shadow", (100,), 100, HELD),
        DRIFT_RULES,
        figs(drift_share=0.1, shadow_agreement=0.99),
        FINISH,
        None,
        "shadow agreement 99.00%",
    ),
    (
        "canary ignores shadow agreement (unknown for live traffic)",
        canary(5),
        DRIFT_RULES,
        figs(drift_share=0.1),
        ADVANCE,
        25,
        "next step 25%",
    ),
    (
        "blue-green preview passes to the switch",
        Step("blue-green", (0, 100), 0, HELD),
        RULES,
        figs(),
        ADVANCE,
        100,
        "next step 100%",
    ),
    (
        "platform rolled back aborts even without figures",
        canary(25),
        RULES,
        figs(VersionFigures(), VersionFigures(), rolled_back="endpoint runs config x-old"),
        ABORT,
        None,
        "rolled the candidate back",
    ),
    (
        "source asks to wait (update in progress)",
        canary(25),
        RULES,
        figs(hold="endpoint is Updating"),
        HOLD,
        None,
        "Updating",
    ),
]


@pytest.mark.parametrize(
    ("step", "rules", "figures", "want", "next_percent", "phrase"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_decision_table(
    step: Step, rules: Rules, figures: Figures, want: str, next_percent: int | None, phrase: str
) -> None:
    d = decide(step, rules, NOW, figures)
    assert d.decision == want, d.reasons
    assert d.next_percent == next_percent
    assert any(phrase in r for r in d.reasons), d.reasons


def test_every_missing_figure_alone_holds() -> None:
    """Take a passing set of figures and blank one figure at a time: never an advance."""
    full = figs(drift_share=0.1)
    assert decide(canary(5), DRIFT_RULES, NOW, full).decision == ADVANCE
    for role in ("stable", "candidate"):
        for name in ("requests", "error_ratio", "p99_seconds"):
            for blank in (None, math.nan):
                v = getattr(full, role)
                blanked = VersionFigures(**{**v.__dict__, name: blank})
                f = Figures(**{**full.__dict__, role: blanked})
                d = decide(canary(5), DRIFT_RULES, NOW, f)
                assert d.decision == HOLD, (role, name, blank, d.reasons)


def test_the_window_is_the_last_interval_once_the_step_held() -> None:
    assert window(canary(5, since=None), RULES, NOW) is None
    assert window(canary(5, since=NOW - dt.timedelta(minutes=29)), RULES, NOW) is None
    start, end = window(canary(5, since=NOW - dt.timedelta(hours=5)), RULES, NOW) or (None, None)
    assert end == NOW and start == NOW - dt.timedelta(minutes=30)
