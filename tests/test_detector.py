"""The spike detector's behaviour on small hand-made series (pure code, no Kafka)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sentiwatch.config import load_settings
from sentiwatch.errors import ConfigError
from sentiwatch.streamer.detection.detector import Detection, DetectorConfig, DetectorState, WindowStats, step

CONFIG = DetectorConfig()


def run(counts: list[tuple[int, int]], config: DetectorConfig = CONFIG, state: DetectorState | None = None,
        start: int = 0, seconds: float = 60.0) -> tuple[DetectorState | None, list[Detection]]:
    detections = []
    for i, (total, negative) in enumerate(counts, start=start):
        window = WindowStats("acme", 1_700_000_000 + i * seconds, 1_700_000_000 + (i + 1) * seconds, total, negative)
        state, detection = step(state, window, config)
        detections.append(detection)
    return state, detections


def calm(windows: int, volume: float = 200, share: float = 0.2, seed: int = 0) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    totals = rng.poisson(volume, windows)
    return list(zip(totals.tolist(), rng.binomial(totals, share).tolist(), strict=True))


def opens(detections: list[Detection]) -> list[int]:
    return [i for i, d in enumerate(detections) if d.transition == "open"]


def test_sudden_surge_opens_one_alert_then_resolves():
    surge = [(200, 100)] * 20
    _, found = run(calm(200) + surge + calm(60, seed=1))
    assert opens(found) == [200]  # on the surge's first window
    opened = found[200]
    assert opened.active and opened.score >= CONFIG.open_score and opened.severity == "warning"
    assert opened.negative_ratio == 0.5 and 0.17 < opened.baseline_ratio < 0.23
    resolved = [i for i, d in enumerate(found) if d.transition == "resolved"]
    assert len(resolved) == 1 and 220 <= resolved[0] <= 220 + CONFIG.evidence_windows + CONFIG.resolve_windows
    assert found[resolved[0]].alert_id == opened.alert_id == found[210].alert_id
    assert all(d.active for d in found[200:220])
    assert not found[-1].active and found[-1].alert_id is None


def test_no_alert_during_warmup_or_below_min_volume():
    _, found = run(calm(5) + [(200, 150)] * 3 + calm(40))
    assert opens(found) == []
    _, quiet = run(calm(100, volume=15) + [(15, 14)] * 5)  # 4.5x share, but under min_volume texts a window
    assert opens(quiet) == [] and not any(d.active for d in quiet)


def test_small_wobble_on_busy_topic_does_not_open():
    # 1.2x the share on 5,000 texts is statistically certain but too small to page anyone.
    _, found = run(calm(200, volume=5000) + [(5000, 1200)] * 5)
    assert opens(found) == [] and max(d.score for d in found[200:]) < CONFIG.open_score / 2


def test_hysteresis_keeps_a_fading_surge_as_one_alert():
    fading = [(200, round(200 * share)) for share in np.linspace(0.8, 0.25, 30)]
    _, found = run(calm(200) + fading + calm(40, seed=2))
    assert len(opens(found)) == 1
    active_before = False
    calm_streak = 0
    for d in found:
        if not active_before:
            assert (d.transition == "open") == d.active
            assert not d.active or d.score >= CONFIG.open_score
        else:
            calm_streak = calm_streak + 1 if d.score < CONFIG.resolve_score else 0
            assert d.active == (calm_streak < CONFIG.resolve_windows)
        active_before = d.active
    # The surge's tail really was between the two levels while the alert held.
    assert any(d.active and CONFIG.resolve_score <= d.score < CONFIG.open_score for d in found)


def test_growing_surge_updates_and_escalates_without_a_storm():
    growing = [(200, 85)] * 5 + [(200, 170)] * 10
    _, found = run(calm(200) + growing + calm(30, seed=3))
    transitions = [d.transition for d in found if d.transition]
    assert transitions[0] == "open" and transitions[-1] == "resolved"
    assert transitions.count("open") == 1 and 1 <= transitions.count("update") <= 2
    update = next(d for d in found if d.transition == "update")
    assert update.severity == "critical" and update.alert_id == found[200].alert_id


def test_cooldown_suppresses_a_second_open_right_after_resolve():
    config = DetectorConfig(cooldown_windows=30)
    _, found = run(calm(200) + [(200, 100)] * 5 + calm(10, seed=4) + [(200, 100)] * 5 + calm(20, seed=5), config)
    assert len(opens(found)) == 1
    _, no_cooldown = run(calm(200) + [(200, 100)] * 5 + calm(10, seed=4) + [(200, 100)] * 5 + calm(20, seed=5),
                         DetectorConfig(cooldown_windows=0))
    assert len(opens(no_cooldown)) == 2


def test_slow_drift_moves_the_baseline_and_never_fires():
    rng = np.random.default_rng(7)
    windows = 3000
    share = np.linspace(0.15, 0.40, windows)  # the share more than doubles over two days
    volume = np.linspace(100, 400, windows) * (1 + 0.4 * np.sin(np.arange(windows) * 2 * math.pi / 1440))
    totals = rng.poisson(volume)
    counts = list(zip(totals.tolist(), rng.binomial(totals, share).tolist(), strict=True))
    _, found = run(counts)
    assert opens(found) == []
    assert found[-1].baseline_ratio == pytest.approx(0.40, abs=0.03)


def test_count_series_uses_volume_alone():
    rng = np.random.default_rng(8)
    values = rng.poisson(80, 200).tolist() + [300] * 4 + rng.poisson(80, 40).tolist()
    _, found = run([(v, v) for v in values])
    assert opens(found) == [200]
    assert found[200].severity == "critical"  # 300 / 80 is over critical_lift
    assert all(d.score < CONFIG.resolve_score for d in found[:200])


def test_daily_seasonality_learns_the_cycle():
    rng = np.random.default_rng(9)
    per_day = 288  # 5-minute windows
    t = np.arange(per_day * 6)
    expected = 120 * (1 + 0.8 * np.sin(2 * math.pi * t / per_day))
    counts = [(v, v) for v in rng.poisson(expected).tolist()]

    def median_error(found: list[Detection]) -> float:
        last_day = zip(found[-per_day:], expected[-per_day:], strict=True)
        return float(np.median([abs(d.expected_negative - e) / e for d, e in last_day]))

    state, seasonal = run(counts, DetectorConfig(daily_seasonality=True), seconds=300)
    _, plain = run(counts, seconds=300)
    # The plain baseline lags the cycle; the seasonal one follows it.
    assert median_error(seasonal) < 0.1 < 0.3 < median_error(plain)
    assert opens(seasonal) == [] and len(state.season) == 24


def test_state_round_trips_through_json_and_continues_identically():
    first, second = calm(150), calm(80, seed=6)
    second[20:26] = [(200, 110)] * 6
    state, _ = run(first)
    restored = DetectorState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    _, direct = run(second, state=state, start=150)
    _, resumed = run(second, state=restored, start=150)
    assert direct == resumed and len(opens(direct)) == 1


def test_config_errors_name_the_setting():
    with pytest.raises(ConfigError, match="detector_min_lift"):
        load_settings(overrides={"detector_min_lift": 0.9})
    with pytest.raises(ConfigError, match="detector_resolve_score"):
        load_settings(environ={"SENTIWATCH_DETECTOR_RESOLVE_SCORE": "0.95"})
    assert load_settings(environ={"SENTIWATCH_DETECTOR_Z_CENTER": "5"}).detector.z_center == 5.0


def test_window_rejects_impossible_counts():
    with pytest.raises(ValueError, match="negative <= total"):
        WindowStats("acme", 0, 60, 10, 11)
