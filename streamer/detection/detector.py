"""Negative-surge detection on closed windows: pure code shared by the live worker and the backtest.

One call of `step` per closed tumbling window of one topic (docs/detector.md has the why and the
figures). Two tests run side by side against a baseline learned from the topic's own history:

* the negative *volume*: is the negative count k unusually large for the expected count μ? μ is a
  robust moving average (observations clipped before they are learned) times an hour-of-day and a
  day-of-week profile learned online; the noise is negative-binomial (variance μ + φμ², φ learned
  from clipped residuals, so bursts neither inflate it for good nor move the level much);
* the negative *share*: is k of n unusually many for the baseline share p0 (binomial, widened by the
  share's learned extra variance)?

Each test gives a tail probability p, used as surprise S = -log10 p (capped below `open_surprise`
while observed / expected is under `min_lift`). Evidence is read at several time scales:

* short (three windows; ten minutes): is (nearly) every window of the span surprising on its own, and
  does the newest still hold most of the recent peak? One retweet burst, or a cascade that decays,
  never counts; a surge that holds does within three windows. On a topic that bursts often (more
  than one burst a day, learned; a burst is a short run of windows at three times the expected count or
  more that opened nothing), at fine windows three windows count only when a step up that holds explains
  the last five windows' excess ten times better than a cascade decaying over one to ten minutes (a slow
  cascade's first minutes pass the three windows' own tests); otherwise the topic waits for the ten
  minutes, by when a cascade has decayed;
* sparse (ten minutes at fine windows, on a topic that expects under one negative a window): few windows of a
  surge there are surprising on their own (they hold 0 to 6 negatives), so the ten minutes are also pooled like
  the hour, each window clipped at a Poisson tail quantile rather than expected + clip_z sd (1.5 at 0.2
  expected: below any surprising count). They count once five windows are above normal by their exact Poisson
  tail (a cascade's first minutes are not enough) and while the last three hold half the span's peak lift (a
  cascade decays);
* long (an hour; `evidence_hours`): both tests on the span's summed counts, each window clipped at
  expected + clip_z sd (a burst adds little, a surge of many windows adds up). How noisy such a sum
  is lies between independent windows and fully correlated ones (a level that wanders for hours);
  where is learned per topic, starting from correlated (a slow drift is not a surge), once the
  longest span is full. The long scales count only while the last ten minutes, pooled, are still
  above normal: an hour that held a long cascade, or a surge that is over, opens nothing.

A calm topic (fewer than one burst a day over at least twelve hours of its history) is held to 7/9 of
`open_surprise` (7 instead of 9): on it the fitted noise holds and less evidence is enough. Everything
measured against the open level follows (the score's scale, the min_lift cap, the resolve and
pending thresholds, `negative_upper`), so a score means the same on every topic: how close to opening.

The score is S² / (S² + c²) of the strongest scale, c set so that `open_score` is reached at the open
level: graded, monotone, never 1, comparable across topics. A young baseline's own
uncertainty widens the tests, so a new topic speaks as soon as its evidence is strong enough for what
it knows (warm-up by evidence, not by a count of windows).

An alert opens when the score reaches `open_score` on a window that is itself above normal, is
re-announced ("update") when its lift grows by `update_growth` or it turns critical, and resolves
after `resolve_windows` windows whose short-scale score is under `resolve_score`; then the pooled
evidence is dropped (an event opens one alert) and a `cooldown_windows` pause follows. A level that
stays out of the normal band for `level_shift_hours` is accepted as the new normal. An empty window
on a topic that normally has texts is a producer outage, not calm: it neither teaches nor alerts.

With `total == negative` (a plain count series in `sentiwatch backtest`) the share test is silent
and the detector works on volume alone.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any

from sentiwatch.detector_config import DetectorConfig

STATE_VERSION = 2
HOURS_PER_DAY = 24
DAYS_PER_WEEK = 7
# The live worker and the backtest both give the detector at most this many empty windows in a row
# for a gap; the rest of a longer gap is skipped over (streamer/windows/tumbling.py, backtest.py).
MAX_GAP_WINDOWS = 60
# An empty window is an outage when the topic normally has at least this many texts per window.
OUTAGE_EXPECTED_TEXTS = 5.0
# Prior overdispersion of a new topic (a log-scale spread of about 0.3) and its weight in windows.
_PRIOR_DISPERSION = 0.1
_PRIOR_WINDOWS = 20.0
_MIN_EXPECTED_COUNT = 0.05
_MIN_REL_DISPERSION = 0.02**2
# At the short scales the newest window must hold this share of the last ten minutes' peak lift above 1.
_HOLD_RATIO = 0.7
# The baseline learns slowly while any scale reaches this share of open_surprise (or an alert is open): a surge
# in the making is not learned as the new normal.
_PENDING = 0.67
# The pooled noise of a long scale learns with a half-life of this many of its spans (independent sums).
_POOLED_HALFLIFE_SPANS = 10.0
# How long the burst rate remembers (3 days).
_BURST_MEMORY_SECONDS = 3 * 86400.0
# A topic with more bursts a day than this (short runs of burst windows that opened no alert: _count_bursts) is bursty.
_BURSTS_PER_DAY = 1.0
# A burst window holds at least this lift (a cascade multiplies the count many times over at once); a window of a
# modest surge that crosses half open_surprise without opening is not one, or missed surges would make a topic bursty
# and harder still to alert on.
_BURST_LIFT = 3.0
# A run of burst windows at most this long that opened no alert counts as one burst.
_BURST_MAX_WINDOWS = 10
# A topic with fewer bursts than _BURSTS_PER_DAY, seen this long, is calm: it opens at this share of open_surprise.
_CALM_AFTER_SECONDS = 12 * 3600.0
_CALM_SHARE = 7.0 / 9.0
# A window itself is "above normal" when its own evidence reaches this surprise (p <= 0.1).
_ITSELF_ABOVE = 1.0
# The long scales count only while the last ten minutes, pooled, reach this surprise (p <= 0.01).
_STILL_ABOVE = 2.0
# Ten minutes are sparse when they expect under this many negatives a window: they are then also pooled
# (_sparse_test), each window clipped at the count whose Poisson tail is 10**-_SPARSE_CLIP_SURPRISE ...
_SPARSE_NEGATIVES = 1.0
_SPARSE_CLIP_SURPRISE = 3.0
# ... and count only with this many windows above normal on their own (a cascade's first three or four minutes
# opened alerts on the tuning seeds at 60 s) and while the last three windows hold _SPARSE_HOLD of the span's
# peak lift above 1 (a cascade decays) ...
_SPARSE_ABOVE_WINDOWS = 5
_SPARSE_HOLD = 0.5
# ... at fine windows only (ten minutes of at least this many windows): in three 5-minute windows a cascade cannot
# be seen to decay (at 5 minutes it nearly tripled the false alerts on the tuning seeds).
_SPARSE_MIN_SPAN = 6
# The Poisson quantile is used below this expected count; above it the normal clip is a few counts lower (11.7 against
# 14 at 5), and the share's expected count of a window that holds a large cascade can be in the hundreds.
_POISSON_CLIP_BELOW = 5.0
# On a bursty topic at fine windows, three windows count only when a step up that holds explains the last
# _CASCADE_WINDOWS windows 10**_STEP_OVER_CASCADE times better than a cascade decaying with any of the time
# constants _CASCADE_MINUTES, up to the ten minutes the next scale waits for. (The development generator's cascades
# decay in 1-6 minutes; stopping there was faster on its busy topics but opened more false alerts: docs/benchmarks.md.)
_STEP_OVER_CASCADE = 1.0
# Five windows: the three tested and two before them, which pin where a step starts. A count of windows, not a time:
# at 60 s that is five minutes; at windows of a few seconds the test can rarely tell a step from a slow cascade, and
# such a topic waits for the ten minutes as before.
_CASCADE_WINDOWS = 5
_CASCADE_MINUTES = tuple(float(minutes) for minutes in range(1, 11))
# Scale names, in the order of Detection.surprise.
SCALES = ("window", "3 windows", "10 min", "1 h", "long")


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


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What one window adds to a test: observed and expected counts, and the variances beyond sampling noise."""

    total: float
    negative: float
    volume_expected: float  # μ
    volume_extra_var: float  # beyond Poisson: φμ² plus the baseline's own uncertainty
    share_expected: float  # n · p0
    share_extra_var: float  # beyond binomial
    surprise: float = 0.0  # of the window on its own (the stronger test, after the min_lift cap)
    lift: float = 1.0  # of that test

    def to_list(self) -> list[float]:
        return [self.total, self.negative, self.volume_expected, self.volume_extra_var, self.share_expected,
                self.share_extra_var, self.surprise, self.lift]


