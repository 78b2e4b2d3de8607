"""How the detector learns a topic's noise: the long scales' pooled noise, and calm versus bursty topics."""

from __future__ import annotations

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


def test_an_hour_long_moderate_surge_is_caught_where_the_noise_is_independent_jitter():
    # 50 texts a minute, 20 % negative; then for 45 minutes the negative count doubles (10 -> 20 a minute).
    # Each window alone is unremarkable (p ~ 0.01): only the hour's sum, with its noise learned as
    # independent jitter rather than a wandering level, tells the surge.
    totals, negatives = jittered(int(1.5 * DAY) + 45 + 30, volume=50, share=0.2, seed=3)
    surge = slice(int(1.5 * DAY), int(1.5 * DAY) + 45)
    extra = np.random.default_rng(4).poisson(10, 45)
    totals[surge] += extra
    negatives[surge] += extra
    state, opened = run(totals, negatives)
    assert len(opened) == 1 and surge.start <= opened[0] < surge.stop, opened
    hour_volume, hour_share = state.pooled_dispersion[0], state.pooled_dispersion[1]
    assert 0 <= hour_volume < 0.25 * state.dispersion, "the hour's noise was learned as independent windows"
    assert hour_share >= 0


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


def test_learned_noise_survives_a_restart():
    totals, negatives = jittered(DAY, volume=50, share=0.2, seed=8)
    state, _ = run(totals[:900], negatives[:900])
    assert len(state.pooled_dispersion) == 4
    restored = DetectorState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored.pooled_dispersion == state.pooled_dispersion
    after, _ = run(totals[900:], negatives[900:], state=restored, start=900)
    uninterrupted, _ = run(totals, negatives)
    assert after.to_dict() == uninterrupted.to_dict()
