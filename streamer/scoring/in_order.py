"""Scoring batches side by side while sending their results in the order the batches were taken.

Two rules hold the stream's guarantees together: the window stage skips redeliveries by input offset,
which relies on each input partition's records reaching the scored topic in offset order; and an
input record is acked only once its results are sent, so a crash reads it again (at least once).
So a batch's results wait for the batch before it, however early its scoring finishes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

Result = TypeVar("Result")

log = logging.getLogger(__name__)


class InOrderDelivery:
    """Delivers batch results in submission order, with at most `max_in_flight` batches undelivered."""

    def __init__(self, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self._max_in_flight = max_in_flight
        self._pending: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def submit(self, result: Awaitable[Result], deliver: Callable[[Result], Awaitable[None]]) -> None:
        """Have `deliver(await result)` run once every batch submitted earlier is delivered; returns when no
        more than `max_in_flight` batches are undelivered. Raises the error of a batch that failed: it and
        every batch after it are never delivered. Their records are not acked, so the committed position stays
        before them, but Faust does not fetch them again in this process: only the next process reads them, which
        is why the score agent ends the process on such an error (scoring/agent.py)."""
        previous = self._pending[-1] if self._pending else None
        self._pending.append(asyncio.ensure_future(_deliver_after(previous, result, deliver)))
        while self._pending and (len(self._pending) > self._max_in_flight or self._pending[0].done()):
            # shield: cancelling the caller (a graceful stop) must not cancel a batch halfway through its sends.
            await asyncio.shield(self._pending.popleft())

    async def drain(self) -> None:
        """Wait until every submitted batch is delivered or has failed, even if cancelled meanwhile: a graceful
        stop finishes the batches in hand before the consumer's last commit. A failure is logged, not raised
        (the caller is already stopping or failing); those records were not acked, so the next process reads them."""
        remaining = asyncio.gather(*self._pending, return_exceptions=True)
        self._pending.clear()
        cancelled = False
        while not remaining.done():
            try:
                await asyncio.shield(remaining)
            except asyncio.CancelledError:
                cancelled = True  # keep waiting: the watchdog bounds how long a stop may take
        outcomes = remaining.result()
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            log.warning("%d of %d batches in hand were not delivered (first error: %r); the next process reads them",
                        len(failures), len(outcomes), failures[0])
        if cancelled:
            raise asyncio.CancelledError


async def _deliver_after(previous: Awaitable[None] | None, result: Awaitable[Result],
                         deliver: Callable[[Result], Awaitable[None]]) -> None:
    value = await result
    if previous is not None:
        await previous
    await deliver(value)