@dataclasses.dataclass
class AlertState:
    """The topic's alert: open or not, and what was last announced."""

    active: bool = False
    alert_id: str | None = None
    severity: str | None = None
    reported_lift: float = 0.0
    calm_windows: int = 0
    cooldown_left: int = 0


@dataclasses.dataclass
class DetectorState:
    """What the detector remembers about one topic. `to_dict`/`from_dict` give a versioned plain dict
    (JSON-able, for a Faust table); a dict of another version is migrated or refused by name."""

    windows: int = 0  # windows learned from
    # Moving averages (EWMA) of the negative count (deseasonalised), of all texts, and of the share's parts.
    level: float = 0.0
    total_level: float = 0.0
    share_negative: float = 0.0
    share_total: float = 0.0
    # Extra variance beyond sampling noise, relative to the expected value squared (φ for the volume).
    dispersion: float = _PRIOR_DISPERSION
    share_dispersion: float = 0.1**2
    # Whether any window held a text that was not negative: until then (a plain count series, total ==
    # negative) the share test is silent.
    share_known: bool = False
    # Hour-of-day and day-of-week multipliers of the volume, mean 1 (empty until used).
    daily: list[float] = dataclasses.field(default_factory=list)
    weekly: list[float] = dataclasses.field(default_factory=list)
    # Evidence of the last windows (up to the longest scale), oldest first.
    recent: list[Evidence] = dataclasses.field(default_factory=list)
    # Windows in a row outside the normal band on one side (+ above, - below), and their mean log ratio.
    shift_run: int = 0
    shift_log_ratio: float = 0.0
    # Moving average, per window, of bursts (a short run of burst windows that opened no alert): at fine
    # windows a bursty topic's three windows count only when they look like a step that holds, not a decaying
    # cascade (_step_over_cascade); otherwise a surge must hold for ten minutes.
    burst_rate: float = 0.0
    burst_run: int = 0  # windows in the current run of burst windows
    # Extra variance of the long scales' pooled sums relative to their expected sum squared, learned: volume
    # and share of the hour, then of evidence_hours (-1 until learned; empty until the spans are full).
    pooled_dispersion: list[float] = dataclasses.field(default_factory=list)
    alert: AlertState = dataclasses.field(default_factory=AlertState)

    def bursts_per_day(self, seconds: float) -> float:
        """Bursts a day over the topic's history (`seconds` per window): the moving average, corrected for
        the history it has not seen yet (it starts from zero)."""
        seen = 1.0 - (1.0 - _rate(_BURST_MEMORY_SECONDS / seconds)) ** self.windows
        return self.burst_rate / seen * 86400.0 / seconds if seen > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["recent"] = [item.to_list() for item in self.recent]
        data["version"] = STATE_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorState:
        version = data.get("version", 1)
        if version == 1:
            # The first detector's state: keep its baseline levels and an open alert (so it still resolves);
            # the noise and the profiles are learned again.
            alert = AlertState(active=bool(data.get("active")), alert_id=data.get("alert_id"),
                               severity=data.get("severity"), reported_lift=float(data.get("reported_lift", 0.0)))
            return cls(windows=int(data.get("windows", 0)), level=float(data.get("volume_level", 0.0)),
                       share_negative=float(data.get("share_negative", 0.0)),
                       share_total=float(data.get("share_total", 0.0)), alert=alert)
        if version != STATE_VERSION:
            raise ValueError(f"detector state version {version!r} is not one this worker knows ({STATE_VERSION})")
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in fields}
        values["recent"] = [Evidence(*item) for item in data.get("recent", [])]
        values["alert"] = AlertState(**data.get("alert", {}))
        values["daily"] = list(data.get("daily", []))
        values["weekly"] = list(data.get("weekly", []))
        values["pooled_dispersion"] = list(data.get("pooled_dispersion", []))
        values.setdefault("share_known", values.get("share_total", 0.0) > values.get("share_negative", 0.0))
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Detection:
    """The detector's verdict on one window."""

    score: float  # 0..1, monotone in the strongest evidence
    active: bool  # alert state after this window
    transition: str | None  # "open" | "update" | "resolved" | None
    severity: str | None  # "warning" | "critical" while active (and on the resolving window)
    alert_id: str | None  # stable for one surge (open/update/resolved share it)
    negative_ratio: float
    baseline_ratio: float
    # Expected negative count for this window, and the count at which this window alone would reach open_surprise.
    expected_negative: float = 0.0
    negative_upper: float = 0.0
    lift: float = 1.0
    # Surprise (-log10 p, after the min_lift cap) at each of SCALES; what the plot shows per alert.
    surprise: tuple[float, ...] = ()
    outage: bool = False  # an empty window where texts were expected: ignored


