"""Negative-spike detection on closed windows: pure code shared by the live worker and backtest.

One call of `step` per closed tumbling window of one topic. Two tests run side by side against a
baseline learned from the topic's own history:

* the negative *share*: is k of n negative unusually many given the baseline share p0?
  (a binomial test widened by the share's learned extra variance, because real share wanders
  more than pure sampling noise explains);
* the negative *volume*: is k unusually large given the expected negative count λ? (a Poisson
  test widened the same way; λ optionally follows a learned daily cycle).

Each test gives z (how surprising: the signed root of the deviance, widened by the learned extra
variance) and lift (how large: observed / expected). A test scores Φ(z − z_center) scaled down
while the lift is under `min_lift`, so a tiny but "significant" wobble on a busy topic never
fires. Both tests run on the window alone and on the pooled last `evidence_windows` windows (a
moderate surge on a quiet topic is proven within a few windows); the window's score is the
highest. Evidence from fewer than `min_volume` texts counts for nothing, and an alert only opens
on a window of at least `min_volume` texts.

An alert opens at `open_score`, is re-announced ("update") when its lift grows by
`update_growth` or it turns critical (lift >= `critical_lift`), resolves after `resolve_windows`
windows below `resolve_score` (hysteresis), and a `cooldown_windows` pause after it keeps one
surge from opening twice. The baseline learns from every window, but an observation is clipped to
`clip_z` standard deviations first and learning slows by `alert_learning_factor` while an alert
is active: slow drifts move the baseline, a surge barely does, and a permanent level shift is
eventually accepted instead of alerting forever.

With `total == negative` (a plain count series in `sentiwatch backtest`) the share is always 1,
its test is silent, and the detector works on volume alone.
"""

from __future__ import annotations

import dataclasses
import math
import time
from statistics import NormalDist
from typing import Any

from sentiwatch.detector_config import DetectorConfig

HOURS_PER_DAY = 24
# Floors that keep the tests defined on empty or brand-new baselines.
_MIN_EXPECTED_COUNT = 0.5
_MIN_REL_DISPERSION = 0.02**2
_NORMAL = NormalDist()


@dataclasses.dataclass(frozen=True)
class WindowStats:
    """One closed tumbling window of one topic."""

    topic: str
    window_start: float  # epoch seconds
    window_end: float
    total: int
    negative: int

    def __post_init__(self) -> None:
        if self.total < 0 or not 0 <= self.negative <= self.total:
            raise ValueError(f"window of {self.topic!r}: need 0 <= negative <= total, got {self.negative}/{self.total}")
        if not self.window_end > self.window_start:
            raise ValueError(f"window of {self.topic!r}: window_end must be after window_start")


@dataclasses.dataclass
class DetectorState:
    """What the detector remembers about one topic; plain numbers only, so it fits a Faust table."""

    windows: int = 0
    # Baseline of the share: decayed sums of negatives and totals, p0 = share_negative / share_total.
    share_negative: float = 0.0
    share_total: float = 0.0
    # Extra variance of the share beyond binomial noise, relative to p0² (may dip below 0; floored on use).
    share_dispersion: float = 0.1**2
    # Baseline of the negative count (deseasonalised when seasonality is on) and its extra variance / λ².
    volume_level: float = 0.0
    volume_dispersion: float = 0.1**2
    # Hour-of-day multipliers of the negative volume (empty until seasonality is on); mean 1.
    season: list[float] = dataclasses.field(default_factory=list)
    # The last `evidence_windows` windows' evidence (see _Evidence), newest last.
    recent: list[list[float]] = dataclasses.field(default_factory=list)
    active: bool = False
    alert_id: str | None = None
    severity: str | None = None
    reported_lift: float = 0.0
    calm_windows: int = 0
    cooldown_left: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorState:
        known = {field.name for field in dataclasses.fields(cls)}
        # Keys from a newer or older version are ignored rather than crashing a restarted worker.
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclasses.dataclass(frozen=True)
class Detection:
    """The detector's verdict on one window."""

    score: float  # 0..1, continuous
    active: bool  # alert state after this window
    transition: str | None  # "open" | "update" | "resolved" | None
    severity: str | None  # "warning" | "critical" while active (and on the resolving window)
    alert_id: str | None  # stable for one surge (open/update/resolved share it)
    negative_ratio: float
    baseline_ratio: float
    # Expected negative count for this window, and the count at which the volume test alone would open.
    expected_negative: float = 0.0
    negative_upper: float = 0.0
    lift: float = 1.0


