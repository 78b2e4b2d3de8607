"""Realistic social-media count series with labelled events: the development data of the detector.

Real mention counts are not Poisson noise around a smooth curve (what benchmarks/synthetic.py makes).
Per topic this generator draws:

* a background rate with a daily cycle (night trough), a weekly cycle (quieter or busier weekends),
  slowly wandering log-normal noise (AR(1) in log space) and level shifts (the rate steps by
  0.5-1.6x for good, as when a company joins a new market);
* quiet spells (hours at 5% of the rate: runs of zero counts on small topics);
* self-exciting cascades (Hawkes-like: one post sets off retweets, their number heavy-tailed, Pareto
  with alpha 1.3, decaying with a time constant of 1-6 minutes): bursts of 10-100x that last a few
  5-minute intervals. Each has its own negative share; these are the NON-events an analyst does not
  want to be paged for;
* producer outages: no data for 20 minutes to 6 hours (rows missing from the series);
* labelled events: sustained surges an analyst cares about. "major": the negative count rises
  5-20x (over the topic's usual negative rate, or half a text a minute if that is less) for 30
  minutes to 4 hours (sudden or ramped over up to 10 minutes, decaying at the end);
  "minor": 2-4x for 15-90 minutes. An alert during a minor event is not false, but only major
  ones must be caught.

Each series comes in total and negative counts, at any interval (5 minutes and 60 seconds are used).
Every series also carries its hidden `Truth` (the per-minute rates it was drawn from), for the oracle of
benchmarks/detector_oracle.py: what a detector that knew them could do. Deterministic for a seed; numpy only.
`python benchmarks/social_series.py --out F.csv` writes one series in the `sentiwatch backtest` format.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import sys
import time

import numpy as np

DAY = 86400.0
WEEK = 7 * DAY
MINUTE = 60.0
START_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday


@dataclasses.dataclass(frozen=True)
class Event:
    """A labelled surge: [start, end) in seconds from the series' start."""

    kind: str  # "major" | "minor"
    start: float
    end: float
    multiplier: float  # peak multiplier of the negative count
    ramp: float  # seconds to reach the peak


@dataclasses.dataclass(frozen=True)
class Truth:
    """The hidden process behind a series, per simulated minute (the detector never sees it).

    Kept so that benchmarks/detector_oracle.py can estimate what any detector could do on this data; recording it
    draws no random numbers, so the counts of a seed are the same with or without it.
    """

    background: np.ndarray  # expected texts per minute outside cascades and events (quiet spells included)
    negative_rate: np.ndarray  # expected negative texts per minute: background * negative share
    usual_negative_rate: np.ndarray  # usual * share: as background but ignoring quiet spells (events scale on it)
    cascades_per_day: float  # the topic's rate of cascades (of any size)
    event_levels: tuple[float, ...]  # per event: median usual negative rate over the hour before (before the 0.5 floor)


@dataclasses.dataclass(frozen=True)
class Series:
    topic: str
    start_epoch: float
    interval: float  # seconds per row
    totals: np.ndarray  # texts per interval (rows in an outage are present here but marked missing)
    negatives: np.ndarray
    present: np.ndarray  # False where the producer was down: no row
    events: list[Event]
    cascades: list[float]  # start times (seconds) of cascades of 10x the interval's rate or more
    truth: Truth | None = None  # set by generate_series

    def rows(self) -> list[tuple[float, int, int]]:
        """(epoch seconds, total, negative) of the rows present."""
        return [(self.start_epoch + i * self.interval, int(t), int(n))
                for i, (t, n, p) in enumerate(zip(self.totals, self.negatives, self.present, strict=True)) if p]