@dataclasses.dataclass(frozen=True)
class _Test:
    surprise: float
    lift: float


def step(state: DetectorState | None, window: WindowStats, config: DetectorConfig) -> tuple[DetectorState, Detection]:
    """Score one closed window, advance the alert state machine, learn; returns a new state."""
    old = DetectorState() if state is None else state
    new = dataclasses.replace(old, daily=list(old.daily), weekly=list(old.weekly), recent=list(old.recent),
                              pooled_dispersion=list(old.pooled_dispersion),
                              alert=dataclasses.replace(old.alert))
    n, k = window.total, window.negative
    seconds = window.window_end - window.window_start
    season = _season_factor(new, window, config)
    p0 = (old.share_negative + 0.5) / (old.share_total + 1.0)
    if old.windows == 0:
        # Nothing to compare with yet: the first window only teaches.
        _learn_first(new, window)
        return new, Detection(0.0, new.alert.active, None, None, None, k / n if n else 0.0, p0, k, k, 1.0,
                              (0.0,) * len(SCALES))
    expected = max(old.level * season, _MIN_EXPECTED_COUNT)
    if n == 0 and old.total_level * season >= OUTAGE_EXPECTED_TEXTS:
        transition = _advance_alert(new, window, 0.0, 0.0, 1.0, False, config)
        return new, _detection(new, transition, 0.0, _Test(0.0, 1.0), (0.0,) * len(SCALES), window, p0, expected,
                               expected, outage=True)

    # A young topic is not bursty until its bursts say so (one early burst must not slow every alert down),
    # and not calm until twelve hours of history, its bursts counted in full, say so.
    bursty = old.burst_rate * 86400.0 / seconds >= _BURSTS_PER_DAY
    base_config = config
    if old.windows * seconds >= _CALM_AFTER_SECONDS and old.bursts_per_day(seconds) < _BURSTS_PER_DAY:
        # A topic whose own history shows (almost) no bursts is calm: the nominal tail probabilities hold on it, and
        # less evidence is enough (a bursty topic's tails are heavier than any fitted noise says).
        config = _calm_config(config)
    learned = old.windows + _PRIOR_WINDOWS
    dispersion = (max(old.dispersion, _MIN_REL_DISPERSION) * old.windows + _PRIOR_DISPERSION * _PRIOR_WINDOWS) / learned
    effective = min(old.windows, _effective_windows(config.baseline_halflife_windows))
    level_uncertainty = (1.0 / max(old.level, _MIN_EXPECTED_COUNT) + dispersion) / effective
    share_uncertainty = p0 * (1 - p0) / max(old.share_total * effective, 1.0)
    current = Evidence(
        total=n, negative=k, volume_expected=expected,
        volume_extra_var=expected**2 * (dispersion + level_uncertainty),
        share_expected=n * p0 if old.share_known else float(n),  # all of n expected: no share evidence
        share_extra_var=(n * p0) ** 2 * max(old.share_dispersion, _MIN_REL_DISPERSION) + n**2 * share_uncertainty,
    )
    spans = _spans(seconds, config)
    own = _own_test(current, config)
    current = dataclasses.replace(current, surprise=own.surprise, lift=own.lift)
    new.recent = (new.recent + [current])[-spans[-1]:]
    by_scale = [own]
    lookback = new.recent[-spans[1]:]
    long_sums: list[tuple[_Sum, _Sum]] = []  # (volume, share) per long scale, once its span is full
    still_above: bool | None = None  # computed once, for the first long scale that is full
    for index, span in enumerate(spans):
        items = new.recent[-span:]
        if len(items) < span:
            by_scale.append(_Test(0.0, 1.0))  # not enough history at this scale yet
        elif index < 2:
            test = _sustained_test(items, lookback, config)
            if index == 0 and bursty and spans[1] > span and test.surprise > 0 and \
                    not _step_over_cascade(new.recent[-_CASCADE_WINDOWS:], seconds) >= _STEP_OVER_CASCADE:
                # A bursty topic at fine windows: three windows that a decaying cascade explains about as well as a
                # surge that holds wait for the ten minutes of the next scale, by when a cascade has decayed. (Written
                # "not >=" so that a NaN keeps the gate shut.)
                test = _Test(0.0, 1.0)
            if index == 1 and _is_sparse(items):
                test = max(test, _sparse_test(items, config), key=lambda t: (t.surprise, t.lift))
            by_scale.append(test)
        else:
            sums = (_clipped_sum(items, "volume", config), _clipped_sum(items, "share", config))
            long_sums.append(sums)
            if still_above is None:
                still_above = _still_above(lookback, config)
            test = _pooled_test(sums, old.pooled_dispersion[2 * len(long_sums) - 2:2 * len(long_sums)], config)
            by_scale.append(test if still_above else _Test(0.0, 1.0))
    strongest = max(by_scale[1:], key=lambda test: (test.surprise, test.lift))
    score = _score(strongest.surprise, config)
    short = max(by_scale[:3], key=lambda test: test.surprise)
    itself_above = own.surprise >= _ITSELF_ABOVE and own.lift > 1.0
    transition = _advance_alert(new, window, score, _score(short.surprise, config), strongest.lift, itself_above,
                                config)
    if transition == "resolved":
        new.recent = []  # this event's evidence is spent: it must not reopen from the longer scales
    volume_sd = math.sqrt(expected + current.volume_extra_var)
    # While an alert is open or any scale says something is going on, the baseline learns slowly.
    pending = new.alert.active or max(t.surprise for t in by_scale[1:]) >= config.open_surprise * _PENDING
    _learn(new, window, p0, current, volume_sd, season, pending, config)
    if transition != "resolved" and len(long_sums) == len(spans) - 2:
        _learn_pooled(new, long_sums, pending, config)
    _count_bursts(new, own, seconds, base_config)
    z_open = _z_for_surprise(config.open_surprise)
    upper = max(expected + z_open * volume_sd, expected * config.min_lift)
    return new, _detection(new, transition, score, strongest, tuple(round(t.surprise, 3) for t in by_scale),
                           window, p0, expected, upper)


