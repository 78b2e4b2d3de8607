"""`sentiwatch replay`: produce a file's records (or the built-in test texts) into a Kafka topic.

JSONL lines are sent byte for byte, even broken ones: judging records is the worker's job, and a bad
line must reach its DLQ rather than vanish here. CSV rows become JSON objects (an `id` is made from
the line number when the file has none); a CSV row that cannot be read is reported and skipped.
Records are keyed by their `topic` so one subject's records stay in order on one partition.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from sentiwatch.config import Settings, load_settings
from sentiwatch.errors import DataError, SentiwatchError
from sentiwatch.streamer.kafka.connection import aiokafka_options, ensure_topics
from sentiwatch.textio import file_format, read_rows

log = logging.getLogger(__name__)

KeyedRecord = tuple[bytes | None, bytes]


def replay_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, overrides={"brokers": args.brokers})
    if args.rate is not None and args.rate <= 0:
        raise DataError(f"--rate must be > 0, got {args.rate}")
    skipped: list[str] = []
    records = list(file_records(Path(args.input), skipped) if args.input else builtin_records())
    for problem in skipped[:5]:
        log.warning("skipped %s", problem)
    if args.connect_timeout <= 0:
        raise DataError(f"--connect-timeout must be > 0, got {args.connect_timeout}")
    log.info("connecting to Kafka at %s (giving up after %.0f s)", settings.brokers, args.connect_timeout)
    sent = asyncio.run(produce(settings, args.topic, records, rate=args.rate, progress=True,
                               connect_timeout=args.connect_timeout))
    log.info("replayed %d records into %s at %s%s", sent, args.topic, settings.brokers,
             f" ({len(skipped)} unreadable CSV rows skipped)" if skipped else "")
    return 0


def builtin_records() -> Iterator[KeyedRecord]:
    from sentiwatch.trainer.data import builtin_test_texts  # pure python; imported only when used

    for row in builtin_test_texts():
        yield encode_record(row)


def file_records(path: Path, skipped: list[str]) -> Iterator[KeyedRecord]:
    if file_format(path) == "jsonl":
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        for line in path.read_bytes().split(b"\n"):
            if line.strip():
                yield _key_of(line), line.rstrip(b"\r")
        return
    for row in read_rows(path):
        if row.fields is None:
            skipped.append(f"{path}:{row.line}: {row.error}")
            continue
        fields = {k: v for k, v in row.fields.items() if v != ""}
        fields.setdefault("id", f"{path.stem}:{row.line}")
        yield encode_record(fields)


def encode_record(fields: dict) -> KeyedRecord:
    topic = fields.get("topic")
    key = topic.encode("utf-8") if isinstance(topic, str) and topic else None
    return key, json.dumps(fields, ensure_ascii=False).encode("utf-8")


def _key_of(line: bytes) -> bytes | None:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    topic = value.get("topic") if isinstance(value, dict) else None
    return topic.encode("utf-8") if isinstance(topic, str) and topic else None


async def produce(settings: Settings, topic: str, records: Iterable[KeyedRecord], rate: float | None = None,
                  progress: bool = False, timestamps: Iterable[float] | None = None,
                  connect_timeout: float | None = None) -> int:
    """Send records in order (paced to `rate` per second when given); returns how many were acknowledged.

    `connect_timeout` bounds the wait for the brokers (default: kafka_connect_timeout_seconds, meant for a worker
    that may start before Kafka); a person running replay wants to hear within seconds that nothing answers."""
    from aiokafka import AIOKafkaProducer
    from tqdm import tqdm

    records = list(records)
    if connect_timeout is None:
        await ensure_topics(settings, [topic])
    else:
        bounded = dataclasses.replace(settings, kafka_connect_timeout_seconds=connect_timeout)
        try:
            await asyncio.wait_for(ensure_topics(bounded, [topic]), timeout=connect_timeout)
        except TimeoutError:
            raise SentiwatchError(f"cannot reach Kafka at {settings.brokers} within {connect_timeout:.0f} s") from None
    producer = AIOKafkaProducer(**aiokafka_options(settings), linger_ms=5, max_request_size=4 * 1024 * 1024)
    await producer.start()
    bar = tqdm(total=len(records), unit="rec", disable=not progress, file=sys.stderr, mininterval=0.5)
    pending = []
    stamps = iter(timestamps) if timestamps is not None else None
    started = time.monotonic()
    try:
        for index, (key, value) in enumerate(records):
            if rate:
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            timestamp_ms = int(next(stamps) * 1000) if stamps is not None else None
            pending.append(await producer.send(topic, value, key=key, timestamp_ms=timestamp_ms))
            bar.update(1)
            if len(pending) >= 1000:  # bound memory; an error surfaces here rather than at the end
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        bar.close()
        await producer.stop()
    return len(records)
