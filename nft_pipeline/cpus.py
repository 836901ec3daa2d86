"""How many CPUs this process may use: what default process and thread counts are sized by.

`os.cpu_count()` is the node's core count. In a container (a Kubernetes pod with a CPU limit, a
Docker `--cpus`) the process gets a CFS quota instead, and sizing pools by the node's 64 cores
would start 64 download or standardize processes that share 2 cores' worth of time. The answer
is the smallest of the affinity mask (`sched_getaffinity`: pinned CPUs, `--cpuset-cpus`) and the
cgroup quota rounded up (cgroup v2 `cpu.max`, else v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs' worth of time the cgroup at `root` may use per period, or None when unlimited or unknown."""
    v2 = _read(root / "cpu.max")  # "max 100000" (no limit) or "200000 100000" (2 CPUs)
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        if quota == "max":
            return None
        try:
            return int(quota) / int(period or 100_000)
        except ValueError:
            return None
    quota, period = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    try:
        if quota is None or period is None or int(quota) <= 0:  # -1: no limit
            return None
        return int(quota) / int(period)
    except ValueError:
        return None


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may use: affinity mask and cgroup quota (rounded up), at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)