@dataclasses.dataclass(frozen=True)
class _Evidence:
    """What one window adds to a test: observed and expected negatives, and the variances around them."""

    total: float
    negative: float
    share_expected: float  # n · p0
    share_extra_var: float  # variance beyond binomial
    volume_expected: float  # λ
    volume_extra_var: float  # variance beyond Poisson

    def plus(self, other: _Evidence) -> _Evidence:
        return _Evidence(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)))


@dataclasses.dataclass(frozen=True)
class _Test:
    score: float
    lift: float


def step(state: DetectorState | None, window: WindowStats, config: DetectorConfig) -> tuple[DetectorState, Detection]:
    """Score one closed window, advance the alert state machine, learn; returns a new state."""
    old = DetectorState() if state is None else state
    new = dataclasses.replace(old, season=list(old.season), recent=[list(item) for item in old.recent])
    n, k = window.total, window.negative
    warmed = old.windows >= config.warmup_windows

    p0 = (old.share_negative + 0.5) / (old.share_total + 1.0)
    season_factor = _season_factor(new, window, config)
    expected = max(old.volume_level * season_factor, _MIN_EXPECTED_COUNT)
    current = _Evidence(
        total=n, negative=k,
        share_expected=n * p0, share_extra_var=(n * p0) ** 2 * max(old.share_dispersion, _MIN_REL_DISPERSION),
        volume_expected=expected, volume_extra_var=expected**2 * max(old.volume_dispersion, _MIN_REL_DISPERSION),
    )
    # A surge too weak to prove in one window is proven over the last few: sum their evidence.
    new.recent = (new.recent + [list(dataclasses.astuple(current))])[-config.evidence_windows:]
    pooled = current
    for item in new.recent[:-1]:
        pooled = pooled.plus(_Evidence(*item))
    # Evidence from fewer than min_volume texts is no evidence: it neither opens nor keeps an alert open.
    tests = [_Test(0.0, 1.0)]
    for evidence in (current, pooled) if len(new.recent) > 1 else (current,):
        if warmed and evidence.total >= config.min_volume:
            tests += [_share_test(evidence, config), _volume_test(evidence, config)]
    strongest = max(tests, key=lambda test: (test.score, test.lift))
    score = strongest.score

    transition = _advance_alert(new, window, score, strongest.lift, config)
    share_sd = math.sqrt(n * p0 * (1 - p0) + current.share_extra_var)
    volume_sd = math.sqrt(expected + current.volume_extra_var)
    _learn(new, window, p0, share_sd, expected, volume_sd, season_factor, config)
    new.windows = old.windows + 1

    z_open = config.z_center + _NORMAL.inv_cdf(min(config.open_score, 0.999999))
    detection = Detection(
        score=round(score, 6),
        active=new.active,
        transition=transition,
        severity=new.severity if new.active or transition == "resolved" else None,
        alert_id=new.alert_id if new.active or transition == "resolved" else None,
        negative_ratio=k / n if n else 0.0,
        baseline_ratio=p0,
        expected_negative=expected,
        negative_upper=max(expected + z_open * volume_sd, expected * config.min_lift),
        lift=strongest.lift,
    )
    if transition == "resolved":
        new.alert_id = None
        new.severity = None
    return new, detection


def _share_test(evidence: _Evidence, config: DetectorConfig) -> _Test:
    """Binomial test of the negatives among the texts against the baseline share."""
    n, k, expected = evidence.total, evidence.negative, evidence.share_expected
    if n <= 0 or expected <= 0 or k <= expected or expected >= n:
        return _Test(0.0, 1.0)
    p = expected / n
    deviance = 2 * (_xlogy(k, k / expected) + _xlogy(n - k, (n - k) / (n - expected)))
    return _scored(deviance, n * p * (1 - p), evidence.share_extra_var, k / expected, config)


def _volume_test(evidence: _Evidence, config: DetectorConfig) -> _Test:
    """Poisson test of the negative count against the expected count."""
    k, expected = evidence.negative, evidence.volume_expected
    if expected <= 0 or k <= expected:
        return _Test(0.0, 1.0)
    deviance = 2 * (_xlogy(k, k / expected) - (k - expected))
    return _scored(deviance, expected, evidence.volume_extra_var, k / expected, config)


def _scored(deviance: float, sampling_var: float, extra_var: float, lift: float, config: DetectorConfig) -> _Test:
    """Score from the signed-root deviance (accurate tails even at small counts), widened by the
    learned extra variance, and gated by the lift."""
    z = math.sqrt(max(deviance, 0.0) * sampling_var / (sampling_var + extra_var))
    gate = min(1.0, (lift - 1.0) / (config.min_lift - 1.0))
    return _Test(_NORMAL.cdf(z - config.z_center) * gate, lift)


def _xlogy(x: float, ratio: float) -> float:
    return x * math.log(ratio) if x > 0 else 0.0


