"""The detector at default settings on real public count series (benchmarks/real_series.py builds them).

Nothing here was written or labelled by this project, and nothing was tuned on it: the defaults were
chosen on the project's own generators (docs/detector.md says which seeds). Every series goes through
`read_series` and `run_detector` of `sentiwatch backtest`, as a user's CSV would. Reported per series:

* alerts (openings) per week. The series carry no event labels, so every opening counts, also the ones on
  a real event: an upper bound on false alerts per topic-week (the target is at most one);
* whether an alert opened during a few events of public record, chosen by what happened in the world,
  not by looking at the counts: the blizzard that closed New York's airports on 8-9 February 2013 (Winter
  Storm Nemo), New Year's Eve 2015 at Melbourne's Birrarung Marr (the city's fireworks), and the three
  2016 presidential debates in the tweets of one of the candidates.

Since session 6 a slice of New York's cancellations is also a test (tests/detection/test_detector_real.py),
so a later detector change is made knowing those series: the summary is given with and without them.

    .venv/bin/python benchmarks/real_series.py            # once: fetch the packages, build the CSVs
    .venv/bin/python benchmarks/detector_real.py [--config F] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.real_series import DEFAULT_OUT, RealSeries, load_manifest  # noqa: E402
from sentiwatch.config import load_settings  # noqa: E402
from sentiwatch.detector_config import DetectorConfig  # noqa: E402
from sentiwatch.streamer.detection.backtest import read_series, run_detector  # noqa: E402

WEEK = 7 * 86400.0
# Series a test holds the detector to (a development check from session 6 on, not unseen data any more).
IN_TESTS = tuple(f"nycflights13/{airport}_cancelled_5min" for airport in ("NYC", "EWR", "JFK", "LGA"))


@dataclasses.dataclass(frozen=True)
class KnownEvent:
    """An event of public record: did an alert open on `series` between `start` and `end` (UTC)?"""

    name: str
    series: tuple[str, ...]  # "source/name"
    start: str
    end: str


KNOWN_EVENTS = [
    KnownEvent("Winter Storm Nemo closes New York's airports", tuple(
        f"nycflights13/{airport}_cancelled_5min" for airport in ("NYC", "EWR", "JFK", "LGA")),
        "2013-02-08T12:00:00Z", "2013-02-10T00:00:00Z"),
    KnownEvent("New Year's Eve fireworks, Birrarung Marr", ("pedestrians/Birrarung_Marr_1h",),
               "2015-12-31T06:00:00Z", "2015-12-31T15:00:00Z"),
    # The debates ran 21:00-22:30 US Eastern time: 01:00-02:30 UTC the next day; an hour after each is allowed.
    KnownEvent("First presidential debate", ("trump_tweets/all_5min",), "2016-09-27T01:00:00Z", "2016-09-27T03:30:00Z"),
    KnownEvent("Second presidential debate", ("trump_tweets/all_5min",), "2016-10-10T01:00:00Z",
               "2016-10-10T03:30:00Z"),
    KnownEvent("Third presidential debate", ("trump_tweets/all_5min",), "2016-10-20T01:00:00Z", "2016-10-20T03:30:00Z"),
]


@dataclasses.dataclass(frozen=True)
class SeriesResult:
    """The detector's openings on one series."""

    key: str  # "source/name"
    counts: str
    interval: float
    rows: int
    weeks: float
    openings: list[float]  # epoch seconds of each opening
    seconds: float


def evaluate(item: RealSeries, config: DetectorConfig) -> SeriesResult:
    """Run one series through the backtest's reader and detector, as `sentiwatch backtest` would."""
    started = time.perf_counter()
    series = read_series(item.path)
    detections = run_detector(series.points, config, topic=item.name)
    stamps = [point.timestamp for point in series.points]
    openings = sorted({p.timestamp for p, d in zip(series.points, detections, strict=True) if d.transition == "open"})
    weeks = (max(stamps) - min(stamps) + item.interval) / WEEK
    return SeriesResult(f"{item.source}/{item.name}", item.counts, item.interval, len(stamps), weeks, openings,
                        time.perf_counter() - started)


def _evaluate(job: tuple[RealSeries, DetectorConfig]) -> SeriesResult:
    return evaluate(*job)


def known_events(results: list[SeriesResult]) -> list[dict[str, object]]:
    """One row per (event, series): did an alert open during the event? A series that was not built is an
    error, not a silently smaller denominator."""
    by_key = {result.key: result for result in results}
    missing = sorted({key for event in KNOWN_EVENTS for key in event.series} - set(by_key))
    if missing:
        raise SystemExit(f"the known events need series that were not built: {', '.join(missing)}")
    rows = []
    for event in KNOWN_EVENTS:
        start, end = _epoch(event.start), _epoch(event.end)
        for key in event.series:
            hits = [t for t in by_key[key].openings if start <= t < end]
            rows.append({"event": event.name, "series": key, "caught": bool(hits), "opened": [_iso(t) for t in hits]})
    return rows


def summarise(results: list[SeriesResult]) -> dict[str, object]:
    """Alerts per series-week over all the series (every opening counted), and the worst series."""
    weeks = sum(result.weeks for result in results)
    alerts = sum(len(result.openings) for result in results)
    per_week = [len(result.openings) / result.weeks for result in results]
    return {
        "series": len(results),
        "series_weeks": round(weeks, 1),
        "alerts": alerts,
        "alerts_per_series_week": round(alerts / weeks, 3),
        "worst_series_alerts_per_week": round(max(per_week), 2),
        "series_over_one_a_week": sum(rate > 1.0 for rate in per_week),
    }


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> int:
    parser = argparse.ArgumentParser(description="The detector on real public count series.")
    parser.add_argument("--data", type=Path, default=DEFAULT_OUT, help="what real_series.py built (%(default)s)")
    parser.add_argument("--config", type=Path, default=None, help="settings file (default: the defaults)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    if not (args.data / "manifest.json").exists():
        print(f"no series in {args.data}: run benchmarks/real_series.py first", file=sys.stderr)
        return 2
    config = load_settings(args.config).detector
    items = load_manifest(args.data)
    started = time.perf_counter()
    with Pool(args.processes) as pool:
        results = pool.map(_evaluate, [(item, config) for item in items])
    print(f"{'series':45s} {'every':>6s} {'weeks':>6s} {'alerts':>6s} {'a week':>7s}  openings (UTC)")
    for result in results:
        shown = ", ".join(_iso(t)[:16] for t in result.openings[:4]) + (" ..." if len(result.openings) > 4 else "")
        print(f"{result.key:45s} {result.interval:6g} {result.weeks:6.1f} {len(result.openings):6d} "
              f"{len(result.openings) / result.weeks:7.2f}  {shown}")
    events = known_events(results)
    for row in events:
        print(f"{'caught' if row['caught'] else 'MISSED'}: {row['event']} on {row['series']} {row['opened']}")
    summary = summarise(results)
    summary["without_the_series_in_tests"] = summarise([result for result in results if result.key not in IN_TESTS])
    summary["known_event_checks_caught"] = f"{sum(bool(row['caught']) for row in events)}/{len(events)}"
    caught_events = {row["event"] for row in events if row["caught"]}
    summary["known_events_caught"] = f"{len(caught_events)}/{len(KNOWN_EVENTS)} (on at least one of their series)"
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary, indent=2))
    if args.json:
        detail = [dict(dataclasses.asdict(result), openings=[_iso(t) for t in result.openings]) for result in results]
        args.json.write_text(json.dumps({"summary": summary, "known_events": events, "series": detail}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
