"""``python -m monitor run-once``: one evaluation of a cloud endpoint's captured traffic.

    python -m monitor run-once --model iris --source s3://bucket/capture/iris-prod \\
        --reference models:/iris/3 --since 1h --publish cloudwatch:mlflow-deploy \\
        --versions stable=3,candidate=4 [--format sagemaker] [--stable 3 --candidate 4 --strategy shadow]

Reads the window's records from the cloud's capture store (:mod:`monitor.sources`, one normaliser
per format), turns them into the monitor's records at the contract seam
(``monitor.records.parse_lines``: the same validation and rejects as ``POST /v1/capture``), then
per version ``monitor.drift.evaluate`` against the reference, and for a shadow rollout
``monitor.shadow.compare`` of stable and candidate; publishes the same metrics the Kubernetes
monitor exposes (names in docs/quality.md) and prints a one-line JSON summary per version.

Exit codes: 0 evaluated and published (also with no traffic in the window: ``model_capture_records``
is then 0 and no drift figure is published), 1 an operational failure (reference, source or
publisher), 2 a usage error. Every failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from monitor.publish import Point, PublishError, publisher
from monitor.sources import FORMATS, SourceError, infer_format, read

DRIFT_SHARE = "model_drift_share"
FEATURE_DRIFT = "model_feature_drift_score"
DRIFT_DETECTED = "model_drift_detected"
PREDICTION_DRIFT = "model_prediction_drift_score"
CAPTURE_RECORDS = "model_capture_records"
LAST_EVALUATION = "model_monitor_last_evaluation_timestamp_seconds"
SHADOW_AGREEMENT = "model_shadow_agreement_ratio"
SHADOW_PAIRS = "model_shadow_pairs_total"
REJECTED = "model_monitor_rejected_total"
PREDICTION_COLUMN = "prediction"
"""A reference column of this name holds the reference's predictions (prediction drift)."""

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(Exception):
    pass


