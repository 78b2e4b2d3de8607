"""The demo's plan, through the detector with default settings: exactly one alert, for the surging topic.

The demo's labels come from the model at run time; here the built-in texts' own labels stand in for them
(pure code, no Kafka), so a change of detector defaults that would break the demo fails here, quickly.
"""

from __future__ import annotations

import random
from collections import Counter

from sentiwatch.detector_config import DetectorConfig
from sentiwatch.streamer.detection.detector import WindowStats, step
from sentiwatch.streamer.scoring.topics import Watchlist
from sentiwatch.tools.demo import demo_rows
from sentiwatch.tools.demo_stream import DEMO_WATCHLIST, DemoPlan, build_demo_stream

START = 1_767_225_600.0


def test_demo_plan_opens_one_alert_for_its_surging_topic_and_none_for_the_others():
    rows = demo_rows()
    truth = {row["text"]: row["sentiment"] for row in rows}
    watchlist, plan = Watchlist(DEMO_WATCHLIST), DemoPlan()
    surge = range(plan.normal_before, plan.normal_before + plan.surge_windows)
    for seed in range(2):
        counts: Counter[tuple[str, int, str]] = Counter()
        for record in build_demo_stream(rows, plan, start=START, rng=random.Random(seed)):
            window, topic = int((record["ts"] - START) // plan.window_seconds), watchlist.match(record["text"])
            counts[(topic, window, "total")] += 1
            counts[(topic, window, "negative")] += truth[record["text"]] == "negative"
        for topic in DEMO_WATCHLIST:
            state, transitions = None, []
            for window in range(plan.windows):
                start = START + window * plan.window_seconds
                stats = WindowStats(topic, start, start + plan.window_seconds, counts[(topic, window, "total")],
                                    counts[(topic, window, "negative")])
                state, detection = step(state, stats, DetectorConfig())
                if detection.transition in ("open", "resolved"):
                    transitions.append((window, detection.transition))
            if topic == plan.surge_topic:
                assert [t for _, t in transitions] == ["open", "resolved"], (seed, transitions)
                assert transitions[0][0] in surge and transitions[1][0] < plan.windows
            else:
                assert transitions == [], (seed, topic, transitions)
