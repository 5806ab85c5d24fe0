"""The record store: append-only JSON lines, one file per model version and hour.

Layout: ``DIR/<version>/<YYYYMMDDHH>.jsonl`` (the UTC hour of each record's ``ts``). ``append``
writes a batch and ``fsync``s every file it touched (and the version directory when it created a
file) before it returns: a record the monitor acknowledged survives a crash or a SIGKILL of the
process (and, on a filesystem that honours fsync, a power loss). A line torn by a crash in the
middle of a write is skipped when read, and the next append starts on a fresh line.

Retention is by hour: ``expire`` deletes a file once its whole hour is older than the retention.
Directories whose name starts with ``.`` (``.reports``) are not versions.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from monitor.records import Record, RejectError, parse_record

HOUR = 3600
SUFFIX = ".jsonl"


def hour_key(ts: float) -> str:
    """``YYYYMMDDHH`` of the UTC hour holding ``ts``."""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y%m%d%H")


def hour_start(key: str) -> float:
    """Epoch seconds of the start of the hour ``YYYYMMDDHH``."""
    return datetime.datetime.strptime(key, "%Y%m%d%H").replace(tzinfo=datetime.UTC).timestamp()


class Store:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._checked: set[Path] = set()  # files whose tail was checked for a torn line

    # --- writing ---------------------------------------------------------------------------------

    def append(self, records: Iterable[Record]) -> int:
        """Write ``records`` durably; the number written. Raises OSError (disk full, read-only)."""
        batches: dict[Path, list[str]] = collections.defaultdict(list)
        for r in records:
            batches[self.root / r.version / f"{hour_key(r.ts)}{SUFFIX}"].append(r.to_json() + "\n")
        written = 0
        with self._lock:
            # all or nothing: a batch that fails part-way (disk full) is cut back off every file it
            # touched, so a 503 stores nothing (a retry does not store records twice) and no torn
            # fragment is left for the next append to glue a good line onto
            sizes: dict[Path, int] = {}
            try:
                for path, lines in batches.items():
                    new_dir = not path.parent.exists()
                    if new_dir:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        _fsync_dir(self.root)
                    new_file = not path.exists()
                    sizes[path] = 0 if new_file else path.stat().st_size
                    with open(path, "ab") as f:
                        if not new_file and path not in self._checked and _torn(path):
                            f.write(b"\n")
                        f.write("".join(lines).encode())
                        f.flush()
                        os.fsync(f.fileno())
                    self._checked.add(path)
                    if new_file:
                        _fsync_dir(path.parent)
                    written += len(lines)
            except OSError:
                for path, size in sizes.items():
                    self._checked.discard(path)
                    with contextlib.suppress(OSError):
                        os.truncate(path, size)
                raise
        return written

    # --- reading ---------------------------------------------------------------------------------

    def versions(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def read(self, version: str, start: float, end: float) -> list[Record]:
        """The records of ``version`` with ``start <= ts <= end``, in file order."""
        out: list[Record] = []
        for path in self._files(version, start, end):
            out.extend(r for r in _read_file(path) if start <= r.ts <= end)
        return out

    def window(self, start: float, end: float) -> dict[str, list[Record]]:
        """Version -> its records in ``[start, end]``; versions without any are left out."""
        result: dict[str, list[Record]] = {}
        for version in self.versions():
            records = self.read(version, start, end)
            if records:
                result[version] = records
        return result

    def _files(self, version: str, start: float, end: float) -> list[Path]:
        d = self.root / version
        if not d.is_dir():
            return []
        files = []
        for p in sorted(d.glob(f"*{SUFFIX}")):
            try:
                begin = hour_start(p.stem)
            except ValueError:
                continue
            if begin + HOUR > start and begin <= end:
                files.append(p)
        return files

    # --- retention -------------------------------------------------------------------------------

    def expire(self, retention_s: float, now: float) -> list[Path]:
        """Delete the files whose hour ended more than ``retention_s`` before ``now`` (and version
        directories left empty); the deleted files."""
        cutoff = now - retention_s
        deleted: list[Path] = []
        with self._lock:
            for version in self.versions():
                d = self.root / version
                for p in sorted(d.glob(f"*{SUFFIX}")):
                    try:
                        begin = hour_start(p.stem)
                    except ValueError:
                        continue
                    if begin + HOUR <= cutoff:
                        p.unlink(missing_ok=True)
                        self._checked.discard(p)
                        deleted.append(p)
                with contextlib.suppress(OSError):
                    d.rmdir()  # only when empty
        return deleted

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob(f"*{SUFFIX}") if p.is_file())


def _read_file(path: Path) -> list[Record]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # expired meanwhile
        return []
    out = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if isinstance(obj, dict):
                out.append(parse_record(obj))
        except (ValueError, RejectError):  # a line torn by a crash mid-write
            continue
    return out


def _torn(path: Path) -> bool:
    """The file does not end with a newline (a crash interrupted a write)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:
        return False


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
