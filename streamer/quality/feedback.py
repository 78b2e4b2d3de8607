"""Analysts' labels (`sentiwatch.feedback`): validation, which label for an id is the latest, and the live
accuracy they measure. Pure code, no Kafka: the worker's feedback agent and `sentiwatch feedback export`
both go through here, so a record the worker dead-letters is one the export leaves out.

A feedback record says what a scored record should have been labelled: `{"id", "text"?, "sentiment"?,
"topic"?, "by"?, "at"?}`. It needs a label (sentiment or topic, or both); `text` is only needed when the
scored record it refers to is no longer in the scored topic.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from sentiwatch.labels import SENTIMENT_LABELS
from sentiwatch.streamer.scoring.records import (
    BAD_TIMESTAMP,
    MISSING_ID,
    NOT_JSON,
    NOT_OBJECT,
    NOT_UTF8,
    WRONG_TYPE,
    Rejected,
    parse_timestamp,
)

# Dead-letter reasons only feedback has (metric label values, like records.REASONS).
NO_LABEL = "no_label"
UNKNOWN_LABEL = "unknown_label"
FEEDBACK_REASONS: tuple[str, ...] = (NO_LABEL, UNKNOWN_LABEL)

# How an analyst's sentiment label relates to the model's: the `verdict` label of sentiwatch_feedback_total.
AGREE = "agree"
CORRECT = "correct"
UNMATCHED = "unmatched"  # the model's label for that id is not known here (scored elsewhere or long ago)
VERDICTS: tuple[str, ...] = (AGREE, CORRECT, UNMATCHED)

_STRINGS = ("text", "sentiment", "topic", "by")


@dataclasses.dataclass(frozen=True)
class Feedback:
    """One valid analyst label. `at` is epoch seconds (None when the analyst's tool sent none)."""

    id: str
    sentiment: str | None
    topic: str | None
    text: str | None
    by: str | None
    at: float | None

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


def validate_feedback(raw: bytes | None) -> Feedback | Rejected:
    """Check one `sentiwatch.feedback` record value; never raises."""
    if raw is None:
        return Rejected(NOT_JSON, "record has no value")
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Rejected(NOT_UTF8, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
    except (json.JSONDecodeError, RecursionError):
        return Rejected(NOT_JSON, "invalid JSON")
    if not isinstance(value, dict):
        return Rejected(NOT_OBJECT, f"expected a JSON object, got {type(value).__name__}")
    return validate_feedback_fields(value)


def validate_feedback_fields(value: dict[str, Any]) -> Feedback | Rejected:
    record_id = value.get("id")
    if record_id is None or record_id == "":
        return Rejected(MISSING_ID, "field 'id' is missing or empty")
    if not isinstance(record_id, str):
        return Rejected(WRONG_TYPE, f"field 'id' must be a string, got {type(record_id).__name__}")
    for name in _STRINGS:
        if value.get(name) is not None and not isinstance(value[name], str):
            return Rejected(WRONG_TYPE, f"field {name!r} must be a string, got {type(value[name]).__name__}")
    sentiment = (value.get("sentiment") or "").strip().lower() or None
    topic = (value.get("topic") or "").strip() or None
    if sentiment is None and topic is None:
        return Rejected(NO_LABEL, "feedback needs a 'sentiment' or a 'topic' label")
    if sentiment is not None and sentiment not in SENTIMENT_LABELS:
        return Rejected(UNKNOWN_LABEL, f"field 'sentiment' must be one of {', '.join(SENTIMENT_LABELS)}, "
                                       f"got {value['sentiment'][:40]!r}")
    at = None
    if value.get("at") is not None:
        at = parse_timestamp(value["at"])
        if at is None:
            return Rejected(BAD_TIMESTAMP, "field 'at' is neither ISO-8601 nor epoch seconds")
    text = value.get("text") if isinstance(value.get("text"), str) and value["text"].strip() else None
    return Feedback(record_id, sentiment, topic, text, value.get("by") or None, at)


def is_newer(incoming: Feedback, kept: Feedback | None) -> bool:
    """Whether `incoming` replaces the label kept for its id: the later `at` wins, a dated label beats an
    undated one, and between two undated ones the one read later (Kafka order) wins."""
    if kept is None:
        return True
    if incoming.at is None:
        return kept.at is None
    return kept.at is None or incoming.at >= kept.at


def merge(kept: Feedback | None, incoming: Feedback) -> Feedback:
    """The label kept for an id after `incoming`: each field (sentiment, topic, text, by, at) from the newer of the
    two where it has one, else from the other, so a topic label does not erase an earlier sentiment label."""
    if kept is None:
        return incoming
    newer, older = (incoming, kept) if is_newer(incoming, kept) else (kept, incoming)
    fields = {name: getattr(newer, name) if getattr(newer, name) is not None else getattr(older, name)
              for name in ("sentiment", "topic", "text", "by")}
    return Feedback(kept.id, at=newer.at if newer.at is not None else older.at, **fields)


def latest_by_id(records: list[Feedback]) -> dict[str, Feedback]:
    """The label kept per id from feedback in read order (what the worker's table ends with)."""
    kept: dict[str, Feedback] = {}
    for record in records:
        kept[record.id] = merge(kept.get(record.id), record)
    return kept


def verdict(analyst: str, model: str | None) -> str:
    if model is None:
        return UNMATCHED
    return AGREE if analyst == model else CORRECT


class RecentLabels:
    """The sentiment label this worker gave to its most recently scored ids, bounded to `capacity` ids, so
    feedback that omits the text can still be compared with what the model said."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._labels: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._lock = threading.Lock()  # filled from the scoring threads, read from the event loop

    def remember(self, pairs: list[tuple[str, str]]) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            for record_id, label in pairs:
                self._labels[record_id] = label
                self._labels.move_to_end(record_id)
            while len(self._labels) > self.capacity:
                self._labels.popitem(last=False)

    def get(self, record_id: str) -> str | None:
        with self._lock:
            return self._labels.get(record_id)

    def __len__(self) -> int:
        return len(self._labels)


class FeedbackMetrics:
    """`sentiwatch_feedback_total{label, verdict}`: analysts' sentiment labels against the model's; the live
    accuracy is agree / (agree + correct)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.feedback = Counter("sentiwatch_feedback", "Analysts' sentiment labels by the model's verdict",
                                ["label", "verdict"], registry=registry)
        self.topic_feedback = Counter("sentiwatch_topic_feedback", "Analysts' topic labels (values not exported)",
                                      registry=registry)
        for label in SENTIMENT_LABELS:
            for name in VERDICTS:
                self.feedback.labels(label=label, verdict=name)

    def count(self, feedback: Feedback, model_label: str | None) -> str | None:
        """Count one valid feedback record; returns its sentiment verdict (None for a topic-only label)."""
        if feedback.topic is not None:
            self.topic_feedback.inc()
        if feedback.sentiment is None:
            return None
        found = verdict(feedback.sentiment, model_label)
        self.feedback.labels(label=feedback.sentiment, verdict=found).inc()
        return found
