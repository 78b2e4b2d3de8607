"""Issue 6, security: what leaves the worker. tests/worker/test_stream_kafka_config.py covers the Kafka client
options and secrets in reprs; this adds what only a running worker shows:
* no raw text in /metrics, /status, /healthz or the INFO log, under a flood of 1,000 distinct topics,
  and the `topic` label stays within the cap (+ `other`);
* the web server listens only on the configured (loopback) address;
* a SASL password never reaches the output, even with --debug;
* mutual TLS: CA, client certificate and key from mounted files end up in the client's SSL context.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from sentiwatch.config import load_settings
from sentiwatch.streamer.kafka.broker import free_port
from sentiwatch.streamer.kafka.connection import aiokafka_options, faust_credentials
from tests.streaming_helpers import REPO_ROOT, WorkerProcess, consume, http_get, produce, running_broker

MARK = "QuokkaZebraSecret"  # appears in every text below and must appear in no output
CAP = 20
FLOOD = 1000


def listening_addresses(pid: int) -> dict[int, str]:
    """{port: local address} of the IPv4 TCP sockets the process itself listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed since the listing (a client connection): not a listener
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    listeners = {}
    # /proc/PID/net/tcp lists the whole network namespace: keep this process's sockets (by inode).
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and inode in inodes:  # 0A: LISTEN
            address, port = local.split(":")
            listeners[int(port, 16)] = ".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0))
    return listeners


@pytest.mark.integration
def test_topic_flood_texts_stay_out_of_metrics_status_and_logs(tiny_bundle_dir, tmp_path):
    env = {"SENTIWATCH_TOPIC_CAP": str(CAP), "SENTIWATCH_BATCH_WITHIN_SECONDS": "0.05",
           "SENTIWATCH_ALERT_EXAMPLES_ENABLED": "true"}
    with running_broker() as brokers:
        worker = WorkerProcess(tiny_bundle_dir, brokers, tmp_path / "worker.log", env)
        try:
            worker.wait_ready()
            flood = [(None, json.dumps({"id": f"f{i}", "topic": f"random-topic-{i}",
                                        "text": f"{MARK} number {i}: terrible awful {MARK}"}).encode())
                     for i in range(FLOOD)]
            bad = [(None, json.dumps({"id": "b", "text": f"{MARK} " * 10_000}).encode()),
                   (None, f'{{"id": "c", "text": "{MARK}'.encode())]
            produce(brokers, "sentiwatch.texts", flood + bad)
            assert len(consume(brokers, "sentiwatch.scored", FLOOD, timeout=90)) == FLOOD
            assert len(consume(brokers, "sentiwatch.dlq", len(bad), timeout=30)) == len(bad)

            _, metrics_text = http_get(worker.url + "/metrics")
            metrics = worker.metrics()
            topics = {dict(labels)["topic"] for name, labels in metrics
                      if name == "sentiwatch_messages_total"}
            assert len(topics) <= CAP + 1 and "other" in topics
            assert sum(v for (name, _), v in metrics.items() if name == "sentiwatch_messages_total") == FLOOD
            every_topic_label = {dict(labels).get("topic") for _, labels in metrics} - {None}
            assert len(every_topic_label) <= CAP + 1
            for page in ("/metrics", "/status", "/healthz"):
                assert MARK not in http_get(worker.url + page)[1], page
            assert MARK not in metrics_text

            listeners = listening_addresses(worker.process.pid)
            assert listeners.get(worker.web_port) == "127.0.0.1", listeners
            assert all(address == "127.0.0.1" for address in listeners.values()), listeners
        finally:
            worker.terminate()
    assert MARK not in worker.log_path.read_text(errors="replace")


def test_sasl_password_never_printed_even_with_debug(tmp_path):
    secret = "pw-" + MARK
    password_file = tmp_path / "password"
    password_file.write_text(secret)
    env = {"PATH": "/usr/bin:/bin", "SENTIWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "SENTIWATCH_KAFKA_SASL_USERNAME": "sentiwatch", "SENTIWATCH_KAFKA_SASL_PASSWORD_FILE": str(password_file),
           "SENTIWATCH_KAFKA_CONNECT_TIMEOUT_SECONDS": "2"}
    # --debug: the most the worker ever prints (debug logs of aiokafka and faust, tracebacks).
    result = subprocess.run([sys.executable, "-m", "sentiwatch.cli", "--debug", "replay", "--topic", "t",
                             "--brokers", f"127.0.0.1:{free_port()}"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 1
    assert "sentiwatch" in result.stderr and secret not in result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_mutual_tls_files_reach_the_ssl_context(tmp_path):
    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    env = {"SENTIWATCH_KAFKA_SECURITY_PROTOCOL": "SSL", "SENTIWATCH_KAFKA_SSL_CAFILE": str(cert),
           "SENTIWATCH_KAFKA_SSL_CERTFILE": str(cert), "SENTIWATCH_KAFKA_SSL_KEYFILE": str(key)}
    settings = load_settings(environ=env)
    options = aiokafka_options(settings)
    context = options["ssl_context"]
    assert options["security_protocol"] == "SSL" and "sasl_plain_password" not in options
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any(c["subject"] == ((("commonName", "test"),),) for c in context.get_ca_certs())
    assert isinstance(faust_credentials(settings).context, ssl.SSLContext)
