"""Oracle Bayes-factor detector on benchmarks/social_series.py: an estimate of the best any causal detector can do.

What it is. At every row i the oracle looks at the last M rows and computes

    stat_i = log10 [ P(rows | an event started in the window) / P(rows | no event started in it) ]

with the generator's own process: it knows, per minute, the true background rate, the negative share and the
usual negative rate that events scale on (`Series.truth`), the topic's cascade rate, and the generator's families
and priors for events and cascades. An alert opens at the first row whose stat reaches a threshold T after
QUIET_ROWS rows without one. Sweeping T gives a frontier of false openings per topic-week against recall and delay
of the major events, scored as benchmarks/detector_social.py scores the detector.

    event (numerator): extra negatives level*(m-1)*rise from any minute of the last `--starts` + 1 rows, level =
        max(median usual negative rate over the hour before, 0.5), m ~ 0.6 U(5,20) + 0.4 U(2,4), ramp 0 (p 0.5)
        or U(1,10) minutes; with --channels 2 also the extra non-negative texts 0.2*background*(m-1)*rise.
    null (denominator): nothing, or one cascade started from 20 minutes before the window to now (size
        5*max(background,0.2)*Pareto(1.3)*U(0.5,2), negative share Beta(1.2,2), decay U(1,6) minutes, prior rate
        the topic's own), or two cascades (a coarser grid, only where the one-cascade stat reaches CC_MIN).
        --channels 1 sees the negative counts only; --channels 2 the negative and non-negative counts jointly.

Why it estimates an upper bound. Given the true rates the likelihood ratio is the most powerful test of "event"
against "no event" (Neyman-Pearson); a real detector must estimate the background from the past and does not know
the cascade rate, so it cannot beat the oracle by more than the approximations below allow (an incomplete null
model makes the oracle fire on some cascades, so those approximations can be worth something: an estimate, not a
proof). Use it to tell how far the
detector is from what the data permit, not as a target to tune against.

Caveats. The priors are integrated on grids (m in steps of 0.75/0.5, ramps of 0.5 minutes, decays of 0.5 minutes,
cascade sizes from a 4-million-sample histogram); the two-cascade term is coarse and is skipped deep inside events
(where it can change no false count and no delay of 15 rows or less); it has no model of three or more cascades,
of quiet spells beyond their rate, or of level shifts beyond knowing them; rows where the event-versus-nothing
factor is below 10**T_MIN are not evaluated (stat <= T_MIN there). An alert never closes: it counts as open for
QUIET_ROWS rows after the last row over T, and a major event that begins while one is open counts as caught with
delay 0 (benchmarks/detector_social.py asks the detector whether it is active instead). Only the counts of the
series are scored, at the generator's 2 weeks per seed.

Commands. At 60-second windows a seed takes about 30-45 s with --channels 1 and 65 s with --channels 2 on a core
of its own (60-75 s and 100-140 s with two processes on two busy cores); the thresholds are cheap, so keep the
statistics with --cache and sweep again in seconds:

    .venv/bin/python benchmarks/detector_oracle.py --seeds 0-39 --interval 60 --channels 1 --jobs 2 --cache /tmp/o1
    .venv/bin/python benchmarks/detector_oracle.py --seeds 0-19 --interval 60 --channels 2 --jobs 2 --cache /tmp/o2
    .venv/bin/python benchmarks/detector_oracle.py --seeds 0-39 --interval 60 --cache /tmp/o1 --one-cascade-null
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.detector_social import (  # noqa: E402
    CATCH_AFTER_END,
    EVENT_SHADOW,
    SeriesResult,
    _nab,
    parse_seeds,
    summarise,
)
from benchmarks.social_series import WEEK, Event, Series, generate_series  # noqa: E402

T_MIN = 1.0  # rows whose event-vs-nothing factor is below 10**T_MIN are not evaluated
CC_MIN = 1.5  # the two-cascade null is evaluated only where the one-cascade stat reaches this
CASCADE_FIRST_START = -20  # earliest cascade start, in minutes from the window's first minute
QUIET_ROWS = 30  # rows over the threshold this close together are one alert
WARMUP_ROWS = 40  # rows after the first full window left unevaluated (no event starts in a series' first 1.5 days)
SKIP_DELAY = 15  # rows: the shortcut of _skip_rows is exact for delays up to this
PRIOR_SAMPLES, PRIOR_SEED = 4_000_000, 12345
# Quantile midpoints of the negative share of a cascade, Beta(1.2, 2): scipy.stats.beta(1.2, 2).ppf((k + 0.5) / 5)
# and ((k + 0.5) / 2), written out so that the benchmark needs numpy only.
SHARE_QUINTILES = (0.07892980909533649, 0.21039296001530372, 0.3464031350226632, 0.5031053381542672,
                   0.7189148840388679)
SHARE_HALVES = (0.17776355514111253, 0.5485347394875877)
DECAYS_TWO_CASCADES = (0, 2, 5, 8)  # indices into Priors.decays: the coarse grid of the two-cascade term
LN10 = math.log(10)
DEFAULT_THRESHOLDS = "2,2.2,2.3,2.4,2.45,2.5,2.6,2.8,3,3.5,4,5"


@dataclasses.dataclass(frozen=True)
class Priors:
    """The generator's priors for events and cascades, integrated on grids (values and log weights)."""

    size_negative: np.ndarray  # channels 1: cascade negatives / (5 max(background, 0.2)), histogram values
    size_negative_logw: np.ndarray
    size: np.ndarray  # channels 2: cascade size / (5 max(background, 0.2))
    size_logw: np.ndarray
    shares: np.ndarray  # channels 2: negative share of a cascade, equal weights
    shares_two: np.ndarray  # the same for the two-cascade term
    kernels: tuple[np.ndarray, ...]  # per decay: exp(-j / tau) over int(6 tau) + 1 minutes, normalised
    multipliers: np.ndarray  # event peak multipliers m
    multiplier_w: np.ndarray
    ramps: np.ndarray  # event ramps in minutes
    ramp_w: np.ndarray


