"""Windows, detection and alerts for batches of scored records: the second stage of the worker.

The scored topic is keyed by the (capped) topic label, so every record of a topic arrives on one
partition and one worker owns that topic's state. All of a topic's state — its open windows with the
input offsets they counted, the detector, the term baseline and the closed-window history — is one
typed `TopicState`, written to one table entry (a Faust table in the worker, a dict in tests) once per
batch: a crash can never leave the counted offsets and the detector out of step with each other.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from sentiwatch.config import Settings
from sentiwatch.streamer.detection.alerts import TermBaseline, extract_terms
from sentiwatch.streamer.detection.detector import DetectorState, WindowStats, step
from sentiwatch.streamer.ops.metrics import WorkerMetrics
from sentiwatch.streamer.scoring.records import parse_timestamp
from sentiwatch.streamer.windows import tumbling as win
from sentiwatch.streamer.windows.report import TopicReporter

log = logging.getLogger(__name__)
# The producer's default partitioner, which places both the scored records and the table entries by key.
_PARTITIONER = DefaultPartitioner()


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


STATE_VERSION = 1


@dataclasses.dataclass
class TopicState:
    """Everything the worker keeps about one topic, stored as one versioned plain dict. The typed parts
    write exactly the dict version 1 has always held, so states already in the table load unchanged."""

    windows: win.TopicWindows = dataclasses.field(default_factory=win.TopicWindows)
    detector: DetectorState | None = None
    baseline: TermBaseline = dataclasses.field(default_factory=TermBaseline)
    recent: list[win.WindowSummary] = dataclasses.field(default_factory=list)  # closed-window history
    latest: win.WindowVerdict | None = None  # the newest closed window with its verdict

    def to_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "windows": self.windows.to_dict(),
                "detector": self.detector.to_dict() if self.detector else None,
                "baseline": self.baseline.to_dict(), "recent": [summary.to_dict() for summary in self.recent],
                "latest": self.latest.to_dict() if self.latest else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TopicState:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"topic state version {data.get('version')!r} is not one this worker knows "
                             f"({STATE_VERSION})")
        return cls(windows=win.TopicWindows.from_dict(data["windows"]),
                   detector=DetectorState.from_dict(data["detector"]) if data["detector"] else None,
                   baseline=TermBaseline.from_dict(data["baseline"]),
                   recent=[win.WindowSummary.from_dict(summary) for summary in data["recent"]],
                   latest=win.WindowVerdict.from_dict(data["latest"]) if data["latest"] else None)


class _View(Mapping[str, TopicState]):
    """A read-only view of every topic's state, decoded from the table, for /status."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        self._table = table

    def __getitem__(self, topic: str) -> TopicState:
        value = self._table[topic]
        if value is None:
            raise KeyError(topic)
        return TopicState.from_dict(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


class WindowStage:
    def __init__(self, settings: Settings, metrics: WorkerMetrics, states: MutableMapping[str, Any],
                 publish_alert: Callable[[str, dict[str, Any]], None]) -> None:
        self._settings = settings
        self._metrics = metrics
        self._states = states
        self._max_examples = settings.alert_examples if settings.alert_examples_enabled else 0
        self._reporter = TopicReporter(metrics, publish_alert, with_examples=self._max_examples > 0)
        # Topics whose partition this worker consumes; only these it may close (others belong to a peer).
        self.owned_topics: set[str] = set()
        # The scored topic's partitions assigned to this worker, and how many it has: topics recovered into
        # the table for these partitions are owned even if no record of theirs arrives (a quiet topic).
        self._assigned: set[int] = set()
        self._partition_count = 0
        # What /status reads: each topic's windows, closed-window history and latest verdict.
        self.topics_view: Mapping[str, TopicState] = _View(states)

    def process(self, messages: Sequence[ScoredMessage], now: float | None = None) -> None:
        """Aggregate the batch, then read and write each topic's state once."""
        now = time.time() if now is None else now
        items_by_topic: dict[str, list[win.ScoredItem]] = defaultdict(list)
        for item in map(parse_scored, messages):
            if item is not None:
                items_by_topic[item.topic].append(item)
        for topic, items in items_by_topic.items():
            self.owned_topics.add(topic)
            state = self._load(topic)
            fresh, redelivered = win.drop_counted(state.windows, items)
            if redelivered:
                self._metrics.redelivered_records.inc(redelivered)
            partials = win.aggregate(fresh, self._settings.window_seconds, self._max_examples)
            late = win.merge(state.windows, [partials[key] for key in sorted(partials, key=lambda key: key[1])],
                             self._max_examples)
            if late:
                self._metrics.late_records.inc(late)
            win.advance_watermark(state.windows, win.source_maxima(items)[topic], now, self._settings.window_seconds)
            self._close(topic, state)
            self._states[topic] = state.to_dict()  # one write: counted offsets and detector move together

    def close_idle(self, now: float | None = None) -> None:
        """Let the watermark of topics whose watermark stopped moving follow the wall clock, and close what it
        passed; topics recovered for this worker's partitions are adopted first."""
        now = time.time() if now is None else now
        self._adopt_recovered()
        for topic in sorted(self.owned_topics):
            if self._states.get(topic) is None:
                continue
            state = self._load(topic)
            win.advance_idle(state.windows, now, self._settings.window_seconds)
            if win.has_closable(state.windows, self._settings.window_seconds,
                                self._settings.allowed_lateness_seconds):
                self._close(topic, state)
                self._states[topic] = state.to_dict()

    def assign(self, partitions: set[int], partition_count: int) -> None:
        """After a rebalance: the scored topic's partitions this worker now consumes (of partition_count)."""
        self._assigned = set(partitions)
        self._partition_count = partition_count
        self._adopt_recovered()

    def _adopt_recovered(self) -> None:
        """Own every topic in the table whose key maps to an assigned partition (the producer's partitioner,
        as for the scored records): after a restart a quiet topic's open alert still resolves and /status
        still shows it. Standby copies of peers' partitions are in the table too, and are left alone."""
        if not self._assigned or not self._partition_count:
            return
        partitions = list(range(self._partition_count))
        for topic in list(self._states):
            if topic not in self.owned_topics and _PARTITIONER(topic.encode("utf-8"), partitions, partitions) \
                    in self._assigned:
                self.owned_topics.add(topic)

    def _load(self, topic: str) -> TopicState:
        value = self._states.get(topic)
        return TopicState() if value is None else TopicState.from_dict(value)

    def forget_topics(self) -> None:
        """After a rebalance the partitions (and topics) this worker owns may have changed: drop its per-topic
        gauges too, so that only the topic's new owner reports them. Topics come back with their next record, or
        from the table when the next assignment gives their partition back (`assign`)."""
        self._reporter.forget(self.owned_topics)
        self.owned_topics.clear()
        self._assigned = set()

    def _close(self, topic: str, state: TopicState) -> None:
        closed = win.close_ready(state.windows, self._settings.window_seconds,
                                 self._settings.allowed_lateness_seconds)
        for window in closed:
            summary = window.summary()
            stats = WindowStats(topic, window.start, window.end, summary.total, summary.negative)
            state.detector, detection = step(state.detector, stats, self._settings.detector)
            self._reporter.report(window, stats, detection, state.baseline)
            if detection.transition is None and not detection.active:
                state.baseline.update(window.terms, summary.negative)  # calm windows teach the term baseline
            state.recent = win.add_to_history(state.recent, summary, self._settings.long_window_seconds)
            state.latest = win.WindowVerdict(summary, detection.score, detection.active, detection.baseline_ratio)
