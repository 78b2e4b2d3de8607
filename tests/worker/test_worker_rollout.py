"""Rollout settings on a real worker and the embedded broker: a new consumer group with start_at=latest skips the
history already on the input topic; rebalances are counted; a changed credential file makes the worker stop
gracefully (to be restarted with it)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.streaming_helpers import WorkerProcess, consume, produce, running_broker

pytestmark = pytest.mark.integration


def records(prefix: str, n: int) -> list[tuple[bytes, bytes]]:
    return [(b"acme", json.dumps({"id": f"{prefix}-{i}", "text": f"order {i} arrived", "topic": "acme"}).encode())
            for i in range(n)]


def wait_assigned(worker: WorkerProcess, timeout: float = 60.0) -> None:
    """Until the worker reports the lag of assigned partitions: it has joined the group and has positions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(name == "sentiwatch_consumer_lag" for name, _ in worker.metrics()):
            return
        time.sleep(0.5)
    raise AssertionError(f"no partition assigned within {timeout} s:\n{worker.log_tail()}")


def test_start_at_latest_skips_history_and_a_changed_credential_restarts_gracefully(tiny_bundle_dir: Path,
                                                                                      tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("CA-1")
    with running_broker() as brokers:
        # One record per produce call: the embedded broker reports a partition's end offset wrong after a
        # multi-record batch (tests/streaming_helpers.py), and "latest" is that end offset.
        for record in records("history", 5):
            produce(brokers, "sentiwatch.texts", [record])
        worker = WorkerProcess(tiny_bundle_dir, brokers, tmp_path / "worker.log", env={
            "SENTIWATCH_START_AT": "latest", "SENTIWATCH_BATCH_WITHIN_SECONDS": "0.05",
            # PLAINTEXT does not use it; the worker still watches it like a mounted Secret.
            "SENTIWATCH_KAFKA_SSL_CAFILE": str(ca)})
        try:
            worker.wait_ready()
            wait_assigned(worker)
            produce(brokers, "sentiwatch.texts", records("new", 10))
            scored = [json.loads(r.value)["id"] for r in consume(brokers, "sentiwatch.scored", 10, timeout=60)]
            time.sleep(3)  # anything from the history would have arrived by now
            scored = [json.loads(r.value)["id"] for r in consume(brokers, "sentiwatch.scored", 15, timeout=3)]
            assert sorted(scored) == sorted(f"new-{i}" for i in range(10)), scored
            rebalances = [v for (name, _), v in worker.metrics().items() if name == "sentiwatch_rebalances_total"]
            assert rebalances and rebalances[0] >= 1

            ca.write_text("CA-2")  # the kubelet updated the mounted Secret
            code = worker.process.wait(timeout=60)
            assert code == 0, worker.log_tail()
            assert "Kafka credentials changed" in worker.log_path.read_text()
        finally:
            worker.kill()
