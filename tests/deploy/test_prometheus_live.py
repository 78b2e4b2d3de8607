"""A real Prometheus (the Debian `prometheus` binary) scrapes a live worker fed a negative surge, and the
NegativeSentimentSpike rule of deploy/prometheus/rules.yml (with a 3 s `for:`) goes pending, then firing,
and is gone once calm windows follow; the worker publishes one open and one resolved alert event."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from sentiwatch.streamer.kafka.broker import free_port
from tests.conftest import REPO_ROOT
from tests.streaming_helpers import WorkerProcess, consume, produce, running_broker

pytestmark = pytest.mark.integration

WINDOW = 60
CALM_WINDOWS = 20
SURGE_WINDOWS = 5
TEXTS_PER_WINDOW = 30
WORDS = ("service", "price", "delivery", "update", "support", "battery", "screen", "order", "refund", "app",
         "store", "quality", "phone", "account", "login", "payment", "staff", "shipping", "design", "speed")


def sentiment_pools(bundle: Path) -> dict[str, list[str]]:
    """Texts the bundle's (random) model clearly calls negative, without ("negative") and with
    ("surge") the word "recall", and texts it clearly does not call negative ("calm").

    The tiny test model has random weights, so which texts are negative is found by scoring
    candidates with the same ONNX variant the worker uses, keeping wide margins only so that
    batching and padding in the worker cannot flip a label.
    """
    from sentiwatch.streamer.inference.scorer import load_scorer

    scorer = load_scorer(bundle, intra_op_threads=1)
    rng = np.random.default_rng(0)
    plain = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))) for _ in range(400)]
    recall = [f"recall {text}" for text in plain[:200]]
    negative = scorer.sentiment_labels.index("negative")

    def margins(texts: list[str]) -> np.ndarray:
        probs = scorer.predict(texts).sentiment_probs
        return probs[:, negative] - np.delete(probs, negative, axis=1).max(axis=1)

    plain_order, recall_order = np.argsort(margins(plain)), np.argsort(margins(recall))
    return {"negative": [plain[i] for i in plain_order[-8:]], "calm": [plain[i] for i in plain_order[:8]],
            "surge": [recall[i] for i in recall_order[-8:]]}


def window_records(base: int, pools: dict[str, list[str]], first: int, last: int) -> list[tuple[bytes, bytes]]:
    """Windows first..last-1: acme is 20% negative except 90% (about a recall) in the surge windows;
    globex stays calm. A record at window `last` closes the last of them."""
    surge = range(CALM_WINDOWS, CALM_WINDOWS + SURGE_WINDOWS)
    records = []
    for w in range(first, last):
        for topic in ("acme", "globex"):
            surging = topic == "acme" and w in surge
            negatives = round((0.9 if surging else 0.2) * TEXTS_PER_WINDOW)
            for j in range(TEXTS_PER_WINDOW):
                pool = pools["calm"] if j >= negatives else pools["surge" if surging else "negative"]
                record = {"id": f"{topic}-{w}-{j}", "topic": topic, "ts": base + w * WINDOW + j,
                          "text": pool[(w + j) % len(pool)]}
                records.append((topic.encode(), json.dumps(record).encode()))
    for topic in ("acme", "globex"):
        record = {"id": f"{topic}-close-{last}", "topic": topic, "ts": base + last * WINDOW, "text": pools["calm"][0]}
        records.append((topic.encode(), json.dumps(record).encode()))
    return records


@contextlib.contextmanager
def running_prometheus(tmp_path: Path, target: str) -> Iterator[str]:
    """Prometheus on a free loopback port, scraping `target` every second, with the spike rule at `for: 3s`."""
    assert shutil.which("prometheus"), "prometheus missing: run `make install` (Debian package prometheus)"
    rules = yaml.safe_load((REPO_ROOT / "deploy/prometheus/rules.yml").read_text(encoding="utf-8"))
    spike = next(rule for group in rules["groups"] for rule in group["rules"]
                 if rule.get("alert") == "NegativeSentimentSpike")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(
        {"groups": [{"name": "live-test", "rules": [{**spike, "for": "3s"}]}]}), encoding="utf-8")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [{"job_name": "sentiwatch", "static_configs": [{"targets": [target]}]}],
    }), encoding="utf-8")
    port = free_port()
    with open(tmp_path / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url + "/-/ready", timeout=2).close()
                break
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spike_alerts(prometheus: str) -> dict[str, str]:
    """{topic: state} of the NegativeSentimentSpike alerts Prometheus holds right now."""
    with urllib.request.urlopen(prometheus + "/api/v1/alerts", timeout=5) as response:
        alerts = json.load(response)["data"]["alerts"]
    return {a["labels"]["topic"]: a["state"] for a in alerts if a["labels"]["alertname"] == "NegativeSentimentSpike"}


def test_prometheus_fires_negative_sentiment_spike_for_a_live_surge(tiny_bundle_dir, tmp_path):
    pools = sentiment_pools(tiny_bundle_dir)
    base = (int(time.time()) // WINDOW - 60) * WINDOW  # an hour ago, on a window boundary
    with running_broker() as brokers:
        worker = WorkerProcess(tiny_bundle_dir, brokers, tmp_path / "worker.log", env={
            "SENTIWATCH_ALLOWED_LATENESS_SECONDS": "0", "SENTIWATCH_BATCH_WITHIN_SECONDS": "0.05",
            "SENTIWATCH_DETECTOR_MIN_VOLUME": "20",
            "SENTIWATCH_TOPIC_ALLOWLIST": '["acme", "globex"]'})  # producer topics get a label only when listed
        try:
            worker.wait_ready()
            with running_prometheus(tmp_path, f"127.0.0.1:{worker.web_port}") as prometheus:
                end_of_surge = CALM_WINDOWS + SURGE_WINDOWS
                produce(brokers, "sentiwatch.texts", window_records(base, pools, 0, end_of_surge))
                seen: list[dict[str, str]] = []
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not (seen and seen[-1].get("acme") == "firing"):
                    seen.append(spike_alerts(prometheus))
                    time.sleep(0.25)
                states = [s["acme"] for s in seen if "acme" in s]
                assert "pending" in states, f"never pending: {states[-5:]}\n{worker.log_tail()}"
                assert states[-1] == "firing" and states.index("pending") < states.index("firing")
                assert not any("globex" in s for s in seen)

                # Calm windows after the surge: the detector resolves, and Prometheus drops the alert.
                produce(brokers, "sentiwatch.texts", window_records(base, pools, end_of_surge, end_of_surge + 10))
                deadline = time.monotonic() + 30
                while "acme" in spike_alerts(prometheus) and time.monotonic() < deadline:
                    time.sleep(0.25)
                assert spike_alerts(prometheus) == {}

            events = [json.loads(r.value) for r in consume(brokers, "sentiwatch.alerts", 2, timeout=20)]
            assert [(e["topic"], e["state"]) for e in events] == [("acme", "open"), ("acme", "resolved")]
            assert events[0]["alert_id"] == events[1]["alert_id"] and events[0]["negative_ratio"] >= 0.8
            assert events[0]["top_terms"][0] == "recall"  # the surge's word, absent from the topic's baseline
        finally:
            worker.kill()
