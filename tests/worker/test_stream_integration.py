"""End to end: embedded broker + real `sentiwatch stream` processes with the tiny bundle."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from datetime import datetime

import pytest

from sentiwatch.streamer.scoring import records
from sentiwatch.streamer.windows.tumbling import window_start
from tests.streaming_helpers import WorkerProcess, consume, http_get, produce, running_broker

pytestmark = pytest.mark.integration

SIZE = 60
BASE = 1_700_000_040  # a window start
CAP = 4
BAD = {
    records.NOT_UTF8: [b"\xff\xfe\xfd"],
    records.NOT_JSON: [b"{nope", b"[" * 50_000],
    records.NOT_OBJECT: [b"[1, 2]", b'"just a string"'],
    records.MISSING_ID: [b'{"text": "no id"}'],
    records.MISSING_TEXT: [b'{"id": "bad-no-text"}'],
    records.EMPTY_TEXT: [b'{"id": "bad-empty", "text": "  \\n "}'],
    records.WRONG_TYPE: [b'{"id": 12, "text": "numeric id"}', b'{"id": "bad-type", "text": {"a": 1}}'],
    records.TEXT_TOO_LONG: [json.dumps({"id": "bad-long", "text": "word " * 500}).encode()],
    records.BAD_TIMESTAMP: [b'{"id": "bad-ts", "text": "when?", "ts": "last tuesday"}'],
}


@pytest.fixture(scope="module")
def brokers():
    with running_broker() as address:
        yield address


def valid_records(n: int) -> list[tuple[bytes | None, bytes]]:
    out = []
    topics = ["ACME", "globex", "initech", None]
    for i in range(n):
        topic = topics[i % 4]
        record = {"id": f"v{i}", "ts": BASE + i * 0.2, "source": "test",
                  "text": f"I sold my $ACME shares, disappointed {i}" if topic is None else f"{topic} news number {i}"}
        if topic:
            record["topic"] = topic
        out.append((topic.encode() if topic else None, json.dumps(record).encode()))
    for i in range(12):  # more distinct topics than the cap
        record = {"id": f"flood{i}", "ts": BASE + 300 + i, "text": "flood text", "topic": f"flood-{i}"}
        out.append((f"flood-{i}".encode(), json.dumps(record).encode()))
    return out


def test_worker_scores_windows_dead_letters_and_reports(brokers, tiny_bundle_dir, tmp_path):
    worker = WorkerProcess(tiny_bundle_dir, brokers, tmp_path / "worker.log", env={
        "SENTIWATCH_WATCHLIST": '{"ACME": ["$acme"]}', "SENTIWATCH_TOPIC_CAP": str(CAP),
        "SENTIWATCH_MAX_TEXT_BYTES": "2000", "SENTIWATCH_LONG_WINDOW_SECONDS": "3600",
        "SENTIWATCH_BATCH_WITHIN_SECONDS": "0.05"})
    try:
        worker.wait_ready()
        good = valid_records(2400)
        bad = [(None, value) for values in BAD.values() for value in values]
        # Bad records in between good ones: the good ones around them must still be scored.
        mixed = good[:1000] + bad + good[1000:]
        produce(brokers, "sentiwatch.texts", mixed)
        scored = consume(brokers, "sentiwatch.scored", len(good), timeout=90)
        dead = consume(brokers, "sentiwatch.dlq", len(bad), timeout=30)

        # Records for a window closed long ago: scored and emitted, but counted late.
        late = [(b"ACME", json.dumps({"id": f"late{i}", "text": "old news", "topic": "ACME", "ts": BASE + 1}).encode())
                for i in range(5)]
        produce(brokers, "sentiwatch.texts", late)
        scored = consume(brokers, "sentiwatch.scored", len(good) + len(late), timeout=60)

        values = [json.loads(r.value) for r in scored]
        ids = Counter(v["id"] for v in values)
        expected_ids = {json.loads(v)["id"] for _, v in good + late}
        assert set(ids) == expected_ids
        assert max(ids.values()) == 1  # no duplicates without failures

        reasons = Counter(json.loads(r.value)["reason"] for r in dead)
        assert reasons == {reason: len(values) for reason, values in BAD.items()}
        raws = {json.loads(r.value)["raw"] for r in dead}
        assert {base64.b64encode(v).decode() for _, v in bad} == raws

        by_id = {v["id"]: (v, r) for v, r in zip(values, scored, strict=True)}
        acme = by_id["v3"][0]
        assert (acme["topic"], acme["topic_source"]) == ("ACME", "watchlist")
        assert (by_id["v1"][0]["topic"], by_id["v1"][0]["topic_source"]) == ("globex", "producer")
        assert by_id["v1"][0]["source"] == "test" and by_id["v1"][0]["model_version"] == "tiny-test"

        labels = {r.key.decode() for r in scored}
        assert "other" in labels and len(labels - {"other"}) <= CAP

        # Window counts == a recount of the scored records (late ones excluded), per capped label.
        recount = Counter()
        for value, record in by_id.values():
            if not value["id"].startswith("late"):
                recount[(record.key.decode(), window_start(value["ts"], SIZE))] += 1
        deadline = time.monotonic() + 30
        while True:
            status = worker.status()
            windows = Counter()
            for topic, info in status["topics"].items():
                for window in info["closed_windows"] + info["open_windows"]:
                    if window["total"]:
                        windows[(topic, window["start"])] += window["total"]
            if windows == recount or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert windows == recount
        assert "old news" not in json.dumps(status) and "flood text" not in json.dumps(status)
        # Faust's own table pages would show stored texts: they are switched off.
        assert http_get(f"{worker.url}/table/windows/ACME/")[0] == 404

        deadline = time.monotonic() + 15  # the window stage may still be on the last batch
        while worker.metrics()[("sentiwatch_late_records_total", ())] < len(late) and time.monotonic() < deadline:
            time.sleep(0.3)
        metrics = worker.metrics()
        sentiments = Counter((r.key.decode(), json.loads(r.value)["sentiment"]["label"]) for r in scored)
        for (topic, sentiment), count in sentiments.items():
            assert metrics[("sentiwatch_messages_total", (("sentiment", sentiment), ("topic", topic)))] == count
        for reason, values in BAD.items():
            assert metrics[("sentiwatch_dead_letters_total", (("reason", reason),))] == len(values)
        assert metrics[("sentiwatch_late_records_total", ())] == len(late)
        info = [k for k in metrics if k[0] == "sentiwatch_model_info"]
        assert info == [("sentiwatch_model_info", (("precision", "int8"), ("provider", "CPUExecutionProvider"),
                                                    ("version", "tiny-test")))]
        assert metrics[("sentiwatch_end_to_end_seconds_count", ())] == len(scored)
        assert metrics[("sentiwatch_batch_size_sum", ())] == len(mixed) + len(late)
        assert metrics[("sentiwatch_inference_seconds_count", ())] == metrics[("sentiwatch_batch_size_count", ())]
        assert any(k[0] == "sentiwatch_negative_ratio" for k in metrics)
        assert "news number" not in str(metrics) and "disappointed" not in str(metrics)
        deadline = time.monotonic() + 15  # lag is measured every few seconds
        while not any(k[0] == "sentiwatch_consumer_lag" for k in metrics) and time.monotonic() < deadline:
            time.sleep(0.5)
            metrics = worker.metrics()
        lags = {dict(k[1])["partition"]: v for k, v in metrics.items() if k[0] == "sentiwatch_consumer_lag"}
        assert set(lags) == {"0", "1", "2", "3"} and set(lags.values()) == {0}
        assert worker.status()["healthy"] is True

        # An idle worker picks a new record up at once (short broker fetch wait: kafka.faust_tuning).
        produce(brokers, "sentiwatch.texts", [(None, b'{"id": "prompt", "text": "hello"}')])
        record = next(r for r in consume(brokers, "sentiwatch.scored", len(scored) + 1, timeout=10)
                      if json.loads(r.value)["id"] == "prompt")
        latency = datetime.fromisoformat(json.loads(record.value)["scored_at"]).timestamp() - record.timestamp / 1000
        assert latency < 1.0

        code, seconds = worker.terminate()
        assert code == 0, worker.log_tail()
        assert seconds < 10
    finally:
        worker.kill()


def test_two_workers_share_the_partitions(brokers, tiny_bundle_dir, tmp_path):
    env = {"SENTIWATCH_INPUT_TOPIC": "scale.texts", "SENTIWATCH_SCORED_TOPIC": "scale.scored",
           "SENTIWATCH_DLQ_TOPIC": "scale.dlq", "SENTIWATCH_ALERTS_TOPIC": "scale.alerts",
           "SENTIWATCH_CONSUMER_GROUP": "scale", "SENTIWATCH_BATCH_WITHIN_SECONDS": "0.05",
           # Producer topics get their own windows only when listed (streamer/scoring/topics.py).
           "SENTIWATCH_TOPIC_ALLOWLIST": json.dumps([f"t{i}" for i in range(16)])}
    first = WorkerProcess(tiny_bundle_dir, brokers, tmp_path / "first.log", env)
    second = WorkerProcess(tiny_bundle_dir, brokers, tmp_path / "second.log", env)
    try:
        first.wait_ready()
        second.wait_ready()
        topics = [f"t{i}" for i in range(16)]
        good = [(topics[i % 16].encode(), json.dumps({"id": f"s{i}", "text": f"text {i}", "topic": topics[i % 16]})
                 .encode()) for i in range(2000)]
        deadline = time.monotonic() + 60
        # Both must own input partitions before the load arrives, or one would do all the work.
        while time.monotonic() < deadline and not (first.status()["lag"] and second.status()["lag"]):
            time.sleep(0.5)
        produce(brokers, "scale.texts", good)
        scored = consume(brokers, "scale.scored", len(good), timeout=90)
        assert {json.loads(r.value)["id"] for r in scored} == {json.loads(v)["id"] for _, v in good}

        def scored_by(worker: WorkerProcess) -> float:
            return sum(v for k, v in worker.metrics().items() if k[0] == "sentiwatch_messages_total")

        counts = [scored_by(first), scored_by(second)]
        assert all(count > 0 for count in counts) and sum(counts) >= len(good)
        partitions = [set(first.status()["lag"]), set(second.status()["lag"])]
        assert not partitions[0] & partitions[1] and partitions[0] | partitions[1] == {"0", "1", "2", "3"}
        # Each topic's windows are kept by exactly one worker.
        owned = [set(first.status()["topics"]), set(second.status()["topics"])]
        assert not owned[0] & owned[1] and owned[0] | owned[1] == set(topics)

        for worker in (first, second):
            code, seconds = worker.terminate()
            assert code == 0 and seconds < 10, worker.log_tail()
    finally:
        first.kill()
        second.kill()


def test_sigterm_under_load_finishes_and_commits(brokers, tiny_bundle_dir, tmp_path):
    env = {"SENTIWATCH_INPUT_TOPIC": "stop.texts", "SENTIWATCH_SCORED_TOPIC": "stop.scored",
           "SENTIWATCH_DLQ_TOPIC": "stop.dlq", "SENTIWATCH_ALERTS_TOPIC": "stop.alerts",
           "SENTIWATCH_CONSUMER_GROUP": "stop", "SENTIWATCH_BATCH_MAX": "64"}
    good = [(None, json.dumps({"id": f"g{i}", "text": f"some text to score {i}"}).encode()) for i in range(12000)]
    produce(brokers, "stop.texts", good)
    worker = WorkerProcess(tiny_bundle_dir, brokers, tmp_path / "stop1.log", env)
    try:
        worker.wait_ready()
        deadline = time.monotonic() + 60
        while worker.status()["records_processed"] < 1000 and time.monotonic() < deadline:
            time.sleep(0.1)
        code, seconds = worker.terminate()
        assert code == 0 and seconds < 10, worker.log_tail()
        before = consume(brokers, "stop.scored", len(good), timeout=3)
        assert 1000 <= len(before) < len(good), "stopped too late to test anything"

        worker = WorkerProcess(tiny_bundle_dir, brokers, tmp_path / "stop2.log", env)
        worker.wait_ready()
        scored = consume(brokers, "stop.scored", len(good), timeout=90)
        ids = Counter(json.loads(r.value)["id"] for r in scored)
        assert set(ids) == {json.loads(v)["id"] for _, v in good}
        # Committed on the way out: a restart rescores at most the batch that was in hand.
        assert sum(ids.values()) - len(ids) <= 64
    finally:
        worker.kill()
