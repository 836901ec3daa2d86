"""Default process counts follow the CPUs a process may use: affinity and the cgroup quota."""

from __future__ import annotations

import os

import pytest

from nft_pipeline.cpus import cgroup_cpu_quota, usable_cpus


def affinity() -> int:
    return len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    "cpu_max, quota", [("200000 100000", 2.0), ("150000 100000", 1.5), ("max 100000", None), ("50000 100000", 0.5)]
)
def test_cgroup_v2_quota(tmp_path, cpu_max, quota):
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert cgroup_cpu_quota(tmp_path) == quota
    expected = affinity() if quota is None else max(1, min(affinity(), -(-quota // 1)))
    assert usable_cpus(tmp_path) == expected


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.0 and usable_cpus(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # no limit
    assert cgroup_cpu_quota(tmp_path) is None and usable_cpus(tmp_path) == affinity()


def test_no_cgroup_files_means_the_affinity_mask(tmp_path):
    assert cgroup_cpu_quota(tmp_path) is None and usable_cpus(tmp_path) == affinity()


def test_this_machine():
    assert 1 <= usable_cpus() <= affinity() <= (os.cpu_count() or 1)