def _detection(state: DetectorState, transition: str | None, score: float, strongest: _Test,
               surprise: tuple[float, ...], window: WindowStats, p0: float, expected: float, upper: float,
               outage: bool = False) -> Detection:
    alert = state.alert
    shown = alert.active or transition == "resolved"
    detection = Detection(
        score=round(score, 6), active=alert.active, transition=transition,
        severity=alert.severity if shown else None, alert_id=alert.alert_id if shown else None,
        negative_ratio=window.negative / window.total if window.total else 0.0, baseline_ratio=p0,
        expected_negative=expected, negative_upper=upper, lift=strongest.lift, surprise=surprise, outage=outage)
    if transition == "resolved":
        alert.alert_id = None
        alert.severity = None
    return detection


@functools.lru_cache(maxsize=16)
def _calm_config(config: DetectorConfig) -> DetectorConfig:
    return dataclasses.replace(config, open_surprise=config.open_surprise * _CALM_SHARE)


def _spans(seconds: float, config: DetectorConfig) -> list[int]:
    """Windows per pooled scale: three windows, 10 minutes, an hour, evidence_hours (each at least the one before)."""
    spans = [3]
    for span_seconds in (600.0, 3600.0, config.evidence_hours * 3600.0):
        spans.append(max(spans[-1], int(round(span_seconds / seconds))))
    return spans


def _sustained_test(items: list[Evidence], lookback: list[Evidence], config: DetectorConfig) -> _Test:
    """Short scales: is (nearly) every window of the span surprising on its own?

    The surprise is that of the window at the lowest third (the weakest for three), times the number
    of windows at least that surprising, less the log of the ways to pick them: how unlikely it is
    that so many windows are that high, if windows were independent. One burst, or two, never count;
    a surge that holds does, quickly. The newest window
    must still hold _HOLD_RATIO of the peak lift (above 1) of the `lookback` windows (the last ten minutes):
    a retweet cascade has decayed by more than that, a surge holds.
    """
    if sum(item.total for item in items) < config.min_volume:
        return _Test(0.0, 1.0)
    peak = max(item.lift for item in lookback)
    if items[-1].lift - 1.0 < _HOLD_RATIO * (peak - 1.0):
        return _Test(0.0, 1.0)
    held = len(items) - math.ceil(len(items) / 3) + 1  # windows at least as surprising as the weakest counted
    weakest = sorted(items, key=lambda item: item.surprise)[len(items) - held]
    surprise = max(held * weakest.surprise - math.log10(math.comb(len(items), held)), 0.0)
    return _capped(surprise, sum(item.lift for item in items) / len(items), config)


