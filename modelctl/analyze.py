"""``modelctl analyze --stack S [--write] [--json]``: decide the candidate's next step from live metrics.

Reads the stack file, asks the stack's metrics source (:mod:`modelctl.sources`) for stable and
candidate over the last ``analysis.interval``, decides (:mod:`modelctl.analysis`) and prints the
figures, the decision and why. ``--write`` applies the edit with the same locked, validated,
layout-preserving, diff-printing write as ``promote``:

* advance: ``candidate.percent`` = the next step, ``candidate.since`` = now;
* finish: ``model.version`` = the candidate, ``candidate`` dropped (``promote --finish``);
* abort: ``candidate`` dropped (``rollback``);
* hold: nothing, except a missing ``candidate.since`` is set to now (the step's start).

Exit codes: 0 advance/finish, 10 hold, 20 abort, 1 error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from components.validation import duration_seconds
from modelctl import stackfile
from modelctl.analysis import ABORT, ADVANCE, FINISH, HOLD, Decision, Figures, Rules, Step, decide, window
from modelctl.cli import EXIT_ABORT, EXIT_HOLD, EXIT_OK, CommandError
from modelctl.sources import Source, SourceError
from modelctl.stackops import (
    CANDIDATE_KEY,
    MODEL_KEY,
    StackFile,
    _editing,
    _require_version,
    _set,
    _set_stable_version,
    _settings,
    _stable_version,
    _write,
    stack_path,
)

EXIT_FOR = {ADVANCE: EXIT_OK, FINISH: EXIT_OK, HOLD: EXIT_HOLD, ABORT: EXIT_ABORT}


def analyze(
    stack: str,
    config: Path | None,
    *,
    write: bool = False,
    as_json: bool = False,
    project: Path | None = None,
    now: dt.datetime | None = None,
    source: Source | None = None,
) -> int:
    path = stack_path(stack, config, project)
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    with _editing(path, dry_run=not write):
        sf = StackFile.load(path)
        settings = _settings(sf.config)
        cand = settings.candidate
        if cand is None:
            raise CommandError("no candidate on trial (mlflow-deploy:candidate): nothing to analyze")
        if not cand.steps:
            raise CommandError(
                "the candidate has no steps (mlflow-deploy:candidate.steps, e.g. [5, 25, 50, 100]): "
                "analyze walks a candidate through its steps"
            )
        from components.analysis_settings import AnalysisSettings, since_datetime

        a = settings.analysis or AnalysisSettings()
        stable = _stable_version(settings)
        step = Step(
            cand.strategy, tuple(cand.steps), cand.effective_percent, since_datetime(cand.since) if cand.since else None
        )
        rules = Rules.from_settings(a, settings.monitoring.thresholds)
        win = window(step, rules, now)
        figures: Figures | None = None
        if win is not None:
            src = source or source_for(settings, stack, path.parent)
            try:
                figures = src.figures(stable, cand.version, *win)
            except SourceError as exc:
                raise CommandError(str(exc)) from exc
        d = decide(step, rules, now, figures)
        edit = _edit(sf, settings, d, now)
        if d.decision == FINISH:
            _require_version(settings, cand.version)

        report: dict[str, Any] = {
            "stack": stack,
            "stable": stable,
            "candidate": {
                "version": cand.version,
                "strategy": cand.strategy,
                "steps": list(cand.steps),
                "percent": cand.effective_percent,
                "since": cand.since,
            },
            "window": [w.isoformat() for w in win] if win else None,
            "decision": d.decision,
            "reasons": d.reasons,
            "figures": figures.as_dict() if figures else None,
            "edit": edit,
        }
        if as_json:
            out = io.StringIO()
            if write and edit:
                with contextlib.redirect_stdout(out):
                    _write(sf, dry_run=False)
            report["written"] = bool(write and edit)
            report["diff"] = out.getvalue() if write and edit else None
            print(json.dumps(report, indent=2))
        else:
            _print(report, figures)
            if edit:
                if write:
                    print()
                    _write(sf, dry_run=False)
                else:
                    print(
                        "edit (not written; --write applies it): "
                        + ", ".join(f"{k} = {json.dumps(v)}" for k, v in edit.items())
                    )
    return EXIT_FOR[d.decision]


def _edit(sf: StackFile, settings: Any, d: Decision, now: dt.datetime) -> dict[str, Any]:
    """Apply the decision's edit to the round-trip document; return it as {key: new value}."""
    from components.analysis_settings import format_since

    cfg = sf.config
    cand = cfg[CANDIDATE_KEY]
    since = format_since(now)
    if d.decision == ADVANCE:
        assert d.next_percent is not None
        _set(cand, "percent", d.next_percent)
        _set(cand, "since", DoubleQuotedScalarString(since))
        return {"candidate.percent": d.next_percent, "candidate.since": since}
    if d.decision == FINISH:
        version = settings.candidate.version
        _set_stable_version(cfg[MODEL_KEY], version)
        stackfile.delete_key(cfg, CANDIDATE_KEY)
        return {"model.version": version, "candidate": None}
    if d.decision == ABORT:
        stackfile.delete_key(cfg, CANDIDATE_KEY)
        return {"candidate": None}
    if settings.candidate.since is None:
        _set(cand, "since", DoubleQuotedScalarString(since))
        return {"candidate.since": since}
    return {}


