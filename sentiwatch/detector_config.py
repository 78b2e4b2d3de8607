"""The detector's settings (`detector_*`), kept apart from the detector so that the core settings
module does not import the streamer: `sentiwatch.config` depends on this, and the detector on both."""

from __future__ import annotations

import dataclasses

from sentiwatch.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Detector settings; each field is the setting `detector_<field>` (`SENTIWATCH_DETECTOR_<FIELD>`).

    Defaults are tuned on benchmarks/detector_synthetic.py for 60 s windows.
    """

    # Texts a window needs to open an alert; evidence from fewer texts counts for nothing.
    min_volume: int = 30
    # How fast the baseline share and volume follow the topic (in windows).
    baseline_halflife_windows: float = 60.0
    # How fast the learned noise level follows the topic (in windows); slower than the baseline.
    scale_halflife_windows: float = 240.0
    # Windows seen before anything may fire.
    warmup_windows: int = 30
    # z at which a test contributes score 0.5 (before the lift gate).
    z_center: float = 4.0
    # Observed / expected must reach this for a test to score fully; below it the score is scaled down.
    min_lift: float = 1.5
    open_score: float = 0.9
    resolve_score: float = 0.2
    # Consecutive windows below resolve_score that end an alert.
    resolve_windows: int = 3
    # Windows after a resolve during which no new alert opens for the topic.
    cooldown_windows: int = 15
    # Lift at which an alert is critical instead of warning.
    critical_lift: float = 3.0
    # An active alert is re-announced ("update") when its lift grows by this factor.
    update_growth: float = 1.25
    # Learning rate multiplier while an alert is active (0 freezes the baseline).
    alert_learning_factor: float = 0.1
    # Windows whose evidence is pooled, so a moderate surge on a quiet topic shows within a few windows.
    evidence_windows: int = 3
    # Observations are clipped to expected ± clip_z standard deviations before learning.
    clip_z: float = 3.0
    # Learn an hour-of-day profile of the negative volume: worth it for coarse intervals (5 min and up)
    # with a strong daily cycle; it takes about a day of history to pay off.
    daily_seasonality: bool = False
    # How fast the hour-of-day profile follows the topic (in days).
    seasonality_halflife_days: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.resolve_score < self.open_score <= 1.0:
            raise ConfigError("config keys 'detector_resolve_score' < 'detector_open_score' must hold, within 0..1")
        non_negative = ("min_volume", "warmup_windows", "cooldown_windows", "alert_learning_factor")
        for key in non_negative:
            if getattr(self, key) < 0:
                raise ConfigError(f"config key 'detector_{key}': must be >= 0, got {getattr(self, key)!r}")
        positive = ("baseline_halflife_windows", "scale_halflife_windows", "resolve_windows", "evidence_windows",
                    "clip_z", "seasonality_halflife_days")
        for key in positive:
            if not getattr(self, key) > 0:
                raise ConfigError(f"config key 'detector_{key}': must be > 0, got {getattr(self, key)!r}")
        for key in ("min_lift", "critical_lift", "update_growth"):
            if not getattr(self, key) > 1.0:
                raise ConfigError(f"config key 'detector_{key}': must be > 1, got {getattr(self, key)!r}")
        if self.alert_learning_factor > 1.0:
            raise ConfigError("config key 'detector_alert_learning_factor': must be within 0..1")
