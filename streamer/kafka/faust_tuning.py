"""Two changes to Faust's Kafka consumer, leaning on private internals of faust-streaming 0.15.3 and aiokafka
0.14.0: `check_versions` refuses any other version at start.

1. How long a fetch may wait at the broker for new records (`kafka_fetch_max_wait_ms`). Faust hard-codes
   `fetch_max_wait_ms=1500`. The embedded broker (Tansu) parks a fetch that finds no data for that whole
   time and does not wake it when data arrives (measured: a record produced into an idle topic is seen
   after the rest of the wait, 0.38 s with 500 ms and up to 1.5 s with 1500 ms, but after 0.01 s with
   100 ms), so 100 ms there; on a real Kafka the value only bounds an idle long-poll, so aiokafka's default
   (streamer/kafka/connection.py, `for_cluster`).

2. Records fetched before a seek are not handed on after it. After a rebalance Faust resumes the flow
   of records and only then seeks each partition back to its committed offset, while its drain loop
   may still be handing on a batch fetched from the old position. Such a record, past the committed
   offset, makes Faust's drain loop record the offsets in between as a "gap" (offsets that do not
   exist, as in a compacted topic) and move its read offset past them: the same offsets, fetched
   again from the committed position, are then dropped as already read, and the gap counts as acked,
   so the commit moves past records nobody scored. Measured with `benchmarks/reliability_crash.py`
   (takeover, 20,000 records): 51-211 records lost in 3 of 6 runs, each time right after such a gap
   (128 offsets, the stream buffer, on each partition); the session-2 code showed the same gaps. With
   this change: 0 lost and no gap in 8 of 8 runs. Dropping those stale records is safe only for the
   partitions the seek moved (aiokafka leaves one with no committed offset where it is), so records
   wait while a seek runs, and only then is it known which partitions are stale. A fetch counts from the
   moment it is really issued (`Consumer._getmany`), not from the call of `getmany`, which may first wait
   for the flow to resume while a rebalance seeks; and no fetch is issued while a seek runs. Otherwise the
   records of a fetch from the new position were taken for stale and dropped, and never fetched again
   (docs/reliability.md has the sequences).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Any, TypeVar

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from sentiwatch.errors import SentiwatchError
from sentiwatch.streamer.kafka.connection import EMBEDDED_FETCH_MAX_WAIT_MS

Fetched = TypeVar("Fetched")

# The versions whose internals the classes below were written against (and tested with).
WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


def check_versions(installed: Mapping[str, str] | None = None) -> None:
    """Raise SentiwatchError (one line) unless the installed faust-streaming and aiokafka are WRITTEN_FOR."""
    if installed is None:
        installed = {name: importlib.metadata.version(name) for name in WRITTEN_FOR}
    wrong = [f"{name} {installed.get(name)}" for name, version in WRITTEN_FOR.items() if installed.get(name) != version]
    if wrong:
        wanted = " and ".join(f"{name} {version}" for name, version in WRITTEN_FOR.items())
        raise SentiwatchError(f"installed {', '.join(wrong)}, but streamer/kafka/faust_tuning.py changes private "
                              f"internals of {wanted} and was written for exactly those; install them (the 'serve' "
                              "extra pins them)")


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher; set before the consumer starts.
        consumer._fetch_max_wait_ms = self.consumer.fetch_max_wait_ms
        return consumer


class SeekEpochs:
    """Which fetches began before a partition's last seek (their records for it are stale), and the read
    offset each seek left. A seek is marked when it begins and settled when it ends: only then is it known
    which partitions it moved (aiokafka leaves a partition with no committed offset where it is)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self.current = 0
        self.fetched_at = 0  # the epoch in which the latest fetch was issued (`fetch`)
        self._last_seek: dict[Any, int] = {}
        self._seeking = 0  # seeks begun and not ended: they may overlap (a rebalance's and a stream's seek)
        self._settled = asyncio.Event()
        self._settled.set()
        self.read_offset_after_seek: dict[Any, int | None] = {}

    def begin(self) -> None:
        self.current = next(self._counter)
        self._seeking += 1
        self._settled.clear()

    def end(self, moved: dict[Any, int | None]) -> None:
        """`moved`: the partitions the seek moved, with the read offset it left."""
        epoch = self.current = next(self._counter)
        for partition, read_offset in moved.items():
            self._last_seek[partition] = epoch
            self.read_offset_after_seek[partition] = read_offset
        self._seeking -= 1
        if not self._seeking:  # settled only when the last of overlapping seeks has ended
            self._settled.set()

    async def settled(self) -> None:
        await self._settled.wait()

    async def fetch(self, issue: Callable[[], Awaitable[Fetched]]) -> Fetched:
        """Issue one fetch (`issue()`), not while a seek runs, remembering the epoch it was issued in."""
        await self.settled()
        self.fetched_at = self.current
        return await issue()

    def stale(self, partition: Any, fetch_started_at: int) -> bool:
        return self._last_seek.get(partition, 0) > fetch_started_at


