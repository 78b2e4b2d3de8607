"""What the window stage tells the outside about a closed window: the alert record and the per-topic gauges.

Kept apart from the stage, which aggregates and drives the detector, so that each has one job; the
stage calls `report` once per closed window and `forget` after a rebalance.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from sentiwatch.streamer.detection.alerts import TermBaseline, build_alert_event, top_terms
from sentiwatch.streamer.detection.detector import Detection, WindowStats
from sentiwatch.streamer.ops.metrics import WorkerMetrics
from sentiwatch.streamer.windows.tumbling import Window


class TopicReporter:
    """Publishes an alert record on each alert transition and keeps the topic's gauges current."""

    def __init__(self, metrics: WorkerMetrics, publish_alert: Callable[[str, dict[str, Any]], None],
                 with_examples: bool) -> None:
        self._metrics = metrics
        self._publish_alert = publish_alert
        self._with_examples = with_examples

    def report(self, window: Window, stats: WindowStats, detection: Detection, baseline: TermBaseline) -> None:
        """`window` is the closed window itself: its terms and examples name the surge's reasons."""
        topic = stats.topic
        if detection.transition is not None:
            terms = top_terms(window.terms, stats.negative, baseline)
            examples = [{"id": e.id, "text": e.text} for e in window.examples] if self._with_examples else []
            self._publish_alert(topic, build_alert_event(detection, stats, terms, examples))
            self._metrics.alerts.labels(topic=topic, state=detection.transition).inc()
        self._metrics.negative_ratio.labels(topic=topic).set(detection.negative_ratio)
        self._metrics.baseline_ratio.labels(topic=topic).set(detection.baseline_ratio)
        self._metrics.spike_score.labels(topic=topic).set(detection.score)
        self._metrics.spike_active.labels(topic=topic).set(1 if detection.active else 0)

    def forget(self, topics: Iterable[str]) -> None:
        """Drop these topics' gauges, so that only a topic's new owner reports them after a rebalance."""
        for topic in topics:
            for gauge in (self._metrics.negative_ratio, self._metrics.baseline_ratio, self._metrics.spike_score,
                          self._metrics.spike_active):
                with contextlib.suppress(KeyError):
                    gauge.remove(topic)
