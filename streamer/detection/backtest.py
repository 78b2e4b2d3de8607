"""`sentiwatch backtest`: the live detector, same code and config, over a historical CSV series.

Input handling (documented in `sentiwatch backtest --help` and docs):
* columns `timestamp,value` (a count per interval; the detector then watches volume only) or
  `timestamp,total,negative`; other columns are carried through untouched;
* `timestamp` is ISO-8601 (no zone means UTC) or epoch seconds;
* rows are replayed in time order, each seeing only itself and earlier rows; the output keeps
  the input order;
* a row repeated exactly (same timestamp, same numbers) is one interval: it is scored once and
  every copy gets the result; the same timestamp with different numbers is an error;
* each row is one window of the series' typical (median) spacing; a gap between rows reaches the
  detector as it would in the live worker: up to MAX_GAP_WINDOWS empty windows (see `run_detector`);
* any unusable row (bad timestamp, non-numeric or negative count, negative > total) fails the
  run with an error naming the first offending lines, and nothing is written.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import math
import statistics
from datetime import UTC, datetime
from pathlib import Path

from sentiwatch.config import load_settings
from sentiwatch.errors import DataError, SentiwatchError
from sentiwatch.streamer.detection.detector import (
    MAX_GAP_WINDOWS,
    SCALES,
    Detection,
    DetectorConfig,
    DetectorState,
    WindowStats,
    step,
)
from sentiwatch.textio import read_rows

log = logging.getLogger(__name__)

_SHOWN_ERRORS = 5


@dataclasses.dataclass(frozen=True)
class SeriesPoint:
    """One usable input row; `total == negative` for a plain count series."""

    line: int
    timestamp: float
    total: int
    negative: int


@dataclasses.dataclass(frozen=True)
class Series:
    header: list[str]
    rows: list[dict[str, str]]  # the input rows as read, in input order
    points: list[SeriesPoint]  # one per row, same order
    counts_only: bool


def backtest_command(args: argparse.Namespace) -> int:
    """`sentiwatch backtest --input F.csv --output F.csv [--config F] [--plot F.png]`."""
    settings = load_settings(args.config)
    series = read_series(Path(args.input))
    detections = run_detector(series.points, settings.detector, topic=Path(args.input).stem)
    write_output(Path(args.output), series, detections)
    # Exact repeats share one verdict: count each opening interval once.
    alerts = len({p.timestamp for p, d in zip(series.points, detections, strict=True) if d.transition == "open"})
    log.info("backtest: %d rows, %d alerts opened; wrote %s", len(series.points), alerts, args.output)
    if args.plot:
        plot_backtest(Path(args.plot), series, detections, settings.detector)
        log.info("backtest: wrote plot %s", args.plot)
    return 0


def read_series(path: Path) -> Series:
    """Read and validate the whole file; DataError names the first bad lines."""
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    points: list[SeriesPoint] = []
    errors: list[str] = []
    counts_only = False
    for row in read_rows(path):
        if row.fields is None:
            errors.append(f"line {row.line}: {row.error}")
            continue
        if header is None:
            header = list(row.fields)
            counts_only = _check_columns(path, header)
        try:
            points.append(_parse_point(row.line, row.fields, counts_only))
            rows.append(row.fields)
        except ValueError as exc:
            errors.append(f"line {row.line}: {exc}")
    if errors:
        shown = "; ".join(errors[:_SHOWN_ERRORS])
        more = f" (and {len(errors) - _SHOWN_ERRORS} more)" if len(errors) > _SHOWN_ERRORS else ""
        raise DataError(f"{path}: {len(errors)} unusable row(s): {shown}{more}")
    if header is None:
        raise DataError(f"{path}: no data rows")
    _check_duplicates(path, points)
    return Series(header, rows, points, counts_only)


def run_detector(points: list[SeriesPoint], config: DetectorConfig, topic: str,
                 interval: float | None = None) -> list[Detection]:
    """One Detection per point (input order), replaying distinct timestamps in time order.

    A gap between rows is given to the detector as the live worker gives it: empty windows, at most
    MAX_GAP_WINDOWS of them (the rest of a longer gap is skipped over). The detector itself tells an
    outage (no texts where texts were expected) from calm.
    """
    interval = _typical_interval(points) if interval is None else interval
    by_time: dict[float, Detection] = {}
    state: DetectorState | None = None
    previous_end: float | None = None
    for point in sorted(points, key=lambda p: p.timestamp):
        if point.timestamp in by_time:
            continue  # an exact repeat (conflicting ones were rejected on reading)
        if previous_end is not None:
            missing = int((point.timestamp - previous_end) // interval)
            start = max(previous_end, previous_end + (missing - MAX_GAP_WINDOWS) * interval)
            while start + interval <= point.timestamp:
                state, _ = step(state, WindowStats(topic, start, start + interval, 0, 0), config)
                start += interval
        window = WindowStats(topic, point.timestamp, point.timestamp + interval, point.total, point.negative)
        state, by_time[point.timestamp] = step(state, window, config)
        previous_end = point.timestamp + interval
    return [by_time[point.timestamp] for point in points]


def write_output(path: Path, series: Series, detections: list[Detection]) -> None:
    try:
        with open(path, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow([*series.header, "anomaly_score", "alert"])
            for row, detection in zip(series.rows, detections, strict=True):
                writer.writerow([*(row[name] for name in series.header), f"{detection.score:.6f}",
                                 int(detection.active)])
    except OSError as exc:
        raise SentiwatchError(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_columns(path: Path, header: list[str]) -> bool:
    """True for a `timestamp,value` count series; DataError when neither layout fits."""
    names = set(header)
    if "timestamp" in names and {"total", "negative"} <= names:
        return False
    if "timestamp" in names and "value" in names:
        return True
    raise DataError(f"{path}: expected columns timestamp,value or timestamp,total,negative; got {','.join(header)}")


def _parse_point(line: int, fields: dict[str, str], counts_only: bool) -> SeriesPoint:
    timestamp = parse_timestamp(fields["timestamp"])
    if counts_only:
        value = _parse_count("value", fields["value"])
        return SeriesPoint(line, timestamp, value, value)
    total = _parse_count("total", fields["total"])
    negative = _parse_count("negative", fields["negative"])
    if negative > total:
        raise ValueError(f"negative ({negative}) is larger than total ({total})")
    return SeriesPoint(line, timestamp, total, negative)


def parse_timestamp(text: str) -> float:
    """Epoch seconds from ISO-8601 (no zone means UTC) or from a plain number of epoch seconds."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"timestamp {text[:40]!r} is neither ISO-8601 nor epoch seconds") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    if not math.isfinite(value):
        raise ValueError(f"timestamp {text!r} is not a finite number")
    return value


