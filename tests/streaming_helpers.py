"""Process helpers for tests against the embedded broker and real `sentiwatch stream` workers.

Shared by the streaming and reliability tests: start/stop brokers and workers as real processes,
produce and read back Kafka records (never trusting end offsets: the embedded broker reports them
wrong after multi-record batches, so readers count what they expect instead), scrape /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from sentiwatch.config import load_settings
from sentiwatch.streamer.kafka.broker import free_port, start_broker, stop_broker

REPO_ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def running_broker() -> Iterator[str]:
    """An embedded broker on a free loopback port; yields 'host:port'."""
    port = free_port()
    process = start_broker("127.0.0.1", port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_broker(process)


class WorkerProcess:
    """A `sentiwatch stream` subprocess with its own web port; output goes to `log_path`."""

    def __init__(self, bundle: Path, brokers: str, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.web_port = free_port()
        self.log_path = log_path
        self.env = {**os.environ, "SENTIWATCH_BROKERS": brokers, "SENTIWATCH_BUNDLE": str(bundle),
                    "SENTIWATCH_WEB_PORT": str(self.web_port), "SENTIWATCH_INTRA_OP_THREADS": "1",
                    **(env or {})}
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "sentiwatch.cli", "stream"], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the web server answers (Faust starts it with the worker)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                http_get(self.url + "/healthz")
                return
            time.sleep(0.2)
        raise AssertionError(f"worker not ready within {timeout} s:\n{self.log_tail()}")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return parse_metrics(http_get(self.url + "/metrics")[1])

    def status(self) -> dict[str, Any]:
        return json.loads(http_get(self.url + "/status")[1])

    def terminate(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM and wait; returns (exit status, seconds it took)."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from Prometheus text format."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def produce(brokers: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Produce (key, value) records in order with the replay code path."""
    from sentiwatch.tools.replay import produce as replay_produce

    settings = load_settings(environ={"SENTIWATCH_BROKERS": brokers})
    return asyncio.run(replay_produce(settings, topic, list(records)))


def consume(brokers: str, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    """Read a topic from the beginning (no consumer group) until `expected` records or the timeout."""
    return asyncio.run(_consume(brokers, topic, expected, timeout))


async def _consume(brokers: str, topic: str, expected: int, timeout: float) -> list[Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        partitions: set[int] = set()
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await consumer._client.force_metadata_update()  # noqa: SLF001 - no public refresh in aiokafka
                await asyncio.sleep(0.2)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        while len(records) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def topic_exists(brokers: str, topic: str) -> bool:
    """Whether the brokers know `topic` now (`consume` waits for a topic and then fails if it never comes)."""
    from sentiwatch.streamer.ops.watchdog import probe_brokers

    probe = asyncio.run(probe_brokers({"bootstrap_servers": brokers}, [topic]))
    return probe.reachable and not probe.missing