def make_priors() -> Priors:
    """Sample the cascade sizes once (a fixed seed, so every run and process integrates the same prior)."""
    rng = np.random.default_rng(PRIOR_SEED)
    size = (rng.pareto(1.3, PRIOR_SAMPLES) + 1) * rng.uniform(0.5, 2.0, PRIOR_SAMPLES)
    share = rng.beta(1.2, 2.0, PRIOR_SAMPLES)
    kernels = []
    for tau in np.arange(1.25, 6.0, 0.5):
        kernel = np.exp(-np.arange(int(tau * 6) + 1) / tau)
        kernels.append(kernel / kernel.sum())
    major, minor = np.arange(5.375, 20, 0.75), np.arange(2.25, 4, 0.5)
    ramps = np.concatenate([[0.0], np.arange(1.25, 10, 0.5)])
    return Priors(*_log_histogram(size * share, 0.2), *_log_histogram(size, 0.4), np.array(SHARE_QUINTILES),
                  np.array(SHARE_HALVES), tuple(kernels), np.concatenate([major, minor]),
                  np.concatenate([np.full(len(major), 0.6 / len(major)), np.full(len(minor), 0.4 / len(minor))]),
                  ramps, np.concatenate([[0.5], np.full(len(ramps) - 1, 0.5 / (len(ramps) - 1))]))


