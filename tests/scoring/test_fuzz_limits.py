"""Issue 13: hostile input at the protocol's limits, property-based (hypothesis).

The pure part (no broker) runs validation, the scoring stage and the sending over records around Kafka's 1 MB
message limit, tombstones, unicode edge cases (lone surrogates, RTL marks, zero-width joiners, 4-byte emoji),
deep JSON nesting, numbers as ids and duplicate JSON keys. The producer in it applies aiokafka's own size check
(`AIOKafkaProducer._serialize`, the check that refused the record of the issue) and lands what passes; the
scorer is the real ONNX one on the tiny bundle. The property: every record ends in exactly one place, the
scored topic or the DLQ with a known reason, and whatever is sent fits in one Kafka message.

The broker-backed part sends records with empty and large keys and headers, tombstones and records just under
1 MB, through every compression codec, from aiokafka and from librdkafka (`confluent-kafka`, as most
production producers use), to a real worker, and counts input offsets end to end.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentiwatch.config import load_settings
from sentiwatch.streamer.scoring import records
from sentiwatch.streamer.scoring.delivery import BatchSender
from sentiwatch.streamer.scoring.stage import BatchScorer, RawMessage
from sentiwatch.streamer.scoring.topics import TopicCap, valid_label
from tests.streaming_helpers import WorkerProcess, consume, running_broker

PRODUCER_LIMIT = 1_000_000  # Faust's producer_max_request_size
LIMITS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.data_too_large])

EDGE_CHARACTERS = ["\u200f", "\u202e", "\u200d", "\u200b", "\ufeff", "\U0001F600", "\U0001F468\u200d\U0001F469",
                   "\u0301", "\x00", "\n", "\U00010348", "\uffff"]
edge_text = st.lists(st.sampled_from(EDGE_CHARACTERS) | st.text(max_size=5), min_size=1, max_size=12).map("".join)


@st.composite
def limit_records(draw: st.DrawFn) -> tuple[str, bytes | None]:
    """(kind, raw value) of one record at the protocol's limits."""
    kind = draw(st.sampled_from(["near_1mb", "tombstone", "unicode", "lone_surrogate", "deep", "number_id",
                                 "duplicate_key", "plain"]))
    record_id = f"id-{draw(st.integers(0, 10**9))}"
    if kind == "near_1mb":
        padding = {"id": record_id, "text": draw(edge_text.filter(str.strip) | st.just("short")), "x": ""}
        target = draw(st.integers(990_000, 1_048_576 + 100))
        padding["x"] = "y" * max(0, target - len(json.dumps(padding)))
        return kind, json.dumps(padding).encode()
    if kind == "tombstone":
        return kind, None
    if kind == "unicode":
        value = {"id": record_id + draw(edge_text), "text": draw(edge_text), "topic": draw(edge_text)}
        return kind, json.dumps(value, ensure_ascii=draw(st.booleans())).encode("utf-8", errors="surrogatepass")
    if kind == "lone_surrogate":
        surrogate = draw(st.integers(0xD800, 0xDFFF))
        if draw(st.booleans()):  # escaped in the JSON
            return kind, b'{"id": "%s", "text": "a \\u%04x b"}' % (record_id.encode(), surrogate)
        text = json.dumps({"id": record_id, "text": f"a {chr(surrogate)} b"}, ensure_ascii=False)
        return kind, text.encode("utf-8", "surrogatepass")
    if kind == "deep":
        depth = draw(st.sampled_from([1, 50, 900, 5_000, 100_000]))
        return kind, b'{"id": "%s", "text": "t", "n": %s%s}' % (record_id.encode(), b"[" * depth, b"]" * depth)
    if kind == "number_id":
        number = draw(st.sampled_from(["12", "-0", "1e308", "1.5", "NaN", "Infinity", "12345678901234567890123"]))
        return kind, b'{"id": %s, "text": "numbers"}' % number.encode()
    if kind == "duplicate_key":
        key = draw(st.sampled_from(["id", "text", "topic", "extra"]))
        return kind, b'{"id": "%s", "text": "t", "topic": "a", "extra": 1, "%s": "again"}' % (record_id.encode(),
                                                                                            key.encode())
    return kind, json.dumps({"id": record_id, "text": "an ordinary text"}).encode()


