"""End to end: embedded broker + real `sentiwatch stream` processes with the tiny bundle."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from streamer import records
from streamer.windows import window_start
from tests.streaming_helpers import WorkerProcess, consume, produce, running_broker

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
        import base64
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
        assert any(k[0] == "sentiwatch_consumer_lag" for k in metrics)
        assert any(k[0] == "sentiwatch_negative_ratio" for k in metrics)
        text = worker.metrics.__self__ and str(metrics)
        assert "news number" not in text

        code, seconds = worker.terminate()
        assert code == 0, worker.log_tail()
        assert seconds < 10
    finally:
        worker.kill()
