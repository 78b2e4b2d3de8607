"""Sending one scored batch so that every input record ends on the scored topic or the DLQ, never neither.

A send can fail twice: when the producer takes the record (aiokafka refuses a record over its
`max_request_size` there) and when the broker answers (a broker whose `message.max.bytes` is lower, a
lost leader after the retries ran out). Every delivery is awaited before the batch counts as sent, so the
caller acks its input records (and the consumer may commit past them) only once each is known to be on a
topic. A scored record refused as too large goes to the DLQ (`scored_too_large`, the original bytes
truncated as `records.dead_letter` says) instead of stopping the agent: one legal record must not stall
the others. Any other send error is not understood here; the batch is not acked and `on_fatal` is called,
which in the worker logs one line and ends the process with status 1, so the committed position stays
before the failed record and a restart reads it again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError

from sentiwatch.streamer.scoring.records import SCORED_TOO_LARGE, Rejected
from sentiwatch.streamer.scoring.stage import BatchOutcome, DeadOutput, ScoredOutput, dead_output

# Header on scored records naming the input partition they came from (per-source watermarks).
SOURCE_HEADER = "sentiwatch-source"
# Header on scored records with the input offset they were scored from: the window stage skips a redelivered
# record by it, so window counts are exact across crashes.
OFFSET_HEADER = "sentiwatch-offset"

_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


class Producer(Protocol):
    """Faust's producer (`app.producer`): `send` takes the record and returns its delivery future."""

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   timestamp: float | None, headers: Any) -> Awaitable[Any]: ...


class UnsentRecord(Exception):
    """A send failed for a reason the worker does not understand; the batch was not acked."""


def too_large(exc: BaseException) -> bool:
    """Whether a send error says the record is too large (Faust wraps aiokafka's error in ProducerSendError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _TOO_LARGE):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class BatchSender:
    """Sends scored records and dead letters; `producer` is called for the producer at each batch (Faust
    creates it at start). `on_fatal(line)` is called with one log line when a send fails unclassified."""

    def __init__(self, producer: Callable[[], Producer], scored_topic: str, dlq_topic: str,
                 on_fatal: Callable[[str], None]) -> None:
        self._producer = producer
        self._scored_topic = scored_topic
        self._dlq_topic = dlq_topic
        self._on_fatal = on_fatal

    async def send(self, outcome: BatchOutcome, now: float | None = None) -> BatchOutcome:
        """Send the batch and wait until every record is on its topic. Returns what was sent: scored records
        refused as too large are moved to the dead letters. Raises UnsentRecord (after `on_fatal`) when a
        send fails otherwise; then nothing of the batch may be acked."""
        producer = self._producer()
        dead = list(outcome.dead)
        taken: list[tuple[ScoredOutput, Awaitable[Any]]] = []
        for out in outcome.scored:
            headers = [(SOURCE_HEADER, out.source.encode("utf-8")), (OFFSET_HEADER, str(out.offset).encode("ascii"))]
            try:
                taken.append((out, await producer.send(self._scored_topic, out.key.encode("utf-8"), out.value, None,
                                                       out.timestamp, headers)))
            except Exception as exc:  # noqa: BLE001 - classified below; anything else stops the process
                dead.append(self._too_large(out, exc, now))
        scored: list[ScoredOutput] = []
        for out, delivery in taken:
            try:
                await delivery
            except Exception as exc:  # noqa: BLE001
                dead.append(self._too_large(out, exc, now))
            else:
                scored.append(out)
        deliveries = []
        for letter in dead:
            try:
                deliveries.append(await producer.send(self._dlq_topic, None, letter.value, None, None, None))
            except Exception as exc:  # noqa: BLE001 - a dead letter is bounded in size: no error is expected
                self._fail(f"dead letter ({letter.reason})", exc)
        for delivery, letter in zip(deliveries, dead, strict=True):
            try:
                await delivery
            except Exception as exc:  # noqa: BLE001
                self._fail(f"dead letter ({letter.reason})", exc)
        return BatchOutcome(scored, dead, outcome.inference_seconds)

    def _too_large(self, out: ScoredOutput, exc: Exception, now: float | None) -> DeadOutput:
        if not too_large(exc):
            self._fail(f"scored record of input {out.origin.kafka_topic}-{out.origin.partition}@{out.origin.offset}",
                       exc)
        detail = f"the scored record is {len(out.value)} bytes and was refused as too large ({type(exc).__name__})"
        return dead_output(out.origin, Rejected(SCORED_TOO_LARGE, detail), time.time() if now is None else now)

    def _fail(self, what: str, exc: Exception) -> None:
        cause = exc.__cause__ or exc
        line = (f"cannot send {what}: {type(cause).__name__}: {str(cause)[:200]}; stopping before its offset is "
                "committed (a restart reads it again)")
        self._on_fatal(line)
        raise UnsentRecord(line) from exc
