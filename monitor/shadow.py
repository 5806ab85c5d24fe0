"""Shadow comparison: do the stable and the candidate version give the same outputs for the same
inputs?

A shadow rollout mirrors each request to the candidate with the same body, so both versions
capture a record with the same ``input_hash`` (a hash of the parsed inputs, serving/capture.py)
within moments of each other. Records pair when their hashes are equal and their timestamps at
most ``window_s`` apart (each record pairs at most once, with the closest one). A pair of records
of ``rows`` rows gives ``rows`` paired predictions; ``pairs`` and ``agreed`` count predictions.

* classification: agreement = the same prediction (for a row of class probabilities, the same
  most likely class);
* regression: agreement = ``|stable - candidate| <= tolerance`` (element-wise for vector outputs).

Under canary or blue-green traffic is split, not mirrored: a request reaches one version only, so
what the versions would answer on the same input is unknown and the ratio is None with that reason
(identical inputs that happen to reach both are too few and too biased to stand for agreement).
"""

from __future__ import annotations

import bisect
import collections
import math
from dataclasses import dataclass
from typing import Any

from monitor.records import Record

TASKS = ("auto", "classification", "regression")


@dataclass(frozen=True)
class ShadowResult:
    pairs: int
    agreed: int
    ratio: float | None
    reason: str

    def summary(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "agreed": self.agreed, "ratio": self.ratio, "reason": self.reason}


def compare(
    stable: list[Record],
    candidate: list[Record],
    *,
    window_s: float,
    task: str,
    tolerance: float,
    mirrored: bool,
) -> ShadowResult:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    if not mirrored:
        return ShadowResult(
            0,
            0,
            None,
            "traffic is split between the versions, not mirrored: no request reaches both, "
            "so their agreement is unknown",
        )
    matched = pair(stable, candidate, window_s=window_s)
    if not matched:
        return ShadowResult(
            0, 0, None, f"no stable and candidate records with the same inputs within {window_s:g}s of each other"
        )
    if task == "auto":
        task = infer_task([o for s, c in matched for o in (*s.outputs, *c.outputs)])
    pairs = agreed = 0
    for s, c in matched:
        for a, b in zip(s.outputs, c.outputs, strict=False):
            pairs += 1
            agreed += agree(a, b, task, tolerance)
    if pairs == 0:
        return ShadowResult(0, 0, None, "the paired records have no outputs")
    return ShadowResult(
        pairs, agreed, agreed / pairs, f"{agreed} of {pairs} paired predictions agree ({task})"
    )


def pair(stable: list[Record], candidate: list[Record], *, window_s: float) -> list[tuple[Record, Record]]:
    """(stable, candidate) records with the same ``input_hash`` and timestamps at most ``window_s``
    apart; each record in one pair at most, the closest in time first."""
    by_hash: dict[str, list[Record]] = collections.defaultdict(list)
    for r in stable:
        by_hash[r.input_hash].append(r)
    pools: dict[str, tuple[list[float], list[Record], list[bool]]] = {}
    for h, rs in by_hash.items():
        rs.sort(key=lambda r: r.ts)
        pools[h] = ([r.ts for r in rs], rs, [False] * len(rs))
    out: list[tuple[Record, Record]] = []
    for c in sorted(candidate, key=lambda r: r.ts):
        pool = pools.get(c.input_hash)
        if pool is None:
            continue
        times, rs, used = pool
        i = bisect.bisect_left(times, c.ts - window_s)
        best = -1
        while i < len(times) and times[i] <= c.ts + window_s:
            if not used[i] and (best < 0 or abs(times[i] - c.ts) < abs(times[best] - c.ts)):
                best = i
            i += 1
        if best >= 0:
            used[best] = True
            out.append((rs[best], c))
    return out


def infer_task(outputs: list[Any]) -> str:
    """classification when every output is an integer, a string or a bool (or a list of those);
    regression as soon as one is a non-integral number (or a list holding a float): class
    probabilities need ``--task classification``."""
    for o in outputs:
        if isinstance(o, float) and not o.is_integer():
            return "regression"
        if isinstance(o, list):
            return "regression" if any(isinstance(v, float) for v in o) else "classification"
    return "classification"


def agree(a: Any, b: Any, task: str, tolerance: float) -> bool:
    if task == "classification":
        if isinstance(a, list) and isinstance(b, list) and a and b and _numbers(a) and _numbers(b):
            return _argmax(a) == _argmax(b)
        return bool(a == b)
    if _number(a) and _number(b):
        return abs(float(a) - float(b)) <= tolerance
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(agree(x, y, task, tolerance) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _numbers(values: list[Any]) -> bool:
    return all(_number(v) for v in values)


def _argmax(values: list[Any]) -> int:
    return max(range(len(values)), key=lambda i: values[i])