def generate_series(topic: str, seed: int, weeks: float = 2.0, interval: float = 300.0,
                    start_epoch: float = START_EPOCH, events_per_week: float = 3.0) -> Series:
    """One topic; the same seed gives the same underlying process at every interval (finer grid, same story)."""
    rng = np.random.default_rng(seed)
    base_step = 60.0  # the process is simulated per minute and summed into intervals
    minutes = int(weeks * WEEK / base_step)
    t = np.arange(minutes) * base_step
    # Background texts per minute: from about one an hour to a few hundred.
    rate0 = float(np.exp(rng.uniform(math.log(0.05), math.log(40.0))))
    peak_hour = rng.uniform(12, 22)
    daily = np.exp(rng.uniform(0.4, 1.2) * np.cos(2 * math.pi * ((t % DAY) / 3600.0 - peak_hour) / 24.0))
    weekday = ((t + (start_epoch - START_EPOCH)) // DAY + 3) % 7  # 0 = Monday
    weekly = np.where(weekday >= 5, rng.uniform(0.5, 1.2), 1.0)
    # Slow wandering: AR(1) in log space with a time constant of a few hours.
    phi = math.exp(-base_step / rng.uniform(2 * 3600, 8 * 3600))
    noise = _ar1(rng, minutes, phi, sigma=rng.uniform(0.15, 0.4))
    shifts = np.ones(minutes)
    for _ in range(rng.poisson(weeks * 0.5)):
        at = int(rng.integers(minutes // 6, minutes))
        shifts[at:] *= rng.uniform(0.5, 1.6)
    quiet = np.ones(minutes)
    for _ in range(rng.poisson(weeks * 2)):
        at, length = int(rng.integers(0, minutes)), int(rng.uniform(1, 8) * 60)
        quiet[at:at + length] = 0.05
    usual = rate0 * daily * weekly * np.exp(noise) * shifts
    background = usual * quiet
    share0 = rng.uniform(0.1, 0.35)
    share = np.clip(share0 * np.exp(_ar1(rng, minutes, phi, sigma=0.15)), 0.02, 0.9)
    totals = rng.poisson(background)
    negatives = rng.binomial(totals, share)

    # Cascades: heavy-tailed sizes relative to the five-minute background, short exponential decay.
    cascade_starts: list[float] = []
    cascades_per_day = rng.uniform(3, 15)
    for _ in range(rng.poisson(weeks * 7 * cascades_per_day)):
        at = int(rng.integers(0, minutes))
        size = min((rng.pareto(1.3) + 1) * 5 * max(background[at], 0.2) * rng.uniform(0.5, 2.0), 5e4)
        tau = rng.uniform(1, 6)
        length = min(int(tau * 6) + 1, minutes - at)
        kernel = np.exp(-np.arange(length) / tau)
        counts = rng.poisson(size * kernel / kernel.sum())
        negative_share = rng.beta(1.2, 2.0)
        totals[at:at + length] += counts
        negatives[at:at + length] += rng.binomial(counts, negative_share)
        if size >= 10 * 5 * max(background[at], 1e-9):
            cascade_starts.append(at * base_step)

    events: list[Event] = []
    levels: list[float] = []
    spacing = WEEK / events_per_week if events_per_week > 0 else math.inf
    position = rng.uniform(1.5 * DAY, 1.5 * DAY + spacing)
    while position < weeks * WEEK - 6 * 3600:
        major = rng.random() < 0.6
        if major:
            multiplier, length = rng.uniform(5, 20), rng.uniform(30, 240) * MINUTE
        else:
            multiplier, length = rng.uniform(2, 4), rng.uniform(15, 90) * MINUTE
        ramp = 0.0 if rng.random() < 0.5 else rng.uniform(1, 10) * MINUTE
        event = Event("major" if major else "minor", position, position + length, multiplier, ramp)
        first, last = int(event.start / base_step), min(int(event.end / base_step), minutes)
        # A surge of negative texts about the topic: extra negatives on top of the usual conversation, at
        # (multiplier - 1) times the usual negative rate around it (its level over the hour before), and at
        # least half a text a minute: a handful of texts is not an event anyone is paged for.
        before = slice(max(first - 60, 0), first + 1)
        levels.append(float(np.median(usual[before] * share[before])))
        level = max(levels[-1], 0.5)
        profile = np.array([_profile(event, (i - first) * base_step) for i in range(first, last)])
        extra = rng.poisson(level * (profile - 1))
        negatives[first:last] += extra
        totals[first:last] += extra + rng.poisson(background[first:last] * 0.2 * (profile - 1))
        events.append(event)
        position += spacing * rng.uniform(0.5, 1.5)

    present = np.ones(minutes, dtype=bool)
    for _ in range(rng.poisson(weeks * 0.7)):
        at, length = int(rng.integers(0, minutes)), int(rng.uniform(20, 360))
        if not any(e.start - 3600 < (at + length) * base_step and at * base_step < e.end + 3600 for e in events):
            present[at:at + length] = False
    per_row = max(int(round(interval / base_step)), 1)
    rows = minutes // per_row
    shape = (rows, per_row)
    return Series(
        topic, start_epoch, per_row * base_step,
        totals[:rows * per_row].reshape(shape).sum(axis=1), negatives[:rows * per_row].reshape(shape).sum(axis=1),
        present[:rows * per_row].reshape(shape).all(axis=1), events, cascade_starts,
        Truth(background, background * share, usual * share, cascades_per_day, tuple(levels)))


def _profile(event: Event, since_start: float) -> float:
    """Multiplier of the negative count `since_start` seconds into the event: ramp, plateau, last 20% fading."""
    length = event.end - event.start
    rise = min(since_start / event.ramp, 1.0) if event.ramp > 0 else 1.0
    fade = min((length - since_start) / (0.2 * length), 1.0)
    return 1 + (event.multiplier - 1) * max(min(rise, fade), 0.0)


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    shocks = rng.normal(0, sigma * math.sqrt(1 - phi**2), n)
    out = np.empty(n)
    value = rng.normal(0, sigma)
    for i in range(n):
        value = phi * value + shocks[i]
        out[i] = value
    return out


def corpus(seeds: range, weeks: float = 2.0, interval: float = 300.0) -> list[Series]:
    return [generate_series(f"topic-{seed}", seed, weeks, interval) for seed in seeds]


def main() -> int:
    parser = argparse.ArgumentParser(description="Write one realistic series for `sentiwatch backtest`.")
    parser.add_argument("--out", required=True, help="CSV to write (timestamp,total,negative)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--weeks", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=300.0, help="seconds per row")
    args = parser.parse_args()
    series = generate_series(f"topic-{args.seed}", args.seed, args.weeks, args.interval)
    with open(args.out, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["timestamp", "total", "negative"])
        for stamp, total, negative in series.rows():
            writer.writerow([time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)), total, negative])
    for event in series.events:
        begin = time.strftime("%Y-%m-%d %H:%M", time.gmtime(series.start_epoch + event.start))
        print(f"{event.kind} event from {begin} UTC, {(event.end - event.start) / 60:.0f} min, "
              f"negatives x{event.multiplier:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