def _parse_count(name: str, text: str) -> int:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{name} {text[:40]!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or not value.is_integer():
        raise ValueError(f"{name} {text[:40]!r} must be a whole number >= 0")
    return int(value)


def _check_duplicates(path: Path, points: list[SeriesPoint]) -> None:
    first: dict[float, SeriesPoint] = {}
    for point in points:
        seen = first.setdefault(point.timestamp, point)
        if (seen.total, seen.negative) != (point.total, point.negative):
            raise DataError(f"{path}: lines {seen.line} and {point.line} have the same timestamp with different "
                            "counts; merge or remove one")


def _typical_interval(points: list[SeriesPoint]) -> float:
    """The median spacing of distinct timestamps: the window length every row stands for."""
    stamps = sorted({point.timestamp for point in points})
    gaps = [later - earlier for earlier, later in zip(stamps, stamps[1:], strict=False)]
    return statistics.median(gaps) if gaps else 60.0


def plot_backtest(path: Path, series: Series, detections: list[Detection], config: DetectorConfig) -> None:
    """PNG: the negative count with its baseline band, the share (when known), and the evidence at each
    time scale (surprise, -log10 p) with the level that opens an alert; alerts shaded and numbered, each
    labelled with the scale whose evidence opened it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SentiwatchError("--plot needs matplotlib (pip install 'sentiwatch[dev]')") from None

    order = sorted(range(len(series.points)), key=lambda i: series.points[i].timestamp)
    times = [datetime.fromtimestamp(series.points[i].timestamp, UTC) for i in order]
    points = [series.points[i] for i in order]
    found = [detections[i] for i in order]
    panels = 2 if series.counts_only else 3
    figure, axes = plt.subplots(panels, 1, figsize=(13, 3 + 2.4 * panels), sharex=True,
                                gridspec_kw={"height_ratios": [3] + [1.6] * (panels - 1)})
    counts = axes[0]
    counts.plot(times, [p.negative for p in points], lw=0.7, color="tab:blue",
                label="value" if series.counts_only else "negative texts")
    counts.plot(times, [d.expected_negative for d in found], lw=1.0, color="tab:green", label="baseline (expected)")
    counts.fill_between(times, [d.expected_negative for d in found], [d.negative_upper for d in found],
                        color="tab:green", alpha=0.15, label="normal band of one window")
    counts.set_ylabel("count per interval")
    counts.set_yscale("symlog", linthresh=10)
    counts.set_ylim(bottom=0)
    if not series.counts_only:
        share = axes[1]
        share.plot(times, [d.negative_ratio for d in found], lw=0.7, color="tab:purple", label="negative share")
        share.plot(times, [d.baseline_ratio for d in found], lw=1.0, color="tab:green", label="baseline share")
        share.set_ylabel("share")
        share.legend(loc="upper left", fontsize=8)
    evidence = axes[-1]
    colours = ("lightgray", "tab:red", "tab:orange", "tab:olive", "tab:cyan")
    for index, (name, colour) in enumerate(zip(SCALES, colours, strict=True)):
        values = [d.surprise[index] if len(d.surprise) > index else 0.0 for d in found]
        evidence.plot(times, values, lw=0.8 if index else 0.5, color=colour,
                      label=name + (" (alone: never opens)" if index == 0 else ""))
    evidence.axhline(config.open_surprise, color="black", ls="--", lw=0.8, label="opens an alert")
    evidence.set_yscale("symlog", linthresh=1)
    evidence.set_ylim(bottom=0)
    evidence.set_ylabel("evidence, -log10 p")
    evidence.legend(loc="upper left", fontsize=7, ncol=3)
    spans = _alert_spans(times, found)
    for number, (start, end) in enumerate(spans, start=1):
        for axis in axes:
            axis.axvspan(start, end, color="tab:red", alpha=0.18, lw=0)
        opened = found[times.index(start)]
        strongest = max(range(1, len(opened.surprise)), key=lambda i: opened.surprise[i], default=0)
        label = f"{number}: {SCALES[strongest]}" if opened.surprise else str(number)
        evidence.annotate(label, (start, config.open_surprise), xytext=(0, 14), textcoords="offset points",
                          fontsize=7, rotation=90, color="tab:red")
    counts.plot([], [], color="tab:red", alpha=0.3, lw=6, label="alert active")
    counts.legend(loc="upper left", fontsize=8)
    counts.set_title(f"sentiwatch backtest: {len(points)} intervals, {len(spans)} alerts "
                     "(numbered; each labelled with the time scale whose evidence opened it)")
    figure.autofmt_xdate()
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    except OSError as exc:
        raise SentiwatchError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)


def _alert_spans(times: list[datetime], detections: list[Detection]) -> list[tuple[datetime, datetime]]:
    spans: list[tuple[datetime, datetime]] = []
    start: datetime | None = None
    for moment, detection in zip(times, detections, strict=True):
        if detection.active and start is None:
            start = moment
        elif not detection.active and start is not None:
            spans.append((start, moment))
            start = None
    if start is not None:
        spans.append((start, times[-1]))
    return spans
