"""The score agent's loop: take batches from the input stream, score two at a time, send them in order.

The app (`sentiwatch.streamer.app`) declares the agent; this object is what it runs. Inference is off the
event loop (a thread pool), so fetching, heartbeats and earlier batches' sends go on meanwhile. An input
event is acked only once its scored record or dead letter has been sent (`noack_take`), so the committed
position never passes a record that was not delivered.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import time
from typing import Any

import faust

from sentiwatch.config import Settings
from sentiwatch.streamer.ops.metrics import WorkerMetrics
from sentiwatch.streamer.ops.status import Progress
from sentiwatch.streamer.ops.watchdog import exit_now
from sentiwatch.streamer.scoring.delivery import OFFSET_HEADER, SOURCE_HEADER, BatchSender  # noqa: F401 - headers
from sentiwatch.streamer.scoring.in_order import InOrderDelivery
from sentiwatch.streamer.scoring.stage import BATCHES_SCORED_AT_ONCE, BatchOutcome, BatchScoring, RawMessage

# Batches taken and not yet sent while the next one is taken: the ones being scored plus one waiting for
# its turn, so a scoring thread never waits for the event loop; bounded, so memory is too.
BATCHES_IN_FLIGHT = BATCHES_SCORED_AT_ONCE + 1


class ScoreAgent:
    """Validate, score and deliver batches of input records; the body of the Faust agent `score`."""

    def __init__(self, app: faust.App, settings: Settings, batch_scorer: BatchScoring, metrics: WorkerMetrics,
                 progress: Progress) -> None:
        self.app = app
        self.settings = settings
        self.batch_scorer = batch_scorer
        self.metrics = metrics
        self.progress = progress
        self.executor = concurrent.futures.ThreadPoolExecutor(BATCHES_SCORED_AT_ONCE, thread_name_prefix="inference")
        # An unclassified send error ends the process before the batch is acked (see scoring/delivery.py).
        self.sender = BatchSender(lambda: app.producer, settings.scored_topic, settings.dlq_topic, exit_now)

    async def run(self, stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        batches = InOrderDelivery(BATCHES_IN_FLIGHT)
        try:
            # noack_take: an event is acked by `deliver`, once its scored record (or dead letter) is sent.
            async for events in stream.noack_take(self.settings.batch_max, within=self.settings.batch_within_seconds):
                messages = [RawMessage(e.message.value, e.message.topic, e.message.partition, e.message.offset,
                                       e.message.timestamp) for e in events]
                scoring = loop.run_in_executor(self.executor, self.batch_scorer.score, messages)
                await batches.submit(scoring, functools.partial(self.deliver, stream, events, messages))
        except Exception as exc:  # noqa: BLE001 - whatever it is, only a new process reads the failed batch again
            exit_now(f"score agent stopped by a failed batch ({type(exc).__name__}: {str(exc)[:200]})")
            raise
        finally:
            await batches.drain()

    async def deliver(self, stream: faust.StreamT, events: list[Any], messages: list[RawMessage],
                      outcome: BatchOutcome) -> None:
        """Send one scored batch's records and dead letters, wait until each is on its topic, then ack its input
        events (the windows are told of the scored ones; a record refused as too large is a dead letter)."""
        sent = await self.sender.send(outcome)
        for event in events:
            await stream.ack(event)
        self.record(messages, sent)

    def record(self, messages: list[RawMessage], outcome: BatchOutcome) -> None:
        """Metrics and progress for one delivered batch."""
        metrics = self.metrics
        now = time.time()
        metrics.inference_seconds.observe(outcome.inference_seconds)
        metrics.batch_size.observe(len(messages))
        for out in outcome.scored:
            metrics.end_to_end.observe(max(0.0, now - out.timestamp))
        for (topic, sentiment), count in collections.Counter((o.key, o.sentiment) for o in outcome.scored).items():
            metrics.messages.labels(topic=topic, sentiment=sentiment).inc(count)
        for reason, count in collections.Counter(dead.reason for dead in outcome.dead).items():
            metrics.dead_letters.labels(reason=reason).inc(count)
        offsets: dict[int, int] = {}
        for message in messages:
            offsets[message.partition] = max(offsets.get(message.partition, -1), message.offset)
        self.progress.on_batch(offsets, len(messages))