def seconds(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise UsageError(f"{text!r} is not a duration like 90s, 10m, 1h or 7d")
    return float(match.group(1)) * _UNIT[match.group(2)]


def mapping(text: str) -> dict[str, str]:
    """``a=1,b=2`` -> ``{"a": "1", "b": "2"}``."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"--versions {text!r}: expected <name>=<version>[,<name>=<version>...]")
        out[key] = value
    return out


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``run-once`` on the monitor CLI's subparsers."""
    p = sub.add_parser("run-once", help="evaluate a cloud endpoint's captured traffic once and publish the metrics")
    p.add_argument("--model", required=True)
    p.add_argument(
        "--source", required=True, help="the endpoint's capture store (s3://, https://...blob..., bq://, a path)"
    )
    p.add_argument("--format", choices=FORMATS, help="capture format (default: from the source's scheme)")
    p.add_argument("--versions", required=True, help="variant / deployment / deployed model ID -> version: a=3,b=4")
    p.add_argument("--reference", required=True)
    p.add_argument("--since", default="1h", help="the window: records of the last DURATION (default 1h)")
    p.add_argument("--until", type=float, default=None, help="the window's end, epoch seconds (default: now)")
    p.add_argument(
        "--publish",
        required=True,
        help="cloudwatch:NS | azuremonitor:RESOURCE?region=R | cloudmonitoring:PROJECT | fake:PATH",
    )
    p.add_argument("--stable")
    p.add_argument("--candidate")
    p.add_argument("--strategy", choices=("canary", "shadow", "blue-green"), default="canary")
    p.add_argument("--task", choices=("auto", "classification", "regression"), default="auto")
    p.add_argument("--shadow-tolerance", type=float, default=0.0)
    p.add_argument("--shadow-window", default="30s")
    p.add_argument("--max-reference-rows", type=int, default=50000)
    p.add_argument("--tracking-uri", default=None)
    p.set_defaults(handler=run)
    return p


def to_records(dicts: list[dict[str, Any]], model: str) -> tuple[list[Any], Counter[str]]:
    """The contract's seam: the normalisers' dicts as JSON lines through ``monitor.records.parse_lines``."""
    from monitor.records import parse_lines

    body = b"".join(json.dumps(d, separators=(",", ":")).encode() + b"\n" for d in dicts)
    return parse_lines(body, model)


def evaluate(
    records: list[Any], reference: Any, *, model: str, now: float, args: argparse.Namespace
) -> tuple[list[Point], list[dict[str, Any]]]:
    """The points to publish and one summary per version."""
    from monitor.drift import DriftError
    from monitor.drift import evaluate as drift
    from monitor.records import frame
    from monitor.service import MIN_ROWS

    ref_predictions = reference[PREDICTION_COLUMN] if PREDICTION_COLUMN in reference.columns else None
    ref_inputs = reference.drop(columns=[PREDICTION_COLUMN]) if ref_predictions is not None else reference
    columns = [str(c) for c in ref_inputs.columns]
    points = [Point(LAST_EVALUATION, now, {"model": model}, now)]
    summaries: list[dict[str, Any]] = []
    by_version: dict[str, list[Any]] = {}
    for r in records:
        by_version.setdefault(r.version, []).append(r)
    for version in sorted(set(by_version) | set(mapping(args.versions).values())):
        mine = by_version.get(version, [])
        labels = {"model": model, "version": version}
        points.append(Point(CAPTURE_RECORDS, float(sum(r.rows for r in mine)), labels, now))
        summary: dict[str, Any] = {"model": model, "version": version, "records": len(mine)}
        rows = sum(r.rows for r in mine)
        if mine and rows < MIN_ROWS:  # as the Kubernetes monitor: a handful of rows is noise
            summary["skipped"] = f"{rows} rows in the window, fewer than {MIN_ROWS}"
        elif mine:
            current, outputs = frame(mine, columns)
            try:
                result = drift(
                    ref_inputs,
                    current,
                    ref_predictions,
                    outputs if ref_predictions is not None else None,
                )
            except DriftError as exc:  # this version's window cannot be measured; the others can
                summary["skipped"] = str(exc)
                summaries.append(summary)
                continue
            points.append(Point(DRIFT_SHARE, float(result.drift_share), labels, now))
            points.append(Point(DRIFT_DETECTED, 1.0 if result.drifted else 0.0, labels, now))
            points += [
                Point(FEATURE_DRIFT, float(score), {**labels, "feature": feature}, now)
                for feature, score in sorted(result.feature_scores.items())
            ]
            if result.prediction_drift_score is not None:
                points.append(Point(PREDICTION_DRIFT, float(result.prediction_drift_score), labels, now))
            summary.update(rows=result.rows, drift_share=result.drift_share, drifted=result.drifted)
        summaries.append(summary)
    if args.stable and args.candidate:
        from monitor.shadow import compare

        shadow = compare(
            by_version.get(args.stable, []),
            by_version.get(args.candidate, []),
            window_s=seconds(args.shadow_window),
            task=args.task,
            tolerance=args.shadow_tolerance,
            mirrored=args.strategy == "shadow",
        )
        labels = {"model": model, "stable": args.stable, "candidate": args.candidate}
        points.append(Point(SHADOW_PAIRS, float(shadow.pairs), labels, now))
        if shadow.ratio is not None:
            points.append(Point(SHADOW_AGREEMENT, float(shadow.ratio), labels, now))
        summaries.append(
            {"model": model, **labels, "pairs": shadow.pairs, "agreement": shadow.ratio, "reason": shadow.reason}
        )
    return points, summaries


def run(args: argparse.Namespace) -> int:
    from monitor.reference import ReferenceError, load

    fmt = args.format or infer_format(args.source)
    if fmt is None:
        raise UsageError(f"--format is needed for {args.source!r} (one of {', '.join(FORMATS)})")
    versions = mapping(args.versions)
    end = args.until if args.until is not None else time.time()
    start = end - seconds(args.since)
    target = publisher(args.publish)
    try:
        reference = load(args.reference, args.tracking_uri, max_rows=args.max_reference_rows)
    except ReferenceError as exc:
        raise SourceError(f"reference: {exc}") from None
    dicts, rejects = read(args.source, fmt, args.model, versions, start, end)
    records, bad = to_records(dicts, args.model)
    rejects.update(bad)
    # the same column and type checks as the Kubernetes monitor's /v1/capture: a record the
    # reference cannot be compared with is a counted reject, not a failed run
    from monitor.records import check, schema_of

    records, bad = check(records, schema_of(reference))
    rejects.update(bad)
    points, summaries = evaluate(records, reference, model=args.model, now=end, args=args)
    points += [
        Point(REJECTED, float(n), {"model": args.model, "reason": reason}, end) for reason, n in sorted(rejects.items())
    ]
    target.publish(points)
    for s in summaries:
        print(json.dumps(s, sort_keys=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``run-once`` on its own (``python -m monitor.run_once``); ``python -m monitor run-once`` is the same."""
    parser = argparse.ArgumentParser(prog="python -m monitor")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return dispatch(args)


def dispatch(args: argparse.Namespace) -> int:
    """Run the handler; one line on stderr and an exit code for every known failure."""
    try:
        return int(args.handler(args))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SourceError, PublishError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