def _step_over_cascade(items: list[Evidence], seconds: float) -> float:
    """How much better (log10 likelihood ratio) a step up that holds explains the windows' excess than the best
    decaying cascade does, on the negative volume or the share, whichever says more. Both start at any of the
    windows (before it, no excess); Gaussian, each window's variance its sampling noise at the larger of observed
    and expected (a surge's windows are noisier than calm ones) plus the extra variance learned."""
    volume = _log10_step_over_decay(
        [item.negative - item.volume_expected for item in items],
        [max(item.negative, item.volume_expected) + item.volume_extra_var for item in items], seconds)
    if not all(0 < item.share_expected < item.total for item in items):
        return volume  # the share is silent (a plain count series) or a window is empty
    share = _log10_step_over_decay(
        [item.negative - item.share_expected for item in items],
        [max(_binomial_var(item.share_expected, item.total), _binomial_var(item.negative, item.total))
         + item.share_extra_var for item in items],
        seconds)
    return max(volume, share)


def _binomial_var(count: float, total: float) -> float:
    """Sampling variance of a binomial count of `total` trials whose mean is `count` (total > 0)."""
    return count * (1 - count / total)


def _log10_step_over_decay(excess: list[float], variance: list[float], seconds: float) -> float:
    """Weighted least squares of the excess under a step up (x = a >= 0 from some window on, no excess before it)
    and under each cascade (x = b r^i, b >= 0, likewise, r from _CASCADE_MINUTES); the log10 likelihood ratio of the
    best fits. A fall fits neither (both sizes 0): it is no evidence of a step up."""
    weights = [1.0 / max(v, 1e-9) for v in variance]
    rates = [1.0] + [math.exp(-seconds / (60.0 * minutes)) for minutes in _CASCADE_MINUTES]
    shapes = [[rate**i for i in range(len(excess))] for rate in rates]  # the step first; a later start uses a prefix
    best_step = best_cascade = math.inf
    for first in range(len(excess)):
        before = sum(w * x * x for x, w in zip(excess[:first], weights[:first], strict=True))
        xs, ws = excess[first:], weights[first:]
        fits = [before + _residual(xs, ws, shape[:len(xs)]) for shape in shapes]
        best_step, best_cascade = min(best_step, fits[0]), min(best_cascade, *fits[1:])
    return (best_cascade - best_step) / (2.0 * math.log(10.0))


def _residual(xs: list[float], ws: list[float], shape: list[float]) -> float:
    """Weighted squared residual of xs against the best non-negative multiple of shape."""
    size = max(sum(x * f * w for x, f, w in zip(xs, shape, ws, strict=True)) /
               sum(f * f * w for f, w in zip(shape, ws, strict=True)), 0.0)
    return sum(w * (x - size * f) ** 2 for x, f, w in zip(xs, shape, ws, strict=True))


def _is_sparse(items: list[Evidence]) -> bool:
    """Ten minutes of fine windows (_SPARSE_MIN_SPAN or more) that expect under _SPARSE_NEGATIVES a window."""
    expected = sum(item.volume_expected for item in items)
    return len(items) >= _SPARSE_MIN_SPAN and expected < _SPARSE_NEGATIVES * len(items)


def _sparse_test(items: list[Evidence], config: DetectorConfig) -> _Test:
    """Ten minutes of a sparse topic, pooled: a surge of two or three negatives a minute against 0.2 expected
    holds windows of 0, 1 and 5 negatives, and the weakest-window rule waits for the hour to add up. Each window
    adds at most a Poisson tail quantile (one burst window adds little); _SPARSE_ABOVE_WINDOWS windows must be
    above normal on their own, and the last three must hold _SPARSE_HOLD of the span's peak lift above 1 (a
    cascade's first minute towers over the ones after it)."""
    peak = max(item.lift for item in items)
    recent = sum(item.lift for item in items[-3:]) / 3
    if recent - 1.0 < _SPARSE_HOLD * (peak - 1.0):
        return _Test(0.0, 1.0)
    if sum(_above_normal_sparse(item) for item in items) < _SPARSE_ABOVE_WINDOWS:
        return _Test(0.0, 1.0)
    sums = (_clipped_sum(items, "volume", config, sparse=True), _clipped_sum(items, "share", config, sparse=True))
    return _pooled_test(sums, [], config)


def _above_normal_sparse(item: Evidence) -> bool:
    """Is the window's negative count above normal (Poisson p <= 0.1)? Exactly: under about 0.19 expected the
    signed-root deviance calls a single negative above normal, and one in six calm windows holds one."""
    if item.volume_expected >= _POISSON_CLIP_BELOW:
        return item.surprise >= _ITSELF_ABOVE and item.lift > 1.0
    return item.negative >= _poisson_quantile(item.volume_expected, _ITSELF_ABOVE)


def _poisson_quantile(mean: float, surprise: float) -> float:
    """The smallest count whose Poisson upper tail P(X >= count) is at most 10**-surprise. For means under
    _POISSON_CLIP_BELOW only: larger ones are taken as it (exp(-mean) would underflow from about 745)."""
    mean = min(mean, _POISSON_CLIP_BELOW)
    tail, term, count = 1.0, math.exp(-mean), 0
    while tail > 10**-surprise:
        tail -= term
        count += 1
        term *= mean / count
    return float(count)


