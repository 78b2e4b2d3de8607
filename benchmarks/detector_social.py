"""Evaluate the detector on realistic social-media series with labelled events (benchmarks/social_series.py).

Every series goes through `run_detector` of `sentiwatch backtest` (gaps and all), so this measures what a
user of the backtest and the live worker gets. An alert is one *opening*. Reported per interval:

* false alerts per topic-week: openings outside every labelled event (from its start to an hour after its end);
* recall of major events (negatives >= 5x for >= 30 minutes): opened from the event's start to 15 minutes
  after its end; and of minor ones (2-4x, optional);
* delay in windows from the window holding the event's start to the opening window (median, p90); an
  event that begins while an alert is already open counts as caught with delay 0;
* the Numenta Anomaly Benchmark score, standard profile (A_TP = 1, A_FP = -0.11, A_FN = -1), implemented
  from Lavin & Ahmad (2015): the first opening in an event window scores A_TP * sigma(y), y in [-1, 0] its
  position in the window (sigma(y) = 2 / (1 + e^(5y)) - 1, so early is worth almost 1 and late almost 0);
  an opening outside every window scores A_FP far from any window, or A_FP * -sigma(y) right after one
  (y its distance after the preceding window, in window widths: less of a penalty just after); a window
  without an opening scores A_FN. Normalised to 100 for the perfect detector (every window opened at its
  start) and 0 for the null one (never opens). Windows here are the labelled major events (start to end + 15 min);
  openings inside minor events are neither rewarded nor penalised.

Tune on some seeds, report on others (see docs/detector.md for which were used):

    .venv/bin/python benchmarks/detector_social.py --seeds 100-139 --weeks 2 --interval 300 [--config F] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.social_series import WEEK, Series, generate_series  # noqa: E402
from sentiwatch.config import load_settings  # noqa: E402
from sentiwatch.detector_config import DetectorConfig  # noqa: E402
from sentiwatch.streamer.detection.backtest import SeriesPoint, run_detector  # noqa: E402

CATCH_AFTER_END = 15 * 60.0  # an opening this long after an event's end still catches it
EVENT_SHADOW = 3600.0  # an opening this long after an event's end is not false either
NAB_TP, NAB_FP, NAB_FN = 1.0, -0.11, -1.0


@dataclasses.dataclass
class SeriesResult:
    weeks: float
    opens: list[float]  # seconds from the series' start
    false_opens: list[float]
    major: list[float | None]  # delay in windows per major event, None when missed
    minor: list[float | None]
    nab_raw: float
    nab_perfect: float
    nab_null: float


def evaluate_series(series: Series, config: DetectorConfig) -> SeriesResult:
    rows = series.rows()
    points = [SeriesPoint(i + 2, stamp, total, negative) for i, (stamp, total, negative) in enumerate(rows)]
    detections = run_detector(points, config, topic=series.topic, interval=series.interval)
    opens = [p.timestamp - series.start_epoch for p, d in zip(points, detections, strict=True)
             if d.transition == "open"]
    spans = _active_spans([p.timestamp - series.start_epoch for p in points], [d.active for d in detections])
    events = sorted(series.events, key=lambda e: e.start)
    false_opens = [t for t in opens if not any(e.start <= t < e.end + EVENT_SHADOW for e in events)]

    def delays(kind: str) -> list[float | None]:
        found: list[float | None] = []
        for event in (e for e in events if e.kind == kind):
            first_row = math.floor(event.start / series.interval)
            caught = [t for t in opens if event.start <= t < event.end + CATCH_AFTER_END]
            if caught:
                found.append(round(caught[0] / series.interval) - first_row)
            else:  # an alert already open when the event began (a burst just before it) covers it
                found.append(0 if any(a <= event.start < b for a, b in spans) else None)
        return found

    raw, perfect, null = _nab(opens, [e for e in events if e.kind == "major"],
                              [e for e in events if e.kind == "minor"])
    return SeriesResult(len(series.totals) * series.interval / WEEK, opens, false_opens, delays("major"),
                        delays("minor"), raw, perfect, null)


def _active_spans(times: list[float], active: list[bool]) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for moment, on in zip(times, active, strict=True):
        if on and start is None:
            start = moment
        elif not on and start is not None:
            spans.append((start, moment))
            start = None
    if start is not None:
        spans.append((start, times[-1]))
    return spans


def _sigmoid(y: float) -> float:
    return 2.0 / (1.0 + math.exp(min(5.0 * y, 700.0))) - 1.0  # -1 far after a window (no overflow)


def _nab(opens: list[float], windows: list, neutral: list) -> tuple[float, float, float]:
    """NAB raw score of the openings, and of the perfect and the null detector on the same windows."""
    spans = [(e.start, e.end + CATCH_AFTER_END) for e in windows]
    raw = 0.0
    hit = set()
    for t in opens:
        inside = next((i for i, (a, b) in enumerate(spans) if a <= t < b), None)
        if inside is not None:
            if inside not in hit:
                hit.add(inside)
                a, b = spans[inside]
                raw += NAB_TP * _sigmoid(-(b - t) / (b - a))
            continue
        if any(e.start <= t < e.end + EVENT_SHADOW for e in neutral + windows):
            continue
        before = [(a, b) for a, b in spans if b <= t]
        if before:
            a, b = max(before, key=lambda span: span[1])
            raw += -NAB_FP * _sigmoid((t - b) / (b - a))
        else:
            raw += NAB_FP
    raw += NAB_FN * (len(spans) - len(hit))
    perfect = sum(NAB_TP * _sigmoid(-1.0) for _ in spans)
    return raw, perfect, NAB_FN * len(spans)


def summarise(results: list[SeriesResult]) -> dict:
    weeks = sum(r.weeks for r in results)
    major = [d for r in results for d in r.major]
    minor = [d for r in results for d in r.minor]
    delays = sorted(d for d in major if d is not None)
    false_per_series = [len(r.false_opens) / r.weeks for r in results]
    perfect = sum(r.nab_perfect for r in results)
    null = sum(r.nab_null for r in results)
    return {
        "series": len(results),
        "topic_weeks": round(weeks, 1),
        "alerts": sum(len(r.opens) for r in results),
        "false_alerts": sum(len(r.false_opens) for r in results),
        "false_alerts_per_topic_week": round(sum(len(r.false_opens) for r in results) / weeks, 3),
        "worst_topic_false_alerts_per_week": round(max(false_per_series), 2) if results else None,
        "major_events": len(major),
        "major_recall": round(sum(d is not None for d in major) / len(major), 3) if major else None,
        "minor_events": len(minor),
        "minor_recall": round(sum(d is not None for d in minor) / len(minor), 3) if minor else None,
        "delay_windows_median": statistics.median(delays) if delays else None,
        "delay_windows_p90": delays[int(0.9 * (len(delays) - 1))] if delays else None,
        "nab_standard": round(100 * (sum(r.nab_raw for r in results) - null) / (perfect - null), 1)
        if perfect != null else None,
    }


def parse_seeds(text: str) -> range:
    first, _, last = text.partition("-")
    return range(int(first), int(last or first) + 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="100-139", help="series seeds, FIRST-LAST (tuning used 0-19)")
    parser.add_argument("--weeks", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=300.0, help="seconds per window (300 or 60)")
    parser.add_argument("--config", help="sentiwatch config file whose detector_* settings to use")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    config = load_settings(args.config).detector
    began = time.perf_counter()
    results = [evaluate_series(generate_series(f"topic-{seed}", seed, args.weeks, args.interval), config)
               for seed in parse_seeds(args.seeds)]
    report = {"seeds": args.seeds, "interval_seconds": args.interval, "weeks": args.weeks,
              **summarise(results), "seconds": round(time.perf_counter() - began, 1)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
