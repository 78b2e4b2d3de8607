"""The consumer changes in `sentiwatch.streamer.kafka.faust_tuning` that can be checked without a broker."""

from __future__ import annotations

import asyncio

import pytest

from sentiwatch.errors import SentiwatchError
from sentiwatch.streamer.kafka.faust_tuning import SeekEpochs, check_versions, fresh_records, use_tuned_consumer


def test_records_fetched_before_a_seek_are_stale_only_for_the_partitions_it_moved() -> None:
    epochs = SeekEpochs()
    before = epochs.current  # a fetch starts
    epochs.begin()  # a seek begins...
    during = epochs.current  # ...a fetch starts while it runs (it may still read the old positions)
    # ...and ends: it moved texts-0 (read offset 770); texts-1 had no committed offset, so it stayed put.
    epochs.end({"texts-0": 770})
    after = epochs.current
    assert epochs.stale("texts-0", before) and epochs.stale("texts-0", during)
    assert not epochs.stale("texts-0", after)
    assert epochs.read_offset_after_seek["texts-0"] == 770
    # A partition the seek did not move keeps its records: nothing would fetch them again.
    assert not epochs.stale("texts-1", before) and not epochs.stale("texts-1", during)


def test_a_record_waits_while_a_seek_is_in_progress() -> None:
    async def scenario() -> list[str]:
        epochs = SeekEpochs()
        order: list[str] = []

        async def drain() -> None:
            await epochs.settled()
            order.append("record handed on")

        epochs.begin()
        waiting = asyncio.ensure_future(drain())
        await asyncio.sleep(0.01)
        order.append("seek ended")
        epochs.end({})
        await waiting
        return order

    assert asyncio.run(scenario()) == ["seek ended", "record handed on"]


def test_overlapping_seeks_settle_only_when_the_last_one_ends() -> None:
    """Issue 13, item 7: one asyncio.Event was shared by overlapping seeks, so the first to end let records
    through while the second still ran."""

    async def scenario() -> list[str]:
        epochs = SeekEpochs()
        order: list[str] = []

        async def drain() -> None:
            await epochs.settled()
            order.append("record handed on")

        epochs.begin()  # a rebalance's seek
        epochs.begin()  # a stream's seek, overlapping it
        waiting = asyncio.ensure_future(drain())
        await asyncio.sleep(0.01)
        epochs.end({"texts-0": 10})
        await asyncio.sleep(0.01)
        order.append("second seek ended")
        epochs.end({"texts-1": 20})
        await waiting
        return order

    assert asyncio.run(scenario()) == ["second seek ended", "record handed on"]


class Partition:
    """Where aiokafka's fetcher stands on one partition, and a fetch from there (records are offsets)."""

    def __init__(self, position: int) -> None:
        self.position = position

    async def fetch(self) -> list[tuple[str, int]]:
        await asyncio.sleep(0)  # a round trip to the broker
        start = self.position
        self.position += 3
        return [("texts-0", offset) for offset in range(start, start + 3)]


async def rebalance_seek(epochs: SeekEpochs, partition: Partition, read_offsets: dict, committed: int) -> None:
    """A rebalance's seek back to the committed offset: aiokafka moves at once, Faust's read offsets later."""
    epochs.begin()
    await asyncio.sleep(0)
    partition.position = committed
    await asyncio.sleep(0.02)
    read_offsets["texts-0"] = committed
    epochs.end({"texts-0": committed})


