"""The monitor's work, without HTTP: take capture bodies into the store, evaluate the window
(drift per live version, shadow agreement), keep the metrics and the latest reports.

``Monitor.ingest`` runs per POST (parse, check, one fsync'd append). ``Monitor.evaluate`` is slow
(Evidently: seconds per version) and never runs on the request path: ``Evaluator`` calls it every
interval from its own thread, and ``POST /v1/evaluate`` runs it in a worker thread. Evaluations are
serialized by a lock.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor import drift, records, shadow
from monitor.metrics import Metrics
from monitor.store import Store

logger = logging.getLogger("monitor")

MIN_ROWS = 10
"""A version with fewer rows in the window gets no drift figures (its records are still counted)."""
MAX_WINDOW_ROWS = 100_000
"""Rows of a version's window given to Evidently; a seeded uniform sample of the records beyond."""
FUTURE_SKEW_S = 3600.0
"""A record stamped further in the future than this is rejected (``bad_timestamp``)."""
REPORTS_DIR = ".reports"


@dataclass(frozen=True)
class Config:
    model: str
    store: str
    interval_s: float = 600.0
    window_s: float = 3600.0
    retention_s: float = 7 * 86400.0
    stable: str | None = None
    candidate: str | None = None
    strategy: str = "canary"
    task: str = "auto"
    shadow_tolerance: float = 0.0
    shadow_window_s: float = 30.0
    drift_share: float = 0.5


