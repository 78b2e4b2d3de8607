"""The Faust app, declared top to bottom: the app, its topics, its tables, the stages, then the agents,
timers and web pages that call them. Wiring only; the work is in the stage objects.

Two agents because the topic a text is about is only known after scoring (watchlist, model head):
`score` (scoring/agent.py) writes `sentiwatch.scored` keyed by the capped topic label, and `windows`
(windows/agent.py) consumes it, so each topic's windows are owned by the one worker that holds its
partition. The tables use `use_partitioner=True` with the same raw key bytes, hence the same partition,
as the scored records: updates can then be made once per batch (outside per-event iteration) and still
land on the changelog partition that the owning worker recovers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import faust

from sentiwatch.config import Settings
from sentiwatch.streamer.inference.reload import serving_slot
from sentiwatch.streamer.kafka.connection import faust_broker_url, faust_credentials, topic_configs
from sentiwatch.streamer.kafka.credential_watch import CHECK_SECONDS, CredentialWatch
from sentiwatch.streamer.kafka.faust_tuning import use_tuned_consumer
from sentiwatch.streamer.ops.lag import LAG_INTERVAL_SECONDS, LagMeter
from sentiwatch.streamer.ops.metrics import WorkerMetrics
from sentiwatch.streamer.ops.status import Progress, readiness, status_document
from sentiwatch.streamer.quality.feedback import FeedbackMetrics
from sentiwatch.streamer.quality.feedback_agent import FeedbackAgent
from sentiwatch.streamer.quality.live import LiveQuality
from sentiwatch.streamer.scoring.agent import ScoreAgent
from sentiwatch.streamer.scoring.stage import Scorer
from sentiwatch.streamer.scoring.topics import TopicCap
from sentiwatch.streamer.windows.agent import TopicKeyed, WindowAgent
from sentiwatch.streamer.windows.stage import WindowStage

log = logging.getLogger(__name__)

# Prometheus' text format; aiohttp refuses a charset parameter here (UTF-8 is the format's default).
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"


@dataclasses.dataclass
class Worker:
    """Everything one worker process holds; `app` is what faust.Worker runs."""

    app: faust.App
    metrics: WorkerMetrics
    progress: Progress
    score_agent: ScoreAgent
    window_stage: WindowStage


def build_worker(settings: Settings, scorer: Scorer, model_info: dict[str, str]) -> Worker:
    # The app.
    app = faust_app(settings)
    use_tuned_consumer(app, settings.kafka_fetch_max_wait_ms)

    # Its topics.
    partitions = settings.topic_partitions
    texts = app.topic(settings.input_topic, partitions=partitions)
    scored = app.topic(settings.scored_topic, partitions=partitions)
    alerts = app.topic(settings.alerts_topic, partitions=partitions)
    feedback = app.topic(settings.feedback_topic, partitions=partitions)
    review = app.topic(settings.review_topic, partitions=partitions)

    # Its tables: bytes keys are serialized raw, the same bytes as the scored record's key, so the same partition.
    table_options: dict[str, Any] = {"partitions": partitions, "use_partitioner": True, "key_type": bytes,
                                     "extra_topic_configs": topic_configs(settings)}  # min.insync.replicas
    # One entry per topic holds all its window and detector state (WindowStage's TopicState): one write per batch.
    topic_states = TopicKeyed(app.Table("topic-state", default=None, **table_options))
    feedback_table = app.Table("feedback", default=None, **table_options)  # id -> the latest analyst label

    # The stages the agents, timers and pages call.
    metrics = WorkerMetrics()
    metrics.model_info.labels(**model_info).set(1)
    progress = Progress(settings.liveness_stall_seconds)
    topic_cap = TopicCap(settings.topic_cap, preferred=settings.watchlist, allowlist=settings.topic_allowlist)
    # The model in use: a new bundle at the bundle path is switched to between two batches (inference/reload.py).
    # Each scored batch also feeds languages, drift, feedback's recent labels and review (quality/live.py).
    quality = LiveQuality(settings, metrics.registry)
    slot, bundle_watcher = serving_slot(settings, scorer, model_info, topic_cap, metrics.model_info, metrics.registry,
                                        after_batch=quality.after_batch)
    score_agent = ScoreAgent(app, settings, slot, metrics, progress)
    feedback_agent = FeedbackAgent(app, settings, slot, quality.recent_labels, FeedbackMetrics(metrics.registry),
                                   feedback_table, lambda reason: metrics.dead_letters.labels(reason=reason).inc())

    def publish_alert(topic: str, event: dict[str, Any]) -> None:
        # send_soon: the window stage is synchronous; the commit flushes the producer before offsets move.
        alerts.send_soon(key=topic.encode("utf-8"), value=json.dumps(event, ensure_ascii=False).encode("utf-8"))

    window_stage = WindowStage(settings, metrics, topic_states, publish_alert)
    window_agent = WindowAgent(settings, window_stage)
    lag_meter = LagMeter(app, settings.input_topic, progress, metrics)

    # Agents.
    app.agent(texts, name="score")(score_agent.run)
    app.agent(scored, name="windows")(window_agent.run)
    app.agent(feedback, name="feedback")(feedback_agent.run)

    # Timers: windows of topics whose watermark stopped moving still close; lag is measured.
    @app.timer(interval=float(min(settings.window_seconds, 10)))
    async def close_idle_windows() -> None:
        window_stage.close_idle()

    @app.timer(interval=LAG_INTERVAL_SECONDS)
    async def measure_lag() -> None:
        await lag_meter.measure()

    if bundle_watcher is not None:
        @app.timer(interval=settings.model_reload_seconds)
        async def watch_bundle() -> None:
            await asyncio.to_thread(bundle_watcher.check)  # loading a bundle takes seconds: off the event loop

    if quality.review.enabled:
        @app.timer(interval=1.0)
        async def send_review() -> None:
            for value in quality.take_review():
                await review.send(value=value)

    # Rotated Kafka credentials (a mounted Secret the kubelet updated): stop gracefully, offsets committed, so that
    # the supervisor restarts the worker with them (Faust and aiokafka read credentials once).
    credentials = CredentialWatch.from_settings(settings)
    if credentials.paths:
        @app.timer(interval=CHECK_SECONDS)
        async def watch_credentials() -> None:
            changed = await asyncio.to_thread(credentials.changed)
            if changed:
                log.warning("Kafka credentials changed (%s): stopping gracefully to restart with them",
                            ", ".join(changed))
                os.kill(os.getpid(), signal.SIGTERM)

    @app.on_partitions_revoked.connect
    async def on_revoked(app_: faust.App, revoked: set[Any], **_: Any) -> None:
        metrics.rebalances.inc()  # every rebalance, the first join included, revokes (possibly nothing) first
        window_stage.forget_topics()

    @app.on_partitions_assigned.connect
    async def on_assigned(app_: faust.App, assigned: set[Any], **_: Any) -> None:
        # Topics recovered for these partitions are owned even if no record of theirs arrives again.
        window_stage.assign({tp.partition for tp in assigned if tp.topic == settings.scored_topic}, partitions)

    # Web pages (Faust's own are off: its table pages would show stored example texts).
    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.render(), content_type=METRICS_CONTENT_TYPE)

    @app.page("/status")
    async def status_page(web: Any, request: Any) -> Any:
        document = status_document(model_info, progress, window_stage.topics_view, window_stage.owned_topics)
        return web.json({**document, "languages": quality.language_mix.snapshot()})

    @app.page("/healthz")
    async def health_page(web: Any, request: Any) -> Any:
        healthy, reason = progress.liveness()
        return web.json({"healthy": healthy, "reason": reason}, status=200 if healthy else 503)

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        ready, reason = readiness(assigned=app.tables.recovery.completed.is_set(), rebalancing=app.rebalancing,
                                  recovered=not app.in_recovery)
        return web.json({"ready": ready, "reason": reason}, status=200 if ready else 503)

    return Worker(app, metrics, progress, score_agent, window_stage)


def faust_app(settings: Settings) -> faust.App:
    """The Faust app with every option this worker depends on, and why."""
    return faust.App(
        settings.consumer_group,
        broker=faust_broker_url(settings),
        broker_credentials=faust_credentials(settings),
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_heartbeat_interval=settings.kafka_heartbeat_seconds,
        # Idempotent/transactional producers are not available everywhere (the embedded broker).
        processing_guarantee="at_least_once",
        topic_partitions=settings.topic_partitions,
        # Faust's changelog topics, replicated like the topics the worker creates (kafka/connection.py, for_cluster).
        topic_replication_factor=settings.kafka_replication_factor or 1,
        # Where a group with no committed offset begins (a first install): earliest or latest.
        consumer_auto_offset_reset=settings.start_at,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        # Faust's own pages would serve table values, which hold alert example texts; only ours are served.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        store="memory://",
        # Standby copies put peers' topics into this worker's tables: safe while the window stage reads only the
        # topics it owns (WindowStage.owned_topics: its partitions' records and recovered keys). 0 by default.
        table_standby_replicas=settings.table_standby_replicas,
        autodiscover=False,
        # Not the working directory: the container's root filesystem is read-only.
        datadir=Path(tempfile.gettempdir()) / f"sentiwatch-faust-{settings.consumer_group}",
        # A small read-ahead bounds memory under backpressure and what a graceful stop must finish.
        stream_buffer_maxsize=max(2 * settings.batch_max, 64),
        key_serializer="raw",
        value_serializer="raw",
    )