@dataclasses.dataclass(frozen=True)
class _Sum:
    """A span's evidence for one test, each window's negatives clipped at expected + clip_z sd (or, sparse, a
    Poisson quantile: _clipped_sum): a burst adds at most that much, a surge of many windows adds up."""

    test: str  # "volume" | "share"
    windows: int
    total: float
    negative: float
    expected: float
    independent_var: float  # the windows' extra variance (beyond sampling) if it were independent
    correlated_var: float  # ... if it were fully correlated (a level that wanders for hours)

    def evidence(self, learned: float) -> Evidence:
        """The sum as one window's Evidence, its extra variance `learned` (relative to expected squared; -1,
        not learned yet, for fully correlated: a drift of a few hours is not a surge) within the bounds."""
        extra = self.correlated_var if learned < 0 else \
            min(max(learned * self.expected**2, self.independent_var), self.correlated_var)
        if self.test == "volume":
            return Evidence(self.total, self.negative, self.expected, extra, 0.0, 0.0)
        return Evidence(self.total, self.negative, 0.0, 0.0, self.expected, extra)

    def sampling_var(self) -> float:
        """Poisson for the volume, binomial (at the pooled share) for the share."""
        if self.test == "volume":
            return self.expected
        return _binomial_var(self.expected, self.total) if self.total else 0.0


def _clipped_sum(items: list[Evidence], test: str, config: DetectorConfig, sparse: bool = False) -> _Sum:
    """Sum the span's evidence for the "volume" or the "share" test (one pass: this runs twice per long scale
    per window). `sparse`: clip small expected counts at a Poisson tail quantile if that is higher (_sparse_test)."""
    total = negative = expected = sd_sum = var_sum = 0.0
    for e in items:
        if test == "volume":
            mean, extra, sampling = e.volume_expected, e.volume_extra_var, e.volume_expected
        else:
            mean, extra = e.share_expected, e.share_extra_var
            sampling = _binomial_var(mean, e.total) if e.total else 0.0
        total += e.total
        clip = mean + config.clip_z * math.sqrt(sampling + extra)
        if sparse and mean < _POISSON_CLIP_BELOW:
            clip = max(clip, _poisson_quantile(mean, _SPARSE_CLIP_SURPRISE))
        negative += min(e.negative, clip)
        expected += mean
        sd_sum += math.sqrt(extra)
        var_sum += extra
    return _Sum(test, len(items), total, negative, expected, var_sum, sd_sum**2)


def _still_above(lookback: list[Evidence], config: DetectorConfig) -> bool:
    """Is the last ten minutes' evidence, pooled, still above normal? The long scales speak only then: an
    hour that held a long cascade, or a surge that is over, opens nothing on the quiet windows after it."""
    sums = (_clipped_sum(lookback, "volume", config), _clipped_sum(lookback, "share", config))
    evidence = (sums[0].evidence(-1.0), sums[1].evidence(-1.0))
    return max(_volume_test(evidence[0], config).surprise, _share_test(evidence[1], config).surprise) >= _STILL_ABOVE


def _pooled_test(sums: tuple[_Sum, _Sum], learned: list[float], config: DetectorConfig) -> _Test:
    """Long scales: both tests on the span's clipped sums, their noise as learned (`_learn_pooled`)."""
    tests = [_Test(0.0, 1.0)]
    for run, part, index in ((_volume_test, sums[0], 0), (_share_test, sums[1], 1)):
        if part.total >= config.min_volume:
            tests.append(run(part.evidence(learned[index] if learned else -1.0), config))
    return max(tests, key=lambda test: (test.surprise, test.lift))


def _learn_pooled(state: DetectorState, long_sums: list[tuple[_Sum, _Sum]], pending: bool,
                  config: DetectorConfig) -> None:
    """Learn how noisy the long scales' sums really are, between independent and fully correlated windows
    (a topic whose level wanders for hours is the latter; one with only sampling and jitter nearer the
    former). The sums are clipped as in the test, so bursts add little, and the value never exceeds the
    correlated bound: learning can only make a long scale more sensitive, up to independent windows."""
    if not state.pooled_dispersion:
        state.pooled_dispersion = [-1.0] * (2 * len(long_sums))  # -1: not learned yet
    factor = config.alert_learning_factor if pending else 1.0
    for scale, sums in enumerate(long_sums):
        for index, part in enumerate(sums):
            if part.expected <= 0:
                continue
            ceiling = part.correlated_var / part.expected**2
            relative = ((part.negative - part.expected) ** 2 - part.sampling_var()) / part.expected**2
            slot = 2 * scale + index
            if state.pooled_dispersion[slot] < 0:
                state.pooled_dispersion[slot] = ceiling
            rate = _rate(max(config.scale_halflife_windows, _POOLED_HALFLIFE_SPANS * part.windows)) * factor
            state.pooled_dispersion[slot] += rate * (min(max(relative, 0.0), ceiling) - state.pooled_dispersion[slot])


def _own_test(evidence: Evidence, config: DetectorConfig) -> _Test:
    """The window's own evidence (no min_volume: it only says whether the window itself is above normal)."""
    return max(_volume_test(evidence, config), _share_test(evidence, config), key=lambda t: (t.surprise, t.lift))


def _share_test(evidence: Evidence, config: DetectorConfig) -> _Test:
    """Binomial test of the negatives among the texts against the baseline share."""
    n, k, expected = evidence.total, evidence.negative, evidence.share_expected
    if n <= 0 or expected <= 0 or k <= expected or expected >= n:
        return _Test(0.0, 1.0)
    p = expected / n
    deviance = 2 * (_xlogy(k, k / expected) + _xlogy(n - k, (n - k) / (n - expected)))
    return _gated(deviance, n * p * (1 - p), evidence.share_extra_var, k / expected, config)


