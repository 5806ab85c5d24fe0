"""Benchmark: what one evaluation of the model monitor costs, stage by stage.

    python bench/monitor.py                       # 10k rows x 30 columns, reference 50k rows
    python bench/monitor.py --rows 2000 --columns 10 --reference-rows 20000

A synthetic table (``--columns`` columns: 5 of 6 numerical, the rest categorical, plus a binary
``prediction``) is the reference. ``--rows`` one-row capture records, encoded by the serving
runtime's own encoder (``serving.capture.encode_record``), go through the stages one evaluation
and the capture path take, in this process, each timed once after a warm-up of Evidently's import:

* ingest: ``Monitor.ingest`` of 256-record bodies (what a serving worker POSTs): parse, check
  against the reference, append + fsync to a store in a temp dir;
* read: ``Store.window`` of the whole window back from the JSON-lines files;
* frame: ``records.frame`` (records -> DataFrame);
* drift: ``drift.evaluate`` (Evidently ``DataDriftPreset`` + prediction ``ValueDrift``), without
  and with the HTML report (the monitor writes the report every evaluation);
* a whole ``Monitor.evaluate`` (all of the above for one live version, plus the report file).

Figures are wall-clock seconds on this machine; other work on it makes them noisy. Peak RSS is the
process's (reference, window and Evidently together).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def table(rows: int, columns: int, seed: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i in range(columns):
        if i % 6 == 5:
            data[f"c{i}"] = rng.choice(["a", "b", "c", "d"], size=rows)
        else:
            data[f"n{i}"] = rng.normal(loc=i % 3, scale=1 + i % 2, size=rows)
    return pd.DataFrame(data)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000, help="rows in the window (one-row records)")
    p.add_argument("--columns", type=int, default=30)
    p.add_argument("--reference-rows", type=int, default=50_000)
    args = p.parse_args()

    from monitor import drift, records
    from monitor.service import Config, Monitor
    from serving.capture import encode_record

    t = time.perf_counter()
    import evidently.presets  # noqa: F401

    import_s = time.perf_counter() - t

    ref = table(args.reference_rows, args.columns, seed=0)
    ref["prediction"] = (ref.iloc[:, 0] > ref.iloc[:, 0].median()).astype(int)
    cur = table(args.rows, args.columns, seed=1)
    outputs = (cur.iloc[:, 0] > ref.iloc[:, 0].median()).astype(int).tolist()
    now = time.time()
    lines = [
        encode_record(f"r{i}", now, "bench", "1", cur.iloc[i : i + 1], json.dumps({"predictions": [outputs[i]]}), 1)
        for i in range(args.rows)
    ]
    results: list[tuple[str, float, str]] = [("import evidently", import_s, "once per process")]

    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        monitor = Monitor(Config(model="bench", store=tmp), ref)
        t = time.perf_counter()
        accepted = 0
        for start in range(0, len(lines), 256):
            accepted += monitor.ingest(b"".join(lines[start : start + 256]), now=now)["accepted"]
        ingest_s = time.perf_counter() - t
        assert accepted == args.rows, accepted
        results.append(("ingest (256-record bodies)", ingest_s, f"{args.rows / ingest_s:,.0f} records/s"))

        t = time.perf_counter()
        window = monitor.store.window(now - 3600, now + 1)["1"]
        results.append(("read the window", time.perf_counter() - t, f"{len(window)} records"))

        t = time.perf_counter()
        current, outs = records.frame(window, monitor.schema.features)
        results.append(("frame", time.perf_counter() - t, f"{current.shape[0]} x {current.shape[1]}"))

        t = time.perf_counter()
        result = drift.evaluate(monitor.reference, current, monitor.reference_predictions, outs)
        results.append(("drift (no HTML)", time.perf_counter() - t, f"share {result.drift_share:.2f}"))

        t = time.perf_counter()
        result = drift.evaluate(monitor.reference, current, monitor.reference_predictions, outs, html=True)
        size = len(result.html or "") / 1e6
        results.append(("drift + HTML report", time.perf_counter() - t, f"report {size:.1f} MB"))

        t = time.perf_counter()
        summary = monitor.evaluate(now=now + 1)
        rows = summary["versions"]["1"]["rows"]
        results.append(("Monitor.evaluate (1 version)", time.perf_counter() - t, f"{rows} rows"))
        store_mb = monitor.store.size_bytes() / 1e6

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"window {args.rows} rows x {args.columns} columns, reference {args.reference_rows} rows; "
        f"store {store_mb:.1f} MB for the window; peak RSS {rss_mb:.0f} MB"
    )
    width = max(len(name) for name, _, _ in results)
    for name, seconds, note in results:
        print(f"{name:<{width}}  {seconds:8.2f} s  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
