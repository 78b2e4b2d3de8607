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


def test_a_fetch_requested_while_a_seek_runs_keeps_the_records_of_the_new_position() -> None:
    """Issue 13, item 7: a fetch issued after aiokafka's seek but before the seek epoch ended returned records
    from the new position, which were then dropped as stale (and, read past, never fetched again)."""

    async def scenario() -> tuple[list[int], dict[str, int | None]]:
        epochs = SeekEpochs()
        position = {"texts-0": 100}  # where aiokafka's fetcher stands: past the committed offset 40
        read_offsets: dict[str, int | None] = {"texts-0": 100}

        async def fetch():  # the broker answers from wherever the consumer stands when the fetch is issued
            start = position["texts-0"]
            for offset in range(start, start + 3):
                yield "texts-0", offset

        async def rebalance_seek() -> None:
            epochs.begin()
            await asyncio.sleep(0)
            position["texts-0"] = 40  # aiokafka's seek_to is done...
            await asyncio.sleep(0.02)  # ...while Faust is still setting its read offsets
            read_offsets["texts-0"] = 40
            epochs.end({"texts-0": 40})

        seeking = asyncio.ensure_future(rebalance_seek())
        await asyncio.sleep(0.005)  # the drain loop asks for records in between
        records = [offset async for _, offset in fresh_records(epochs, fetch, read_offsets)]
        await seeking
        return records, read_offsets

    records, read_offsets = asyncio.run(scenario())
    assert records == [40, 41, 42]
    assert read_offsets == {"texts-0": 40}


def test_records_of_a_fetch_from_before_the_seek_are_dropped_and_the_read_offset_restored() -> None:
    async def scenario() -> tuple[list[int], dict[str, int | None]]:
        epochs = SeekEpochs()
        read_offsets: dict[str, int | None] = {"texts-0": 100}
        seeked = asyncio.Event()

        async def fetch():  # fetched from the old position; the seek comes while the first record is handed on
            yield "texts-0", 100
            seeked.set()
            await asyncio.sleep(0.01)
            yield "texts-0", 101

        async def seek_back() -> None:
            await seeked.wait()
            epochs.begin()
            read_offsets["texts-0"] = 40
            epochs.end({"texts-0": 40})

        seeking = asyncio.ensure_future(seek_back())
        records = []
        async for _, offset in fresh_records(epochs, fetch, read_offsets):
            records.append(offset)
            read_offsets["texts-0"] = offset + 1  # what Faust's drain loop does with a record handed on
        await seeking
        return records, read_offsets

    records, read_offsets = asyncio.run(scenario())
    assert records == [100]  # handed on before the seek; 101 came after it, from the old position
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