class SizeCheckingProducer:
    """aiokafka's own size check at `send`, then the record lands on its topic (see the module docstring)."""

    def __init__(self) -> None:
        from aiokafka.producer.producer import AIOKafkaProducer

        self.checker = AIOKafkaProducer.__new__(AIOKafkaProducer)
        self.checker._key_serializer = self.checker._value_serializer = None
        self.checker._max_request_size = PRODUCER_LIMIT
        self.topics: dict[str, list[tuple[bytes, list[tuple[str, bytes]]]]] = {}

    async def send(self, topic, key, value, partition, timestamp, headers):
        self.checker._serialize(key, value, headers or [])
        self.topics.setdefault(topic, []).append((value, headers or []))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.fixture(scope="module", params=["default", "raised"])
def limit_scorer(request, tiny_bundle_dir):
    """The default bound on extra fields, and one raised over 1 MB so that records reach the producer's limit."""
    from sentiwatch.streamer.inference.scorer import load_scorer

    env = {} if request.param == "default" else {"SENTIWATCH_MAX_EXTRA_FIELDS_BYTES": "2000000"}
    config = load_settings(environ=env)
    return BatchScorer(load_scorer(tiny_bundle_dir, "auto", 1), config, TopicCap(config.topic_cap))


@LIMITS
@given(st.lists(limit_records(), min_size=1, max_size=6))
def test_every_record_at_the_limits_ends_in_exactly_one_place(limit_scorer, batch):
    messages = [RawMessage(raw, "in", 0, offset, 1_700_000_000.0) for offset, (_, raw) in enumerate(batch)]
    producer = SizeCheckingProducer()
    outcome = limit_scorer.score(messages, now=1_700_000_001.0)
    sent = asyncio.run(BatchSender(lambda: producer, "scored", "dlq", pytest.fail).send(outcome, now=1.0))

    scored = [json.loads(value) for value, _ in producer.topics.get("scored", [])]
    letters = [json.loads(value) for value, _ in producer.topics.get("dlq", [])]
    # Count input offsets: each record once, in one place.
    places = Counter([int(dict(headers)["sentiwatch-offset"]) for _, headers in producer.topics.get("scored", [])]
                     + [letter["offset"] for letter in letters])
    assert sorted(places) == list(range(len(batch))) and set(places.values()) == {1}
    assert len(sent.scored) == len(scored) and len(sent.dead) == len(letters)
    for letter in letters:
        assert letter["reason"] in records.REASONS
        raw = batch[letter["offset"]][1] or b""
        assert raw.startswith(base64.b64decode(letter["raw"]))
        assert letter.get("raw_truncated", False) == (len(raw) > records.MAX_DEAD_LETTER_RAW_BYTES)
    for out in sent.scored:
        assert valid_label(out.key)
    for (kind, raw), offset in zip(batch, range(len(batch)), strict=True):
        reason = next((letter["reason"] for letter in letters if letter["offset"] == offset), None)
        if kind == "tombstone":
            assert reason == records.NOT_JSON
        elif kind == "number_id":
            assert reason in (records.WRONG_TYPE, records.NOT_JSON)  # NaN/Infinity are not JSON to every reader
        elif kind == "duplicate_key":
            assert reason == records.DUPLICATE_KEY
        elif kind == "lone_surrogate":
            assert reason == records.NOT_UTF8
        elif kind == "plain":
            assert reason is None
        elif kind == "near_1mb":
            assert reason in (None, records.EXTRA_FIELDS_TOO_LARGE, records.SCORED_TOO_LARGE)
            if len(raw) > 16_384 + 20_000 and limit_scorer._settings.max_extra_fields_bytes == 16_384:
                assert reason == records.EXTRA_FIELDS_TOO_LARGE


def test_a_number_as_id_is_a_wrong_type_and_nan_is_not_json_to_every_reader():
    assert records.validate(b'{"id": 12, "text": "t"}', 0.0, 100).reason == records.WRONG_TYPE
    assert records.validate(b'{"id": "a", "text": "t", "ts": NaN}', 0.0, 100).reason == records.BAD_TIMESTAMP
    assert records.validate(b'{"id": "a", "text": "t", "id": "b"}', 0.0, 100).reason == records.DUPLICATE_KEY


