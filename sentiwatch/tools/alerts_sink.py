"""`sentiwatch alerts-sink`: copy the alert events from Kafka to a JSON-lines file and/or Loki.

Alert events (top terms, examples, the window's counts) live only on the `sentiwatch.alerts` Kafka topic; Prometheus
has the alert's state but not its content. This sink makes them searchable where people already look: a file (for a
log shipper, or `tail -f`) or Loki's push API (Grafana's Explore, a logs panel). It reads with its own consumer group
and commits an offset only after the events up to it were written everywhere, so a crash or a Loki outage repeats
events (at least once) and never drops one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from sentiwatch.config import Settings, load_settings
from sentiwatch.errors import ConfigError, SentiwatchError

log = logging.getLogger(__name__)

# Loki labels: few values each (topic is capped by the worker's topic_cap); everything else goes in the line.
LOKI_LABELS = ("topic", "state", "severity")
RETRY_SECONDS = 5.0


def alerts_sink_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, overrides={"brokers": args.brokers})
    if not args.out and not args.loki:
        raise ConfigError("alerts-sink: give --out FILE (or - for stdout) and/or --loki URL")
    group = args.group or f"{settings.consumer_group}-alerts-sink"
    with contextlib.ExitStack() as stack:
        writers: list[Callable[[list[dict[str, Any]]], None]] = []
        if args.out:
            stream = sys.stdout if args.out == "-" else stack.enter_context(open(args.out, "a", encoding="utf-8"))
            writers.append(lambda events: write_jsonl(stream, events))
        if args.loki:
            writers.append(lambda events: push_to_loki(args.loki, events, args.loki_tenant))
        log.info("copying alert events from %s at %s (group %s) to %s", settings.alerts_topic, settings.brokers, group,
                 " and ".join(filter(None, [args.out and f"file {args.out}", args.loki and f"Loki {args.loki}"])))
        asyncio.run(run_sink(settings, writers, group=group, start_at=args.start_at))
    return 0


def write_jsonl(stream: TextIO, events: Sequence[dict[str, Any]]) -> None:
    for event in events:
        stream.write(json.dumps(event, ensure_ascii=False, sort_keys=True) + "\n")
    stream.flush()


def loki_payload(events: Sequence[dict[str, Any]], now_ns: int | None = None) -> dict[str, Any]:
    """Loki's push body: one stream per label set, each event one line (its JSON), stamped with the time the sink
    saw it (Loki rejects lines far older than its ingestion window, and alert events carry window times, not send
    times). Lines keep their order within a stream through increasing timestamps."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    streams: dict[tuple[str, ...], list[list[str]]] = {}
    for offset, event in enumerate(events):
        key = tuple(str(event.get(label) or "unknown") for label in LOKI_LABELS)
        streams.setdefault(key, []).append([str(now_ns + offset), json.dumps(event, ensure_ascii=False,
                                                                               sort_keys=True)])
    return {"streams": [{"stream": {"app": "sentiwatch", "kind": "alert", **dict(zip(LOKI_LABELS, key, strict=True))},
                         "values": values} for key, values in streams.items()]}


def push_to_loki(url: str, events: Sequence[dict[str, Any]], tenant: str | None = None) -> None:
    """POST to Loki's /loki/api/v1/push (url is Loki's base address); raises SentiwatchError when Loki refuses."""
    body = json.dumps(loki_payload(events)).encode()
    headers = {"Content-Type": "application/json"}
    if tenant:
        headers["X-Scope-OrgID"] = tenant
    request = urllib.request.Request(url.rstrip("/") + "/loki/api/v1/push", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise SentiwatchError(f"Loki at {url} did not take {len(events)} alert events: {exc}") from None


async def run_sink(settings: Settings, writers: Sequence[Callable[[list[dict[str, Any]]], None]], group: str,
                   start_at: str = "earliest", stop: asyncio.Event | None = None) -> int:
    """Copy events until `stop` is set (or SIGINT/SIGTERM); returns how many were written. An event that is not
    JSON is written as {"raw": <text>} rather than dropped."""
    from aiokafka import AIOKafkaConsumer

    from sentiwatch.streamer.kafka.connection import aiokafka_options, ensure_topics

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    await ensure_topics(settings, [settings.alerts_topic])
    consumer = AIOKafkaConsumer(settings.alerts_topic, **aiokafka_options(settings), group_id=group,
                                auto_offset_reset=start_at, enable_auto_commit=False)
    await consumer.start()
    written = 0
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            messages = [m for batch in batches.values() for m in batch]
            if not messages:
                continue
            events = [_event(m.value) for m in sorted(messages, key=lambda m: (m.timestamp, m.partition, m.offset))]
            while True:
                try:
                    for write in writers:
                        await asyncio.to_thread(write, events)
                    break
                except SentiwatchError as exc:  # Loki down: keep the offsets, try again
                    log.warning("%s; retrying in %.0f s", exc, RETRY_SECONDS)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), RETRY_SECONDS)
                    if stop.is_set():
                        return written
            await consumer.commit()
            written += len(events)
    finally:
        await consumer.stop()
    return written


def _event(value: bytes | None) -> dict[str, Any]:
    text = (value or b"").decode("utf-8", errors="replace")
    try:
        event = json.loads(text)
    except ValueError:
        return {"raw": text}
    return event if isinstance(event, dict) else {"raw": text}
