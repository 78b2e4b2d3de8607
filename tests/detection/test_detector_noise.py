"""How the detector learns a topic's noise: the long scales' pooled noise, and calm versus bursty topics."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from sentiwatch.streamer.detection.detector import DetectorConfig, DetectorState, WindowStats, step

CONFIG = DetectorConfig()
START = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 1440  # 60-second windows


def run(totals: np.ndarray, negatives: np.ndarray, state: DetectorState | None = None, start: int = 0):
    opened = []
    for i, (total, negative) in enumerate(zip(totals.tolist(), negatives.tolist(), strict=True), start=start):
        window = WindowStats("acme", START + i * 60.0, START + (i + 1) * 60.0, total, negative)
        state, detection = step(state, window, CONFIG)
        if detection.transition == "open":
            opened.append(i)
    return state, opened


def jittered(windows: int, volume: float, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent log-normal jitter per window around a flat level: noisy windows, quiet hours."""
    rng = np.random.default_rng(seed)
    totals = rng.poisson(volume * np.exp(rng.normal(0, 0.15, windows)))
    return totals, rng.binomial(totals, share)


def run_detections(totals: np.ndarray, negatives: np.ndarray, state: DetectorState | None, start: int = 0,
                   seconds: float = 60.0):
    found = []
    for i, (total, negative) in enumerate(zip(totals.tolist(), negatives.tolist(), strict=True), start=start):
        window = WindowStats("acme", START + i * seconds, START + (i + 1) * seconds, total, negative)
        state, detection = step(state, window, CONFIG)
        found.append(detection)
    return state, found


def test_the_hour_s_noise_is_learned_as_independent_where_windows_only_jitter():
    # 50 texts a minute, 20 % negative, independent jitter: an hour's sum is far quieter than sixty
    # windows moving together, and the detector learns so (the long scales become more sensitive; the
    # old-generator benchmark's recall rose with it, docs/benchmarks.md). Before learning, the bound is
    # the fully correlated one.
    totals, negatives = jittered(int(1.5 * DAY), volume=50, share=0.2, seed=3)
    state, found = run_detections(totals, negatives, None)
    assert not any(d.transition == "open" for d in found)
    young, _ = run_detections(totals[:240], negatives[:240], None)
    assert young.pooled_dispersion[0] >= 0.5 * young.dispersion, "starts near the correlated bound"
    assert 0 <= state.pooled_dispersion[0] < 0.5 * state.dispersion, "learned as (nearly) independent"


def test_a_wandering_level_keeps_the_long_scales_cautious():
    # The same topic whose level wanders by +-30 % over hours (AR(1), four-hour time constant): hour sums
    # are as noisy as their windows together, and the learned value stays near the correlated bound.
    rng = np.random.default_rng(5)
    windows = int(1.5 * DAY)
    phi = np.exp(-1 / 240)
    wander = np.zeros(windows)
    for i in range(1, windows):
        wander[i] = phi * wander[i - 1] + rng.normal(0, 0.3 * np.sqrt(1 - phi**2))
    totals = rng.poisson(50 * np.exp(wander))
    state, opened = run(totals, rng.binomial(totals, 0.2))
    jitter_state, _ = run(*jittered(windows, volume=50, share=0.2, seed=3))
    assert opened == []
    assert state.pooled_dispersion[0] > 2 * jitter_state.pooled_dispersion[0]


def test_a_topic_s_first_bursts_count_in_full_so_it_is_not_calm_after_its_first_day():
    rng = np.random.default_rng(6)
    totals = rng.poisson(40, DAY)
    negatives = rng.binomial(totals, 0.2)
    for at in (200, 600, 1000):  # three retweet cascades in the first day: 20x for two minutes
        burst = rng.poisson(800, 2)
        totals[at:at + 2] += burst
        negatives[at:at + 2] += rng.binomial(burst, 0.5)
    state, opened = run(totals, negatives)
    calm_state, _ = run(*jittered(DAY, volume=40, share=0.2, seed=6))
    assert opened == []
    assert state.bursts_per_day(60.0) >= 2.0, "three bursts in a day: not calm"
    assert calm_state.bursts_per_day(60.0) < 0.5


def test_windows_of_a_modest_surge_are_not_bursts_so_missed_surges_do_not_make_a_topic_bursty():
    # Three times in a day one window doubles its negatives on a busy topic: each is surprising on its own
    # (past half the open level) but only 2x, which is a surge's window, not a cascade's. Counting them as
    # bursts made topics whose modest surges went unalerted bursty, and harder still to alert on.
    rng = np.random.default_rng(7)
    totals = rng.poisson(400, DAY)
    negatives = rng.binomial(totals, 0.2)
    for at in (300, 700, 1100):
        negatives[at] = min(2 * negatives[at], totals[at])
    state, found = run_detections(totals, negatives, None)
    assert not any(d.transition == "open" for d in found)
    assert all(found[at].surprise[0] >= CONFIG.open_surprise / 2 for at in (300, 700, 1100))
    assert state.bursts_per_day(60.0) < 0.5


def test_learned_noise_survives_a_restart():
    totals, negatives = jittered(DAY, volume=50, share=0.2, seed=8)
    state, _ = run(totals[:900], negatives[:900])
    assert len(state.pooled_dispersion) == 4
    restored = DetectorState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored.pooled_dispersion == state.pooled_dispersion
    after, _ = run(totals[900:], negatives[900:], state=restored, start=900)
    uninterrupted, _ = run(totals, negatives)
    assert after.to_dict() == uninterrupted.to_dict()


def test_a_calm_topic_is_held_to_a_lower_open_level_than_a_bursty_one():
    day = 288  # 5-minute windows: the spans are the same for calm and bursty topics
    totals, negatives = jittered(day, volume=250, share=0.2, seed=9)
    calm, _ = run_detections(totals, negatives, None, seconds=300.0)
    assert calm.bursts_per_day(300.0) < 1.0
    bursty = dataclasses.replace(calm, burst_rate=5.0 / day)  # five bursts a day
    surge = np.array([250, 250, 250]), np.array([80, 80, 80])  # 32 % negative for three windows
    on_calm = run_detections(*surge, calm, start=day, seconds=300.0)[1][-1]
    on_bursty = run_detections(*surge, bursty, start=day, seconds=300.0)[1][-1]
    assert on_calm.surprise[:3] == on_bursty.surprise[:3]  # the same evidence at the short scales...
    assert on_calm.score > on_bursty.score > 0  # ...is nearer the open level on the calm topic


def test_a_plain_count_series_has_no_share_evidence_at_any_scale():
    # total == negative (`sentiwatch backtest` on a timestamp,value series), a small count: the share test,
    # whose baseline share is then meaningless, must stay silent at every scale.
    counts = np.random.default_rng(10).poisson(0.3, 3 * DAY)
    state, found = run_detections(counts, counts, None)
    assert not state.share_known
    assert max(max(d.surprise[3:], default=0.0) for d in found) < 3.0
    assert not any(d.transition == "open" for d in found)


def test_a_version_2_state_without_the_learned_noise_loads_and_learns_it():
    totals, negatives = jittered(DAY, volume=50, share=0.2, seed=11)
    state, _ = run_detections(totals[:600], negatives[:600], None)
    data = state.to_dict()
    del data["pooled_dispersion"], data["share_known"]
    restored = DetectorState.from_dict(data)
    assert restored.pooled_dispersion == [] and restored.share_known
    after, _ = run_detections(totals[600:], negatives[600:], restored, start=600)
    assert len(after.pooled_dispersion) == 4 and all(x >= 0 for x in after.pooled_dispersion)
