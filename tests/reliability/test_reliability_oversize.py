"""Issue 13, the case in "Why": one legal record whose scored form is too large to send must not stall, crash or
silently drop the others. Embedded broker and a real `sentiwatch stream` worker with the tiny bundle.

Before the fix the score agent crashed on `MessageSizeTooLargeError`, nothing more was scored, the watchdog
ended the worker, and the next one lost 26 of the 40 valid records and the big one.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter

import pytest

from sentiwatch.streamer.scoring import records
from tests.streaming_helpers import WorkerProcess, consume, http_get, produce, running_broker

pytestmark = pytest.mark.integration

# The liveness timer is a setting: a short one lets a short idle period show what 90 s would (a worker idle
# for longer than it, then given records, must not read as stalled), and the lag is measured every 5 s.
STALL_SECONDS = 4
IDLE_SECONDS = 12


def record(i: int, big: bool = False) -> tuple[bytes, bytes]:
    value = {"id": f"r{i}", "text": f"an ordinary text number {i}", "source": "oversize-test"}
    if big:  # just under 1 MB with a short text: the scored record echoes the extra field and is over 1,000,000
        value["attachment"] = ""
        value["attachment"] = "x" * (999_990 - len(json.dumps(value)))
    return b"one-key", json.dumps(value).encode()  # one key: all on one partition, the big one in their way


def test_a_record_too_large_once_scored_is_dead_lettered_and_nothing_else_is_lost(tiny_bundle_dir, tmp_path):
    with running_broker() as brokers:
        worker = WorkerProcess(tiny_bundle_dir, brokers, tmp_path / "worker.log", env={
            # The bound on extra fields would dead-letter the big record before scoring (extra_fields_too_large);
            # raised here so that it reaches the producer, as in the issue.
            "SENTIWATCH_MAX_EXTRA_FIELDS_BYTES": "2000000",
            "SENTIWATCH_LIVENESS_STALL_SECONDS": str(STALL_SECONDS),
            "SENTIWATCH_BATCH_WITHIN_SECONDS": "0.05"})
        try:
            worker.wait_ready()
            deadline = time.monotonic() + 30  # readiness: partitions assigned and tables recovered
            while http_get(worker.url + "/ready")[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert json.loads(http_get(worker.url + "/ready")[1]) == {"ready": True, "reason": "ok"}
            first = [record(i) for i in range(20)] + [record(20, big=True)] + [record(i) for i in range(21, 41)]
            assert len(first[20][1]) == 999_990
            produce(brokers, "sentiwatch.texts", first)

            scored = consume(brokers, "sentiwatch.scored", 40, timeout=60)
            dead = consume(brokers, "sentiwatch.dlq", 1, timeout=30)
            ids = Counter(json.loads(r.value)["id"] for r in scored)
            assert set(ids) == {f"r{i}" for i in range(41) if i != 20} and max(ids.values()) == 1
            (letter,) = [json.loads(r.value) for r in dead]
            assert letter["reason"] == records.SCORED_TOO_LARGE
            assert letter["raw_truncated"] is True and letter["raw_bytes"] == len(first[20][1])
            assert base64.b64decode(letter["raw"]) == first[20][1][:records.MAX_DEAD_LETTER_RAW_BYTES]
            assert worker.process.poll() is None, worker.log_tail()
            metrics = worker.metrics()
            assert metrics[("sentiwatch_dead_letters_total", (("reason", records.SCORED_TOO_LARGE),))] == 1
            assert sum(v for k, v in metrics.items() if k[0] == "sentiwatch_messages_total") == 40

            # Idle for longer than the stall limit, with lag readings in between: alive and healthy throughout.
            deadline = time.monotonic() + IDLE_SECONDS
            while time.monotonic() < deadline:
                assert worker.process.poll() is None, worker.log_tail()
                code, body = http_get(worker.url + "/healthz")
                assert code == 200, body
                time.sleep(1.0)

            produce(brokers, "sentiwatch.texts", [record(i) for i in range(41, 44)])
            for _ in range(8):  # the lag timer runs while the 3 new records are pending: still healthy
                code, body = http_get(worker.url + "/healthz")
                assert code == 200, body
                time.sleep(0.25)
            scored = consume(brokers, "sentiwatch.scored", 43, timeout=30)
            ids = Counter(json.loads(r.value)["id"] for r in scored)
            assert set(ids) == {f"r{i}" for i in range(44) if i != 20} and max(ids.values()) == 1
            assert len(consume(brokers, "sentiwatch.dlq", 2, timeout=3)) == 1
            assert worker.process.poll() is None, worker.log_tail()

            code, seconds = worker.terminate()
            assert code == 0, worker.log_tail()
        finally:
            worker.kill()
