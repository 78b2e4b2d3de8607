"""The consumer changes in `sentiwatch.streamer.kafka.faust_tuning` that can be checked without a broker."""

from __future__ import annotations

import asyncio

from sentiwatch.streamer.kafka.faust_tuning import SeekEpochs


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
