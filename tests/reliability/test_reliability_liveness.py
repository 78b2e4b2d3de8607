"""Liveness must not cry wolf: a worker restarted on an idle, fully consumed topic is healthy.

It used to count the whole partition history as lag (positions started at 0, not at the committed
offset), so after `liveness_stall_seconds` /healthz failed and the watchdog ended the worker, again and
again: a restart loop on an idle topic.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.streaming_helpers import WorkerProcess, consume, http_get, produce, running_broker

pytestmark = pytest.mark.integration

STALL = 4  # SENTIWATCH_LIVENESS_STALL_SECONDS; lag is measured every 5 s


def test_restarted_idle_worker_stays_healthy(tiny_bundle_dir, tmp_path):
    env = {"SENTIWATCH_LIVENESS_STALL_SECONDS": str(STALL)}
    with running_broker() as brokers:
        first = WorkerProcess(tiny_bundle_dir, brokers, tmp_path / "first.log", env)
        try:
            first.wait_ready()
            produce(brokers, "sentiwatch.texts", [(None, json.dumps({"id": f"i{i}", "text": "idle"}).encode())
                                                  for i in range(100)])
            assert len(consume(brokers, "sentiwatch.scored", 100, timeout=60)) == 100
            assert first.terminate()[0] == 0  # commits on the way out
        finally:
            first.kill()
        second = WorkerProcess(tiny_bundle_dir, brokers, tmp_path / "second.log", env)
        try:
            second.wait_ready()
            # Lag is known once the consumer has seen each partition's end (its first fetch, some seconds);
            # from then on the stall clock runs: watch past it.
            seen_lag_at = None
            deadline = time.monotonic() + 60
            while seen_lag_at is None or time.monotonic() < seen_lag_at + STALL + 6:
                assert time.monotonic() < deadline, f"no lag measured within 60 s:\n{second.log_tail()}"
                assert second.process.poll() is None, second.log_tail()
                status, body = http_get(second.url + "/healthz")
                assert status == 200, body
                lag = second.status()["lag"]
                if lag and seen_lag_at is None:
                    seen_lag_at = time.monotonic()
                time.sleep(1)
            assert set(second.status()["lag"].values()) == {0}
        finally:
            second.kill()
