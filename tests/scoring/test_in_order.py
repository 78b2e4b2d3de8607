"""In-order delivery of batches scored side by side (`sentiwatch.streamer.scoring.in_order`), without Kafka."""

from __future__ import annotations

import asyncio

import pytest

from sentiwatch.streamer.scoring.in_order import InOrderDelivery


def later(loop: asyncio.AbstractEventLoop, seconds: float, value: object) -> asyncio.Future[object]:
    future = loop.create_future()
    loop.call_later(seconds, future.set_result, value)
    return future


def test_results_that_finish_out_of_order_are_delivered_in_submission_order() -> None:
    async def scenario() -> list[object]:
        loop = asyncio.get_running_loop()
        delivered: list[object] = []

        async def deliver(value: object) -> None:
            await asyncio.sleep(0)
            delivered.append(value)

        batches = InOrderDelivery(max_in_flight=4)
        # The first batch finishes last, as a long batch scored beside a short one does.
        for index, seconds in enumerate([0.05, 0.01, 0.03, 0.0]):
            await batches.submit(later(loop, seconds, index), deliver)
        await batches.drain()
        return delivered

    assert asyncio.run(scenario()) == [0, 1, 2, 3]


def test_submit_waits_while_too_many_batches_are_undelivered() -> None:
    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        batches = InOrderDelivery(max_in_flight=2)
        seen: list[int] = []

        async def deliver(value: object) -> None:
            pass

        for index in range(6):
            await batches.submit(later(loop, 0.01, index), deliver)
            seen.append(batches.in_flight)
        await batches.drain()
        seen.append(batches.in_flight)
        return seen

    seen = asyncio.run(scenario())
    assert max(seen) == 2 and seen[-1] == 0


def test_a_failed_batch_stops_the_ones_after_it_and_is_raised() -> None:
    async def scenario() -> tuple[list[object], str]:
        loop = asyncio.get_running_loop()
        delivered: list[object] = []
        batches = InOrderDelivery(max_in_flight=1)

        async def deliver(value: object) -> None:
            if value == 1:
                raise ConnectionError("broker gone")
            delivered.append(value)

        with pytest.raises(ConnectionError) as raised:
            for index in range(4):
                await batches.submit(later(loop, 0.0, index), deliver)
        await batches.drain()
        return delivered, str(raised.value)

    delivered, error = asyncio.run(scenario())
    # Batch 1 failed: nothing after it may be sent, or its records would be acked before batch 1's.
    assert delivered == [0] and error == "broker gone"


def test_a_graceful_stop_finishes_the_batches_in_hand() -> None:
    async def scenario() -> list[object]:
        loop = asyncio.get_running_loop()
        delivered: list[object] = []
        batches = InOrderDelivery(max_in_flight=3)

        async def deliver(value: object) -> None:
            await asyncio.sleep(0.02)  # sends in progress when the stop comes
            delivered.append(value)

        async def agent() -> None:
            try:
                for index in range(3):
                    await batches.submit(later(loop, 0.02, index), deliver)
                await asyncio.sleep(3600)  # waiting for the next batch
            finally:
                await batches.drain()

        task = asyncio.ensure_future(agent())
        await asyncio.sleep(0.03)
        task.cancel()
        await asyncio.sleep(0.01)
        task.cancel()  # Faust may cancel again while the agent is draining
        with pytest.raises(asyncio.CancelledError):
            await task
        return delivered

    assert asyncio.run(scenario()) == [0, 1, 2]
