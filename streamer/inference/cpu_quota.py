"""How many CPUs this process may really use: the CPU affinity, capped by the container's CPU quota.

`os.sched_getaffinity` reports the node's cores, not the pod's: a pod limited to 1 CPU on a 32-core node would
run 32 inference threads, be throttled by the kernel's CFS quota, and make CPU-based autoscaling meaningless.
The quota is read from cgroup v2 (`cpu.max`: "<quota> <period>" or "max <period>") or cgroup v1
(`cpu.cfs_quota_us`, -1 for none, and `cpu.cfs_period_us`), on the process's own cgroup and every ancestor up
to the mount point (a parent's limit binds too); the smallest wins. Fractional quotas round down, as Go's
automaxprocs does, so that a 1.5-CPU pod runs one thread unthrottled rather than two throttled; never below 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """CPUs for this process's worker threads: affinity, capped by the cgroup CPU quota (at least 1)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota(cgroup_root, proc_self_cgroup)
    if quota is None:
        return max(1, affinity)
    return max(1, min(affinity, math.floor(quota)))


def cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """The CPU quota in CPUs (1.5 for "150000 100000"), or None when there is no limit or no cgroup to read."""
    try:
        membership = proc_self_cgroup.read_text(encoding="utf-8")
    except OSError:
        return None
    limits: list[float] = []
    for line in membership.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not hierarchy:
            continue
        if hierarchy == "0" and controllers == "":
            limits += _v2_limits(cgroup_root, path)
        elif "cpu" in controllers.split(","):
            limits += _v1_limits(cgroup_root, controllers, path)
    return min(limits) if limits else None


def _ancestors(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder and its parents up to the mount point. Inside a container with its own cgroup
    namespace the path reads "/" and the mount point is the container's cgroup itself."""
    parts = [p for p in path.strip("/").split("/") if p and p != ".."]
    return [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _v2_limits(root: Path, path: str) -> list[float]:
    limits = []
    for folder in _ancestors(root, path):
        fields = _read(folder / "cpu.max").split()
        if len(fields) == 2 and fields[0] != "max":
            limits.append(_ratio(fields[0], fields[1]))
    return [limit for limit in limits if limit > 0]


def _v1_limits(root: Path, controllers: str, path: str) -> list[float]:
    # The cpu controller is mounted as cpu,cpuacct (most distributions), cpuacct,cpu or cpu.
    mounts = [root / controllers, root / "cpu,cpuacct", root / "cpu"]
    mount = next((m for m in mounts if m.is_dir()), None)
    if mount is None:
        return []
    limits = []
    for folder in _ancestors(mount, path):
        quota, period = _read(folder / "cpu.cfs_quota_us").strip(), _read(folder / "cpu.cfs_period_us").strip()
        if quota and period and quota != "-1":
            limits.append(_ratio(quota, period))
    return [limit for limit in limits if limit > 0]


def _ratio(quota: str, period: str) -> float:
    try:
        return int(quota) / int(period) if int(period) > 0 else 0.0
    except ValueError:
        return 0.0


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return ""
