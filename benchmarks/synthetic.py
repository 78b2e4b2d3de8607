"""Synthetic per-topic sentiment streams with known surges: the ground truth for tuning the detector.

Each topic has its own volume (10-1,000 texts per window), daily cycle, negative share, noise
(lognormal jitter on volume and share, so both wander more than sampling noise), slow drifts that
must NOT alert (share ×0.7-1.5 and volume ×0.5-2 over days), and injected surges: the negative
share or the negative volume multiplied by 1.5-5×, lasting 4-60 windows, sudden or ramped.

Deterministic for a seed. numpy only.
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


@dataclasses.dataclass(frozen=True)
class Surge:
    topic: str
    kind: str  # "share" | "volume"
    shape: str  # "sudden" | "ramped"
    multiplier: float  # peak multiplier of the negative share or volume
    start: int  # first window index with any uplift
    end: int  # first window index after the surge
    first_full: int  # first window at which the uplift reaches min(multiplier, 2)
    base_volume: float  # median texts per window over the surge, before injection


@dataclasses.dataclass(frozen=True)
class TopicStream:
    topic: str
    start_epoch: float
    window_seconds: float
    totals: np.ndarray  # texts per window
    negatives: np.ndarray  # negative texts per window
    surges: list[Surge]


def generate_topic(topic: str, rng: np.random.Generator, windows: int, window_seconds: float = 60.0,
                   start_epoch: float = 1_767_225_600.0, base_volume: float | None = None,
                   surges_per_day: float = 2.0) -> TopicStream:
    """One topic's stream of `windows` windows with surges injected about `surges_per_day` times a day."""
    t = np.arange(windows)
    days = t * window_seconds / DAY
    volume0 = base_volume if base_volume is not None else float(np.exp(rng.uniform(math.log(15), math.log(800))))
    amplitude = rng.uniform(0.3, 0.7)
    phase = rng.uniform(0, 2 * math.pi)
    daily = 1 + amplitude * np.sin(2 * math.pi * days + phase)
    volume_drift = _slow_drift(rng, days, low=0.5, high=2.0)
    volume = volume0 * daily * volume_drift * np.exp(rng.normal(0, 0.15, windows))

    share0 = rng.uniform(0.12, 0.35)
    share_drift = _slow_drift(rng, days, low=0.7, high=1.5)
    share = np.clip(share0 * share_drift * np.exp(rng.normal(0, 0.08, windows)), 0.01, 0.9)

    share_mult = np.ones(windows)
    volume_mult = np.ones(windows)
    surges: list[Surge] = []
    gap = int(DAY / window_seconds / surges_per_day) if surges_per_day > 0 else windows
    position = int(rng.integers(gap // 2, gap)) if surges_per_day > 0 else windows  # a clean warm-up first
    while position < windows - 80:
        surge = _draw_surge(topic, rng, position)
        profile = _profile(surge, rng)
        target = share_mult if surge.kind == "share" else volume_mult
        target[surge.start:surge.end] = profile
        first_full = surge.start + int(np.argmax(profile >= min(surge.multiplier, 2.0) - 1e-9))
        base = float(np.median(volume[surge.start:surge.end]))
        surges.append(dataclasses.replace(surge, first_full=first_full, base_volume=base))
        position = surge.end + int(rng.integers(gap // 2, gap * 3 // 2))

    totals = rng.poisson(volume)
    negatives = rng.binomial(totals, np.clip(share * share_mult, 0, 0.95))
    # A volume surge adds negative texts (k × (m − 1) more), the rest of the conversation unchanged.
    extra = rng.poisson(np.clip(volume * share * (volume_mult - 1), 0, None))
    return TopicStream(topic, start_epoch, window_seconds, totals + extra, negatives + extra, surges)


def _slow_drift(rng: np.random.Generator, days: np.ndarray, low: float, high: float) -> np.ndarray:
    """A smooth multiplicative drift, moving between `low` and `high` over two to five days."""
    period = rng.uniform(2.0, 5.0)
    target = rng.uniform(low, high)
    return np.exp(math.log(target) * (0.5 - 0.5 * np.cos(2 * math.pi * days / (2 * period))))


def _draw_surge(topic: str, rng: np.random.Generator, start: int) -> Surge:
    kind = "share" if rng.random() < 0.6 else "volume"
    shape = "sudden" if rng.random() < 0.6 else "ramped"
    multiplier = float(rng.choice([1.5, 2.0, 2.5, 3.0, 4.0, 5.0]))
    length = int(rng.integers(4, 61))
    if shape == "ramped":
        length = max(length, 12)
    return Surge(topic, kind, shape, multiplier, start, start + length, start, 0.0)


def _profile(surge: Surge, rng: np.random.Generator) -> np.ndarray:
    """Multiplier per window of the surge: flat for sudden; linear up over 5-15 windows then down for ramped."""
    length = surge.end - surge.start
    if surge.shape == "sudden":
        return np.full(length, surge.multiplier)
    ramp = min(int(rng.integers(5, 16)), length // 2)
    profile = np.full(length, surge.multiplier)
    profile[:ramp] = 1 + (surge.multiplier - 1) * np.arange(1, ramp + 1) / ramp
    fall = min(ramp, length - ramp)
    profile[length - fall:] = 1 + (surge.multiplier - 1) * np.arange(fall, 0, -1) / (fall + 1)
    return profile


def generate(topics: int, windows: int, seed: int = 7, window_seconds: float = 60.0,
             surges_per_day: float = 2.0) -> list[TopicStream]:
    rng = np.random.default_rng(seed)
    return [generate_topic(f"topic-{i:02d}", rng, windows, window_seconds, surges_per_day=surges_per_day)
            for i in range(topics)]


def count_series(days: float = 7.0, interval_seconds: float = 300.0, seed: int = 3,
                 start_epoch: float = 1_767_225_600.0) -> tuple[list[tuple[str, int]], list[Surge]]:
    """A `timestamp,value` series for `sentiwatch backtest`: negative mentions per interval with a
    daily cycle, a slow drift and about one volume spike a day; returns the rows and the spikes."""
    rng = np.random.default_rng(seed)
    stream = generate_topic("mentions", rng, int(days * DAY / interval_seconds), interval_seconds,
                            start_epoch=start_epoch, base_volume=400.0, surges_per_day=1.0)
    stamps = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_epoch + i * interval_seconds))
              for i in range(len(stream.negatives))]
    return list(zip(stamps, stream.negatives.tolist(), strict=True)), stream.surges


def main() -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic count series for `sentiwatch backtest`.")
    parser.add_argument("--out", required=True, help="CSV to write (timestamp,value)")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--interval", type=float, default=300.0, help="seconds per row")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rows, surges = count_series(args.days, args.interval, args.seed)
    with open(args.out, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["timestamp", "value"])
        writer.writerows(rows)
    for surge in surges:
        print(f"injected: x{surge.multiplier:g} {surge.shape} spike, rows {surge.start + 2}-{surge.end + 1} "
              f"(from {rows[surge.start][0]}, {surge.end - surge.start} intervals)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
