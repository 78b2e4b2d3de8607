"""The worker's Prometheus metrics (contract names), in a registry owned by one worker object.

A registry per `WorkerMetrics` instead of prometheus_client's global default, so tests and two
apps in one process never share counters. Label values are bounded: topics go through the
worker's TopicCap, reasons come from `sentiwatch.streamer.scoring.records.REASONS`.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

from sentiwatch.streamer.scoring.records import REASONS

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_END_TO_END_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # process_* (CPU seconds, resident memory, open files, start time): the SRE dashboard's per-pod panels.
        ProcessCollector(registry=r)
        self.messages = Counter("sentiwatch_messages", "Scored records", ["topic", "sentiment"], registry=r)
        self.dead_letters = Counter("sentiwatch_dead_letters", "Records sent to the DLQ", ["reason"], registry=r)
        self.late_records = Counter("sentiwatch_late_records", "Records for an already closed window", registry=r)
        self.redelivered_records = Counter("sentiwatch_redelivered_records",
                                           "Scored records skipped by the windows: already counted (at-least-once "
                                           "redelivery after a crash or rebalance)", registry=r)
        self.negative_ratio = Gauge("sentiwatch_negative_ratio", "Negative share of the latest closed window",
                                    ["topic"], registry=r)
        self.baseline_ratio = Gauge("sentiwatch_negative_baseline_ratio", "Detector baseline of the negative share",
                                    ["topic"], registry=r)
        self.spike_score = Gauge("sentiwatch_spike_score", "Detector anomaly score, 0..1", ["topic"], registry=r)
        self.spike_active = Gauge("sentiwatch_spike_active", "1 while a negative-surge alert is open", ["topic"],
                                  registry=r)
        self.inference_seconds = Histogram("sentiwatch_inference_seconds", "Model time per batch",
                                           buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("sentiwatch_batch_size", "Records per scored batch", buckets=_BATCH_BUCKETS,
                                    registry=r)
        self.end_to_end = Histogram("sentiwatch_end_to_end_seconds", "Kafka record time to scored",
                                    buckets=_END_TO_END_BUCKETS, registry=r)
        self.model_info = Gauge("sentiwatch_model_info", "The model bundle in use",
                                ["version", "provider", "precision"], registry=r)
        self.consumer_lag = Gauge("sentiwatch_consumer_lag", "Records behind the partition's end", ["partition"],
                                  registry=r)
        self._lag_partitions: set[int] = set()  # the partitions with a lag series (`set_consumer_lag`)
        self.alerts = Counter("sentiwatch_alerts", "Alert events published", ["topic", "state"], registry=r)
        self.rebalances = Counter("sentiwatch_rebalances", "Consumer group rebalances this worker went through",
                                  registry=r)
        for reason in REASONS:
            self.dead_letters.labels(reason=reason)  # export zeros so rate() and absent() behave from the start

    def set_consumer_lag(self, lag: Mapping[int, int]) -> None:
        """The lag of the partitions assigned now; a partition not among them any more (revoked in a rebalance)
        loses its series, else its last value would stay and `max by (partition)` could fire for nothing."""
        for partition in self._lag_partitions - lag.keys():
            self.consumer_lag.remove(str(partition))
        for partition, value in lag.items():
            self.consumer_lag.labels(partition=str(partition)).set(value)
        self._lag_partitions = set(lag)

    def render(self) -> bytes:
        return generate_latest(self.registry)
