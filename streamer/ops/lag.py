"""Consumer lag on the input topic, measured by a timer: records behind per assigned partition."""

from __future__ import annotations

import asyncio
import contextlib

import faust

from sentiwatch.streamer.ops.metrics import WorkerMetrics
from sentiwatch.streamer.ops.status import Progress

LAG_INTERVAL_SECONDS = 5.0


class LagMeter:
    """Reads the consumer's high-water marks and the worker's progress into `sentiwatch_consumer_lag`."""

    def __init__(self, app: faust.App, input_topic: str, progress: Progress, metrics: WorkerMetrics) -> None:
        self.app = app
        self.input_topic = input_topic
        self.progress = progress
        self.metrics = metrics

    async def measure(self) -> None:
        consumer = self.app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic == self.input_topic]
        for tp in assigned:
            # A partition with nothing processed yet starts at its committed offset, not at 0: else a restarted
            # idle worker counts its whole history as lag and fails /healthz. Not at the consumer's position
            # either: that is where fetching stands, and records fetched but never processed (a worker stuck
            # after a takeover) would read as lag 0, healthy, and the watchdog would never restart it.
            if tp.partition not in self.progress.positions:
                position = consumer.committed_position(tp)
                if position is None:  # nothing committed yet (a new group): where the consumer stands
                    with contextlib.suppress(asyncio.TimeoutError):
                        position = await asyncio.wait_for(consumer.position(tp), 1.0)
                if position is not None:
                    self.progress.positions.setdefault(tp.partition, position)
        highwaters = {tp.partition: consumer.highwater(tp) for tp in assigned}
        self.metrics.set_consumer_lag(self.progress.update_lag(highwaters))
