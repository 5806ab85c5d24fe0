"""Helpers the format modules share: timestamps, hour partitions, reading JSON lines."""

from __future__ import annotations

import collections
import datetime as dt
import json
from collections.abc import Iterable, Iterator
from typing import Any

Rejects = collections.Counter  # reason -> count


def parse_time(value: Any) -> float:
    """Epoch seconds of an ISO-8601 timestamp (``...Z`` or with an offset), a datetime or a number."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dt.datetime):
        stamp = value
    else:
        text = str(value).strip().replace(" UTC", "+00:00")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        stamp = dt.datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def hour_of(parts: list[str]) -> dt.datetime | None:
    """The UTC hour of a ``.../yyyy/MM/dd/HH/...`` path (the first four numeric parts in a row)."""
    for i in range(len(parts) - 3):
        y, m, d, h = parts[i : i + 4]
        if len(y) == 4 and all(p.isdigit() for p in (y, m, d, h)) and len(m) == len(d) == len(h) == 2:
            try:
                return dt.datetime(int(y), int(m), int(d), int(h), tzinfo=dt.UTC)
            except ValueError:
                return None
    return None


def json_lines(lines: Iterable[bytes | str], rejects: Rejects) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON-lines stream; a malformed line counts as ``malformed_line``."""
    for line in lines:
        if isinstance(line, bytes):
            line = line.decode("utf-8", errors="replace")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            rejects["malformed_line"] += 1
            continue
        if not isinstance(obj, dict):
            rejects["malformed_line"] += 1
            continue
        yield obj
