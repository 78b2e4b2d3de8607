import json
import subprocess
import sys

import pytest

from sentiwatch.tools.replay import file_records
from tests.streaming_helpers import REPO_ROOT, consume, running_broker


def test_jsonl_lines_go_out_byte_for_byte_keyed_by_topic(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": "a", "text": "hi", "topic": "ACME"}\n\n{broken\n\xff\xfe\n{"id": "b", "text": "x"}\r\n')
    assert list(file_records(path, [])) == [
        (b"ACME", b'{"id": "a", "text": "hi", "topic": "ACME"}'),
        (None, b"{broken"),
        (None, b"\xff\xfe"),
        (None, b'{"id": "b", "text": "x"}'),
    ]


def test_csv_rows_become_objects_with_ids(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('text,topic\n"good, day",ACME\n"a","b","c"\nplain,\n')
    skipped: list[str] = []
    out = [(key, json.loads(value)) for key, value in file_records(path, skipped)]
    assert out == [(b"ACME", {"text": "good, day", "topic": "ACME", "id": "in:2"}),
                   (None, {"text": "plain", "id": "in:4"})]
    assert skipped == [f"{path}:3: expected 2 columns, got 3"]


@pytest.mark.integration
def test_replay_command_produces_every_record(tmp_path):
    path = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": str(i), "text": f"t{i}", "topic": f"k{i % 3}"}) for i in range(300)] + ["{bad"]
    path.write_text("\n".join(lines) + "\n")
    with running_broker() as brokers:
        result = subprocess.run([sys.executable, "-m", "sentiwatch.cli", "replay", "--input", str(path), "--topic",
                                 "replayed", "--brokers", brokers, "--rate", "2000"], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "replayed 301 records" in result.stderr
        records = consume(brokers, "replayed", 301, timeout=30)
    assert sorted(r.value.decode() for r in records) == sorted(lines)
    # records of one topic are on one partition, in order
    by_key: dict[bytes, set[int]] = {}
    for record in records:
        by_key.setdefault(record.key, set()).add(record.partition)
    assert all(len(partitions) == 1 for key, partitions in by_key.items() if key)


def test_bad_rate_is_refused():
    result = subprocess.run([sys.executable, "-m", "sentiwatch.cli", "replay", "--topic", "x", "--rate", "0"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "--rate" in result.stderr


def test_unreachable_broker_is_a_clear_error_within_ten_seconds():
    """No broker at the address: one line naming it, status 1, within the default 10 s (it was silent for 31 s).
    JSON logs and the log level apply to the progress line before it."""
    import os
    import time

    from sentiwatch.cli import build_parser
    from sentiwatch.streamer.kafka.broker import free_port

    assert build_parser().parse_args(["replay", "--topic", "t"]).connect_timeout == 10.0
    brokers = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIWATCH_")}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "sentiwatch.cli", "replay", "--topic", "t", "--brokers", brokers],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
                            env={**env, "SENTIWATCH_LOG_FORMAT": "json"})
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    *logs, error = result.stderr.strip().splitlines()
    assert error.startswith("sentiwatch replay: error: cannot reach Kafka at " + brokers)
    assert any(json.loads(line)["message"].startswith(f"connecting to Kafka at {brokers}") for line in logs)
    assert elapsed < 20, f"{elapsed:.1f} s"  # 10 s of trying plus the interpreter's start, on a loaded machine

    quiet = subprocess.run([sys.executable, "-m", "sentiwatch.cli", "replay", "--topic", "t", "--brokers", brokers,
                            "--connect-timeout", "1"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
                           env={**env, "SENTIWATCH_LOG_LEVEL": "WARNING"})
    assert quiet.returncode == 1 and "connecting to Kafka" not in quiet.stderr
    assert len(quiet.stderr.strip().splitlines()) == 1, quiet.stderr
