"""Hostile input through a real worker (issue 6, guarantee 3): generated bad records mixed with valid ones.

Every bad record must reach the DLQ with a reason, every valid one the scored topic, in order, and the
worker must survive. Valid records all carry one producer topic and one key, so they share an input
partition and a scored partition and their order is defined.

    .venv/bin/python benchmarks/fuzz_input.py --bundle DIR --records 10000 [--json OUT]

tests/scoring/test_fuzz_input.py runs a few hundred of these through a worker, and hypothesis over the pure code.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sentiwatch.streamer.scoring.records import MAX_DEAD_LETTER_RAW_BYTES  # noqa: E402
from tests.streaming_helpers import WorkerProcess, consume, produce, running_broker  # noqa: E402

KEY = b"fuzz"
MAX_TEXT_BYTES = 20_000  # the default limit; texts over it are dead letters
SCRIPTS = ["Grüße aus Köln", "Привет мир", "你好，世界", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
           "こんにちは世界", "안녕하세요", "Γειά σου Κόσμε", "🙂🔥💥👍🏽", "👨‍👩‍👧‍👦 family", "e\u0301\u0301 combining",
           "\u202eRTL override", "zero\u200bwidth", "tab\tnew\nline\r", "\x00\x01\x07\x1b[31m escape"]


@dataclasses.dataclass(frozen=True)
class Generated:
    raw: bytes
    valid_id: str | None  # set when the record is valid by construction (it must be scored)


def _valid(rng: random.Random, i: int) -> Generated:
    text = " ".join(rng.choice(SCRIPTS) for _ in range(rng.randint(1, 4)))
    value = {"id": f"ok-{i}", "text": text, "topic": "fuzz"}
    if rng.random() < 0.3:
        value["extra"] = {"nested": [1, {"deep": [None, True, 1.5]}]}  # passed through untouched
    if rng.random() < 0.3:
        value["ts"] = rng.choice([1_700_000_000, "2023-11-14T22:13:20Z", "1700000000.5"])
    return Generated(json.dumps(value, ensure_ascii=rng.random() < 0.5).encode(), value["id"])


# Each maker returns bytes that must be rejected.
def _bad_makers() -> list[Callable[[random.Random, int], bytes]]:
    def obj(value: object) -> bytes:
        return json.dumps(value).encode()

    return [
        lambda r, i: bytes(r.getrandbits(8) for _ in range(r.randint(0, 64))) + b"\xff",  # random, never UTF-8
        lambda r, i: b"\xc3\x28 invalid utf-8 " + str(i).encode(),
        lambda r, i: b'{"id": "x' + str(i).encode() + b'", "text": ',  # truncated JSON
        lambda r, i: b"[" * r.randint(1_000, 100_000),  # nested too deeply
        lambda r, i: obj(r.choice([[1, 2], "text", 42, None, True, 1.5])),  # JSON, not an object
        lambda r, i: obj({"text": "no id"}),
        lambda r, i: obj({"id": "", "text": "empty id"}),
        lambda r, i: obj({"id": f"bad-{i}"}),
        lambda r, i: obj({"id": f"bad-{i}", "text": r.choice(["", " ", "\n\t  ", "\u3000\u2003"])}),
        lambda r, i: obj({"id": r.choice([1, 1.5, True, [1], {"a": 1}]), "text": "wrong id type"}),
        lambda r, i: obj({"id": f"bad-{i}", "text": r.choice([1, None, [], {"t": "x"}, False])}),
        lambda r, i: obj({"id": f"bad-{i}", "text": "x", "topic": r.choice([1, [], {}])}),
        lambda r, i: obj({"id": f"bad-{i}", "text": "x", "ts": r.choice(["yesterday", -5, "NaN", 1e20, [], True])}),
        # Over the limit; the first and then one in a hundred is a 1 MB text (all pass through the broker's memory).
        lambda r, i: obj({"id": f"bad-{i}", "text": "big " * (250_000 if i % 100 == 0 else 6_000)}),
        lambda r, i: b'{"id": "bad-' + str(i).encode() + b'", "text": "lone \\ud800 surrogate"}',
    ]


def hostile_records(n: int, seed: int = 6, bad_share: float = 0.5) -> list[Generated]:
    """n records, about `bad_share` of them bad, from a fixed seed (reproducible)."""
    rng = random.Random(seed)
    makers = _bad_makers()
    out = []
    bad = 0
    for i in range(n):
        if rng.random() < bad_share:
            # Round robin over the makers; a maker's i-th record gets `i` (so every maker runs early).
            out.append(Generated(makers[bad % len(makers)](rng, bad // len(makers)), None))
            bad += 1
        else:
            out.append(_valid(rng, i))
    return out


@dataclasses.dataclass
class FuzzReport:
    records: int
    valid: int
    bad: int
    scored: int
    dead_lettered: int
    lost: int  # valid records not scored + bad records not dead-lettered
    out_of_order: bool
    reasons: dict[str, int]
    worker_alive: bool
    seconds: float
    worker_peak_rss_mb: float


def run_fuzz(bundle: Path, brokers: str, n: int, log_dir: Path, seed: int = 6, name: str = "fuzz") -> FuzzReport:
    generated = hostile_records(n, seed)
    env = {"SENTIWATCH_INPUT_TOPIC": f"{name}.texts", "SENTIWATCH_SCORED_TOPIC": f"{name}.scored",
           "SENTIWATCH_DLQ_TOPIC": f"{name}.dlq", "SENTIWATCH_ALERTS_TOPIC": f"{name}.alerts",
           "SENTIWATCH_CONSUMER_GROUP": name, "SENTIWATCH_BATCH_WITHIN_SECONDS": "0.05",
           "SENTIWATCH_MAX_TEXT_BYTES": str(MAX_TEXT_BYTES)}
    worker = WorkerProcess(bundle, brokers, log_dir / f"{name}.log", env)
    try:
        worker.wait_ready()
        started = time.monotonic()
        produce(brokers, env["SENTIWATCH_INPUT_TOPIC"], [(KEY, g.raw) for g in generated])
        valid_ids = [g.valid_id for g in generated if g.valid_id is not None]
        bad = [g.raw for g in generated if g.valid_id is None]
        scored = consume(brokers, env["SENTIWATCH_SCORED_TOPIC"], len(valid_ids), timeout=120)
        dead = consume(brokers, env["SENTIWATCH_DLQ_TOPIC"], len(bad), timeout=60)
        seconds = time.monotonic() - started
        scored_ids = [json.loads(r.value)["id"] for r in scored]
        dead_values = [json.loads(r.value) for r in dead]
        # A dead letter keeps at most MAX_DEAD_LETTER_RAW_BYTES of the original, and says how long it was.
        dead_raw = Counter((base64.b64decode(d["raw"]), d.get("raw_bytes")) for d in dead_values)
        sent_raw = Counter((raw[:MAX_DEAD_LETTER_RAW_BYTES], len(raw) if len(raw) > MAX_DEAD_LETTER_RAW_BYTES else None)
                           for raw in bad)
        missing_bad = sum((sent_raw - dead_raw).values())
        return FuzzReport(
            records=n, valid=len(valid_ids), bad=len(bad), scored=len(scored), dead_lettered=len(dead),
            lost=len(set(valid_ids) - set(scored_ids)) + missing_bad,
            out_of_order=scored_ids != valid_ids,
            reasons=dict(sorted(Counter(d["reason"] for d in dead_values).items())),
            worker_alive=worker.process.poll() is None, seconds=round(seconds, 1),
            worker_peak_rss_mb=peak_rss_mb(worker.process.pid))
    finally:
        worker.kill()


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set size so far (NaN once it has gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--logs", type=Path, default=Path("/tmp/sentiwatch-fuzz"))
    args = parser.parse_args(argv)
    args.logs.mkdir(parents=True, exist_ok=True)
    with running_broker() as brokers:
        report = dataclasses.asdict(run_fuzz(args.bundle, brokers, args.records, args.logs, args.seed))
    print(json.dumps(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["lost"] == 0 and report["worker_alive"] and not report["out_of_order"] else 1


if __name__ == "__main__":
    sys.exit(main())
