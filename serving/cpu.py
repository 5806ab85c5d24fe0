"""How many CPUs this container may use, read from its cgroup rather than from the host.

``os.cpu_count()`` reports the host's CPUs: a pod limited to 2 CPUs on a 64-core node would start
64 workers, each with its own copy of the model, and be throttled by the CFS quota. The functions
here read the limit the way the kernel enforces it:

1. cgroup v2: ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``) of this process's cgroup
   and of every ancestor up to the mount root (the effective limit is the smallest);
2. cgroup v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` of the ``cpu`` controller, same walk;
3. otherwise the CPUs this process may be scheduled on (``os.sched_getaffinity``), which is what
   a cpuset (``--cpuset-cpus``, static CPU manager policy) restricts.

``cpu_quota`` and ``default_workers`` are pure (they take the file-system root and the
``/proc/self/cgroup`` text as arguments) so tests run them against fake cgroup trees.
"""

from __future__ import annotations

import math
import os
from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")

_V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _parse_cpu_max(text: str | None) -> float | None:
    """``"200000 100000"`` -> 2.0; ``"max 100000"`` or garbage -> None (no limit)."""
    if not text:
        return None
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _parse_cfs(quota_text: str | None, period_text: str | None) -> float | None:
    """cgroup v1: quota -1 means unlimited."""
    if quota_text is None or period_text is None:
        return None
    try:
        quota = int(quota_text)
        period = int(period_text)
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _own_cgroup_paths(proc_self_cgroup: str | None) -> tuple[str | None, str | None]:
    """(v2 path, v1 cpu-controller path) of this process, from ``/proc/self/cgroup`` text."""
    v2: str | None = None
    v1: str | None = None
    for line in (proc_self_cgroup or "").splitlines():
        fields = line.strip().split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _candidate_dirs(base: Path, own_path: str | None) -> list[Path]:
    """``base`` joined with the process's cgroup path and each of its ancestors, plus ``base``.

    Inside a container with its own cgroup namespace the path is ``/`` and the limit sits on
    ``base`` itself; on a host (or with a shared namespace) it sits on a nested directory.
    """
    dirs: list[Path] = []
    if own_path and own_path != "/":
        rel = PurePosixPath(own_path.lstrip("/"))
        parts = rel.parts
        for i in range(len(parts), 0, -1):
            dirs.append(base.joinpath(*parts[:i]))
    dirs.append(base)
    return dirs


def cpu_quota(
    cgroup_root: Path | str = CGROUP_ROOT,
    proc_self_cgroup: str | None = None,
) -> float | None:
    """The CPU limit (in CPUs, may be fractional) the cgroup enforces, or None if there is none.

    Args:
        cgroup_root: where the cgroup file system is mounted (``/sys/fs/cgroup``).
        proc_self_cgroup: the text of ``/proc/self/cgroup`` (None: treat the process as sitting
            at the root of the mount, which is the case in a container with a cgroup namespace).
    """
    root = Path(cgroup_root)
    v2_path, v1_path = _own_cgroup_paths(proc_self_cgroup)

    # cgroup v2 (unified): cgroup.controllers exists at the root of the mount.
    if (root / "cgroup.controllers").exists() or (root / "cpu.max").exists():
        limits = [
            limit for d in _candidate_dirs(root, v2_path) if (limit := _parse_cpu_max(_read(d / "cpu.max"))) is not None
        ]
        return min(limits) if limits else None

    # cgroup v1: the cpu controller has its own mount.
    for mount in _V1_CPU_MOUNTS:
        base = root / mount
        if not base.is_dir():
            continue
        limits = [
            limit
            for d in _candidate_dirs(base, v1_path)
            if (limit := _parse_cfs(_read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us"))) is not None
        ]
        return min(limits) if limits else None
    return None


def default_workers(quota: float | None, schedulable_cpus: int) -> int:
    """Worker processes for a CPU limit: ``ceil(quota)`` capped by the schedulable CPUs, >= 1.

    A fractional limit is rounded up (as the Go runtime and the JVM do for their thread pools):
    1.5 CPUs -> 2 workers, so the pod can use all of its quota; the cap keeps a generous quota on
    a small cpuset from starting more workers than CPUs it can run on.
    """
    cpus = max(1, schedulable_cpus)
    if quota is None:
        return cpus
    return max(1, min(cpus, math.ceil(quota - 1e-9)))


def schedulable_cpus() -> int:
    """CPUs this process may run on (affinity mask), falling back to ``os.cpu_count()``."""
    sched_getaffinity = getattr(os, "sched_getaffinity", None)
    if sched_getaffinity is not None:
        try:
            return len(sched_getaffinity(0)) or 1
        except OSError:
            pass
    return os.cpu_count() or 1


def detect_workers() -> int:
    """Default worker count for this process, from its real cgroup and affinity."""
    return default_workers(
        cpu_quota(CGROUP_ROOT, _read(PROC_SELF_CGROUP)),
        schedulable_cpus(),
    )
