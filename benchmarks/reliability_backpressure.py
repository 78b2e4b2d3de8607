"""Backpressure (issue 6, guarantee 4): produce 5x faster than one worker can score, then let it drain.

First the worker's own scoring rate R is measured on a burst; then records are produced at 5R for
`--seconds`; the worker's RSS and lag are sampled every second until the lag has drained. Memory must
stay bounded (Faust's stream buffer, `stream_buffer_maxsize`, not the heap, absorbs the excess), the
lag must grow and then drain, and every id must be scored.

    nice .venv/bin/python benchmarks/reliability_backpressure.py --bundle DIR --seconds 120 [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sentiwatch.config import load_settings  # noqa: E402
from sentiwatch.tools.replay import produce as replay_produce  # noqa: E402
from tests.streaming_helpers import WorkerProcess, consume, produce, running_broker  # noqa: E402

TEXT = ("The quarterly numbers were a disappointment and the outlook is worse than anyone feared; "
        "customers complain about delays, support is slow, and the new product keeps crashing. ")


def records(prefix: str, n: int) -> list[tuple[bytes | None, bytes]]:
    return [(None, json.dumps({"id": f"{prefix}{i}", "text": f"{TEXT} #{i}"}).encode()) for i in range(n)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclasses.dataclass
class BackpressureReport:
    scoring_rate: float  # R, records/s, measured on a burst
    target_rate: float  # 5R
    achieved_rate: float  # what the producer really reached
    overload: float  # achieved rate / the rate the worker really scored at while the producer ran
    produced: int
    seconds_producing: float
    lag_peak: int
    drain_seconds: float  # end of production -> lag 0
    rss_before_mb: float  # after the burst, before the overload
    rss_peak_mb: float
    rss_after_mb: float
    lost: int
    duplicates: int
    samples: list[tuple[float, float, int]]  # (seconds since start of overload, RSS MB, lag)


def wait_processed(worker: WorkerProcess, records_processed: int) -> tuple[float, int]:
    """Block until the worker has processed that many records; return (when, how many it had then)."""
    while True:
        done = worker.status()["records_processed"]
        if done >= records_processed:
            return time.monotonic(), done
        time.sleep(0.05)


def run(bundle: Path, seconds: float, factor: float, calibration: int, log_dir: Path) -> BackpressureReport:
    with running_broker() as brokers:
        worker = WorkerProcess(bundle, brokers, log_dir / "worker.log")
        try:
            worker.wait_ready()
            # Warm-up first (group join, first batches), so that R is the steady scoring rate.
            warmup = records("warmup-", 200)
            produce(brokers, "sentiwatch.texts", warmup)
            wait_processed(worker, len(warmup))
            burst = records("burst-", calibration)
            produce(brokers, "sentiwatch.texts", burst)
            # Timed between 10% and 90% of the burst, with the rest waiting in Kafka: the rate of a worker
            # with a backlog. (Timing from the start of production counted the producer's time too and
            # made R, and so the overload, too small.)
            first_at, first_done = wait_processed(worker, len(warmup) + len(burst) // 10)
            last_at, last_done = wait_processed(worker, len(warmup) + len(burst) * 9 // 10)
            rate = (last_done - first_done) / (last_at - first_at)
            wait_processed(worker, len(warmup) + len(burst))
            burst += warmup
            load = records("load-", int(rate * factor * seconds))
            settings = load_settings(environ={"SENTIWATCH_BROKERS": brokers})
            producing = threading.Thread(target=lambda: asyncio.run(
                replay_produce(settings, "sentiwatch.texts", load, rate=rate * factor)))
            rss_before = rss_mb(worker.process.pid)
            t0 = time.monotonic()
            producing.start()
            samples: list[tuple[float, float, int]] = []
            production_end, processed_at_start, processed_at_end = None, worker.status()["records_processed"], 0
            while True:
                time.sleep(1.0)
                now = time.monotonic() - t0
                status = worker.status()
                # Produced so far: paced, so elapsed x rate while producing (the broker's end offsets are unreliable).
                produced = len(load) if not producing.is_alive() else min(len(load), int(now * rate * factor))
                lag = max(0, len(burst) + produced - status["records_processed"])
                samples.append((round(now, 1), round(rss_mb(worker.process.pid), 1), lag))
                if production_end is None and not producing.is_alive():
                    production_end, processed_at_end = now, status["records_processed"]
                if production_end is not None and status["records_processed"] >= len(burst) + len(load):
                    break
            drained_at = time.monotonic() - t0
            scored = consume(brokers, "sentiwatch.scored", len(burst) + len(load), timeout=120)
            ids = Counter(json.loads(r.value)["id"] for r in scored)
            expected = {json.loads(v)["id"] for _, v in burst + load}
            return BackpressureReport(
                scoring_rate=round(rate), target_rate=round(rate * factor),
                achieved_rate=round(len(load) / production_end),
                overload=round(len(load) / max(1, processed_at_end - processed_at_start), 2), produced=len(load),
                seconds_producing=round(production_end, 1), lag_peak=max(s[2] for s in samples),
                drain_seconds=round(drained_at - production_end, 1), rss_before_mb=round(rss_before, 1),
                rss_peak_mb=max(s[1] for s in samples), rss_after_mb=samples[-1][1],
                lost=len(expected - set(ids)), duplicates=sum(ids.values()) - len(ids), samples=samples)
        finally:
            worker.kill()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to overload the worker")
    parser.add_argument("--factor", type=float, default=5.0, help="production rate / scoring rate")
    parser.add_argument("--calibration", type=int, default=3000, help="records timed to measure the scoring rate")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--logs", type=Path, default=Path("/tmp/sentiwatch-backpressure"))
    args = parser.parse_args(argv)
    args.logs.mkdir(parents=True, exist_ok=True)
    report = dataclasses.asdict(run(args.bundle, args.seconds, args.factor, args.calibration, args.logs))
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}))
    if args.json:
        args.json.write_text(json.dumps(report) + "\n")
    return 0 if report["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
