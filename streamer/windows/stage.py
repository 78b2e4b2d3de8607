"""Windows, detection and alerts for batches of scored records: the second stage of the worker.

The scored topic is keyed by the (capped) topic label, so every record of a topic arrives on one
partition and one worker owns that topic's state. State lives in two mappings that are Faust tables
in the worker (plain dicts in tests): `windows` (open windows, written once per batch per topic) and
`status` (detector state, term baseline and closed-window history, written when a window closes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

from sentiwatch.config import Settings
from sentiwatch.streamer.detection.alerts import TermBaseline, build_alert_event, extract_terms, top_terms
from sentiwatch.streamer.detection.detector import DetectorState, WindowStats, step
from sentiwatch.streamer.ops.metrics import WorkerMetrics
from sentiwatch.streamer.scoring.records import parse_timestamp
from sentiwatch.streamer.windows import tumbling as win

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ScoredMessage:
    """A record from the scored topic as the window stage receives it."""

    key: str | None
    value: bytes
    timestamp: float  # Kafka timestamp (the input's, carried over by the score stage)
    source: str = ""  # the input partition it was scored from (a header set by the score stage)
    offset: int | None = None  # the input offset it was scored from (likewise)


def parse_scored(message: ScoredMessage) -> win.ScoredItem | None:
    """The fields the windows need; None for a record this worker did not write (it is skipped)."""
    try:
        value = json.loads(message.value)
        sentiment = value["sentiment"]
        label, scores = sentiment["label"], sentiment["scores"]
        topic = message.key if message.key is not None else str(value["topic"])
        event_time = parse_timestamp(value["ts"]) if value.get("ts") is not None else None
        return win.ScoredItem(topic=topic, event_time=event_time if event_time is not None else message.timestamp,
                              sentiment=str(label), scores=dict(scores), id=str(value.get("id", "")),
                              text=str(value.get("text", "")),
                              terms=tuple(extract_terms(value["text"])) if label == "negative" else (),
                              source=message.source, offset=message.offset)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("skipping a malformed record on the scored topic (%s)", type(exc).__name__)
        return None


class WindowStage:
    def __init__(self, settings: Settings, metrics: WorkerMetrics, windows: MutableMapping[str, Any],
                 status: MutableMapping[str, Any], publish_alert: Callable[[str, dict[str, Any]], None]) -> None:
        self._settings = settings
        self._metrics = metrics
        self._windows = windows
        self._status = status
        self._publish_alert = publish_alert
        self._max_examples = settings.alert_examples if settings.alert_examples_enabled else 0
        # Topics whose partition this worker consumes; only these it may close (others belong to a peer).
        self.owned_topics: set[str] = set()

    def process(self, messages: Sequence[ScoredMessage], now: float | None = None) -> None:
        """Aggregate the batch, then touch each topic's state once."""
        now = time.time() if now is None else now
        items_by_topic: dict[str, list[win.ScoredItem]] = defaultdict(list)
        for item in map(parse_scored, messages):
            if item is not None:
                items_by_topic[item.topic].append(item)
        for topic, items in items_by_topic.items():
            self.owned_topics.add(topic)
            state = self._windows.get(topic) or win.new_topic_state()
            fresh, redelivered = win.drop_counted(state, items)
            if redelivered:
                self._metrics.redelivered_records.inc(redelivered)
            partials = win.aggregate(fresh, self._settings.window_seconds, self._max_examples)
            late = win.merge(state, [partials[key] for key in sorted(partials, key=lambda key: key[1])],
                             self._max_examples)
            if late:
                self._metrics.late_records.inc(late)
            win.advance_watermark(state, win.source_maxima(items)[topic], now, self._settings.window_seconds)
            self._close(topic, state)
            self._windows[topic] = state

    def close_idle(self, now: float | None = None) -> None:
        """Let the watermark of topics that receive nothing follow the wall clock, and close what it passed."""
        now = time.time() if now is None else now
        for topic in sorted(self.owned_topics):
            state = self._windows.get(topic)
            if state is None:
                continue
            win.advance_idle(state, now, self._settings.window_seconds)
            if self._has_closable(state):
                self._close(topic, state)
                self._windows[topic] = state

    def forget_topics(self) -> None:
        """After a rebalance the partitions (and topics) this worker owns may have changed: drop its per-topic
        gauges too, so that only the topic's new owner reports them. Topics come back with their next record."""
        for topic in self.owned_topics:
            for gauge in (self._metrics.negative_ratio, self._metrics.baseline_ratio, self._metrics.spike_score,
                          self._metrics.spike_active):
                with contextlib.suppress(KeyError):
                    gauge.remove(topic)
        self.owned_topics.clear()

    def _has_closable(self, state: dict[str, Any]) -> bool:
        if state["watermark"] is None:
            return False
        limit = state["watermark"] - self._settings.allowed_lateness_seconds
        if any(w["end"] <= limit for w in state["open"].values()):
            return True
        return state["closed_until"] is not None and state["closed_until"] + self._settings.window_seconds <= limit

    def _close(self, topic: str, state: dict[str, Any]) -> None:
        closed = win.close_ready(state, self._settings.window_seconds, self._settings.allowed_lateness_seconds)
        if not closed:
            return
        status = self._status.get(topic) or {"detector": None, "baseline": None, "recent": []}
        detector = DetectorState.from_dict(status["detector"]) if status["detector"] else None
        baseline = TermBaseline.from_dict(status["baseline"]) if status["baseline"] else TermBaseline()
        for window in closed:
            summary = win.window_summary(window)
            stats = WindowStats(topic, window["start"], window["end"], summary["total"], summary["negative"])
            detector, detection = step(detector, stats, self._settings.detector)
            if detection.transition is not None:
                terms = top_terms(window["terms"], summary["negative"], baseline)
                examples = [{"id": e[0], "text": e[1]} for e in window["examples"]] if self._max_examples else []
                self._publish_alert(topic, build_alert_event(detection, stats, terms, examples))
                self._metrics.alerts.labels(topic=topic, state=detection.transition).inc()
            elif not detection.active:
                baseline.update(window["terms"], summary["negative"])
            status["recent"] = win.add_to_history(status["recent"], summary, self._settings.long_window_seconds)
            self._metrics.negative_ratio.labels(topic=topic).set(detection.negative_ratio)
            self._metrics.baseline_ratio.labels(topic=topic).set(detection.baseline_ratio)
            self._metrics.spike_score.labels(topic=topic).set(detection.score)
            self._metrics.spike_active.labels(topic=topic).set(1 if detection.active else 0)
            status["latest"] = {**summary, "score": detection.score, "active": detection.active,
                                "baseline_ratio": detection.baseline_ratio}
        status["detector"] = detector.to_dict()
        status["baseline"] = baseline.to_dict()
        self._status[topic] = status
