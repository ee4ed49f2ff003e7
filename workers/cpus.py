"""How many CPUs this process may really use: the count its threads are sized by.

`os.cpu_count()` is the host's count. In a container it is usually far more than the
pod may use: a worker limited to 2 CPUs on a 64-core node would give each of its 2
parallel forward passes 32 threads, which the CPU quota then throttles. So the count
here is the smallest of the host's cores, the CPUs the process may run on (its affinity,
set by cpusets and `taskset`), and the cgroup's CPU quota rounded up (v2 `cpu.max`, v1
`cpu.cfs_quota_us` / `cpu.cfs_period_us`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may use (at least 1); see the module docstring."""
    count = os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        count = min(count, len(os.sched_getaffinity(0)) or count)
    quota = cgroup_quota(cgroup_root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The cgroup's CPU quota in CPUs (1.5 = one and a half), or None when unlimited or
    unknown. Reads the files at `root`, where a container sees its own cgroup."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return _ratio(quota, period or "100000")
    quota_v1 = _read(root / "cpu" / "cpu.cfs_quota_us")
    period_v1 = _read(root / "cpu" / "cpu.cfs_period_us")
    if quota_v1 is not None and period_v1 is not None:
        return _ratio(quota_v1, period_v1)
    return None


def _ratio(quota: str, period: str) -> float | None:
    """`quota / period`, or None for "max", -1 (v1's unlimited) and anything unreadable."""
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return quota_us / period_us


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