def _print(report: dict[str, Any], figures: Figures | None) -> None:
    c = report["candidate"]
    print(f"stack:     {report['stack']}")
    print(f"stable:    {report['stable']}")
    print(
        f"candidate: {c['version']}  {c['strategy']}  step {c['percent']}% of {c['steps']}  since {c['since'] or '-'}"
    )
    if report["window"]:
        print(f"window:    {report['window'][0]} .. {report['window'][1]}")
    if figures is not None:
        print()
        print(f"{'':10} {'requests':>10} {'5xx ratio':>10} {'p99':>10}")
        for role in ("stable", "candidate"):
            v = getattr(figures, role)
            print(
                f"{role:10} {_num(v.requests, '{:.0f}'):>10} {_num(v.error_ratio, '{:.2%}'):>10} "
                f"{_num(None if v.p99_seconds is None else v.p99_seconds * 1000, '{:.1f} ms'):>10}"
            )
        if figures.drift_share is not None:
            print(f"drift share (candidate): {figures.drift_share:.3f}")
        if figures.shadow_agreement is not None:
            print(f"shadow agreement:        {figures.shadow_agreement:.2%}")
        for note in figures.notes:
            print(f"  ({note})")
    print()
    print(f"decision:  {report['decision']}")
    for r in report["reasons"]:
        print(f"  - {r}")


def _num(x: float | None, fmt: str) -> str:
    if x is None or x != x:  # None or NaN
        return "-"
    return fmt.format(x)


# --------------------------------------------------------------------------- the stack's source


def source_for(settings: Any, stack: str, cwd: Path) -> Source:
    """The metrics source ``analysis.source`` (default by target) names, built from the settings."""
    import os

    from components.analysis_settings import AnalysisSettings

    a = settings.analysis or AnalysisSettings()
    kind = settings.analysis_source
    model = settings.model.name
    if kind == "prometheus":
        if not a.prometheus_url:
            raise CommandError("mlflow-deploy:analysis.prometheusUrl: source prometheus needs the Prometheus URL")
        from modelctl.sources import PrometheusSource

        return PrometheusSource(
            a.prometheus_url,
            model,
            settings.kubernetes.namespace,
            mlflow_name=model,
            monitor=a.max_drift_share is not None or a.min_shadow_agreement is not None,
            # two evaluation intervals plus a scrape: an older figure is the last one of a monitor
            # that stopped, and counts as missing (hold)
            monitor_max_age=2 * duration_seconds(settings.monitoring.drift.interval) + 60,
        )
    if kind == "cloudwatch":
        from components.sagemaker import endpoint_name
        from modelctl.sources import CloudWatchSource
        from modelctl.stackops import _pulumi_stack_outputs

        outputs = _pulumi_stack_outputs(stack, cwd) or {}
        sm = settings.sagemaker
        return CloudWatchSource(endpoint_name(model, sm), sm.region, expected=outputs.get("sagemaker"))
    if kind == "azure-monitor":
        from components.azureml import deployment_name
        from components.azureml import endpoint_name as az_endpoint
        from modelctl.sources_cloud import AzureMonitorSource

        az = settings.azureml
        sub = az.subscription_id or os.environ.get("AZURE_SUBSCRIPTION_ID")
        if not sub:
            raise CommandError("mlflow-deploy:azureml.subscriptionId is not set and neither is AZURE_SUBSCRIPTION_ID")
        versions = [_stable_version(settings), settings.candidate.version]
        return AzureMonitorSource(
            sub,
            az.resource_group,
            az.workspace,
            az_endpoint(model, stack, az),
            {v: deployment_name(model, v) for v in versions},
        )
    if kind == "cloud-monitoring":
        from components.vertex import endpoint_id
        from modelctl.sources_cloud import CloudMonitoringSource
        from modelctl.stackops import _pulumi_stack_outputs

        vx = settings.vertex
        outputs = _pulumi_stack_outputs(stack, cwd) or {}
        deployed = (outputs.get("vertex") or {}).get("deployedModels")
        return CloudMonitoringSource(vx.project, vx.region, endpoint_id(model, vx), model, deployed_models=deployed)
    raise CommandError(f"no metrics source for targets {settings.targets}")
