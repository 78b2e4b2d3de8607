"""The Faust app: topics, tables, the two agents, timers and web pages. Wiring only; the work is in
`score_stage` (validate + score) and `window_stage` (windows + detector + alerts).

Two stages because the topic a text is about is only known after scoring (watchlist, model head):
the score agent writes `sentiwatch.scored` keyed by the capped topic label, and the window agent
consumes it, so each topic's windows are owned by the one worker that holds its partition. The
tables use `use_partitioner=True` with the same raw key bytes, hence the same partition, as the
scored records: updates can then be made once per batch (outside per-event iteration) and still
land on the changelog partition that the owning worker recovers.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import logging
import tempfile
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import faust

from sentiwatch.config import Settings
from sentiwatch.streamer.kafka.connection import faust_broker_url, faust_credentials
from sentiwatch.streamer.kafka.faust_tuning import use_tuned_consumer
from sentiwatch.streamer.ops.metrics import WorkerMetrics
from sentiwatch.streamer.ops.status import Progress, status_document
from sentiwatch.streamer.scoring.in_order import InOrderDelivery
from sentiwatch.streamer.scoring.stage import BATCHES_SCORED_AT_ONCE, BatchOutcome, BatchScorer, RawMessage, Scorer
from sentiwatch.streamer.scoring.topics import TopicCap
from sentiwatch.streamer.windows.stage import ScoredMessage, WindowStage

log = logging.getLogger(__name__)

LAG_INTERVAL_SECONDS = 5.0
# Header on scored records naming the input partition they came from (per-source watermarks).
SOURCE_HEADER = "sentiwatch-source"
# Header on scored records with the input offset they were scored from (exactly-once window counts).
OFFSET_HEADER = "sentiwatch-offset"
# Prometheus' text format; aiohttp refuses a charset parameter here (UTF-8 is the format's default).
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"
# Batches taken and not yet sent while the next one is taken: the ones being scored plus one waiting for
# its turn, so a scoring thread never waits for the event loop; bounded, so memory is too.
BATCHES_IN_FLIGHT = BATCHES_SCORED_AT_ONCE + 1


@dataclasses.dataclass
class Worker:
    """Everything one worker process holds; `app` is what faust.Worker runs."""

    app: faust.App
    metrics: WorkerMetrics
    progress: Progress
    window_stage: WindowStage
    executor: concurrent.futures.ThreadPoolExecutor


def build_worker(settings: Settings, scorer: Scorer, model_info: dict[str, str]) -> Worker:
    app = faust.App(
        settings.consumer_group,
        broker=faust_broker_url(settings),
        broker_credentials=faust_credentials(settings),
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_heartbeat_interval=settings.kafka_heartbeat_seconds,
        # Idempotent/transactional producers are not available everywhere (the embedded broker).
        processing_guarantee="at_least_once",
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        # Faust's own pages would serve table values, which hold alert example texts; only ours are served.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        store="memory://",
        # Standby copies would put peers' topics into this worker's tables.
        table_standby_replicas=0,
        autodiscover=False,
        # Not the working directory: the container's root filesystem is read-only.
        datadir=Path(tempfile.gettempdir()) / f"sentiwatch-faust-{settings.consumer_group}",
        # A small read-ahead bounds memory under backpressure and what a graceful stop must finish.
        stream_buffer_maxsize=max(2 * settings.batch_max, 64),
        key_serializer="raw",
        value_serializer="raw",
    )
    use_tuned_consumer(app)
    metrics = WorkerMetrics()
    metrics.model_info.labels(**model_info).set(1)
    progress = Progress(settings.liveness_stall_seconds)
    executor = concurrent.futures.ThreadPoolExecutor(BATCHES_SCORED_AT_ONCE, thread_name_prefix="inference")
    cap = TopicCap(settings.topic_cap, preferred=settings.watchlist)
    batch_scorer = BatchScorer(scorer, settings, cap)

    partitions = settings.topic_partitions
    texts = app.topic(settings.input_topic, partitions=partitions)
    scored = app.topic(settings.scored_topic, partitions=partitions)
    # bytes keys are serialized raw: the same bytes as the scored record's key, so the same partition.
    table_options: dict[str, Any] = {"partitions": partitions, "use_partitioner": True, "key_type": bytes}
    windows_table = TopicKeyed(app.Table("windows", default=None, **table_options))
    status_table = TopicKeyed(app.Table("topic-status", default=None, **table_options))

    alerts = app.topic(settings.alerts_topic, partitions=partitions)

    def publish_alert(topic: str, event: dict[str, Any]) -> None:
        # send_soon: the window stage is synchronous; the commit flushes the producer before offsets move.
        alerts.send_soon(key=topic.encode("utf-8"), value=json.dumps(event, ensure_ascii=False).encode("utf-8"))

    window_stage = WindowStage(settings, metrics, windows_table, status_table, publish_alert)
    worker = Worker(app, metrics, progress, window_stage, executor)

    @app.agent(texts, name="score")
    async def score_agent(stream: faust.StreamT) -> None:
        loop = asyncio.get_running_loop()
        batches = InOrderDelivery(BATCHES_IN_FLIGHT)
        try:
            # noack_take: an event is acked by `_deliver`, once its scored record (or dead letter) is sent.
            async for events in stream.noack_take(settings.batch_max, within=settings.batch_within_seconds):
                messages = [RawMessage(e.message.value, e.message.topic, e.message.partition, e.message.offset,
                                       e.message.timestamp) for e in events]
                # Inference runs off the event loop, so fetching, heartbeats and earlier batches' sends go on.
                scoring = loop.run_in_executor(worker.executor, batch_scorer.score, messages)
                await batches.submit(scoring, functools.partial(_deliver, app, settings, worker, stream, events,
                                                                messages))
        finally:
            await batches.drain()

    @app.agent(scored, name="windows")
    async def window_agent(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_max, within=settings.batch_within_seconds):
            batch = [ScoredMessage(_key(e.message.key), e.message.value, e.message.timestamp,
                                   *_origin(e.message.headers)) for e in events]
            window_stage.process(batch)  # synchronous: a shutdown cannot cut a batch in half here

    @app.timer(interval=float(min(settings.window_seconds, 10)))
    async def close_idle_windows() -> None:
        window_stage.close_idle()

    @app.timer(interval=LAG_INTERVAL_SECONDS)
    async def measure_lag() -> None:
        assigned = [tp for tp in app.consumer.assignment() if tp.topic == settings.input_topic]
        for tp in assigned:
            # A partition with nothing processed yet starts where the consumer stands (its committed offset),
            # not at 0: else a restarted idle worker counts its whole history as lag and fails /healthz.
            if tp.partition not in progress.positions:
                with contextlib.suppress(asyncio.TimeoutError):
                    position = await asyncio.wait_for(app.consumer.position(tp), 1.0)
                    if position is not None:
                        progress.positions.setdefault(tp.partition, position)
        highwaters = {tp.partition: app.consumer.highwater(tp) for tp in assigned}
        for partition, lag in progress.update_lag(highwaters).items():
            metrics.consumer_lag.labels(partition=str(partition)).set(lag)

    @app.on_partitions_revoked.connect
    async def on_revoked(app_: faust.App, revoked: set[Any], **_: Any) -> None:
        window_stage.forget_topics()

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type=METRICS_CONTENT_TYPE)

    @app.page("/status")
    async def status_page(web: Any, request: Any) -> Any:
        return web.json(status_document(model_info, progress, windows_table, status_table, window_stage.owned_topics))

    @app.page("/healthz")
    async def health_page(web: Any, request: Any) -> Any:
        healthy, reason = progress.liveness()
        return web.json({"healthy": healthy, "reason": reason}, status=200 if healthy else 503)

    return worker


async def _deliver(app: faust.App, settings: Settings, worker: Worker, stream: faust.StreamT, events: list[Any],
                   messages: list[RawMessage], outcome: BatchOutcome) -> None:
    """Send one scored batch's records and dead letters, then ack its input events."""
    producer = app.producer
    for out in outcome.scored:
        headers = [(SOURCE_HEADER, out.source.encode("utf-8")), (OFFSET_HEADER, str(out.offset).encode("ascii"))]
        await producer.send(settings.scored_topic, out.key.encode("utf-8"), out.value, None, out.timestamp, headers)
    for dead in outcome.dead:
        await producer.send(settings.dlq_topic, None, dead.value, None, None, None)
    for event in events:
        await stream.ack(event)
    _record_batch(worker, messages, outcome)


