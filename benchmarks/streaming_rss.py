"""Worker memory over a long run at a steady rate: does RSS stay flat (target: <= 10% growth)?

    .venv/bin/python benchmarks/streaming_rss.py --bundle DIR [--rate 60] [--minutes 14] [--warmup-seconds 240]

Starts an embedded broker and one `sentiwatch stream` worker, produces the built-in test texts at
`--rate` records/s, samples the worker's RSS every 10 s, and compares the first sample after the
warm-up with the last. The default warm-up (240 s) lasts until the first windows have closed (60 s
window + 120 s allowed lateness), so every code path (detector, term baselines, alerts) has run once
before the comparison starts; 14 minutes then leave 10 minutes of steady state. Also checks that every
produced record came out scored.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sentiwatch.config import load_settings
from sentiwatch.exporter.bench_e2e import bench_records, read_scored, wait_assigned
from sentiwatch.streamer.kafka.broker import embedded_broker, free_port
from sentiwatch.tools.replay import produce

SAMPLE_SECONDS = 10.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def drive(settings, topic: str, texts: list[str], rate: float, seconds: float, pid: int,
                samples: list[tuple[float, float]]) -> int:
    count = int(rate * seconds)
    started = time.monotonic()

    async def sample() -> None:
        while time.monotonic() - started < seconds + 5:
            samples.append((round(time.monotonic() - started, 1), round(rss_mib(pid), 1)))
            await asyncio.sleep(SAMPLE_SECONDS)

    sampler = asyncio.ensure_future(sample())
    await produce(settings, topic, bench_records(texts, count, "rss"), rate=rate)
    await sampler
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--rate", type=float, default=60.0)
    parser.add_argument("--minutes", type=float, default=14.0)
    parser.add_argument("--warmup-seconds", type=float, default=240.0)
    parser.add_argument("--output")
    args = parser.parse_args()
    from sentiwatch.trainer.data import builtin_test_texts

    texts = [row["text"] for row in builtin_test_texts()]
    with embedded_broker() as brokers:
        port = free_port()
        env = {**os.environ, "SENTIWATCH_BROKERS": brokers, "SENTIWATCH_BUNDLE": args.bundle,
               "SENTIWATCH_WEB_PORT": str(port)}
        log_file = Path(tempfile.gettempdir()) / "sentiwatch-rss-worker.log"
        with open(log_file, "ab") as out:
            worker = subprocess.Popen([sys.executable, "-m", "sentiwatch.cli", "stream"], env=env, stdout=out,
                                      stderr=subprocess.STDOUT)
        try:
            wait_assigned(f"http://127.0.0.1:{port}/status", worker, log_file)
            settings = load_settings(environ={"SENTIWATCH_BROKERS": brokers})
            samples: list[tuple[float, float]] = []
            count = asyncio.run(drive(settings, "sentiwatch.texts", texts, args.rate, args.minutes * 60, worker.pid,
                                      samples))
            scored = asyncio.run(read_scored(settings, "sentiwatch.scored", count, timeout=300, prefix="rss"))
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                e2e_count = [line for line in response.read().decode().splitlines()
                        if line.startswith("sentiwatch_end_to_end_seconds_count")]
        finally:
            worker.terminate()
            worker.wait(30)
    after_warmup = [rss for t, rss in samples if t >= args.warmup_seconds] or [samples[-1][1]]
    result = {"rate_per_s": args.rate, "minutes": args.minutes, "warmup_seconds": args.warmup_seconds,
              "records": count, "scored": len(scored),
              "rss_mib_first_after_warmup": after_warmup[0], "rss_mib_last": after_warmup[-1],
              "rss_mib_max": max(after_warmup), "growth_pct": round(100 * (after_warmup[-1] / after_warmup[0] - 1), 1),
              "samples": samples, "end_to_end_count": e2e_count}
    print(json.dumps(result, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["growth_pct"] <= 10 and len(scored) == count else 1


if __name__ == "__main__":
    sys.exit(main())
