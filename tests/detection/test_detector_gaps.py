"""One rule for gaps: the live worker's windows and `sentiwatch backtest` give the detector the same windows.

A gap (no records at all) reaches the detector as empty windows, at most MAX_GAP_WINDOWS of them in a row;
the detector tells an outage (no texts where texts are expected) from calm. Pure code, no Kafka.
"""

from __future__ import annotations

import numpy as np

from sentiwatch.streamer.detection.backtest import SeriesPoint, run_detector
from sentiwatch.streamer.detection.detector import MAX_GAP_WINDOWS, DetectorConfig, DetectorState, WindowStats, step
from sentiwatch.streamer.windows import tumbling as win

SIZE = 60
T0 = 1_767_225_600
CONFIG = DetectorConfig()


def counts_with_gaps(seed: int = 0) -> dict[int, tuple[int, int]]:
    """Window index -> (total, negative) for 400 windows of about 20 texts, with a short and a long outage."""
    rng = np.random.default_rng(seed)
    counts = {}
    for i in range(400):
        if 150 <= i < 160 or 220 <= i < 320:  # 10 windows, then 100 windows (more than MAX_GAP_WINDOWS) missing
            continue
        total = int(rng.poisson(20))
        counts[i] = (total, int(rng.binomial(total, 0.3)))
    return counts


def live(counts: dict[int, tuple[int, int]]) -> tuple[DetectorState | None, list[WindowStats]]:
    """The worker's path: records -> aggregate/merge -> close_ready -> step, one batch per window."""
    state = win.TopicWindows()
    detector: DetectorState | None = None
    fed: list[WindowStats] = []
    for i, (total, negative) in sorted(counts.items()):
        items = [win.ScoredItem("acme", T0 + i * SIZE + j * 0.5, "negative" if j < negative else "neutral", {},
                                f"{i}-{j}", "text") for j in range(total)]
        if items:
            win.merge(state, win.aggregate(items, SIZE, 0).values(), 0)
        state.watermark = T0 + (i + 1) * SIZE  # the next record's time: this window may close
        for window in win.close_ready(state, SIZE, 0):
            summary = window.summary()
            stats = WindowStats("acme", window.start, window.end, summary.total, summary.negative)
            detector, _ = step(detector, stats, CONFIG)
            fed.append(stats)
    return detector, fed


def test_worker_and_backtest_feed_the_detector_the_same_windows_across_gaps():
    counts = counts_with_gaps()
    live_state, fed = live(counts)
    # The long gap is cut to MAX_GAP_WINDOWS empty windows, the short one filled.
    starts = [w.window_start for w in fed]
    assert len(fed) == len(counts) + 10 + MAX_GAP_WINDOWS
    assert T0 + 155 * SIZE in starts and T0 + 230 * SIZE not in starts and T0 + 300 * SIZE in starts

    points = [SeriesPoint(i, T0 + i * SIZE, total, negative) for i, (total, negative) in sorted(counts.items())]
    # And what the backtest reports for each row is what the live detector said for that window.
    verdicts = run_detector(points, CONFIG, topic="acme", interval=SIZE)
    again: DetectorState | None = None
    by_start = {}
    for window in fed:
        again, by_start[window.window_start] = step(again, window, CONFIG)
    assert again == live_state
    assert verdicts == [by_start[point.timestamp] for point in points]
    assert any(d.outage for d in by_start.values())  # the long gap on a topic of 20 texts a window


def test_an_outage_in_the_live_worker_does_not_drag_the_baseline_down_or_alert_after():
    counts = counts_with_gaps(seed=1)
    state, fed = live(counts)
    before, _ = live({i: c for i, c in counts.items() if i < 220})
    assert abs(state.level - before.level) / before.level < 0.3
    detector: DetectorState | None = None
    opened = []
    for window in fed:
        detector, detection = step(detector, window, CONFIG)
        if detection.transition == "open":
            opened.append(window.window_start)
    assert opened == []
