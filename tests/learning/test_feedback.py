"""Analysts' feedback without Kafka: validation reasons, the latest-label rule, the bounded recent labels and the
agree/correct counts (the broker round trip is tests/learning/test_feedback_integration.py)."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from sentiwatch.streamer.quality.feedback import (
    AGREE,
    CORRECT,
    NO_LABEL,
    UNKNOWN_LABEL,
    UNMATCHED,
    Feedback,
    FeedbackMetrics,
    RecentLabels,
    is_newer,
    latest_by_id,
    merge,
    validate_feedback,
)
from sentiwatch.streamer.scoring import records
from sentiwatch.streamer.scoring.records import Rejected


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\xff\xfe", records.NOT_UTF8),
    (b"{nope", records.NOT_JSON),
    (None, records.NOT_JSON),
    (b"[1]", records.NOT_OBJECT),
    (b'{"sentiment": "negative"}', records.MISSING_ID),
    (b'{"id": 7, "sentiment": "negative"}', records.WRONG_TYPE),
    (b'{"id": "a", "sentiment": 1}', records.WRONG_TYPE),
    (b'{"id": "a", "text": ["x"], "sentiment": "negative"}', records.WRONG_TYPE),
    (b'{"id": "a", "text": "only text"}', NO_LABEL),
    (b'{"id": "a", "sentiment": "  "}', NO_LABEL),
    (b'{"id": "a", "sentiment": "angry"}', UNKNOWN_LABEL),
    (b'{"id": "a", "sentiment": "negative", "at": "yesterday"}', records.BAD_TIMESTAMP),
])
def test_invalid_feedback_is_rejected_with_its_reason(raw, reason):
    checked = validate_feedback(raw)
    assert isinstance(checked, Rejected) and checked.reason == reason, checked


def test_valid_feedback_is_normalised():
    checked = validate_feedback(json.dumps({"id": "x1", "sentiment": " Negative ", "topic": " Banks ",
                                            "by": "ana", "at": "2026-11-29T10:00:00Z", "extra": 1}).encode())
    assert checked == Feedback("x1", "negative", "Banks", None, "ana", 1795946400.0)
    topic_only = validate_feedback(b'{"id": "x2", "topic": "tech", "text": "  chips  "}')
    assert isinstance(topic_only, Feedback) and topic_only.sentiment is None and topic_only.text == "  chips  "


def test_latest_label_per_id():
    def fb(label: str, at: float | None) -> Feedback:
        return Feedback("x", label, None, None, None, at)

    assert is_newer(fb("negative", None), None)
    assert is_newer(fb("positive", 20.0), fb("negative", 10.0))
    assert not is_newer(fb("positive", 5.0), fb("negative", 10.0))  # a late-arriving older label loses
    assert is_newer(fb("positive", 5.0), fb("negative", None))  # dated beats undated
    assert not is_newer(fb("positive", None), fb("negative", 10.0))
    assert is_newer(fb("positive", None), fb("negative", None))  # undated: read order
    stream = [fb("negative", 10.0), Feedback("y", "neutral", None, None, None, None), fb("positive", 30.0),
              fb("neutral", 20.0), Feedback("x", None, "tech", "the text", "bo", None)]
    kept = latest_by_id(stream)
    # The newest sentiment stays; the later topic-only label adds its topic and text without erasing it.
    assert kept["x"] == Feedback("x", "positive", "tech", "the text", "bo", 30.0)
    assert kept["y"].sentiment == "neutral"
    assert merge(kept["x"], Feedback("x", "negative", None, None, "cy", 40.0)) == Feedback(
        "x", "negative", "tech", "the text", "cy", 40.0)


def test_recent_labels_are_bounded_and_keep_the_newest():
    recent = RecentLabels(3)
    recent.remember([("a", "negative"), ("b", "neutral"), ("c", "positive")])
    recent.remember([("a", "positive"), ("d", "neutral")])  # a is refreshed, so b is the oldest and goes
    assert len(recent) == 3
    assert recent.get("b") is None and recent.get("a") == "positive" and recent.get("d") == "neutral"
    off = RecentLabels(0)
    off.remember([("a", "negative")])
    assert off.get("a") is None


def test_metrics_count_agreements_and_corrections_per_label():
    registry = CollectorRegistry()
    metrics = FeedbackMetrics(registry)
    assert metrics.count(Feedback("a", "negative", None, None, None, None), "negative") == AGREE
    assert metrics.count(Feedback("b", "negative", None, None, None, None), "neutral") == CORRECT
    assert metrics.count(Feedback("c", "positive", None, None, None, None), None) == UNMATCHED
    assert metrics.count(Feedback("d", None, "tech", None, None, None), "neutral") is None

    def value(label: str, verdict: str) -> float | None:
        return registry.get_sample_value("sentiwatch_feedback_total", {"label": label, "verdict": verdict})

    assert value("negative", AGREE) == 1 and value("negative", CORRECT) == 1 and value("positive", UNMATCHED) == 1
    assert value("neutral", AGREE) == 0  # exported from the start
    assert registry.get_sample_value("sentiwatch_topic_feedback_total") == 1