def test_a_fetch_requested_while_a_seek_runs_keeps_the_records_of_the_new_position() -> None:
    """Issue 13, item 7: a fetch issued after aiokafka's seek but before the seek epoch ended returned records
    from the new position, which were then dropped as stale (and, read past, never fetched again)."""

    async def scenario() -> tuple[list[int], dict[str, int | None]]:
        epochs = SeekEpochs()
        partition = Partition(100)  # past the committed offset 40
        read_offsets: dict[str, int | None] = {"texts-0": 100}

        async def records():
            for record in await epochs.fetch(partition.fetch):
                yield record

        seeking = asyncio.ensure_future(rebalance_seek(epochs, partition, read_offsets, 40))
        await asyncio.sleep(0.005)  # the drain loop asks for records in between
        got = [offset async for _, offset in fresh_records(epochs, records(), read_offsets)]
        await seeking
        return got, read_offsets

    got, read_offsets = asyncio.run(scenario())
    assert got == [40, 41, 42]
    assert read_offsets == {"texts-0": 40}


def test_a_fetch_that_waited_for_the_flow_through_a_rebalance_keeps_its_records() -> None:
    """The takeover loss found in this session (6,580 of 20,000 records): Faust's getmany is called, then waits
    for the flow to resume while the rebalance seeks, then fetches from the new position. Counting the fetch
    from the call of getmany made all its records stale; they were dropped and never fetched again."""

    async def scenario() -> list[int]:
        epochs = SeekEpochs()
        partition = Partition(100)
        read_offsets: dict[str, int | None] = {"texts-0": 100}
        flow = asyncio.Event()

        async def getmany():  # Faust's Consumer.getmany: wait for the flow, then fetch (`_getmany`)
            await flow.wait()
            for record in await epochs.fetch(partition.fetch):
                yield record

        drained = asyncio.ensure_future(_collect(fresh_records(epochs, getmany(), read_offsets)))
        await asyncio.sleep(0.005)  # the drain loop is waiting inside getmany
        await rebalance_seek(epochs, partition, read_offsets, 40)
        flow.set()  # Recovery resumes the flow after the seek
        return await drained

    assert asyncio.run(scenario()) == [40, 41, 42]


async def _collect(records) -> list[int]:
    return [offset async for _, offset in records]


def test_records_of_a_fetch_from_before_the_seek_are_dropped_and_the_read_offset_restored() -> None:
    async def scenario() -> tuple[list[int], dict[str, int | None]]:
        epochs = SeekEpochs()
        read_offsets: dict[str, int | None] = {"texts-0": 100}
        seeked = asyncio.Event()

        async def fetch() -> list[tuple[str, int]]:
            return [("texts-0", 100), ("texts-0", 101)]

        async def records():  # fetched from the old position; the seek comes while the first record is handed on
            fetched = await epochs.fetch(fetch)
            yield fetched[0]
            seeked.set()
            await asyncio.sleep(0.01)
            yield fetched[1]

        async def seek_back() -> None:
            await seeked.wait()
            epochs.begin()
            read_offsets["texts-0"] = 40
            epochs.end({"texts-0": 40})

        seeking = asyncio.ensure_future(seek_back())
        got = []
        async for _, offset in fresh_records(epochs, records(), read_offsets):
            got.append(offset)
            read_offsets["texts-0"] = offset + 1  # what Faust's drain loop does with a record handed on
        await seeking
        return got, read_offsets

    got, read_offsets = asyncio.run(scenario())
    assert got == [100]  # handed on before the seek; 101 came after it, from the old position
    assert read_offsets == {"texts-0": 40}  # the drain loop's offset from before the seek is undone


def test_other_library_versions_are_refused_with_one_line() -> None:
    check_versions()  # the installed ones are those it was written for
    with pytest.raises(SentiwatchError) as refused:
        check_versions({"faust-streaming": "0.15.3", "aiokafka": "0.15.0"})
    message = str(refused.value)
    assert "\n" not in message and "aiokafka 0.15.0" in message and "aiokafka 0.14.0" in message
    assert "faust-streaming 0.15.3" in message


def test_the_fetch_wait_is_the_configured_one() -> None:
    import faust

    app = faust.App("fetch-wait-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    use_tuned_consumer(app, 500)
    assert app.transport.Consumer.fetch_max_wait_ms == 500
