"""``analysis`` and ``candidate.steps``/``candidate.since``: what ``modelctl analyze`` needs to walk a
candidate through its steps from live metrics (docs/rollouts.md, "Progressive delivery").

The stack file stays the single source of truth: the steps, the current one (``candidate.percent``)
and when it started (``candidate.since``) are all in it, so a scheduled job needs neither git
history nor any state of its own to decide the next edit.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any, Literal

from pydantic import Field, field_validator

from components.settings_base import _Model
from components.validation import duration_seconds

Source = Literal["prometheus", "cloudwatch", "azure-monitor", "cloud-monitoring"]

DEFAULT_SOURCE: dict[str, Source] = {
    "kubernetes": "prometheus",
    "sagemaker": "cloudwatch",
    "azureml": "azure-monitor",
    "vertex": "cloud-monitoring",
}
"""The metrics source per target; with several targets, the first in this order is analysed."""
SOURCE_TARGET: dict[str, str] = {v: k for k, v in DEFAULT_SOURCE.items()}


class AnalysisSettings(_Model):
    """``analysis``: the gates a step must pass before ``modelctl analyze`` moves the candidate on."""

    interval: str = Field(default="30m", pattern=r"^[0-9]+[smh]$")
    """How long each step must hold (measured from ``candidate.since``); also the metrics window."""
    min_requests: int = Field(default=100, ge=0)
    """Requests each version (stable and candidate) must have served in the window; fewer: hold."""
    max_error_ratio_increase: float = Field(default=0.01, ge=0, le=1)
    """Abort when the candidate's 5xx ratio exceeds stable's by more than this (absolute)."""
    max_latency_ratio: float = Field(default=1.5, ge=1)
    """Abort when the candidate's p99 latency is more than this times stable's."""
    max_drift_share: float | None = Field(default=None, gt=0, le=1)
    """Abort when the model monitor's ``model_drift_share`` of the candidate is above this
    (needs ``monitoring.drift``)."""
    min_shadow_agreement: float | None = Field(default=None, gt=0, le=1)
    """Shadow: abort when ``model_shadow_agreement_ratio`` is below this (needs ``monitoring.drift``)."""
    source: Source | None = None
    """Where the figures come from; default by target (kubernetes: prometheus, sagemaker: cloudwatch,
    azureml: azure-monitor, vertex: cloud-monitoring)."""
    prometheus_url: str | None = None
    """``source: prometheus``: the Prometheus HTTP API base URL (e.g. ``http://prometheus.monitoring:9090``)."""
    auto_finish: bool = True
    """After the last step held: finish (the candidate becomes ``model.version``); false: hold there
    for a person to run ``promote --finish``."""
    auto_merge: bool = False
    """The progressive workflow pushes the edit to the default branch instead of opening a PR."""

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str) -> str:
        if duration_seconds(v) < 1:
            raise ValueError(f"must be at least 1s (got {v!r})")
        return v

    @field_validator("prometheus_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"an http:// or https:// URL (got {v!r})")
        return v.rstrip("/") if v else v

    @property
    def interval_seconds(self) -> float:
        return duration_seconds(self.interval)


def check_steps(v: Any) -> Any:
    """``candidate.steps``: a non-empty, strictly increasing list of percents 0..100."""
    if v is None:
        return v
    if not isinstance(v, list) or not v:
        raise ValueError("a non-empty list of percents, e.g. [5, 25, 50, 100]")
    for s in v:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= 100:
            raise ValueError(f"each step is an integer percent 0..100 (got {s!r})")
    if any(b <= a for a, b in itertools.pairwise(v)):
        raise ValueError(f"steps must increase (got {v})")
    return v


def steps_problem(strategy: str, steps: list[int], percent: int) -> tuple[str, str] | None:
    """``(key, reason)`` when the steps do not fit the strategy or the current percent; else None."""
    if strategy == "blue-green" and steps != [0, 100]:
        return "candidate.steps", f"blue-green steps are [0, 100] (preview, then switched), got {steps}"
    if strategy == "shadow" and len(steps) != 1:
        return "candidate.steps", f"shadow has one step (the mirrored percent), got {steps}"
    if strategy == "canary" and steps[0] == 0:
        return "candidate.steps", f"a canary step of 0% sends the candidate nothing to judge it by, got {steps}"
    if percent not in steps:
        return "candidate.percent", f"{percent} is not one of candidate.steps {steps}: set it to the current step"
    return None


def parse_since(v: Any) -> str | None:
    """``candidate.since``: an ISO 8601 timestamp with a time zone, kept as written (a string)."""
    if v is None:
        return None
    if isinstance(v, dt.datetime):  # YAML may hand over a timestamp already parsed
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.UTC)
        return v.isoformat()
    try:
        when = dt.datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"an ISO 8601 timestamp such as 2025-06-01T12:00:00Z (got {v!r})") from None
    if when.tzinfo is None:
        raise ValueError(f"give the time zone, e.g. 2025-06-01T12:00:00Z (got {v!r})")
    return str(v)


def since_datetime(since: str) -> dt.datetime:
    return dt.datetime.fromisoformat(since.replace("Z", "+00:00"))


def format_since(when: dt.datetime) -> str:
    """What promote and analyze write: UTC, seconds, ``Z``."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
