"""`sentiwatch stream`: check everything that can be checked, then run the Faust worker.

Settings, Kafka security, the web address and the model bundle are all verified before Faust starts,
so a bad bundle or config ends in one line naming the problem and nothing half-started. SIGTERM is
Faust's graceful stop: the batches in hand are finished (see `in_order.InOrderDelivery.drain`), the
consumer waits for acked offsets and commits after flushing the producer, then the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket

from sentiwatch.config import Settings, load_settings
from sentiwatch.errors import ConfigError
from sentiwatch.streamer.kafka.connection import ensure_topics, security_from_settings, settings_for_cluster

log = logging.getLogger(__name__)


def stream_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, overrides={"bundle": args.bundle, "brokers": args.brokers,
                                                     "web_host": args.web_host, "web_port": args.web_port})
    return run_stream(settings)


def run_stream(settings: Settings) -> int:
    """Run one worker until it is stopped; returns the exit status."""
    if not settings.bundle:
        raise ConfigError("config key 'bundle': no model bundle given (--bundle or SENTIWATCH_BUNDLE)")
    security_from_settings(settings)
    check_bindable(settings.web_host, settings.web_port)

    from sentiwatch.streamer.inference.scorer import load_scorer

    scorer = load_scorer(settings.bundle, settings.variant, settings.intra_op_threads)
    model_info = {"version": scorer.version, "provider": scorer.provider, "precision": scorer.precision}

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    topics = [settings.input_topic, settings.scored_topic, settings.dlq_topic, settings.alerts_topic,
              settings.feedback_topic] + ([settings.review_topic] if settings.review_per_minute > 0 else [])
    # Automatic Kafka settings (replication, fetch wait) follow the cluster (kafka/connection.py, for_cluster).
    settings = loop.run_until_complete(settings_for_cluster(settings))
    partitions = loop.run_until_complete(ensure_topics(settings, topics))
    # Window state is partitioned like the scored topic (see sentiwatch.streamer.app); a mismatch would scatter it.
    if partitions.get(settings.scored_topic) != settings.topic_partitions:
        raise ConfigError(f"config key 'topic_partitions': is {settings.topic_partitions} but Kafka topic "
                          f"{settings.scored_topic} has {partitions.get(settings.scored_topic)} partitions")

    import faust

    from sentiwatch.streamer.app import build_worker
    from sentiwatch.streamer.ops.watchdog import Watchdog, guarded_worker_class

    worker = build_worker(settings, scorer, model_info)
    # Faust retries a lost broker forever, even after SIGTERM: the watchdog exits instead (see its module).
    watchdog = Watchdog(settings, topics)
    watchdog.start()
    watchdog.guard_rebalances(worker.app)
    watchdog.watch_liveness(worker.progress.liveness)
    log.info("worker %s: consuming %s from %s, web on http://%s:%d (/metrics /status /healthz)",
             settings.consumer_group, settings.input_topic, settings.brokers, settings.web_host, settings.web_port)
    faust_worker = guarded_worker_class(faust.Worker, watchdog)(
        worker.app, loop=loop, loglevel=settings.log_level, quiet=True, redirect_stdouts=False,
        override_logging=False)
    try:
        faust_worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        worker.score_agent.executor.shutdown(wait=True)
    return 0


def check_bindable(host: str, port: int) -> None:
    """Fail before starting anything if the web server could not bind its address."""
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"config keys 'web_host'/'web_port': cannot listen on {host}:{port} ({exc.strerror})") \
            from None
