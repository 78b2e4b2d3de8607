"""A real Prometheus (the Debian `prometheus` binary) scrapes a live worker fed a negative surge, and the
NegativeSentimentSpike rule of deploy/prometheus/rules.yml (with a 3 s `for:`) goes pending, then firing."""

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

from streamer.broker import free_port
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
    from streamer.scorer import load_scorer

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


def surge_records(base: int, pools: dict[str, list[str]]) -> list[tuple[bytes, bytes]]:
    """acme: 20% negative for CALM_WINDOWS windows, then 90% (about a recall) for SURGE_WINDOWS;
    globex stays calm."""
    records = []
    for w in range(CALM_WINDOWS + SURGE_WINDOWS):
        for topic in ("acme", "globex"):
            surging = topic == "acme" and w >= CALM_WINDOWS
            negatives = round((0.9 if surging else 0.2) * TEXTS_PER_WINDOW)
            for j in range(TEXTS_PER_WINDOW):
                pool = pools["calm"] if j >= negatives else pools["surge" if surging else "negative"]
                record = {"id": f"{topic}-{w}-{j}", "topic": topic, "ts": base + w * WINDOW + j,
                          "text": pool[(w + j) % len(pool)]}
                records.append((topic.encode(), json.dumps(record).encode()))
    # One later record per topic closes the last surge window.
    for topic in ("acme", "globex"):
        record = {"id": f"{topic}-close", "topic": topic, "ts": base + (CALM_WINDOWS + SURGE_WINDOWS) * WINDOW,
                  "text": pools["calm"][0]}
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
            "SENTIWATCH_DETECTOR_WARMUP_WINDOWS": "5", "SENTIWATCH_DETECTOR_MIN_VOLUME": "20"})
        try:
            worker.wait_ready()
            with running_prometheus(tmp_path, f"127.0.0.1:{worker.web_port}") as prometheus:
                produce(brokers, "sentiwatch.texts", surge_records(base, pools))
                seen: list[dict[str, str]] = []
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not (seen and seen[-1].get("acme") == "firing"):
                    seen.append(spike_alerts(prometheus))
                    time.sleep(0.25)
                states = [s["acme"] for s in seen if "acme" in s]
                assert "pending" in states, f"never pending: {states[-5:]}\n{worker.log_tail()}"
                assert states[-1] == "firing" and states.index("pending") < states.index("firing")
                assert not any("globex" in s for s in seen)

            events = [json.loads(r.value) for r in consume(brokers, "sentiwatch.alerts", 1, timeout=20)]
            assert [(e["topic"], e["state"]) for e in events] == [("acme", "open")]
            assert events[0]["negative_ratio"] >= 0.8
            assert events[0]["top_terms"][0] == "recall"  # the surge's word, absent from the topic's baseline
        finally:
            worker.kill()
