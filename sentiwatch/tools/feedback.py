"""`sentiwatch feedback export`: the analysts' labels in `sentiwatch.feedback` as a file `train --data` takes.

The latest label per id wins (`streamer.quality.feedback.is_newer`, the rule the worker's table keeps).
Feedback that omits the text is joined with the scored record of the same id from `sentiwatch.scored`;
labels whose text is found in neither are counted and left out, as are invalid records (the worker
dead-letters those). Topic labels are written lower-case, the form `train --data` expects.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentiwatch.config import Settings, load_settings
from sentiwatch.errors import DataError
from sentiwatch.streamer.quality.feedback import Feedback, latest_by_id, validate_feedback
from sentiwatch.streamer.scoring.records import Rejected

log = logging.getLogger(__name__)

# The embedded broker's end offsets cannot be trusted after multi-record batches, so a topic counts as read
# once every partition reached its end offset or nothing new came for this long.
IDLE_SECONDS = 3.0


@dataclasses.dataclass
class ExportReport:
    read: int = 0
    invalid: int = 0
    ids: int = 0
    joined: int = 0  # text taken from the scored topic
    without_text: int = 0  # left out: no text anywhere
    written: int = 0


def export_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, overrides={"brokers": args.brokers})
    report = asyncio.run(export_feedback(settings, Path(args.out)))
    log.info("read %d feedback records (%d invalid) for %d ids; wrote %d labelled rows to %s (%d texts joined "
             "from %s, %d ids left out: no text)", report.read, report.invalid, report.ids, report.written, args.out,
             report.joined, settings.scored_topic, report.without_text)
    if not report.written:
        raise DataError(f"no labelled rows to write: {report.read} feedback records read from "
                        f"{settings.feedback_topic} at {settings.brokers}")
    return 0


async def export_feedback(settings: Settings, out: Path) -> ExportReport:
    report = ExportReport()
    feedback: list[Feedback] = []

    def keep(value: bytes | None) -> None:
        report.read += 1
        checked = validate_feedback(value)
        if isinstance(checked, Rejected):
            report.invalid += 1
        else:
            feedback.append(checked)

    await read_topic(settings, settings.feedback_topic, keep)
    latest = latest_by_id(feedback)
    report.ids = len(latest)
    texts = {record_id: label.text for record_id, label in latest.items() if label.text}
    missing = set(latest) - set(texts)
    if missing:
        def join(value: bytes | None) -> None:
            scored = _object(value)
            record_id = scored.get("id")
            if record_id in missing and isinstance(scored.get("text"), str):
                texts[record_id] = scored["text"]

        await read_topic(settings, settings.scored_topic, join)
        report.joined = len(missing & set(texts))
    rows = []
    for record_id, label in latest.items():
        if record_id not in texts:
            report.without_text += 1
            continue
        row = {"id": record_id, "text": texts[record_id]}
        if label.sentiment:
            row["sentiment"] = label.sentiment
        if label.topic:
            row["topic"] = label.topic.lower()
        rows.append(row)
    write_rows(rows, out)
    report.written = len(rows)
    return report


def write_rows(rows: list[dict[str, Any]], out: Path) -> None:
    """JSONL for .jsonl/.json, CSV for .csv (the two formats `train --data` reads)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    elif suffix == ".csv":
        with out.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "text", "sentiment", "topic"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        raise DataError(f"{out}: unknown file type {suffix or '(none)'}; expected .jsonl or .csv")


async def read_topic(settings: Settings, topic: str, handle: Callable[[bytes | None], None],
                     timeout: float = 300.0) -> int:
    """Hand every record of `topic`, from the beginning, to `handle`; no consumer group is joined or moved."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from sentiwatch.streamer.kafka.connection import aiokafka_options

    consumer = AIOKafkaConsumer(**aiokafka_options(settings), enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    count = 0
    try:
        partitions = await _partitions(consumer, topic, settings.kafka_connect_timeout_seconds)
        if not partitions:
            log.warning("Kafka topic %s does not exist at %s: nothing to read", topic, settings.brokers)
            return 0
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        deadline = time.monotonic() + timeout
        last_record = time.monotonic()
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for batch in batches.values():
                for record in batch:
                    handle(record.value)
                    count += 1
                last_record = time.monotonic()
            positions = [await consumer.position(tp) for tp in assigned]
            if all(position >= ends[tp] for position, tp in zip(positions, assigned, strict=True)) and not batches:
                break
            if time.monotonic() - last_record > IDLE_SECONDS:
                break
    finally:
        await consumer.stop()
    return count


async def _partitions(consumer: Any, topic: str, timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is not None or time.monotonic() > deadline:
            return set(partitions or ())
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka 0.12 has no public refresh
        if topic not in (await consumer.topics()):
            return set()
        await asyncio.sleep(0.2)


def _object(value: bytes | None) -> dict[str, Any]:
    try:
        decoded = json.loads(value or b"")
    except (ValueError, RecursionError):
        return {}
    return decoded if isinstance(decoded, dict) else {}