CODECS = ["gzip", "snappy", "lz4", "zstd"]


def hostile_kafka_records(prefix: str) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """(key, value, headers) at the limits: keys empty and large, headers empty, many and large, tombstones,
    a record just under 1 MB that is dead-lettered for its extra fields, and plain valid ones."""
    out: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    for i in range(6):
        value = json.dumps({"id": f"{prefix}-{i}", "text": f"hostile neighbour {i} \u200f\U0001F600"}).encode()
        out.append((b"" if i % 2 else None, value, []))
    out.append((b"k" * 100_000, json.dumps({"id": f"{prefix}-bigkey", "text": "a large key"}).encode(), []))
    out.append((b"h", json.dumps({"id": f"{prefix}-headers", "text": "headers"}).encode(),
                [("", b""), ("x" * 1000, b"\x00\xff" * 5000)] + [(f"h{j}", b"v") for j in range(100)]))
    out.append((b"t", None, [("tombstone", b"")]))
    big = {"id": f"{prefix}-big", "text": "short", "attachment": ""}
    big["attachment"] = "z" * (999_000 - len(json.dumps(big)))
    out.append((None, json.dumps(big).encode(), []))
    out.append((None, b'{"id": "dup", "id": "dup2", "text": "t"}', []))
    return out


def produce_with_aiokafka(brokers: str, topic: str, codec: str, batch) -> None:
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=brokers, compression_type=codec, max_request_size=2_000_000)
        await producer.start()
        try:
            for key, value, headers in batch:
                await producer.send_and_wait(topic, value, key=key, headers=headers)
        finally:
            await producer.stop()

    asyncio.run(run())


def produce_with_librdkafka(brokers: str, topic: str, codec: str, batch) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": brokers, "compression.type": codec, "message.max.bytes": 2_000_000,
                         "enable.idempotence": False})
    failures: list[str] = []
    for key, value, headers in batch:
        producer.produce(topic, value=value, key=key, headers=headers,
                         on_delivery=lambda err, _msg: failures.append(str(err)) if err else None)
        producer.poll(0)
    assert producer.flush(30) == 0 and not failures, failures


@pytest.mark.integration
def test_every_codec_from_two_clients_and_hostile_keys_and_headers_lose_nothing(tiny_bundle_dir, tmp_path):
    with running_broker() as brokers:
        worker = WorkerProcess(tiny_bundle_dir, brokers, tmp_path / "worker.log",
                               env={"SENTIWATCH_BATCH_WITHIN_SECONDS": "0.05"})
        try:
            worker.wait_ready()
            sent = 0
            for client, produce in (("aiokafka", produce_with_aiokafka), ("librdkafka", produce_with_librdkafka)):
                for codec in CODECS:
                    batch = hostile_kafka_records(f"{client}-{codec}")
                    produce(brokers, "sentiwatch.texts", codec, batch)
                    sent += len(batch)
            valid = 8 * 2 * len(CODECS)  # six plain, the large key, the many headers, per client and codec
            scored = consume(brokers, "sentiwatch.scored", valid, timeout=90)
            dead = consume(brokers, "sentiwatch.dlq", sent - valid, timeout=60)
            assert worker.process.poll() is None, worker.log_tail()
            # Count input offsets end to end: each (partition, offset) once, scored or dead-lettered.
            places = Counter((dict(r.headers)["sentiwatch-source"].decode(), int(dict(r.headers)["sentiwatch-offset"]))
                             for r in scored)
            places.update((str(json.loads(r.value)["partition"]), json.loads(r.value)["offset"]) for r in dead)
            assert sum(places.values()) == sent and max(places.values()) == 1, worker.log_tail()
            reasons = Counter(json.loads(r.value)["reason"] for r in dead)
            assert reasons == {records.NOT_JSON: 2 * len(CODECS), records.EXTRA_FIELDS_TOO_LARGE: 2 * len(CODECS),
                               records.DUPLICATE_KEY: 2 * len(CODECS)}
            code, _ = worker.terminate()
            assert code == 0, worker.log_tail()
        finally:
            worker.kill()
