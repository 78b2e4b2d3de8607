"""One change to Faust's Kafka consumer: how long a fetch may wait at the broker for new records.

Faust hard-codes `fetch_max_wait_ms=1500`. The embedded broker (Tansu) parks a fetch that finds no
data for that whole time and does not wake it when data arrives (measured: a record produced into an
idle topic is seen after the rest of the wait, 0.38 s with 500 ms and up to 1.5 s with 1500 ms, but
after 0.01 s with 100 ms). On a real Kafka the value only bounds an idle long-poll, so a short wait
costs a few idle fetch requests per second and nothing else.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_MAX_WAIT_MS = 100


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher; set before the consumer starts.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


def use_short_fetch_wait(app: faust.App) -> None:
    """Make the app's worker consumer wait at most FETCH_MAX_WAIT_MS per fetch (call before it starts)."""
    transport = app.transport
    if not isinstance(transport, faust_aiokafka.Transport):
        raise TypeError(f"expected Faust's aiokafka transport, got {type(transport).__name__}")
    transport.Consumer = _Consumer