def _record_batch(worker: Worker, messages: list[RawMessage], outcome: BatchOutcome) -> None:
    metrics = worker.metrics
    now = time.time()
    metrics.inference_seconds.observe(outcome.inference_seconds)
    metrics.batch_size.observe(len(messages))
    for out in outcome.scored:
        metrics.end_to_end.observe(max(0.0, now - out.timestamp))
    for (topic, sentiment), count in collections.Counter((out.key, out.sentiment) for out in outcome.scored).items():
        metrics.messages.labels(topic=topic, sentiment=sentiment).inc(count)
    for reason, count in collections.Counter(dead.reason for dead in outcome.dead).items():
        metrics.dead_letters.labels(reason=reason).inc(count)
    offsets: dict[int, int] = {}
    for message in messages:
        offsets[message.partition] = max(offsets.get(message.partition, -1), message.offset)
    worker.progress.on_batch(offsets, len(messages))


class TopicKeyed(MutableMapping[str, Any]):
    """A bytes-keyed Faust table seen through str keys (topic labels)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, key: str) -> Any:
        return self.table[key.encode("utf-8")]

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[key.encode("utf-8")] = value

    def __delitem__(self, key: str) -> None:
        del self.table[key.encode("utf-8")]

    def __iter__(self) -> Iterator[str]:
        return (key.decode("utf-8", errors="replace") for key in self.table)

    def __len__(self) -> int:
        return len(self.table)


def _origin(headers: Any) -> tuple[str, int | None]:
    """(input partition, input offset) from a scored record's headers; ("", None) if it has none."""
    found = dict(headers or ())
    source = found.get(SOURCE_HEADER, b"").decode("utf-8", errors="replace")
    try:
        offset = int(found[OFFSET_HEADER])
    except (KeyError, ValueError):
        offset = None
    return source, offset


def _key(raw: bytes | None) -> str | None:
    return raw.decode("utf-8", errors="replace") if raw is not None else None
