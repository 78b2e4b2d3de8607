"""Negative-spike detection on closed windows: pure code shared by the live worker and backtest.

(Skeleton: the detector issue fills this in; the config fields below are read by sentiwatch.config.)
"""

from __future__ import annotations

import dataclasses

from sentiwatch.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    min_volume: int = 30
    baseline_halflife_windows: float = 60.0
    warmup_windows: int = 10
    open_score: float = 0.9
    resolve_score: float = 0.5
    cooldown_windows: int = 5
    critical_score: float = 0.99
    daily_seasonality: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.resolve_score < self.open_score <= 1.0:
            raise ConfigError("config keys 'detector_resolve_score' < 'detector_open_score' must hold, within 0..1")
        if self.min_volume < 0:
            raise ConfigError("config key 'detector_min_volume': must be >= 0")
