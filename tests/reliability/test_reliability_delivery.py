"""Issue 13: every record read ends on the scored topic or the DLQ, and the committed position never moves past
an unsent record, whatever the producer does.

The producer here is a fault-injecting stand-in written for these tests (Faust's producer cannot be made to
fail on purpose): it fails sends at random points, when it takes a record or when the broker would answer,
with "too large" errors (aiokafka's own classes, wrapped the way Faust wraps them) and with errors the worker
cannot classify. The consumer's commit is modelled the way Faust computes it: the committed offset of a
partition is the end of the run of acked offsets that starts at the previous one. The scorer is a small
deterministic stand-in too: what is under test is the sending, not the model (tests/scoring/test_stream_stages.py
scores with the real ONNX scorer).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import random
from collections.abc import Sequence

import numpy as np
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordTooLargeError,
    RequestTimedOutError,
)
from faust.exceptions import ProducerSendError
from hypothesis import given, settings
from hypothesis import strategies as st

from sentiwatch.config import load_settings
from sentiwatch.predictor import Prediction
from sentiwatch.streamer.scoring import records
from sentiwatch.streamer.scoring.delivery import BatchSender, UnsentRecord, too_large
from sentiwatch.streamer.scoring.in_order import InOrderDelivery
from sentiwatch.streamer.scoring.stage import BatchScorer, RawMessage
from sentiwatch.streamer.scoring.topics import TopicCap

SCORED, DLQ = "t.scored", "t.dlq"


class LengthScorer:
    """Deterministic stand-in scorer: sentiment from the text's length (see the module docstring)."""

    sentiment_labels = ("negative", "neutral", "positive")
    topic_labels = ("business", "sport")
    version = "stand-in"

    def predict(self, texts: Sequence[str]) -> Prediction:
        n = len(texts)
        sentiment = np.zeros((n, 3), dtype=np.float32)
        sentiment[np.arange(n), [len(t) % 3 for t in texts]] = 1.0
        return Prediction(sentiment, np.full((n, 2), 0.5, dtype=np.float32), np.zeros(n, dtype=bool))


@dataclasses.dataclass
class Fault:
    """What the producer does with one send: where it fails (None: it does not) and with what."""

    at: str | None = None  # "take" (producer.send raises) or "ack" (the delivery future fails)
    error: type[Exception] = MessageSizeTooLargeError


class FaultyProducer:
    """A producer that fails the sends `plan` says and otherwise lands the record on `topics` (see module doc)."""

    def __init__(self, plan: dict[int, Fault], topics: dict[str, list[bytes]], rng: random.Random) -> None:
        self.plan = plan
        self.topics = topics
        self.rng = rng
        self.sends = 0
        self.last_landing = 0.0

    async def send(self, topic, key, value, partition, timestamp, headers):
        fault = self.plan.get(self.sends, Fault())
        self.sends += 1
        if fault.at == "take":
            try:
                raise fault.error("injected")
            except Exception as exc:
                raise ProducerSendError(f"Error while sending: {exc!r}") from exc
        loop = asyncio.get_running_loop()
        delivery = loop.create_future()

        def land() -> None:
            if fault.at == "ack":
                delivery.set_exception(fault.error("injected"))
            else:
                self.topics.setdefault(topic, []).append(value)
                delivery.set_result(None)

        # Later, but in the order taken, as a Kafka producer delivers one partition's records.
        self.last_landing = max(self.last_landing, loop.time()) + self.rng.random() * 0.001
        loop.call_at(self.last_landing, land)
        return delivery


def input_record(i: int, big: bool = False) -> bytes:
    """A valid input record; `big`: 999,990 bytes (a short text and a large extra field), so that its scored
    form, which echoes the extra field, is over the producer's 1,000,000-byte limit."""
    value = {"id": f"r{i}", "text": f"text number {i}" + "!" * (i % 7)}
    if big:
        value["blob"] = ""
        value["blob"] = "x" * (999_990 - len(json.dumps(value)))
    return json.dumps(value).encode()


def delivered_ids(topics: dict[str, list[bytes]]) -> list[str]:
    """Ids on the scored topic and in the DLQ (whose `raw` holds the whole original here: no record is big)."""
    ids = [json.loads(v)["id"] for v in topics.get(SCORED, [])]
    return ids + [json.loads(base64.b64decode(json.loads(v)["raw"]))["id"] for v in topics.get(DLQ, [])]


def batch_scorer(**env: str) -> BatchScorer:
    settings = load_settings(environ={"SENTIWATCH_MAX_EXTRA_FIELDS_BYTES": "2000000", **env})
    return BatchScorer(LengthScorer(), settings, TopicCap(settings.topic_cap))


