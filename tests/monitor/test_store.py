"""The record store: hourly files per version, reading a window back, retention, torn lines, and
no acknowledged record lost when the monitor is killed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from monitor.records import Record, parse_lines
from monitor.store import Store, hour_key, hour_start
from tests.monitor.helpers import MODEL, features, record_lines, reference, running_monitor

T0 = 1764662400.0  # 2025-12-02T08:00:00Z, the start of an hour


def _rec(ts: float, version: str = "1", rid: str = "r") -> Record:
    return Record(rid, ts, MODEL, version, 1, {"x": [ts]}, [0], f"h{ts}")


def test_records_land_in_one_file_per_version_and_utc_hour(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert hour_key(T0) == "2025120208" and hour_start("2025120208") == T0
    written = store.append([_rec(T0), _rec(T0 + 3599.9), _rec(T0 + 3600), _rec(T0 + 10, "2")])
    assert written == 4
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.jsonl"))
    assert files == ["1/2025120208.jsonl", "1/2025120209.jsonl", "2/2025120208.jsonl"]
    assert len((tmp_path / "1" / "2025120208.jsonl").read_text().splitlines()) == 2
    assert store.versions() == ["1", "2"]


def test_a_batch_that_fails_part_way_stores_nothing_and_leaves_no_fragment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full on the batch's second file: the first file's new lines are cut back off, so the
    503 the POST gets means nothing was stored (a resend stores each record once), and the next
    append's lines are whole."""
    store = Store(tmp_path)
    store.append([_rec(T0, rid="old")])
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr("monitor.store.os.fsync", fsync)
    batch = [_rec(T0 + 1, rid="a"), _rec(T0 + 3600, rid="b")]
    with pytest.raises(OSError):
        store.append(batch)
    monkeypatch.setattr("monitor.store.os.fsync", real_fsync)
    assert [r.id for r in store.read("1", T0, T0 + 7200)] == ["old"]
    store.append(batch)  # the sender's resend, once space is back
    assert [r.id for r in store.read("1", T0, T0 + 7200)] == ["old", "a", "b"]
    assert all(line.startswith("{") for f in tmp_path.rglob("*.jsonl") for line in f.read_text().splitlines())


def test_a_window_reads_back_exactly_the_records_in_it(tmp_path: Path) -> None:
    store = Store(tmp_path)
    times = [T0 + i * 600 for i in range(12)]  # every 10 minutes over 2 hours
    store.append([_rec(t, rid=str(i)) for i, t in enumerate(times)])
    store.append([_rec(T0 + 1800, "2", "v2")])
    got = store.read("1", T0 + 1200, T0 + 4800)
    assert [r.ts for r in got] == [t for t in times if T0 + 1200 <= t <= T0 + 4800]
    assert got[0] == _rec(T0 + 1200, rid="2")  # the record itself comes back, not a copy of its shape
    window = store.window(T0 + 3600, T0 + 7200)
    assert set(window) == {"1"}  # version 2 has nothing in that window
    assert len(window["1"]) == 6


def test_retention_deletes_whole_hours_older_than_it(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.append([_rec(T0 + h * 3600 + 5) for h in range(5)] + [_rec(T0 + 5, "old")])
    (tmp_path / ".reports").mkdir()
    now = T0 + 4 * 3600 + 1200  # 20 minutes into the fifth hour
    deleted = store.expire(2 * 3600, now)  # keep 2 hours: the hours ending after now - 2h
    assert sorted(p.name for p in deleted) == ["2025120208.jsonl", "2025120208.jsonl", "2025120209.jsonl"]
    assert sorted(p.name for p in (tmp_path / "1").iterdir()) == [
        "2025120210.jsonl",  # ends at T0+3h > now-2h: a part of it is still within the retention
        "2025120211.jsonl",
        "2025120212.jsonl",
    ]
    assert not (tmp_path / "old").exists()  # a version left without files goes
    assert (tmp_path / ".reports").is_dir()  # not a version
    assert store.versions() == ["1"]


def test_a_line_torn_by_a_crash_is_skipped_and_the_next_append_starts_a_new_line(tmp_path: Path) -> None:
    Store(tmp_path).append([_rec(T0, rid="before")])
    path = tmp_path / "1" / "2025120208.jsonl"
    with open(path, "ab") as f:  # what a crash in the middle of a write leaves
        f.write(b'{"id":"torn","ts":1764662400.0,"mod')
    store = Store(tmp_path)  # a restarted process
    store.append([_rec(T0 + 1, rid="after")])
    assert [r.id for r in store.read("1", T0, T0 + 10)] == ["before", "after"]


@pytest.mark.slow
def test_a_sigkill_after_an_acknowledged_post_loses_no_record(tmp_path: Path) -> None:
    ref = tmp_path / "reference.parquet"
    reference(500).to_parquet(ref)
    store = tmp_path / "store"
    lines = record_lines(features(300, seed=5), version="3", rows_per_record=3)
    sent, _ = parse_lines(b"".join(lines), MODEL)
    with running_monitor(str(ref), store) as mon:
        for start in range(0, len(lines), 20):  # five acknowledged batches
            r = mon.post(lines[start : start + 20])
            assert r.status_code == 200 and r.json() == {"accepted": 20, "rejected": {}}
        os.kill(mon.proc.pid, signal.SIGKILL)
        mon.proc.wait(10)
        assert mon.proc.returncode == -signal.SIGKILL
    back = Store(store).read("3", 0, 2e9)
    assert back == sent
    # and a restarted monitor serves them: they are in its first evaluation
    with running_monitor(str(ref), store) as mon:
        summary = mon.evaluate()
    assert summary["versions"]["3"]["records"] == 100
    assert summary["versions"]["3"]["rows"] == 300


def test_a_store_that_cannot_write_is_counted_not_only_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full: the body's records are counted as ``store_error`` rejects in the monitor's own
    metrics (what Prometheus sees) and the OSError reaches the HTTP layer (its 503)."""
    from monitor.service import Config, Monitor

    ref = reference(200)
    mon = Monitor(Config(model=MODEL, store=str(tmp_path / "store")), ref)

    def full(records: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mon.store, "append", full)
    body = b"".join(line + b"\n" for line in record_lines(features(5, seed=1), version="3"))
    with pytest.raises(OSError):
        mon.ingest(body)
    assert mon.metrics.rejected.labels(MODEL, "store_error")._value.get() == 5
