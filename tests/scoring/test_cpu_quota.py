"""Inference threads follow the container's CPU quota, not the node's cores (fake cgroup v1/v2 files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sentiwatch.streamer.inference import cpu_quota
from sentiwatch.streamer.inference.cpu_quota import usable_cpus


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def many_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 32-core node, as the affinity mask reports it there."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)))


def test_cgroup_v2_quota_caps_threads_inside_a_container(tmp_path: Path, many_cores: None) -> None:
    # A private cgroup namespace: /proc/self/cgroup reads "0::/" and the container's cgroup is the mount.
    write(tmp_path / "proc", "0::/\n")
    write(tmp_path / "cg" / "cpu.max", "100000 100000\n")
    assert usable_cpus(tmp_path / "cg", tmp_path / "proc") == 1


def test_cgroup_v2_fractional_quota_rounds_down_never_to_zero(tmp_path: Path, many_cores: None) -> None:
    write(tmp_path / "proc", "0::/\n")
    write(tmp_path / "cg" / "cpu.max", "250000 100000\n")
    assert usable_cpus(tmp_path / "cg", tmp_path / "proc") == 2
    write(tmp_path / "cg" / "cpu.max", "50000 100000\n")
    assert usable_cpus(tmp_path / "cg", tmp_path / "proc") == 1


def test_cgroup_v2_parent_limit_binds_the_child(tmp_path: Path, many_cores: None) -> None:
    # No cgroup namespace: the full path, and the pod's limit sits on the parent of the container's cgroup.
    write(tmp_path / "proc", "0::/kubepods/pod1/ctr\n")
    write(tmp_path / "cg" / "kubepods" / "pod1" / "cpu.max", "300000 100000\n")
    write(tmp_path / "cg" / "kubepods" / "pod1" / "ctr" / "cpu.max", "max 100000\n")
    assert usable_cpus(tmp_path / "cg", tmp_path / "proc") == 3


def test_cgroup_v2_without_limit_uses_the_affinity(tmp_path: Path, many_cores: None) -> None:
    write(tmp_path / "proc", "0::/\n")
    write(tmp_path / "cg" / "cpu.max", "max 100000\n")
    assert usable_cpus(tmp_path / "cg", tmp_path / "proc") == 32


def test_cgroup_v1_cfs_quota(tmp_path: Path, many_cores: None) -> None:
    write(tmp_path / "proc", "12:memory:/kubepods/pod1/ctr\n4:cpu,cpuacct:/kubepods/pod1/ctr\n")
    write(tmp_path / "cg" / "cpu,cpuacct" / "cpu.cfs_quota_us", "400000\n")
    write(tmp_path / "cg" / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert usable_cpus(tmp_path / "cg", tmp_path / "proc") == 4
    write(tmp_path / "cg" / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    assert usable_cpus(tmp_path / "cg", tmp_path / "proc") == 32


def test_affinity_below_the_quota_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    write(tmp_path / "proc", "0::/\n")
    write(tmp_path / "cg" / "cpu.max", "800000 100000\n")
    assert usable_cpus(tmp_path / "cg", tmp_path / "proc") == 2


def test_no_cgroup_files_at_all(tmp_path: Path, many_cores: None) -> None:
    assert cpu_quota.cpu_quota(tmp_path / "none", tmp_path / "no-proc") is None
    write(tmp_path / "proc", "0::/\n")
    write(tmp_path / "cg" / "cpu.max", "garbage\n")
    assert usable_cpus(tmp_path / "cg", tmp_path / "proc") == 32


def test_the_scorer_takes_its_thread_count_from_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_scorer with intra_op_threads=0 asks usable_cpus, not the affinity mask."""
    from sentiwatch.streamer.inference import scorer

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)))
    monkeypatch.setattr(scorer, "usable_cpus", lambda: 1)
    assert scorer.default_threads(0) == 1
    assert scorer.default_threads(3) == 3