async def fresh_records(epochs: SeekEpochs, records: AsyncIterator[tuple[Any, Any]],
                        read_offsets: MutableMapping[Any, int | None]) -> AsyncIterator[tuple[Any, Any]]:
    """`records` (one fetch's, issued through `epochs.fetch`) less those made stale by a seek. `read_offsets` is
    the drain loop's read offset per partition (Faust's `Consumer._read_offset`)."""
    fetched_at: int | None = None
    async for partition, message in records:
        if fetched_at is None:
            fetched_at = epochs.fetched_at  # the fetch these records came from has been issued by now
        # While a seek runs it is not yet known which partitions it moves: wait for it to end.
        await epochs.settled()
        if epochs.stale(partition, fetched_at):
            continue  # fetched from before the seek moved this partition; fetched again from there
        yield partition, message
        # The drain loop has handed the record on and set its read offset. If a seek came meanwhile, that
        # offset is from before it and would make the drain loop drop the records fetched again: undo it.
        await epochs.settled()
        if epochs.stale(partition, fetched_at):
            read_offsets[partition] = epochs.read_offset_after_seek.get(partition)


class _Consumer(faust_aiokafka.Consumer):
    fetch_max_wait_ms = 1500  # Faust's own; `use_tuned_consumer` makes a subclass with the configured one

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seek_epochs = SeekEpochs()

    def committed_position(self, tp: TP) -> int | None:
        """The partition's committed offset as this consumer last knew it (None: nothing committed yet); the
        lag meter counts from it (ops/lag.py)."""
        return self._committed_offset.get(tp)

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        partitions = set(self.assignment())
        self._seek_epochs.begin()
        moved: dict[Any, int | None] = {}
        try:
            await super().perform_seek()
            # aiokafka seeks a partition only to a committed offset > 0; Faust then sets its read offset to it.
            moved = {tp: self._read_offset.get(tp) for tp in partitions if self._read_offset.get(tp)}
        finally:
            self._seek_epochs.end(moved)

    async def seek(self, partition: TP, offset: int) -> None:
        self._seek_epochs.begin()
        moved: dict[Any, int | None] = {}
        try:
            await super().seek(partition, offset)
            moved = {partition: self._read_offset.get(partition)}
        finally:
            self._seek_epochs.end(moved)

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        # Where Faust really fetches: `getmany` may wait for the flow to resume first, while a rebalance seeks.
        issue = super()._getmany
        return await self._seek_epochs.fetch(lambda: issue(active_partitions, timeout))

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        async for partition, message in fresh_records(self._seek_epochs, super().getmany(timeout), self._read_offset):
            yield partition, message


def use_tuned_consumer(app: faust.App, fetch_max_wait_ms: int = 0) -> None:
    """Give the app the consumer above (call before it starts); refuses library versions it was not written for.
    `fetch_max_wait_ms`: the resolved setting (`connection.for_cluster`); 0, unresolved, is the embedded broker's."""
    check_versions()
    fetch_max_wait_ms = fetch_max_wait_ms or EMBEDDED_FETCH_MAX_WAIT_MS
    transport = app.transport
    if not isinstance(transport, faust_aiokafka.Transport):
        raise TypeError(f"expected Faust's aiokafka transport, got {type(transport).__name__}")
    transport.Consumer = type("TunedConsumer", (_Consumer,), {"fetch_max_wait_ms": fetch_max_wait_ms})