def send_one_batch(plan: dict[int, Fault], raw: list[bytes]) -> tuple[dict[str, list[bytes]], list[str], object]:
    topics: dict[str, list[bytes]] = {}
    fatal: list[str] = []
    outcome = batch_scorer().score([RawMessage(v, "t.texts", 0, i, 1.0) for i, v in enumerate(raw)])
    sender = BatchSender(lambda: FaultyProducer(plan, topics, random.Random(0)), SCORED, DLQ, fatal.append)
    try:
        result = asyncio.run(sender.send(outcome, now=2.0))
    except UnsentRecord as exc:
        result = exc
    return topics, fatal, result


@pytest.mark.parametrize("at", ["take", "ack"])
@pytest.mark.parametrize("error", [MessageSizeTooLargeError, RecordTooLargeError])
def test_a_scored_record_refused_as_too_large_is_dead_lettered_with_its_original_bytes(at, error):
    raw = [input_record(0), input_record(1), input_record(2)]
    topics, fatal, result = send_one_batch({1: Fault(at, error)}, raw)
    assert fatal == []
    assert [json.loads(v)["id"] for v in topics[SCORED]] == ["r0", "r2"]
    (letter,) = [json.loads(v) for v in topics[DLQ]]
    assert letter["reason"] == records.SCORED_TOO_LARGE and letter["offset"] == 1
    assert base64.b64decode(letter["raw"]) == raw[1]
    assert [o.offset for o in result.scored] == [0, 2] and [d.reason for d in result.dead] == ["scored_too_large"]


@pytest.mark.parametrize("at", ["take", "ack"])
@pytest.mark.parametrize("error", [KafkaConnectionError, NotLeaderForPartitionError, RequestTimedOutError])
def test_an_unclassified_send_error_stops_with_one_line_and_nothing_counts_as_sent(at, error):
    topics, fatal, result = send_one_batch({1: Fault(at, error)}, [input_record(i) for i in range(3)])
    assert isinstance(result, UnsentRecord)
    assert len(fatal) == 1 and "\n" not in fatal[0]
    assert error.__name__ in fatal[0] and "t.texts-0@1" in fatal[0]
    assert DLQ not in topics  # not dead-lettered either: it is read again after the restart


def test_a_failed_dead_letter_stops_the_process():
    raw = [b"\xff", input_record(1)]  # the first is a dead letter (not UTF-8): send 1 is its DLQ send
    topics, fatal, result = send_one_batch({1: Fault("ack", KafkaConnectionError)}, raw)
    assert isinstance(result, UnsentRecord) and len(fatal) == 1 and "dead letter (not_utf8)" in fatal[0]


def test_too_large_is_recognised_through_fausts_wrapping():
    try:
        try:
            raise MessageSizeTooLargeError("x")
        except MessageSizeTooLargeError as exc:
            raise ProducerSendError("Error while sending") from exc
    except ProducerSendError as wrapped:
        assert too_large(wrapped)
    assert not too_large(ProducerSendError("Error while sending"))
    assert not too_large(KafkaConnectionError())


def test_the_case_of_issue_13_in_one_batch_a_record_just_under_a_megabyte():
    """A valid record of just under 1 MB whose scored form is over the producer's 1,000,000-byte limit, between
    valid ones: with the real size check of aiokafka's producer (no injected fault)."""
    from aiokafka.producer.producer import AIOKafkaProducer

    raw = [input_record(i) for i in range(20)] + [input_record(20, big=True)] + [input_record(i) for i in range(21, 41)]
    assert len(raw[20]) == 999_990

    class SizeCheckingProducer:
        """aiokafka's own size check (`AIOKafkaProducer._serialize`), then the record lands."""

        def __init__(self) -> None:
            self.checker = AIOKafkaProducer.__new__(AIOKafkaProducer)
            self.checker._key_serializer = self.checker._value_serializer = None
            self.checker._max_request_size = 1_000_000  # Faust's producer_max_request_size
            self.topics: dict[str, list[bytes]] = {}

        async def send(self, topic, key, value, partition, timestamp, headers):
            self.checker._serialize(key, value, headers or [])
            self.topics.setdefault(topic, []).append(value)
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

    producer = SizeCheckingProducer()
    outcome = batch_scorer().score([RawMessage(v, "t.texts", 0, i, 1.0) for i, v in enumerate(raw)])
    assert len(outcome.scored) == 41
    result = asyncio.run(BatchSender(lambda: producer, SCORED, DLQ, pytest.fail).send(outcome, now=2.0))
    assert len(result.scored) == 40 and [d.reason for d in result.dead] == ["scored_too_large"]
    (letter,) = [json.loads(v) for v in producer.topics[DLQ]]
    assert letter["raw_truncated"] is True and letter["raw_bytes"] == len(raw[20]) and letter["offset"] == 20
    assert sorted(json.loads(v)["id"] for v in producer.topics[SCORED]) == sorted(f"r{i}" for i in range(41)
                                                                                  if i != 20)


