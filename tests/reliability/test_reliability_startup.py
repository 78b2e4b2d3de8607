"""Issue 6, guarantee 6: a bad bundle or config stops `sentiwatch stream` before anything starts.

Adds to tests/worker/test_worker_startup.py (one line naming the problem, exit 1) what "nothing half-started"
means: the web port is never bound while the worker runs, and a live broker gets no topic from it.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sentiwatch.streamer.kafka.broker import free_port
from tests.streaming_helpers import REPO_ROOT, running_broker, topic_exists


@pytest.fixture(scope="module")
def brokers():
    with running_broker() as address:
        yield address


def rewrite_labels(bundle: Path, extra_topic: str, manifest_follows: bool) -> None:
    """Add a topic label and re-sign labels.json in the manifest, so only the graph can contradict it."""
    labels = json.loads((bundle / "labels.json").read_text())
    labels["topic"].append(extra_topic)
    (bundle / "labels.json").write_text(json.dumps(labels))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["labels.json"] = hashlib.sha256((bundle / "labels.json").read_bytes()).hexdigest()
    if manifest_follows:  # a manifest that lies about the graph: ONNX Runtime's view of the graph must catch it
        manifest["outputs"]["topic_logits"] = len(labels["topic"])
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def start_and_watch_port(brokers: str, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, bool]:
    """Run the worker to its end, checking its web port all along; returns (result, port ever answered)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sentiwatch.cli", "stream", "--brokers", brokers, "--web-port", str(port), *args],
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "SENTIWATCH_INTRA_OP_THREADS": "1", **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    bound = False
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.05)
            bound = bound or probe.connect_ex(("127.0.0.1", port)) == 0
        time.sleep(0.02)
    if process.poll() is None:
        process.kill()
    stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), bound


def assert_refused(result: subprocess.CompletedProcess, bound: bool, *needles: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sentiwatch stream: error: ")
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not bound, "the web port answered: the worker half-started"


@pytest.mark.parametrize("manifest_follows, needle", [(False, "manifest 'outputs'"),
                                                     (True, "'topic_logits' has 5 columns but labels.json has 6")])
def test_labels_that_do_not_match_the_graph(brokers, tiny_bundle_dir, copy_dir, manifest_follows, needle):
    bundle = copy_dir(tiny_bundle_dir)
    rewrite_labels(bundle, "weather", manifest_follows)
    env = {"SENTIWATCH_INPUT_TOPIC": f"labels-{manifest_follows}.texts"}
    result, bound = start_and_watch_port(brokers, env, "--bundle", str(bundle))
    assert_refused(result, bound, "labels.json", needle)
    assert not topic_exists(brokers, env["SENTIWATCH_INPUT_TOPIC"]), "a topic was created: half-started"


def test_changed_byte_creates_no_topic_and_binds_no_port(brokers, tiny_bundle_dir, copy_dir):
    bundle = copy_dir(tiny_bundle_dir)
    graph = bundle / "model-int8.onnx"
    data = bytearray(graph.read_bytes())
    data[-100] ^= 0x80
    graph.write_bytes(bytes(data))
    env = {"SENTIWATCH_INPUT_TOPIC": "changed.texts"}
    result, bound = start_and_watch_port(brokers, env, "--bundle", str(bundle))
    assert_refused(result, bound, "model-int8.onnx", "sha256")
    assert not topic_exists(brokers, "changed.texts")


@pytest.mark.parametrize("config, key", [
    ({"batch_max": "many"}, "batch_max"),
    ({"shutdown_timeout_seconds": 0}, "shutdown_timeout_seconds"),
    ({"detector": {"min_volume": "lots"}}, "detector_min_volume"),
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"}, "kafka_sasl_password"),
])
def test_invalid_config_file_value_names_the_key(brokers, tiny_bundle_dir, tmp_path, config, key):
    path = tmp_path / "sentiwatch.json"
    path.write_text(json.dumps({**config, "input_topic": "config.texts"}))
    result, bound = start_and_watch_port(brokers, {"SENTIWATCH_CONFIG": str(path)}, "--bundle", str(tiny_bundle_dir))
    assert_refused(result, bound, key)
    assert not topic_exists(brokers, "config.texts")