def _advance_alert(state: DetectorState, window: WindowStats, score: float, lift: float,
                   config: DetectorConfig) -> str | None:
    """Open / update / resolve the topic's alert in place; returns the transition."""
    severity = "critical" if lift >= config.critical_lift else "warning"
    if not state.active:
        if state.cooldown_left > 0:
            state.cooldown_left -= 1
            return None
        if score >= config.open_score and window.total >= config.min_volume:
            state.active = True
            state.alert_id = _alert_id(window)
            state.severity = severity
            state.reported_lift = lift
            state.calm_windows = 0
            return "open"
        return None
    if score < config.resolve_score:
        state.calm_windows += 1
        if state.calm_windows >= config.resolve_windows:
            state.active = False
            state.calm_windows = 0
            state.cooldown_left = config.cooldown_windows
            return "resolved"
        return None
    state.calm_windows = 0
    escalated = severity == "critical" and state.severity == "warning"
    if score >= config.open_score and (escalated or lift >= state.reported_lift * config.update_growth):
        state.severity = "critical" if escalated else state.severity
        state.reported_lift = lift
        return "update"
    return None


def _learn(state: DetectorState, window: WindowStats, p0: float, share_sd: float, expected: float,
           volume_sd: float, season_factor: float, config: DetectorConfig) -> None:
    """Fold the window into the baseline, robustly (clipped) and slowly while an alert is active."""
    n, k = window.total, window.negative
    # The first windows are averaged plainly, so the baseline is usable right after warm-up.
    first = 1.0 / (state.windows + 1)
    factor = config.alert_learning_factor if state.active else 1.0
    alpha = max(_rate(config.baseline_halflife_windows), first) * factor
    beta = max(_rate(config.scale_halflife_windows), first) * factor
    cold = state.windows == 0

    if n:
        k_share = k if cold else _clip(k, n * p0, config.clip_z * share_sd)
        state.share_negative += alpha * (k_share - state.share_negative)
        state.share_total += alpha * (n - state.share_total)
        if not cold:
            binomial_var = n * p0 * (1 - p0)
            excess = ((k_share - n * p0) ** 2 - binomial_var) / (n * p0) ** 2
            state.share_dispersion += beta * (excess - state.share_dispersion)

    k_volume = k if cold else _clip(k, expected, config.clip_z * volume_sd)
    state.volume_level += alpha * (k_volume / season_factor - state.volume_level)
    if not cold:
        excess = ((k_volume - expected) ** 2 - expected) / expected**2
        state.volume_dispersion += beta * (excess - state.volume_dispersion)
    if config.daily_seasonality and state.volume_level > _MIN_EXPECTED_COUNT and not cold:
        _learn_season(state, window, k_volume / state.volume_level, season_factor, factor, config)


def _season_factor(state: DetectorState, window: WindowStats, config: DetectorConfig) -> float:
    """Hour-of-day multiplier for this window, interpolated between hourly buckets (1 when off)."""
    if not config.daily_seasonality:
        return 1.0
    if not state.season:
        state.season = [1.0] * HOURS_PER_DAY
    low, high, weight = _season_buckets(window)
    return max((1 - weight) * state.season[low] + weight * state.season[high], 0.05)


def _learn_season(state: DetectorState, window: WindowStats, ratio: float, current: float, factor: float,
                  config: DetectorConfig) -> None:
    windows_per_hour = 3600.0 / (window.window_end - window.window_start)
    beta = _rate(config.seasonality_halflife_days * max(windows_per_hour, 1.0)) * factor
    low, high, weight = _season_buckets(window)
    error = min(ratio, 10.0) - current
    state.season[low] += beta * (1 - weight) * error
    state.season[high] += beta * weight * error
    mean = sum(state.season) / HOURS_PER_DAY
    state.season = [max(value / mean, 0.05) for value in state.season]


def _season_buckets(window: WindowStats) -> tuple[int, int, float]:
    """The two hourly buckets around the window's midpoint (UTC) and the weight of the later one."""
    middle = (window.window_start + window.window_end) / 2
    position = (middle % 86400.0) / 3600.0 - 0.5  # bucket h is centred on h:30
    low = math.floor(position)
    return low % HOURS_PER_DAY, (low + 1) % HOURS_PER_DAY, position - low


def _alert_id(window: WindowStats) -> str:
    """Deterministic, so replaying history gives the same ids as living through it."""
    opened = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(window.window_start))
    return f"{window.topic}/{opened}"


def _rate(halflife: float) -> float:
    return 1.0 - 0.5 ** (1.0 / halflife)


def _clip(value: float, centre: float, radius: float) -> float:
    return min(max(value, centre - radius), centre + radius)
