"""The detector's settings (`detector_*`), kept apart from the detector so that the core settings
module does not import the streamer: `sentiwatch.config` depends on this, and the detector on both."""

from __future__ import annotations

import dataclasses

from sentiwatch.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Detector settings; each field is the setting `detector_<field>` (`SENTIWATCH_DETECTOR_<FIELD>`).

    Defaults are tuned on the tuning part of benchmarks/social_series.py (5-minute and 60-second
    windows) and checked on benchmarks/synthetic.py; see docs/detector.md.
    """

    # Texts the evidence at a time scale needs before it counts at all (the share is noise on a handful).
    min_volume: int = 30
    # How fast the baseline share and volume follow the topic (in windows).
    baseline_halflife_windows: float = 60.0
    # How fast the learned noise level (overdispersion) follows the topic (in windows); slower than the baseline.
    scale_halflife_windows: float = 240.0
    # Surprise (-log10 of the tail probability of the evidence) at which the score reaches open_score.
    open_surprise: float = 9.0
    # Observed / expected must reach this for a test to count fully; below it the surprise is scaled down.
    min_lift: float = 1.5
    open_score: float = 0.9
    # An alert resolves after resolve_windows windows whose short-scale score is below this.
    resolve_score: float = 0.2
    resolve_windows: int = 3
    # Windows after a resolve during which no new alert opens for the topic (bursts of one event merge).
    cooldown_windows: int = 15
    # Lift at which an alert is critical instead of warning.
    critical_lift: float = 3.0
    # An active alert is re-announced ("update") when its lift grows by this factor.
    update_growth: float = 1.25
    # Learning rate multiplier while an alert is active (0 freezes the baseline).
    alert_learning_factor: float = 0.1
    # Longest time scale of evidence (hours); the others are two windows, 10 minutes and one hour.
    evidence_hours: float = 3.0
    # Observations are clipped to expected ± clip_z standard deviations before learning.
    clip_z: float = 3.0
    # Learn an hour-of-day and a day-of-week profile of the volume (used when the window is at most an hour).
    daily_seasonality: bool = True
    weekly_seasonality: bool = True
    # How fast the hour-of-day and day-of-week profiles follow the topic (in days, resp. weeks, of history).
    seasonality_halflife_days: float = 2.0
    # A level that stays outside the normal band on one side this long is accepted as the new normal.
    level_shift_hours: float = 6.0

    def __post_init__(self) -> None:
        if not 0.0 < self.resolve_score < self.open_score < 1.0:
            raise ConfigError("config keys 'detector_resolve_score' < 'detector_open_score' must hold, within 0..1")
        non_negative = ("min_volume", "cooldown_windows", "alert_learning_factor")
        for key in non_negative:
            if getattr(self, key) < 0:
                raise ConfigError(f"config key 'detector_{key}': must be >= 0, got {getattr(self, key)!r}")
        positive = ("baseline_halflife_windows", "scale_halflife_windows", "resolve_windows", "evidence_hours",
                    "clip_z", "seasonality_halflife_days", "open_surprise", "level_shift_hours")
        for key in positive:
            if not getattr(self, key) > 0:
                raise ConfigError(f"config key 'detector_{key}': must be > 0, got {getattr(self, key)!r}")
        for key in ("min_lift", "critical_lift", "update_growth"):
            if not getattr(self, key) > 1.0:
                raise ConfigError(f"config key 'detector_{key}': must be > 1, got {getattr(self, key)!r}")
        if self.alert_learning_factor > 1.0:
            raise ConfigError("config key 'detector_alert_learning_factor': must be within 0..1")
