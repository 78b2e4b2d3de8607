"""Scoring one batch of raw input records: validate, one forward pass, resolve topics, build outputs.

No Kafka here: the Faust agent hands in plain `RawMessage`s and sends what comes back, so this is
tested with a real scorer and no broker. A record that cannot be used becomes a dead letter with a
reason code; it never stops the batch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from sentiwatch.config import Settings
from sentiwatch.predictor import Prediction
from sentiwatch.streamer.scoring.records import SCORING_FAILED, Rejected, TextRecord, dead_letter, iso_utc, validate
from sentiwatch.streamer.scoring.topics import TopicCap, Watchlist, resolve_topic

log = logging.getLogger(__name__)

# Batches the worker scores at a time, each on its own thread; their passes share the scorer's pass pool.
# Two keep the cores busy through each batch's serial parts (validation, tokenization, building the
# scored records) and the tail of its passes (measured, batch 32, full-4 int8, 2 cores: one at a time
# 527 records/s, the pass threads 72% busy; two at a time 578 records/s, 86% busy).
BATCHES_SCORED_AT_ONCE = 2


class Scorer(Protocol):
    """What the stage needs from `sentiwatch.streamer.inference.scorer.OnnxScorer`."""

    sentiment_labels: tuple[str, ...]
    topic_labels: tuple[str, ...]
    version: str

    def predict(self, texts: Sequence[str]) -> Prediction: ...


class BatchScoring(Protocol):
    """What the score agent needs to score a batch: `BatchScorer`, or the `ModelSlot` that holds one
    (`streamer/inference/reload.py`) and switches models between batches."""

    def score(self, messages: Sequence[RawMessage], now: float | None = None) -> BatchOutcome: ...


@dataclasses.dataclass(frozen=True)
class RawMessage:
    value: bytes | None
    kafka_topic: str
    partition: int
    offset: int
    timestamp: float  # Kafka record timestamp, epoch seconds


@dataclasses.dataclass(frozen=True)
class ScoredOutput:
    """One record for the scored topic. `key` is the capped topic label: it partitions the scored topic so
    that all of a topic's windows are kept by one worker."""

    key: str
    value: bytes
    timestamp: float  # the input's Kafka timestamp, so the window stage sees the same event time
    sentiment: str
    source: str  # the input partition: the window stage keeps a watermark per source
    offset: int  # the input offset: with `source`, what the window stage de-duplicates redeliveries by
    origin: RawMessage  # the input record: its dead letter, if this record cannot be sent (scoring/delivery.py)
    # `value` before encoding, for what looks at each scored batch in the worker (inference/reload.py's shadow,
    # quality/live.py): they read it here instead of decoding `value` again. Not to be changed: `value` is final.
    record: dict[str, Any] = dataclasses.field(compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class DeadOutput:
    reason: str
    value: bytes


@dataclasses.dataclass(frozen=True)
class BatchOutcome:
    scored: list[ScoredOutput]
    dead: list[DeadOutput]
    inference_seconds: float


class BatchScorer:
    """Holds what lives as long as the worker: the scorer, the compiled watchlist and the topic cap (which
    this scorer's topic labels join as preferred labels)."""

    def __init__(self, scorer: Scorer, settings: Settings, cap: TopicCap) -> None:
        self._scorer = scorer
        self._settings = settings
        self._watchlist = Watchlist(settings.watchlist)
        self._cap = cap
        cap.prefer_model_labels(scorer.topic_labels)

    def score(self, messages: Sequence[RawMessage], now: float | None = None) -> BatchOutcome:
        valid: list[tuple[RawMessage, TextRecord]] = []
        dead: list[DeadOutput] = []
        for message in messages:
            checked = validate(message.value, message.timestamp, self._settings.max_text_bytes,
                               self._settings.max_extra_fields_bytes)
            if isinstance(checked, Rejected):
                dead.append(self._dead(message, checked, now))
            else:
                valid.append((message, checked))
        started = time.perf_counter()
        prediction, failed = self._predict([record.text for _, record in valid])
        inference_seconds = time.perf_counter() - started
        scored_at = iso_utc(time.time() if now is None else now)
        scored: list[ScoredOutput] = []
        for row, (message, record) in enumerate(valid):
            if row in failed:
                dead.append(self._dead(message, Rejected(SCORING_FAILED, failed[row]), now))
                continue
            scored.append(self._scored(record, prediction, row, message, scored_at))
        return BatchOutcome(scored, dead, inference_seconds)

    def _predict(self, texts: list[str]) -> tuple[Prediction, dict[int, str]]:
        """One pass for the batch; if it fails, text by text so one poison text cannot sink the others."""
        try:
            return self._scorer.predict(texts), {}
        except Exception as exc:  # onnxruntime and tokenizers raise their own types
            log.warning("batch of %d texts failed to score (%s: %s); retrying one by one",
                        len(texts), type(exc).__name__, exc)
        sentiment = np.zeros((len(texts), len(self._scorer.sentiment_labels)), dtype=np.float32)
        topic = np.zeros((len(texts), len(self._scorer.topic_labels)), dtype=np.float32)
        truncated = np.zeros(len(texts), dtype=bool)
        failed: dict[int, str] = {}
        for row, text in enumerate(texts):
            try:
                one = self._scorer.predict([text])
            except Exception as exc:
                failed[row] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            sentiment[row], topic[row], truncated[row] = one.sentiment_probs[0], one.topic_probs[0], one.truncated[0]
        return Prediction(sentiment, topic, truncated), failed

    def _scored(self, record: TextRecord, prediction: Prediction, row: int, message: RawMessage,
                scored_at: str) -> ScoredOutput:
        probs = prediction.sentiment_probs[row]
        labels = self._scorer.sentiment_labels
        sentiment = labels[int(np.argmax(probs))]
        topic, source = resolve_topic(record.producer_topic, record.text, prediction.topic_probs[row],
                                      self._scorer.topic_labels, self._watchlist,
                                      self._settings.topic_confidence_threshold)
        value: dict[str, Any] = dict(record.fields)
        value.update(
            sentiment={"label": sentiment, "scores": {label: round(float(p), 6) for label, p in zip(labels, probs,
                                                                                                     strict=True)}},
            topic=topic,
            topic_source=source,
            model_version=self._scorer.version,
            scored_at=scored_at,
        )
        if bool(prediction.truncated[row]):
            value["truncated"] = True
        encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return ScoredOutput(self._cap.label(topic), encoded, message.timestamp, sentiment, str(message.partition),
                           message.offset, message, value)

    def _dead(self, message: RawMessage, rejected: Rejected, now: float | None) -> DeadOutput:
        return dead_output(message, rejected, time.time() if now is None else now)


def dead_output(message: RawMessage, rejected: Rejected, now: float) -> DeadOutput:
    """The dead letter for one input record (raw bytes truncated as `records.dead_letter` says)."""
    record = dead_letter(message.value, rejected, message.kafka_topic, message.partition, message.offset, now)
    return DeadOutput(rejected.reason, json.dumps(record).encode("utf-8"))