def _log_histogram(x: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of log(x) in bins of `width`: bin centres (as x) and log weights of the non-empty bins."""
    edges = np.arange(-9.0, 12.01, width)
    counts, _ = np.histogram(np.clip(np.log(x), -8.99, 11.99), edges)
    weights = counts / counts.sum()
    values = np.exp(0.5 * (edges[1:] + edges[:-1]))
    return values[weights > 0], np.log(weights[weights > 0])


@dataclasses.dataclass(frozen=True)
class Settings:
    interval: float  # seconds per row
    channels: int  # 1: negatives only; 2: negatives and non-negatives
    rows: int  # M: rows in the window
    starts: int  # R: events may start in the last R + 1 rows


@dataclasses.dataclass(frozen=True)
class SeedStats:
    """The oracle's statistic on the rows it evaluated, and what scoring needs of the series."""

    candidates: np.ndarray  # rows evaluated (the others have stat < T_MIN)
    stat: np.ndarray  # log10 Bayes factor against nothing, one and two cascades
    stat_c: np.ndarray  # against nothing and one cascade only
    rows: int
    events: np.ndarray  # (start, end, ramp, multiplier, major) per event
    levels: np.ndarray  # per event: usual negative rate before it (Truth.event_levels)
    seconds: float
    two_cascade_rows: int


@dataclasses.dataclass(frozen=True)
class _Data:
    """One series' counts per row and true rates per minute and per row."""

    negatives: np.ndarray
    others: np.ndarray  # non-negative texts
    present: np.ndarray  # 1.0 where the row exists
    mu_neg: np.ndarray  # per row
    mu_other: np.ndarray
    background_row: np.ndarray
    background: np.ndarray  # per minute
    level: np.ndarray  # per minute: event level if an event started then
    cascade_rate: float  # per minute
    event_levels: np.ndarray  # Truth.event_levels


@dataclasses.dataclass(frozen=True)
class _Shapes:
    """Unit profiles of events and cascades over a window of W = M * p minutes, per minute and per row."""

    event_starts: np.ndarray  # minutes into the window
    event_min: np.ndarray  # (start, ramp, W)
    event_row: np.ndarray  # (start, ramp, M)
    event_logw: np.ndarray  # (ramp, m): log prior weight of one (start, ramp, m)
    cascade_starts: np.ndarray
    cascade_row: np.ndarray  # (start, decay, M)


def _lse(a: np.ndarray) -> float:
    a = np.asarray(a).ravel()
    top = a.max()
    return top + math.log(np.exp(a - top).sum())


def _lse_pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    top = np.maximum(a, b)
    return top + np.log(np.exp(a - top) + np.exp(b - top))


def _to_rows(per_minute: np.ndarray, per_row: int, rows: int) -> np.ndarray:
    return per_minute.reshape(per_minute.shape[:-1] + (rows, per_row)).sum(-1)


def _llr_terms(k: np.ndarray, mu: np.ndarray, extra: np.ndarray, present: np.ndarray) -> np.ndarray:
    """log [Poisson(k; mu + extra) / Poisson(k; mu)] per row, 0 where the row is missing."""
    return present * (k * np.log1p(extra / mu) - extra)


def _poisson_llr(k: np.ndarray, mu: np.ndarray, extra: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Sum over the last axis (the rows of the window) of `_llr_terms`."""
    return _llr_terms(k, mu, extra, present).sum(-1)


def _data(series: Series, per_row: int) -> _Data:
    truth = series.truth
    if truth is None:
        raise ValueError("the oracle needs a series from generate_series (with its truth)")
    background = np.maximum(truth.background, 1e-9)
    mu_neg = np.maximum(truth.negative_rate, 1e-9)
    mu_other = np.maximum(background - truth.negative_rate, 1e-9)
    usual = truth.usual_negative_rate
    # The generator's level: the median over the hour before, the first minute standing in for the time before.
    level = np.maximum(np.median(sliding_window_view(np.concatenate([np.full(60, usual[0]), usual]), 61), axis=1), 0.5)
    n = len(series.negatives)
    return _Data(series.negatives.astype(float), (series.totals - series.negatives).astype(float),
                 series.present.astype(float), mu_neg[:n * per_row].reshape(n, per_row).sum(1),
                 mu_other[:n * per_row].reshape(n, per_row).sum(1),
                 background[:n * per_row].reshape(n, per_row).sum(1), background, level,
                 truth.cascades_per_day / 1440.0, np.array(truth.event_levels))


def _shapes(priors: Priors, settings: Settings, per_row: int) -> _Shapes:
    m, width = settings.rows, settings.rows * per_row
    event_starts = np.arange((m - settings.starts - 1) * per_row, width)
    event_min = np.zeros((len(event_starts), len(priors.ramps), width))
    for a, start in enumerate(event_starts):
        since = np.arange(width - start)
        for r, ramp in enumerate(priors.ramps):
            event_min[a, r, start:] = 1.0 if ramp == 0 else np.minimum(since / ramp, 1.0)
    event_logw = (np.log(priors.ramp_w)[:, None] + np.log(priors.multiplier_w)[None, :]
                  - math.log(len(event_starts)))
    cascade_starts = np.arange(CASCADE_FIRST_START, width)
    cascade_min = np.zeros((len(cascade_starts), len(priors.kernels), width))
    for a, start in enumerate(cascade_starts):
        for t, kernel in enumerate(priors.kernels):
            lo, hi = max(start, 0), min(start + len(kernel), width)
            if hi > lo:
                cascade_min[a, t, lo:hi] = kernel[lo - start:hi - start]
    return _Shapes(event_starts, event_min, _to_rows(event_min, per_row, m), event_logw, cascade_starts,
                   _to_rows(cascade_min, per_row, m))


def _candidates(d: _Data, shapes: _Shapes, priors: Priors, settings: Settings, per_row: int) -> np.ndarray:
    """Rows whose exact event-versus-nothing factor reaches 10**T_MIN (non-negatives: per-row background).

    The full statistic is at most this factor (cascades only add to the null), so no other row can reach a
    threshold of T_MIN or more: a cheap vectorised pass over all rows before the costly one over few.
    """
    m = settings.rows
    idx = np.arange(m - 1 + WARMUP_ROWS, len(d.negatives))
    total = np.full(len(idx), -np.inf)
    for a, start in enumerate(shapes.event_starts):
        level = d.level[(idx - m + 1) * per_row + start]
        for r in range(len(priors.ramps)):
            shape = shapes.event_row[a, r]
            offsets = [(m - 1 - q, shape[q]) for q in range(m) if shape[q] > 0]
            for k, multiplier in enumerate(priors.multipliers):
                ll = np.zeros(len(idx))
                for o, unit in offsets:
                    rows = idx - o
                    extra = level * (multiplier - 1) * unit
                    ll += _llr_terms(d.negatives[rows], d.mu_neg[rows], extra, d.present[rows])
                    if settings.channels == 2:
                        extra_other = 0.2 * (multiplier - 1) * unit * d.background_row[rows]
                        ll += _llr_terms(d.others[rows], d.mu_other[rows], extra_other, d.present[rows])
                total = _lse_pair(total, ll + shapes.event_logw[r, k])
    return idx[total / LN10 >= T_MIN]


def _skip_rows(series: Series, rows: int) -> np.ndarray:
    """Rows where the two-cascade term may be skipped: from 15 rows into an event to 31 rows before its shadow ends.

    A lower stat there changes neither a false count (an opening there is inside the event or its shadow, and an
    alert over T there keeps the next QUIET_ROWS quiet either way) nor a delay of SKIP_DELAY rows or less; the term
    only lowers the stat. A computational shortcut, nothing else.
    """
    skip = np.zeros(rows, dtype=bool)
    for event in series.events:
        lo = math.floor(event.start / series.interval) + SKIP_DELAY
        hi = math.floor((event.end + EVENT_SHADOW) / series.interval) - QUIET_ROWS - 1
        if hi > lo:
            skip[lo:hi + 1] = True
    return skip


def seed_stats(seed: int, priors: Priors, settings: Settings, weeks: float = 2.0) -> SeedStats:
    """The oracle's statistic on the candidate rows of one generated series."""
    began = time.perf_counter()
    series = generate_series(f"topic-{seed}", seed, weeks, settings.interval)
    per_row = int(round(settings.interval / 60))
    m, width = settings.rows, settings.rows * per_row
    d = _data(series, per_row)
    shapes = _shapes(priors, settings, per_row)
    candidates = _candidates(d, shapes, priors, settings, per_row)
    skip = _skip_rows(series, len(series.negatives))
    stat, stat_c = np.empty(len(candidates)), np.empty(len(candidates))
    two = 0
    for c, i in enumerate(candidates):
        rows = slice(i - m + 1, i + 1)
        neg, other, mu_neg, mu_other, present = (d.negatives[rows], d.others[rows], d.mu_neg[rows],
                                                 d.mu_other[rows], d.present[rows])
        first = (i - m + 1) * per_row
        amp = d.level[first + shapes.event_starts][:, None] * (priors.multipliers - 1)[None, :]  # (start, m)
        ll_event = _poisson_llr(neg, mu_neg, amp[:, None, :, None] * shapes.event_row[:, :, None, :], present)
        if settings.channels == 2:
            other_row = _to_rows(shapes.event_min * d.background[first:first + width], per_row, m)
            ll_event = ll_event + _poisson_llr(
                other, mu_other, 0.2 * (priors.multipliers - 1)[None, None, :, None] * other_row[:, :, None, :],
                present)
        log_event = _lse(ll_event + shapes.event_logw[None])
        base = 5 * np.maximum(d.background[np.clip(first + shapes.cascade_starts, 0, len(d.background) - 1)], 0.2)
        log_one = _one_cascade(base, shapes, priors, settings, neg, other, mu_neg, mu_other, present,
                               d.cascade_rate)
        log_null = np.logaddexp(0.0, log_one)
        stat_c[c] = stat[c] = (log_event - log_null) / LN10
        if stat_c[c] >= CC_MIN and not skip[i]:
            two += 1
            log_two = _two_cascades(base, shapes, priors, settings, neg, other, mu_neg, mu_other, present,
                                    d.cascade_rate)
            stat[c] = (log_event - np.logaddexp(log_null, log_two)) / LN10
    events = np.array([(e.start, e.end, e.ramp, e.multiplier, e.kind == "major") for e in series.events])
    return SeedStats(candidates, stat, stat_c, len(series.negatives), events,
                     d.event_levels, time.perf_counter() - began, two)


def _one_cascade(base: np.ndarray, shapes: _Shapes, priors: Priors, settings: Settings, neg: np.ndarray,
                 other: np.ndarray, mu_neg: np.ndarray, mu_other: np.ndarray, present: np.ndarray,
                 rate: float) -> float:
    """log of prior * likelihood ratio summed over one cascade's start, decay, size (and share, channels 2)."""
    decays = len(priors.kernels)
    if settings.channels == 1:
        amp = base[:, None] * priors.size_negative[None, :]
        ll = _poisson_llr(neg, mu_neg, amp[:, None, :, None] * shapes.cascade_row[:, :, None, :], present)
        return _lse(ll + priors.size_negative_logw) + math.log(rate / decays)
    amp = base[:, None] * priors.size[None, :]  # (start, size)
    ll_neg = _poisson_llr(neg, mu_neg, (amp[:, None, :, None, None] * priors.shares[None, None, None, :, None])
                          * shapes.cascade_row[:, :, None, None, :], present)  # (start, decay, size, share)
    ll_other = _poisson_llr(other, mu_other,
                            (amp[:, None, :, None, None] * (1 - priors.shares)[None, None, None, :, None])
                            * shapes.cascade_row[:, :, None, None, :], present)
    return (_lse(ll_neg + ll_other + priors.size_logw[None, None, :, None])
            + math.log(rate / decays / len(priors.shares)))


def _two_cascades(base: np.ndarray, shapes: _Shapes, priors: Priors, settings: Settings, neg: np.ndarray,
                  other: np.ndarray, mu_neg: np.ndarray, mu_other: np.ndarray, present: np.ndarray,
                  rate: float) -> float:
    """log sum over unordered pairs of cascades (coarse grid, pruned by visible size) of prior * likelihood ratio.

    Pairs whose visible size is far from the window's excess (under 5% or over 3x + 10 texts) are dropped: their
    likelihood is negligible next to the pairs kept.
    """
    chosen = np.flatnonzero(shapes.cascade_starts >= -10)
    shape = shapes.cascade_row[chosen][:, list(DECAYS_TWO_CASCADES)]  # (start, 4, M)
    visible = shape.sum(-1)
    if settings.channels == 1:
        values, logw, excess_counts = priors.size_negative, priors.size_negative_logw, neg - mu_neg
    else:
        values, logw, excess_counts = priors.size, priors.size_logw, neg + other - mu_neg - mu_other
    even = len(values) // 2 * 2  # pairs of neighbouring histogram bins merged into one
    merged = np.exp(np.log(values[:even]).reshape(-1, 2).mean(1))
    merged_logw = np.logaddexp(logw[:even:2], logw[1:even:2])
    excess = max(float((present * excess_counts).clip(0).sum()), 1.0)
    amp = base[chosen][:, None] * merged[None, :]  # (start, size)
    expected = amp[:, None, :] * visible[:, :, None]
    si, ti, xi = np.nonzero((expected >= 0.05 * excess) & (expected <= 3 * excess + 10))
    extra_other = None
    if settings.channels == 1:
        extra_neg = amp[si, xi][:, None] * shape[si, ti]  # (h, M)
        lw = merged_logw[xi] + math.log(rate / len(DECAYS_TWO_CASCADES))
    else:
        size = amp[si, xi][:, None] * shape[si, ti]
        extra_neg = (size[:, None, :] * priors.shares_two[None, :, None]).reshape(-1, size.shape[1])
        extra_other = (size[:, None, :] * (1 - priors.shares_two)[None, :, None]).reshape(-1, size.shape[1])
        lw = (merged_logw[xi][:, None] + math.log(rate / len(DECAYS_TWO_CASCADES) / len(priors.shares_two))
              + np.zeros(len(priors.shares_two))).ravel()
    if len(lw) == 0:
        return -np.inf
    parts = []
    for h in range(0, len(lw), 128):
        ll = _poisson_llr(neg, mu_neg, extra_neg[h:h + 128, None, :] + extra_neg[None, :, :], present)
        if extra_other is not None:
            ll = ll + _poisson_llr(other, mu_other, extra_other[h:h + 128, None, :] + extra_other[None, :, :],
                                   present)
        parts.append(_lse(ll + lw[h:h + 128, None] + lw[None, :]))
    return _lse(np.array(parts)) - math.log(2)


@dataclasses.dataclass(frozen=True)
class EventDelay:
    delay: int | None  # rows from the one holding the start to the opening; None when missed
    sudden: bool
    small: bool  # usual negative rate under one a minute (below 0.5 the generator's floor sets the event's size)


def score(stats: SeedStats, interval: float, threshold: float,
          key: str = "stat") -> tuple[SeriesResult, list[EventDelay]]:
    """Openings at `threshold`, scored with the rules of benchmarks/detector_social.py."""
    on = stats.candidates[getattr(stats, key) >= threshold]
    opened, last = [], -10**9
    for row in on:
        if row - last > QUIET_ROWS:
            opened.append(int(row))
        last = row
    opens = [row * interval for row in opened]
    events = [Event("major" if e[4] else "minor", e[0], e[1], e[3], e[2]) for e in stats.events]
    false_opens = [t for t in opens if not any(e.start <= t < e.end + EVENT_SHADOW for e in events)]
    found: dict[str, list[EventDelay]] = {"major": [], "minor": []}
    for event, level in zip(events, stats.levels, strict=True):
        first = math.floor(event.start / interval)
        caught = [row for row in opened if event.start <= row * interval < event.end + CATCH_AFTER_END]
        if caught:
            delay: int | None = caught[0] - first
        else:  # an alert still open (over T within the last QUIET_ROWS rows) when the event began covers it
            # (the row holding the start counts too: it opens before the start, and the detector's harness asks
            # whether an alert is active when the event begins)
            delay = 0 if np.any((on >= first - QUIET_ROWS) & (on <= first)) else None
        found[event.kind].append(EventDelay(delay, event.ramp == 0, level < 1))
    raw, perfect, null = _nab(opens, [e for e in events if e.kind == "major"],
                              [e for e in events if e.kind == "minor"])
    result = SeriesResult(stats.rows * interval / WEEK, opens, false_opens,
                          [e.delay for e in found["major"]], [e.delay for e in found["minor"]], raw, perfect, null)
    return result, found["major"]


def _median(events: list[EventDelay]) -> float | None:
    delays = [e.delay for e in events if e.delay is not None]
    return statistics.median(delays) if delays else None


def frontier(all_stats: list[SeedStats], interval: float, thresholds: list[float], key: str = "stat") -> list[dict]:
    """One row per threshold: detector_social's summary, plus median delays by kind of major event."""
    table = []
    for threshold in thresholds:
        scored = [score(stats, interval, threshold, key) for stats in all_stats]
        major = [e for _, events in scored for e in events]

        table.append({"threshold": threshold, **summarise([r for r, _ in scored]),
                      "delay_median_sudden": _median([e for e in major if e.sudden]),
                      "delay_median_ramped": _median([e for e in major if not e.sudden]),
                      "delay_median_small": _median([e for e in major if e.small]),
                      "delay_median_large": _median([e for e in major if not e.small]),
                      "caught_within_2_rows": round(sum(e.delay is not None and e.delay <= 2 for e in major)
                                                    / len(major), 3) if major else None})
    return table


def _cached(seed: int, priors: Priors, settings: Settings, cache: Path | None) -> SeedStats:
    """The statistics of one seed, from `cache` when it holds them for the same settings."""
    path = cache / f"{seed}.npz" if cache else None
    key = np.array([settings.interval, settings.channels, settings.rows, settings.starts, T_MIN, CC_MIN, SKIP_DELAY,
                    CASCADE_FIRST_START, WARMUP_ROWS, PRIOR_SAMPLES, PRIOR_SEED])
    if path and path.exists():
        with np.load(path) as saved:
            if "settings" not in saved or not np.array_equal(saved["settings"], key):
                raise SystemExit(f"{path} holds statistics of other settings: use another --cache")
            return SeedStats(saved["cand"], saved["stat"], saved["stat_c"], int(saved["n"]), saved["ev"],
                             saved["level_raw"], float(saved["seconds"]), int(saved["two"]))
    stats = seed_stats(seed, priors, settings)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, settings=key, cand=stats.candidates, stat=stats.stat, stat_c=stats.stat_c, n=stats.rows,
                 ev=stats.events, level_raw=stats.levels, seconds=stats.seconds,
                 two=stats.two_cascade_rows)
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0-39", help="series seeds, FIRST-LAST")
    parser.add_argument("--interval", type=float, choices=(60.0, 300.0), default=60.0, help="seconds per window")
    parser.add_argument("--channels", type=int, choices=(1, 2), default=1,
                        help="1: the negative counts only; 2: negative and non-negative counts")
    parser.add_argument("--rows", type=int, help="M, rows in the window (default 10 at 60 s, else 6)")
    parser.add_argument("--starts", type=int, help="events may start in the last STARTS + 1 rows (default M - 1)")
    parser.add_argument("--thresholds", default=DEFAULT_THRESHOLDS, help="log10 Bayes factors, comma-separated")
    parser.add_argument("--one-cascade-null", action="store_true", help="score the stat without two cascades")
    parser.add_argument("--jobs", type=int, default=1, help="processes")
    parser.add_argument("--cache", type=Path, help="directory keeping each seed's statistics (SEED.npz)")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    if min(thresholds) < CC_MIN:
        parser.error(f"--thresholds: each must be at least {CC_MIN} (below it the two-cascade null is not computed)")
    per_row = int(round(args.interval / 60))
    rows = args.rows or (10 if per_row == 1 else 6)
    settings = Settings(per_row * 60.0, args.channels, rows, rows - 1 if args.starts is None else args.starts)
    began = time.perf_counter()
    priors = make_priors()
    job = partial(_cached, priors=priors, settings=settings, cache=args.cache)
    seeds = list(parse_seeds(args.seeds))
    if args.jobs > 1:
        with Pool(args.jobs) as pool:
            all_stats = pool.map(job, seeds)
    else:
        all_stats = [job(seed) for seed in seeds]
    for seed, stats in zip(seeds, all_stats, strict=True):
        print(f"seed {seed}: {len(stats.candidates)} candidates, {stats.two_cascade_rows} two-cascade, "
              f"{stats.seconds:.0f}s", file=sys.stderr)
    table = frontier(all_stats, settings.interval, thresholds,
                     "stat_c" if args.one_cascade_null else "stat")
    print("T     | false/tw | recall          | med  | p90 | sudden | ramped | small | large | <=2 rows | NAB")
    for row in table:
        print(f"{row['threshold']:<5} | {row['false_alerts_per_topic_week']:8.2f} | "
              f"{row['major_recall']!s:5} of {row['major_events']:<5} | {row['delay_windows_median']!s:4} | "
              f"{row['delay_windows_p90']!s:3} | {row['delay_median_sudden']!s:6} | {row['delay_median_ramped']!s:6} | "
              f"{row['delay_median_small']!s:5} | {row['delay_median_large']!s:5} | "
              f"{row['caught_within_2_rows']!s:8} | {row['nab_standard']}")
    report = {"seeds": args.seeds, **dataclasses.asdict(settings), "one_cascade_null": args.one_cascade_null,
              "seconds_per_seed": [round(s.seconds, 1) for s in all_stats], "frontier": table,
              "seconds": round(time.perf_counter() - began, 1)}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
