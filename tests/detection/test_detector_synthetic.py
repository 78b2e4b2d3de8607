"""The synthetic benchmark's generator and scoring stay sound (a small run; the full one is a script)."""

from __future__ import annotations

import numpy as np

from benchmarks.detector_synthetic import evaluate
from benchmarks.synthetic import count_series, generate
from sentiwatch.streamer.detection.detector import DetectorConfig


def test_generator_is_deterministic_and_its_ground_truth_consistent():
    first, again = generate(3, 2880, seed=5), generate(3, 2880, seed=5)
    assert all(np.array_equal(a.negatives, b.negatives) for a, b in zip(first, again, strict=True))
    for stream in first:
        assert (stream.negatives <= stream.totals).all() and (stream.totals >= 0).all()
        assert stream.surges, "about two surges a day expected"
        for surge in stream.surges:
            assert 0 < surge.start <= surge.first_full < surge.end <= len(stream.totals)
            assert 1.5 <= surge.multiplier <= 5 and surge.kind in ("share", "volume")
    assert all(not stream.surges for stream in generate(2, 2880, seed=5, surges_per_day=0))


def test_small_benchmark_run_catches_surges_without_false_alerts():
    config = DetectorConfig()
    report = evaluate(generate(3, 2 * 1440, seed=5), config)
    assert report["target_surges"] >= 5
    assert report["recall_target"] >= 0.8 and report["delay_windows_median"] <= 2
    assert report["false_alerts"] == 0 and report["duplicate_opens_within_a_surge"] == 0
    quiet = evaluate(generate(3, 2 * 1440, seed=6, surges_per_day=0), config)
    assert quiet["false_alerts"] == 0


def test_count_series_for_the_backtest_example():
    rows, spikes = count_series(days=2, interval_seconds=300, seed=3)
    assert len(rows) == 576 and rows[0][0] == "2026-01-01T00:00:00Z"
    assert spikes and all(value >= 0 for _, value in rows)
