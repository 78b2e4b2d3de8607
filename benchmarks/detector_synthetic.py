"""Benchmark the spike detector on synthetic streams with known surges (benchmarks/synthetic.py).

Every window of every topic goes through `sentiwatch.streamer.detection.detector.step`, exactly as in the live worker.
An alert "catches" a surge when it opens between the surge's first window and `GRACE` windows after
its last; any other opened alert is false. Reported:
* recall on surges of >= 2x with >= 30 texts per window (target >= 0.95), and for all sizes;
* false alerts per topic per simulated week (target <= 1), with surges and on a surge-free run;
* detection delay in windows, counted from the first window at which the uplift reaches 2x
  (for a sudden surge: its first window; target median <= 2).

    .venv/bin/python benchmarks/detector_synthetic.py --topics 12 --weeks 1 [--config FILE] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.synthetic import Surge, TopicStream, generate  # noqa: E402
from sentiwatch.config import load_settings  # noqa: E402
from sentiwatch.streamer.detection.detector import DetectorConfig, DetectorState, WindowStats, step  # noqa: E402

GRACE = 5
WEEK_WINDOWS = 7 * 24 * 60


@dataclasses.dataclass
class TopicResult:
    opens: list[int]
    caught: dict[int, int]  # surge index -> window the alert opened
    false_opens: int
    duplicate_opens: int
    updates: int


def run_topic(stream: TopicStream, config: DetectorConfig) -> TopicResult:
    state: DetectorState | None = None
    opens: list[int] = []
    updates = 0
    for i, (total, negative) in enumerate(zip(stream.totals.tolist(), stream.negatives.tolist(), strict=True)):
        start = stream.start_epoch + i * stream.window_seconds
        window = WindowStats(stream.topic, start, start + stream.window_seconds, total, negative)
        state, detection = step(state, window, config)
        if detection.transition == "open":
            opens.append(i)
        updates += detection.transition == "update"
    caught: dict[int, int] = {}
    false_opens = duplicates = 0
    for opened in opens:
        match = next((j for j, s in enumerate(stream.surges) if s.start <= opened < s.end + GRACE), None)
        if match is None:
            false_opens += 1
        elif match in caught:
            duplicates += 1
        else:
            caught[match] = opened
    return TopicResult(opens, caught, false_opens, duplicates, updates)


def evaluate(streams: list[TopicStream], config: DetectorConfig) -> dict:
    weeks = sum(len(s.totals) for s in streams) / WEEK_WINDOWS
    rows: list[tuple[Surge, int | None]] = []
    false_opens = duplicates = updates = opens = 0
    for stream in streams:
        result = run_topic(stream, config)
        false_opens += result.false_opens
        duplicates += result.duplicate_opens
        updates += result.updates
        opens += len(result.opens)
        rows += [(surge, result.caught.get(j)) for j, surge in enumerate(stream.surges)]

    def recall(selected: list[tuple[Surge, int | None]]) -> float | None:
        return round(sum(opened is not None for _, opened in selected) / len(selected), 3) if selected else None

    target = [row for row in rows if row[0].multiplier >= 2 and row[0].base_volume >= 30]
    delays = [max(opened - surge.first_full, 0) for surge, opened in target if opened is not None]
    by_size: dict[str, list] = defaultdict(list)
    for surge, opened in rows:
        quiet = " (<30/window)" if surge.base_volume < 30 else ""
        by_size[f"{surge.kind} x{surge.multiplier:g}{quiet}"].append((surge, opened))
    missed = [dataclasses.asdict(surge) for surge, opened in target if opened is None]
    return {
        "topics": len(streams),
        "topic_weeks": round(weeks, 2),
        "surges": len(rows),
        "target_surges": len(target),
        "recall_target": recall(target),
        "recall_all": recall(rows),
        "recall_by_kind_and_size": {key: {"n": len(value), "recall": recall(value)}
                                    for key, value in sorted(by_size.items())},
        "false_alerts_per_topic_week": round(false_opens / weeks, 3),
        "false_alerts": false_opens,
        "duplicate_opens_within_a_surge": duplicates,
        "updates_per_alert": round(updates / opens, 2) if opens else None,
        "delay_windows_median": statistics.median(delays) if delays else None,
        "delay_windows_p90": sorted(delays)[int(0.9 * (len(delays) - 1))] if delays else None,
        "missed_target_surges": missed[:10],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topics", type=int, default=12)
    parser.add_argument("--weeks", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--config", help="sentiwatch config file whose detector_* settings to use")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()

    config = load_settings(args.config).detector
    windows = int(args.weeks * WEEK_WINDOWS)
    began = time.perf_counter()
    report = {"config": dataclasses.asdict(config), "seed": args.seed,
              "with_surges": evaluate(generate(args.topics, windows, seed=args.seed), config),
              "without_surges": evaluate(generate(args.topics, windows, seed=args.seed + 1000, surges_per_day=0),
                                         config)}
    elapsed = time.perf_counter() - began
    report["windows_scored"] = 2 * args.topics * windows
    report["seconds"] = round(elapsed, 1)
    report["microseconds_per_step"] = round(elapsed / report["windows_scored"] * 1e6, 1)
    for key in ("without_surges",):
        report[key] = {k: v for k, v in report[key].items() if k in ("topic_weeks", "false_alerts",
                                                                     "false_alerts_per_topic_week")}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