def _volume_test(evidence: Evidence, config: DetectorConfig) -> _Test:
    """Poisson test of the negative count, widened to the negative binomial."""
    k, expected = evidence.negative, evidence.volume_expected
    if expected <= 0 or k <= expected:
        return _Test(0.0, 1.0)
    deviance = 2 * (_xlogy(k, k / expected) - (k - expected))
    return _gated(deviance, expected, evidence.volume_extra_var, k / expected, config)


def _gated(deviance: float, sampling_var: float, extra_var: float, lift: float, config: DetectorConfig) -> _Test:
    """Surprise from the signed-root deviance (accurate tails even at small counts), widened by the extra
    variance, and capped while the lift is under min_lift."""
    z = math.sqrt(max(deviance, 0.0) * sampling_var / (sampling_var + extra_var))
    return _capped(_surprise(z), lift, config)


def _capped(surprise: float, lift: float, config: DetectorConfig) -> _Test:
    """Too small to page anyone, however certain: below min_lift a test stays under open_surprise."""
    if lift < config.min_lift:
        surprise = min(surprise, 0.9 * config.open_surprise * max(lift - 1.0, 0.0) / (config.min_lift - 1.0))
    return _Test(surprise, lift)


def _surprise(z: float) -> float:
    """-log10 of the upper normal tail at z, without underflow for large z."""
    if z < 8.0:
        return -math.log10(max(0.5 * math.erfc(z / math.sqrt(2.0)), 1e-300))
    log_tail = -z * z / 2 - math.log(z) - 0.5 * math.log(2 * math.pi) + math.log1p(-1 / z**2 + 3 / z**4)
    return -log_tail / math.log(10.0)


@functools.lru_cache(maxsize=16)
def _z_for_surprise(surprise: float) -> float:
    low, high = 0.0, 60.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if _surprise(middle) < surprise else (low, middle)
    return low


def _score(surprise: float, config: DetectorConfig) -> float:
    """S² / (S² + c²), c such that open_surprise maps to open_score: monotone, 0 at no evidence, never 1,
    and low for the p ~ 0.01 that calm data shows every day."""
    c2 = config.open_surprise**2 * (1 - config.open_score) / config.open_score
    return surprise**2 / (surprise**2 + c2) if surprise > 0 else 0.0


def _xlogy(x: float, ratio: float) -> float:
    return x * math.log(ratio) if x > 0 else 0.0


def _advance_alert(state: DetectorState, window: WindowStats, score: float, short_score: float, lift: float,
                   itself_above: bool, config: DetectorConfig) -> str | None:
    """Open / update / resolve the topic's alert in place; returns the transition."""
    alert = state.alert
    severity = "critical" if lift >= config.critical_lift else "warning"
    if not alert.active:
        if alert.cooldown_left > 0:
            alert.cooldown_left -= 1
            return None
        if score >= config.open_score and itself_above:
            state.alert = AlertState(active=True, alert_id=_alert_id(window), severity=severity, reported_lift=lift)
            return "open"
        return None
    if short_score < config.resolve_score:
        alert.calm_windows += 1
        if alert.calm_windows >= config.resolve_windows:
            alert.active = False
            alert.calm_windows = 0
            alert.cooldown_left = config.cooldown_windows
            return "resolved"
        return None
    alert.calm_windows = 0
    escalated = severity == "critical" and alert.severity == "warning"
    if score >= config.open_score and (escalated or lift >= alert.reported_lift * config.update_growth):
        alert.severity = "critical" if escalated else alert.severity
        alert.reported_lift = lift
        return "update"
    return None


def _count_bursts(state: DetectorState, own: _Test, seconds: float, config: DetectorConfig) -> None:
    """A run of burst windows (each alone at half open_surprise and _BURST_LIFT) that ends within
    _BURST_MAX_WINDOWS windows and opened no alert was a burst, not a surge: it counts towards the topic's
    burst rate."""
    if own.surprise >= config.open_surprise / 2 and own.lift >= max(config.min_lift, _BURST_LIFT):
        state.burst_run += 1
        return
    ended = 0 < state.burst_run <= _BURST_MAX_WINDOWS and not state.alert.active
    state.burst_run = 0
    state.burst_rate += _rate(_BURST_MEMORY_SECONDS / seconds) * (ended - state.burst_rate)


def _learn_first(state: DetectorState, window: WindowStats) -> None:
    state.level = float(window.negative)
    state.total_level = float(window.total)
    state.share_negative = float(window.negative)
    state.share_total = float(window.total)
    state.share_known = window.total > window.negative
    state.windows = 1


