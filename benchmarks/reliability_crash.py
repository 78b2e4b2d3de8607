"""Crash, nothing lost (issue 6, guarantee 1): `kill -9` a worker part-way through a replay and count.

Two scenarios against the embedded broker with real `sentiwatch stream` processes:
* restart: one worker is killed and started again;
* takeover: two workers share the partitions, one is killed, the survivor must finish everything.
Reported: records lost (must be 0), duplicates on the scored topic, recovery time (kill -> every id
scored), and the window totals the workers hold afterwards against a recount of the scored records.

    .venv/bin/python benchmarks/reliability_crash.py --bundle DIR --records 20000 [--json OUT]

tests/reliability/test_reliability_crash.py runs the same scenarios with a few thousand records.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sentiwatch.streamer.windows.tumbling import window_start  # noqa: E402
from tests.streaming_helpers import WorkerProcess, consume, produce, running_broker  # noqa: E402

WINDOW_SECONDS = 60
BASE_TS = 1_700_000_040  # a window start
TOPICS = [f"crash-topic-{i}" for i in range(8)]


@dataclasses.dataclass
class CrashReport:
    scenario: str
    records: int
    killed_after: int  # records the killed worker had processed
    lost: int
    duplicates: int  # scored records beyond one per id
    recovery_seconds: float  # kill -> every id on the scored topic
    resume_seconds: float  # kill -> the new owner works: restarted worker scored again / survivor holds all partitions
    window_total: int  # sum of all window counts held by the workers afterwards
    unique_scored: int
    scored_with_duplicates: int
    windows_off: dict[str, int]  # "topic@start" -> window count minus the unique recount, where not 0
    windows_below_unique: int  # windows holding fewer than the unique records scored into them
    windows_above_unique: int  # windows holding more: a redelivered record counted twice (must be 0)
    worst_topic_shortfall: int  # the most records one topic's windows miss against the unique recount
    late: int  # records the surviving workers counted as late (for a closed window): never in a window
    supervisor_restarts: int  # workers that exited on their own (watchdog) and were started again
    windows_above_all: int  # windows holding more than every scored copy, duplicates included

    @property
    def window_excess(self) -> int:
        return self.window_total - self.unique_scored


def records(n: int, prefix: str) -> list[tuple[bytes | None, bytes]]:
    """Unkeyed records (spread over every input partition), event times spread over about 6 windows."""
    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        value = {"id": f"{prefix}{i}", "topic": topic, "ts": BASE_TS + i * 6 * WINDOW_SECONDS / n,
                 "text": f"crash test text number {i} about {topic}"}
        out.append((None, json.dumps(value).encode()))
    return out


def topic_env(name: str) -> dict[str, str]:
    return {"SENTIWATCH_INPUT_TOPIC": f"{name}.texts", "SENTIWATCH_SCORED_TOPIC": f"{name}.scored",
            "SENTIWATCH_DLQ_TOPIC": f"{name}.dlq", "SENTIWATCH_ALERTS_TOPIC": f"{name}.alerts",
            "SENTIWATCH_CONSUMER_GROUP": name, "SENTIWATCH_BATCH_MAX": "64",
            # Producer topics get their own windows only when configured (streamer/scoring/topics.py).
            "SENTIWATCH_TOPIC_ALLOWLIST": json.dumps(TOPICS),
            "SENTIWATCH_BATCH_WITHIN_SECONDS": "0.05", "SENTIWATCH_LONG_WINDOW_SECONDS": "3600",
            # A stuck worker exits after this long (watchdog) and is started again (`supervise`).
            "SENTIWATCH_LIVENESS_STALL_SECONDS": "25"}


def run_restart(bundle: Path, brokers: str, n: int, log_dir: Path, name: str = "crash") -> CrashReport:
    """One worker, killed once a third is processed, then started again."""
    env = topic_env(name)
    inputs = records(n, f"{name}-")
    produce(brokers, env["SENTIWATCH_INPUT_TOPIC"], inputs)
    worker = WorkerProcess(bundle, brokers, log_dir / f"{name}-first.log", env)
    running = [worker]
    try:
        worker.wait_ready()
        killed_after = wait_processed([worker], n // 3)
        worker.kill()
        killed_at = time.monotonic()
        running[0] = WorkerProcess(bundle, brokers, log_dir / f"{name}-second.log", env)
        running[0].wait_ready()
        wait_processed(running, 1)
        resumed = time.monotonic() - killed_at
        return measure(name + ":restart", brokers, env, inputs, killed_after, killed_at, resumed, running)
    finally:
        for process in [worker, *running]:
            process.kill()


def run_takeover(bundle: Path, brokers: str, n: int, log_dir: Path, name: str = "takeover") -> CrashReport:
    """Two workers; one is killed once a third is processed; the survivor must take its partitions over."""
    env = topic_env(name)
    inputs = records(n, f"{name}-")
    victim = WorkerProcess(bundle, brokers, log_dir / f"{name}-victim.log", env)
    survivor = WorkerProcess(bundle, brokers, log_dir / f"{name}-survivor.log", env)
    running = [survivor]  # `measure` restarts a worker that exits on its own, in place
    try:
        victim.wait_ready()
        survivor.wait_ready()
        deadline = time.monotonic() + 60
        # Both must hold input partitions before the load arrives, or the victim might hold none.
        while not (victim.status()["lag"] and survivor.status()["lag"]) and time.monotonic() < deadline:
            time.sleep(0.3)
        produce(brokers, env["SENTIWATCH_INPUT_TOPIC"], inputs)
        killed_after = wait_processed([victim], n // 6)
        victim.kill()
        killed_at = time.monotonic()
        while set(survivor.status()["lag"]) != {"0", "1", "2", "3"}:
            if time.monotonic() > killed_at + 90:
                raise AssertionError(f"the survivor holds input partitions {sorted(survivor.status()['lag'])}, "
                                     "not all four, 90 s after the kill")
            time.sleep(0.2)
        resumed = time.monotonic() - killed_at
        return measure(name + ":takeover", brokers, env, inputs, killed_after, killed_at, resumed, running)
    finally:
        for process in [victim, survivor, *running]:
            process.kill()


def wait_processed(workers: Sequence[WorkerProcess], at_least: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sum(worker.status()["records_processed"] for worker in workers)
        if done >= at_least:
            return done
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} records processed within {timeout} s")


def measure(scenario: str, brokers: str, env: dict[str, str], inputs: list[tuple[bytes | None, bytes]],
            killed_after: int, killed_at: float, resumed: float, workers: list[WorkerProcess]) -> CrashReport:
    expected = {json.loads(value)["id"] for _, value in inputs}
    scored_topic = env["SENTIWATCH_SCORED_TOPIC"]
    want, restarts = len(expected), 0
    while True:
        scored = consume(brokers, scored_topic, want, timeout=5)
        if {json.loads(r.value)["id"] for r in scored} >= expected or time.monotonic() > killed_at + 300:
            break
        want = max(want, len(scored) + 1)
        restarts += supervise(workers)
    recovery = time.monotonic() - killed_at
    values = [json.loads(r.value) for r in scored]
    ids = Counter(v["id"] for v in values)
    unique: dict[str, dict[str, Any]] = {}
    for record, value in zip(scored, values, strict=True):
        unique.setdefault(value["id"], {"key": record.key.decode(), "ts": value["ts"]})
    recount = Counter(f"{u['key']}@{window_start(u['ts'], WINDOW_SECONDS)}" for u in unique.values())
    recount_all = Counter(f"{r.key.decode()}@{window_start(v['ts'], WINDOW_SECONDS)}"
                          for r, v in zip(scored, values, strict=True))
    windows = settled_windows(workers)
    off = {key: windows.get(key, 0) - recount.get(key, 0) for key in set(windows) | set(recount)}
    shortfall: Counter[str] = Counter()
    for key, difference in off.items():
        if difference < 0:
            shortfall[key.rsplit("@", 1)[0]] -= difference
    return CrashReport(scenario=scenario, records=len(inputs), killed_after=killed_after,
                       lost=len(expected - set(ids)), duplicates=sum(ids.values()) - len(ids),
                       recovery_seconds=round(recovery, 1), resume_seconds=round(resumed, 1),
                       window_total=sum(windows.values()),
                       unique_scored=len(ids), scored_with_duplicates=sum(ids.values()),
                       windows_off={k: v for k, v in sorted(off.items()) if v},
                       windows_below_unique=sum(1 for k, v in off.items() if v < 0),
                       windows_above_unique=sum(1 for k, v in off.items() if v > 0),
                       worst_topic_shortfall=max(shortfall.values(), default=0),
                       supervisor_restarts=restarts,
                       late=int(sum(worker.metrics()[("sentiwatch_late_records_total", ())] for worker in workers)),
                       windows_above_all=sum(1 for k in off if windows.get(k, 0) > recount_all.get(k, 0)))


def supervise(workers: list[WorkerProcess]) -> int:
    """What Kubernetes does: start again a worker that exited (its watchdog ends a stuck worker)."""
    restarted = 0
    for index, worker in enumerate(workers):
        if worker.process.poll() is not None:
            env = {k: v for k, v in worker.env.items() if k.startswith("SENTIWATCH_") and k != "SENTIWATCH_WEB_PORT"}
            log = worker.log_path.with_name(f"{worker.log_path.stem}-restart{index}.log")
            workers[index] = WorkerProcess(Path(env["SENTIWATCH_BUNDLE"]), env["SENTIWATCH_BROKERS"], log, env)
            workers[index].wait_ready()
            restarted += 1
    return restarted


def settled_windows(workers: Sequence[WorkerProcess], quiet_seconds: float = 4.0) -> Counter[str]:
    """Window totals ("topic@start" -> count) from /status, once they have stopped changing."""
    previous: Counter[str] | None = None
    stable_since = time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        current: Counter[str] = Counter()
        for worker in workers:
            for topic, info in worker.status()["topics"].items():
                for window in info["closed_windows"] + info["open_windows"]:
                    if window["total"]:
                        current[f"{topic}@{window['start']}"] += window["total"]
        if current != previous:
            previous, stable_since = current, time.monotonic()
        elif time.monotonic() - stable_since >= quiet_seconds:
            break
        time.sleep(0.5)
    return previous or Counter()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--json", type=Path, help="also write the reports here")
    parser.add_argument("--logs", type=Path, default=Path("/tmp/sentiwatch-reliability-crash"))
    args = parser.parse_args(argv)
    args.logs.mkdir(parents=True, exist_ok=True)
    reports = []
    for scenario in (run_restart, run_takeover):
        with running_broker() as brokers:
            report = scenario(args.bundle, brokers, args.records, args.logs)
        reports.append({**dataclasses.asdict(report), "window_excess": report.window_excess})
        print(json.dumps(reports[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2) + "\n")
    return 0 if all(r["lost"] == 0 for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
