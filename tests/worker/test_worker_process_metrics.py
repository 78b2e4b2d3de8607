"""The worker's own registry serves what the SRE dashboard shows beyond the contract: process_* (CPU, memory, file
descriptors) and the rebalance count."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from sentiwatch.streamer.ops.metrics import WorkerMetrics


def test_process_metrics_are_served_by_each_worker_registry() -> None:
    families = {f.name: f for f in text_string_to_metric_families(WorkerMetrics().render().decode())}
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds",
                 "process_start_time_seconds", "sentiwatch_rebalances"):
        assert name in families, sorted(families)
    (sample,) = families["process_resident_memory_bytes"].samples
    assert sample.value > 10_000_000  # a Python process with prometheus_client loaded
    # Two workers in one process (the tests) keep separate registries: no duplicate-collector error.
    WorkerMetrics().render()