def _learn(state: DetectorState, window: WindowStats, p0: float, current: Evidence, volume_sd: float, season: float,
           pending: bool, config: DetectorConfig) -> None:
    """Fold the window into the baseline: clipped (bursts barely move it), slowly while an alert is active."""
    n, k = window.total, window.negative
    expected = current.volume_expected
    first = 1.0 / (state.windows + 1)  # the first windows are averaged plainly
    factor = config.alert_learning_factor if pending else 1.0
    alpha = max(_rate(config.baseline_halflife_windows), first) * factor
    beta = max(_rate(config.scale_halflife_windows), first) * factor

    radius = config.clip_z * volume_sd
    k_volume = min(max(k, expected - radius), expected + radius)
    state.level += alpha * (k_volume / season - state.level)
    excess = ((k_volume - expected) ** 2 - expected) / expected**2
    state.dispersion = max(state.dispersion + beta * (min(excess, config.clip_z**2) - state.dispersion), 0.0)
    state.total_level += alpha * (min(n, 3 * state.total_level + 10) / season - state.total_level)
    if n:
        share_sd = math.sqrt(n * p0 * (1 - p0) + current.share_extra_var)
        k_share = min(max(k, n * p0 - config.clip_z * share_sd), n * p0 + config.clip_z * share_sd)
        state.share_negative += alpha * (k_share - state.share_negative)
        state.share_total += alpha * (n - state.share_total)
        state.share_known = state.share_known or n > k
        share_excess = ((k_share - n * p0) ** 2 - n * p0 * (1 - p0)) / (n * p0) ** 2
        state.share_dispersion = max(state.share_dispersion + beta * (share_excess - state.share_dispersion), 0.0)
    if state.level > 0.5:
        _learn_season(state, window, k_volume / season, season, factor, config)
    _learn_shift(state, window, k, expected, volume_sd, season)
    state.windows += 1
    shift_windows = config.level_shift_hours * 3600.0 / (window.window_end - window.window_start)
    if abs(state.shift_run) >= shift_windows:
        # The new level held for level_shift_hours: accept it instead of alerting forever.
        state.level *= math.exp(state.shift_log_ratio)
        state.shift_run, state.shift_log_ratio = 0, 0.0


def _learn_shift(state: DetectorState, window: WindowStats, k: float, expected: float, sd: float,
                 season: float) -> None:
    side = 1 if k > expected + 2 * sd else -1 if k < expected - 2 * sd else 0
    if side == 0 or (state.shift_run and (side > 0) != (state.shift_run > 0)):
        state.shift_run, state.shift_log_ratio = side, 0.0
        if side == 0:
            return
    else:
        state.shift_run += side
    ratio = math.log((k + 0.5) / (expected + 0.5))
    state.shift_log_ratio += (ratio - state.shift_log_ratio) / abs(state.shift_run)


def _season_factor(state: DetectorState, window: WindowStats, config: DetectorConfig) -> float:
    """Hour-of-day (interpolated) times day-of-week multiplier for this window; 1 when off."""
    seconds = window.window_end - window.window_start
    factor = 1.0
    if config.daily_seasonality and seconds <= 3600:
        if not state.daily:
            state.daily = [1.0] * HOURS_PER_DAY
        low, high, weight = _hour_buckets(window)
        factor *= (1 - weight) * state.daily[low] + weight * state.daily[high]
    if config.weekly_seasonality and seconds <= 6 * 3600:
        if not state.weekly:
            state.weekly = [1.0] * DAYS_PER_WEEK
        factor *= state.weekly[_weekday(window)]
    return max(factor, 0.05)


def _learn_season(state: DetectorState, window: WindowStats, ratio_to_level: float, current: float, factor: float,
                  config: DetectorConfig) -> None:
    windows_per_hour = 3600.0 / (window.window_end - window.window_start)
    ratio = min(ratio_to_level * current / max(state.level, 1e-9), 10.0)  # observed / deseasonalised level
    if state.daily:
        beta = _rate(config.seasonality_halflife_days * max(windows_per_hour, 1.0)) * factor
        low, high, weight = _hour_buckets(window)
        day_part = state.weekly[_weekday(window)] if state.weekly else 1.0
        error = ratio / day_part - ((1 - weight) * state.daily[low] + weight * state.daily[high])
        state.daily[low] += beta * (1 - weight) * error
        state.daily[high] += beta * weight * error
        mean = sum(state.daily) / HOURS_PER_DAY
        state.daily = [max(value / mean, 0.05) for value in state.daily]
    if state.weekly:
        # Each weekday's bucket learns from that day's windows only: the same half-life in its own days.
        beta = _rate(config.seasonality_halflife_days * max(windows_per_hour, 1.0) * HOURS_PER_DAY) * factor
        day = _weekday(window)
        hour_part = 1.0
        if state.daily:
            low, high, weight = _hour_buckets(window)
            hour_part = (1 - weight) * state.daily[low] + weight * state.daily[high]
        state.weekly[day] += beta * (ratio / hour_part - state.weekly[day])
        mean = sum(state.weekly) / DAYS_PER_WEEK
        state.weekly = [max(value / mean, 0.05) for value in state.weekly]


def _hour_buckets(window: WindowStats) -> tuple[int, int, float]:
    """The two hourly buckets around the window's midpoint (UTC) and the weight of the later one."""
    middle = (window.window_start + window.window_end) / 2
    position = (middle % 86400.0) / 3600.0 - 0.5  # bucket h is centred on h:30
    low = math.floor(position)
    return low % HOURS_PER_DAY, (low + 1) % HOURS_PER_DAY, position - low


def _weekday(window: WindowStats) -> int:
    """0 = Monday, UTC (1970-01-01 was a Thursday)."""
    return int(((window.window_start + window.window_end) / 2 // 86400.0 + 3) % DAYS_PER_WEEK)


def _alert_id(window: WindowStats) -> str:
    """Deterministic, so replaying history gives the same ids as living through it."""
    opened = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(window.window_start))
    return f"{window.topic}/{opened}"


def _rate(halflife: float) -> float:
    return 1.0 - 0.5 ** (1.0 / halflife)


def _effective_windows(halflife: float) -> float:
    """Windows an EWMA of this half-life effectively averages (its weights' sum squared over sum of squares)."""
    rate = _rate(halflife)
    return (2 - rate) / rate
