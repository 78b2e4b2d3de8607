"""`sentiwatch stream` refuses to start on a bad bundle or config: one line naming the problem, exit 1,
before anything connects to Kafka (the brokers below point at a closed port)."""

import json
import subprocess
import sys

import pytest

from sentiwatch.streamer.kafka.broker import free_port
from tests.streaming_helpers import REPO_ROOT

CLOSED = f"127.0.0.1:{free_port()}"


def run_stream(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sentiwatch.cli", "stream", "--brokers", CLOSED, *args],
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", **env}, capture_output=True,
                          text=True, timeout=60, cwd=REPO_ROOT)


def assert_one_line(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("env, key", [
    ({"SENTIWATCH_WEB_PORT": "abc"}, "SENTIWATCH_WEB_PORT"),
    ({"SENTIWATCH_WINDOW_SECONDS": "-1"}, "window_seconds"),
    ({}, "bundle"),
])
def test_bad_config_names_the_key(env, key):
    assert_one_line(run_stream(env), key)


def test_unknown_config_file_key(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"window_secs": 5}))
    assert_one_line(run_stream({"SENTIWATCH_CONFIG": str(path)}), "window_secs")


def test_changed_byte_in_the_bundle(tiny_bundle_dir, copy_dir):
    bundle = copy_dir(tiny_bundle_dir)
    graph = next(bundle.glob("*.onnx"))
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0x01
    graph.write_bytes(bytes(data))
    assert_one_line(run_stream({}, "--bundle", str(bundle)), graph.name)


def test_missing_bundle_file(tiny_bundle_dir, copy_dir):
    bundle = copy_dir(tiny_bundle_dir)
    (bundle / "tokenizer.json").unlink()
    assert_one_line(run_stream({}, "--bundle", str(bundle)), "tokenizer.json")


def test_web_port_in_use(tiny_bundle_dir):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_one_line(run_stream({}, "--bundle", str(tiny_bundle_dir), "--web-port", str(port)), str(port))


def test_unreachable_brokers_fail_with_one_line(tiny_bundle_dir):
    result = run_stream({"SENTIWATCH_KAFKA_CONNECT_TIMEOUT_SECONDS": "2"}, "--bundle", str(tiny_bundle_dir))
    assert_one_line(result, CLOSED)
