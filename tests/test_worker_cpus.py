"""The CPUs a worker sizes its threads by: the host's, its affinity's and its cgroup
quota's, whichever is least (a container's limit, not the node's cores)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workers.cpus import cgroup_quota, usable_cpus


def cgroup_v2(root: Path, cpu_max: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def cgroup_v1(root: Path, quota: str, period: str) -> Path:
    (root / "cpu").mkdir(parents=True, exist_ok=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(period + "\n")
    return root


@pytest.mark.parametrize(
    ("cpu_max", "quota"),
    [("200000 100000", 2.0), ("150000 100000", 1.5), ("max 100000", None), ("garbage", None)],
)
def test_cgroup_v2_quota(tmp_path: Path, cpu_max: str, quota: float | None) -> None:
    assert cgroup_quota(cgroup_v2(tmp_path, cpu_max)) == quota


@pytest.mark.parametrize(("quota_us", "quota"), [("50000", 0.5), ("400000", 4.0), ("-1", None)])
def test_cgroup_v1_quota(tmp_path: Path, quota_us: str, quota: float | None) -> None:
    assert cgroup_quota(cgroup_v1(tmp_path, quota_us, "100000")) == quota


def test_no_cgroup_files_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota(tmp_path) is None


def test_the_least_of_host_affinity_and_quota_rounded_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert usable_cpus(tmp_path) == 64  # no quota: the node's cores
    assert usable_cpus(cgroup_v2(tmp_path / "a", "150000 100000")) == 2  # 1.5 CPUs
    assert usable_cpus(cgroup_v2(tmp_path / "b", "20000 100000")) == 1  # never 0
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert usable_cpus(cgroup_v2(tmp_path / "c", "800000 100000")) == 3  # pinned to 3


def test_this_machine_has_at_least_one() -> None:
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)