def test_extra_fields_over_the_bound_are_dead_lettered_before_scoring():
    scorer = batch_scorer(SENTIWATCH_MAX_EXTRA_FIELDS_BYTES="1000")
    raw = [json.dumps({"id": "a", "text": "t", "blob": "x" * 1000}).encode(),
           json.dumps({"id": "b", "text": "t" * 5000, "note": "short"}).encode()]
    outcome = scorer.score([RawMessage(v, "t.texts", 0, i, 1.0) for i, v in enumerate(raw)])
    assert [d.reason for d in outcome.dead] == [records.EXTRA_FIELDS_TOO_LARGE]
    assert "'blob'" in json.loads(outcome.dead[0].value)["detail"]
    assert [json.loads(o.value)["id"] for o in outcome.scored] == ["b"]


class CommitModel:
    """Acks and commits as Faust's consumer does: per partition, the committed offset moves to the end of the run
    of acked offsets starting at it."""

    def __init__(self, partitions: int) -> None:
        self.committed = dict.fromkeys(range(partitions), 0)
        self.acked: dict[int, set[int]] = {p: set() for p in range(partitions)}

    def ack(self, partition: int, offset: int) -> None:
        self.acked[partition].add(offset)
        while self.committed[partition] in self.acked[partition]:
            self.committed[partition] += 1


async def run_worker(log: dict[int, list[bytes]], commits: CommitModel, producer: FaultyProducer,
                     scorer: BatchScorer, rng: random.Random, on_commit) -> bool:
    """One worker incarnation from the committed position; False when it stopped on an unsent record."""
    fatal: list[str] = []
    sender = BatchSender(lambda: producer, SCORED, DLQ, fatal.append)
    batches = InOrderDelivery(3)
    positions = dict(commits.committed)

    async def score(messages: list[RawMessage]):
        await asyncio.sleep(rng.random() * 0.003)  # batches finish scoring out of order, as two threads do
        return scorer.score(messages)

    async def deliver(messages: list[RawMessage], outcome) -> None:
        await sender.send(outcome)
        for message in messages:
            commits.ack(message.partition, message.offset)
        on_commit()

    try:
        while any(positions[p] < len(log[p]) for p in log):
            partition = rng.choice([p for p in log if positions[p] < len(log[p])])
            take = rng.randint(1, 6)
            start = positions[partition]
            messages = [RawMessage(log[partition][o], "t.texts", partition, o, 1.0)
                        for o in range(start, min(start + take, len(log[partition])))]
            positions[partition] += len(messages)
            await batches.submit(asyncio.ensure_future(score(messages)),
                                 lambda outcome, messages=messages: deliver(messages, outcome))
        await batches.drain()  # logs, does not raise, a failed batch: in the worker `on_fatal` has exited by then
    except UnsentRecord:
        pass
    assert len(fatal) <= 1
    return not fatal


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), failure_rate=st.sampled_from([0.01, 0.05, 0.2]))
def test_the_committed_position_never_passes_an_unsent_record(seed, failure_rate):
    rng = random.Random(seed)
    log = {p: [input_record(p * 1000 + i) for i in range(rng.randint(5, 40))] for p in range(2)}
    all_ids = {json.loads(v)["id"] for values in log.values() for v in values}
    topics: dict[str, list[bytes]] = {}
    commits = CommitModel(2)
    scorer = batch_scorer()
    errors = [MessageSizeTooLargeError, RecordTooLargeError, KafkaConnectionError, RequestTimedOutError]

    def check() -> None:
        landed = set(delivered_ids(topics))
        for partition, committed in commits.committed.items():
            below = {json.loads(v)["id"] for v in log[partition][:committed]}
            assert below <= landed, f"committed past unsent records {sorted(below - landed)[:5]}"

    restarts = 0
    while True:
        plan = {i: Fault(rng.choice(["take", "ack"]), rng.choice(errors)) for i in range(400)
                if rng.random() < failure_rate}
        producer = FaultyProducer(plan, topics, rng)
        if asyncio.run(run_worker(log, commits, producer, scorer, rng, check)):
            break
        restarts += 1
        assert restarts < 200
    check()
    assert set(delivered_ids(topics)) == all_ids  # every record read is scored or dead-lettered, none lost
    assert commits.committed == {p: len(values) for p, values in log.items()}
