"""The realistic series generator and the evaluation harness (NAB scoring from its paper) stay sound."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.detector_social import _nab, _sigmoid, evaluate_series, summarise
from benchmarks.social_series import Event, generate_series
from sentiwatch.detector_config import DetectorConfig


def test_generator_is_deterministic_bursty_and_labelled():
    first, again = generate_series("t", 3, weeks=1, interval=300), generate_series("t", 3, weeks=1, interval=300)
    assert np.array_equal(first.totals, again.totals) and first.events == again.events
    assert (first.negatives <= first.totals).all() and (first.totals >= 0).all()
    assert first.events and all(e.kind in ("major", "minor") for e in first.events)
    assert all(e.multiplier >= 5 and e.end - e.start >= 1800 for e in first.events if e.kind == "major")
    # Heavy tails: the busiest interval is far above the median, as in real mention counts.
    busy = generate_series("t", 4, weeks=1, interval=300)
    assert busy.totals.max() > 10 * max(np.median(busy.totals), 1)
    # The 60 s variant tells the same story on a finer grid.
    fine = generate_series("t", 3, weeks=1, interval=60)
    assert fine.events == first.events and fine.totals.sum() == first.totals.sum()


def test_nab_score_is_100_for_the_perfect_detector_0_for_the_null_one_and_penalises_false_alerts():
    windows = [Event("major", 1000.0, 4000.0, 8.0, 0.0), Event("major", 20000.0, 23000.0, 8.0, 0.0)]
    _, perfect, null = _nab([], windows, [])
    assert null == -2.0 and perfect == pytest.approx(2 * _sigmoid(-1.0))
    early, _, _ = _nab([1000.0, 20000.0], windows, [])
    assert early == pytest.approx(perfect)
    late, _, _ = _nab([4800.0, 20000.0], windows, [])  # the first caught near the end of its window
    assert null < late < early
    far_false, _, _ = _nab([1000.0, 20000.0, 100000.0], windows, [])
    assert far_false == pytest.approx(perfect - 0.11, abs=1e-3)  # far after a window: the full A_FP
    ignored, _, _ = _nab([1000.0, 20000.0, 50000.0], windows, [Event("minor", 49000.0, 52000.0, 3.0, 0.0)])
    assert ignored == pytest.approx(perfect)


def test_harness_on_a_held_out_series_catches_its_major_events():
    result = evaluate_series(generate_series("topic-107", 107, weeks=1, interval=300), DetectorConfig())
    report = summarise([result])
    assert report["major_events"] == 3 and report["major_recall"] == 1.0 and report["false_alerts"] <= 1
    assert report["delay_windows_median"] <= 3 and report["nab_standard"] > 80
