"""The oracle of benchmarks/detector_oracle.py scores openings as the detector's harness does, and the generator's
hidden truth it relies on is consistent with the counts it generated."""

from __future__ import annotations

import numpy as np

from benchmarks.detector_oracle import SeedStats, score
from benchmarks.social_series import generate_series

INTERVAL = 60.0


def stats_with(rows_over: list[int], event_row: int = 100) -> SeedStats:
    """A 2-day series of one major event starting half-way through `event_row`, over the threshold at `rows_over`."""
    rows = 2 * 1440
    start = event_row * INTERVAL + 30.0
    events = np.array([(start, start + 3600.0, 0.0, 8.0, True)])
    candidates = np.array(rows_over, dtype=int)
    return SeedStats(candidates, np.full(len(candidates), 3.0), np.full(len(candidates), 3.0), rows, events,
                     np.array([2.0]), 0.0, 0)


def test_an_opening_in_the_row_that_holds_the_start_catches_the_event_with_delay_0():
    # The row's timestamp is before the event's start, so the opening also counts as false, as in
    # benchmarks/detector_social.py (an alert active when the event begins catches it).
    result, majors = score(stats_with([100, 101]), INTERVAL, 2.5)
    assert majors[0].delay == 0 and len(result.false_opens) == 1


def test_a_later_opening_gives_its_delay_and_a_threshold_above_the_stat_misses():
    result, majors = score(stats_with([103, 104]), INTERVAL, 2.5)
    assert majors[0].delay == 3 and result.false_opens == []
    _, missed = score(stats_with([103, 104]), INTERVAL, 3.5)
    assert missed[0].delay is None


def test_the_hidden_truth_matches_the_generated_counts():
    series = generate_series("t", 5, weeks=1, interval=300)
    truth = series.truth
    assert truth is not None and len(truth.background) == len(series.totals) * 5
    assert (truth.negative_rate <= truth.background + 1e-12).all() and len(truth.event_levels) == len(series.events)
    # Outside cascades and events the counts are Poisson around the truth: over the whole series the totals are
    # at least the background's sum and not far above it (cascades and events only add).
    expected = truth.background.sum()
    assert expected - 4 * np.sqrt(expected) < series.totals.sum() < 3 * expected
    again = generate_series("t", 5, weeks=1, interval=300).truth
    assert np.array_equal(again.background, truth.background) and again.event_levels == truth.event_levels
