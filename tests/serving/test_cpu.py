"""Worker count from the container's CPU limit, on fake cgroup trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.cpu import cpu_quota, default_workers


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2_root(tmp_path: Path) -> Path:
    write(tmp_path, "cgroup.controllers", "cpuset cpu io memory pids\n")
    return tmp_path


# -- cgroup v2 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("200000 100000\n", 2.0),
        ("150000 100000\n", 1.5),
        ("50000 100000\n", 0.5),
        ("400000 200000\n", 2.0),
        ("max 100000\n", None),
        ("garbage\n", None),
        ("", None),
    ],
)
def test_v2_cpu_max_at_namespace_root(tmp_path: Path, cpu_max: str, expected: float | None) -> None:
    root = v2_root(tmp_path)
    write(root, "cpu.max", cpu_max)
    assert cpu_quota(root, "0::/\n") == expected


def test_v2_without_cpu_max_is_unlimited(tmp_path: Path) -> None:
    assert cpu_quota(v2_root(tmp_path), "0::/\n") is None


def test_v2_nested_cgroup_takes_the_tightest_ancestor(tmp_path: Path) -> None:
    # Host view (no cgroup namespace): the pod's limit sits on a parent of the container's cgroup.
    root = v2_root(tmp_path)
    write(root, "kubepods.slice/cpu.max", "800000 100000\n")
    write(root, "kubepods.slice/pod1/cpu.max", "300000 100000\n")
    write(root, "kubepods.slice/pod1/ctr/cpu.max", "max 100000\n")
    assert cpu_quota(root, "0::/kubepods.slice/pod1/ctr\n") == 3.0


def test_v2_path_missing_under_mount_falls_back_to_root(tmp_path: Path) -> None:
    # Container whose /proc/self/cgroup shows the host path, but /sys/fs/cgroup is its own cgroup.
    root = v2_root(tmp_path)
    write(root, "cpu.max", "100000 100000\n")
    assert cpu_quota(root, "0::/system.slice/docker-abc.scope\n") == 1.0


# -- cgroup v1 ------------------------------------------------------------------------------


def test_v1_cfs_quota(tmp_path: Path) -> None:
    write(tmp_path, "cpu,cpuacct/cpu.cfs_quota_us", "250000\n")
    write(tmp_path, "cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    proc = "12:cpu,cpuacct:/\n11:memory:/\n0::/\n"
    assert cpu_quota(tmp_path, proc) == 2.5


def test_v1_unlimited_quota(tmp_path: Path) -> None:
    write(tmp_path, "cpu/cpu.cfs_quota_us", "-1\n")
    write(tmp_path, "cpu/cpu.cfs_period_us", "100000\n")
    assert cpu_quota(tmp_path, "1:cpu:/\n") is None


def test_v1_nested_path(tmp_path: Path) -> None:
    write(tmp_path, "cpu/cpu.cfs_quota_us", "-1\n")
    write(tmp_path, "cpu/cpu.cfs_period_us", "100000\n")
    write(tmp_path, "cpu/docker/abc/cpu.cfs_quota_us", "100000\n")
    write(tmp_path, "cpu/docker/abc/cpu.cfs_period_us", "100000\n")
    assert cpu_quota(tmp_path, "4:cpu,cpuacct:/docker/abc\n") == 1.0


def test_no_cgroup_at_all(tmp_path: Path) -> None:
    assert cpu_quota(tmp_path / "missing", None) is None


# -- worker count ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quota", "cpus", "workers"),
    [
        (None, 8, 8),  # no limit: the CPUs we may run on (affinity), not the host count
        (2.0, 64, 2),  # 2-CPU pod on a 64-core node
        (1.5, 64, 2),  # fractional limits round up
        (0.5, 64, 1),
        (0.1, 64, 1),  # never 0
        (4.0, 2, 2),  # a quota above the cpuset is capped by the cpuset
        (2.0000001, 8, 3),
        (None, 0, 1),
    ],
)
def test_default_workers(quota: float | None, cpus: int, workers: int) -> None:
    assert default_workers(quota, cpus) == workers


def test_limit_of_a_real_looking_pod(tmp_path: Path) -> None:
    root = v2_root(tmp_path)
    write(root, "cpu.max", "150000 100000\n")
    assert default_workers(cpu_quota(root, "0::/\n"), 32) == 2