class Monitor:
    def __init__(self, config: Config, reference: Any, metrics: Metrics | None = None) -> None:
        self.config = config
        self.schema = records.schema_of(reference)
        self.reference = reference[self.schema.features].reset_index(drop=True)
        self.reference_predictions = (
            reference[self.schema.prediction].reset_index(drop=True) if self.schema.prediction else None
        )
        self.store = Store(config.store)
        self.reports = Path(config.store) / REPORTS_DIR
        self.reports.mkdir(parents=True, exist_ok=True)
        self.metrics = metrics or Metrics(config.model)
        self.metrics.init_reasons(records.REJECT_REASONS)
        self._eval_lock = threading.Lock()
        self.last_summary: dict[str, Any] | None = None

    # --- capture ---------------------------------------------------------------------------------

    def ingest(self, body: bytes, now: float | None = None) -> dict[str, Any]:
        """Store the acceptable records of a JSON-lines body (durably, before returning); the
        counts. Raises OSError when the store cannot write (nothing of the body is counted)."""
        now = time.time() if now is None else now
        parsed, rejects = records.parse_lines(body, self.config.model)
        ok, more = records.check(parsed, self.schema)
        rejects.update(more)
        kept = []
        oldest = now - self.config.retention_s
        for r in ok:
            if r.ts > now + FUTURE_SKEW_S or r.ts < oldest:
                rejects["bad_timestamp"] += 1
            else:
                kept.append(r)
        if kept:
            try:
                self.store.append(kept)
            except OSError:
                # visible in Prometheus, not only in the log: the records were not stored (all or
                # nothing, store.py) and the sender got a 503
                self.metrics.rejected.labels(self.config.model, "store_error").inc(len(kept))
                raise
        per_version = collections.Counter(r.version for r in kept)
        for version, n in per_version.items():
            self.metrics.records.labels(self.config.model, version).inc(n)
        for reason, n in rejects.items():
            self.metrics.rejected.labels(self.config.model, reason).inc(n)
        return {"accepted": len(kept), "rejected": dict(sorted(rejects.items()))}

    # --- evaluation ------------------------------------------------------------------------------

    def evaluate(self, now: float | None = None) -> dict[str, Any]:
        """Evaluate the window ending ``now`` (drift per live version, shadow agreement), set the
        metrics, write the reports, expire old records; the JSON summary."""
        with self._eval_lock:
            return self._evaluate(time.time() if now is None else now)

    def _evaluate(self, now: float) -> dict[str, Any]:
        started = time.monotonic()
        c = self.config
        deleted = self.store.expire(c.retention_s, now)
        window = self.store.window(now - c.window_s, now)
        versions: dict[str, Any] = {}
        for version, recs in window.items():
            versions[version] = self._evaluate_version(version, recs)
        self.metrics.retire_versions(window)
        shadow_summary = self._shadow(window)
        finished = time.time()
        self.metrics.evaluated(finished)
        summary = {
            "model": c.model,
            "timestamp": finished,
            "window": {"start": now - c.window_s, "end": now, "seconds": c.window_s},
            "versions": versions,
            "shadow": shadow_summary,
            "expired_files": len(deleted),
            "seconds": round(time.monotonic() - started, 3),
        }
        self.last_summary = summary
        logger.info(
            "evaluated %d live version(s) in %.1fs: %s",
            len(versions),
            summary["seconds"],
            ", ".join(f"{v} share={s.get('drift_share')}" for v, s in versions.items()) or "no traffic",
        )
        return summary

    def _evaluate_version(self, version: str, recs: list[records.Record]) -> dict[str, Any]:
        rows = sum(r.rows for r in recs)
        n = len(recs)
        out: dict[str, Any] = {"records": n, "rows": rows}
        if rows > MAX_WINDOW_ROWS:
            recs = _sample(recs, MAX_WINDOW_ROWS)
            out["sampled_rows"] = sum(r.rows for r in recs)
        if rows < MIN_ROWS:
            out["skipped"] = f"{rows} rows in the window, fewer than {MIN_ROWS}"
            self.metrics.set_version(
                version, records=n, drift_share=None, drifted=None, feature_scores=None, prediction_score=None
            )
            return out
        current, outputs = records.frame(recs, self.schema.features)
        try:
            result = drift.evaluate(
                self.reference,
                current,
                self.reference_predictions,
                outputs,
                html=True,
                drift_share=self.config.drift_share,
            )
        except drift.DriftError as e:
            out["skipped"] = str(e)
            self.metrics.set_version(
                version, records=n, drift_share=None, drifted=None, feature_scores=None, prediction_score=None
            )
            return out
        self.metrics.set_version(
            version,
            records=n,
            drift_share=result.drift_share,
            drifted=result.drifted,
            feature_scores=result.feature_scores,
            prediction_score=result.prediction_drift_score,
        )
        if result.html is not None:
            self._write_report(version, result.html)
        out.update(result.summary())
        return out

    def _shadow(self, window: dict[str, list[records.Record]]) -> dict[str, Any] | None:
        c = self.config
        if not c.stable or not c.candidate or c.stable == c.candidate:
            self.metrics.clear_shadow()
            return None
        result = shadow.compare(
            window.get(c.stable, []),
            window.get(c.candidate, []),
            window_s=c.shadow_window_s,
            task=c.task,
            tolerance=c.shadow_tolerance,
            mirrored=c.strategy == "shadow",
        )
        self.metrics.set_shadow(c.stable, c.candidate, result.pairs, result.ratio)
        return {"stable": c.stable, "candidate": c.candidate, "strategy": c.strategy, **result.summary()}

    # --- reports ---------------------------------------------------------------------------------

    def _write_report(self, version: str, html: str) -> None:
        path = self.reports / f"{version}.html"
        tmp = path.with_suffix(".html.tmp")
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, path)

    def report(self, version: str) -> Path | None:
        """The latest HTML report of ``version``, if one was written."""
        if not records.VERSION_PATTERN.match(version):
            return None
        path = self.reports / f"{version}.html"
        return path if path.is_file() else None


def _sample(recs: list[records.Record], max_rows: int) -> list[records.Record]:
    import random

    rng = random.Random(0)
    shuffled = recs[:]
    rng.shuffle(shuffled)
    out: list[records.Record] = []
    rows = 0
    for r in shuffled:
        if rows + r.rows > max_rows and out:
            break
        out.append(r)
        rows += r.rows
    return out


class Evaluator:
    """Runs ``Monitor.evaluate`` every ``interval_s`` in a daemon thread; an evaluation that fails
    is logged and the next one runs on time."""

    def __init__(self, monitor: Monitor, interval_s: float) -> None:
        self.monitor = monitor
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor-evaluator", daemon=True)
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        # the first evaluation at start (records stored before a restart are in the window), then
        # one every interval
        wait = 0.0
        try:  # import Evidently now (seconds) rather than in the first evaluation with traffic
            import evidently.presets  # noqa: F401
        except Exception:
            logger.exception("cannot import Evidently")
        while not self._stop.wait(wait):
            wait = self.interval_s
            try:
                self.monitor.evaluate()
            except Exception:  # one bad evaluation must not stop the next ones
                self.failures += 1
                logger.exception("evaluation failed")
