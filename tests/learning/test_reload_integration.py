"""A model switch under load on the embedded broker with a real `sentiwatch stream` worker: a tampered bundle
is refused while the old one keeps serving, then a good one is switched to without a restart; every record
is scored exactly once, each by the version that the switch point says, with no long gap in the output."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime

import pytest

from sentiwatch.config import load_settings
from sentiwatch.tools.replay import produce as replay_produce
from tests.learning.test_reload import point, versioned_copy
from tests.streaming_helpers import WorkerProcess, consume, running_broker

pytestmark = pytest.mark.integration

RATE = 300  # records/s asked of the producer
SECONDS = 24
TAMPER_AT, SWITCH_AT = 6.0, 12.0


def model_versions(worker: WorkerProcess) -> set[str]:
    return {dict(labels)["version"] for (name, labels), value in worker.metrics().items()
            if name == "sentiwatch_model_info" and value == 1}


def wait_for(condition, timeout: float, what: str, worker: WorkerProcess) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {timeout} s:\n{worker.log_tail()}")


def test_switch_under_load_loses_nothing_and_refuses_a_tampered_bundle(tiny_bundle_dir, tmp_path):
    v1 = versioned_copy(tiny_bundle_dir, tmp_path / "v1", "model-v1")
    v2 = versioned_copy(tiny_bundle_dir, tmp_path / "v2", "model-v2")
    bad = versioned_copy(tiny_bundle_dir, tmp_path / "bad", "model-bad")
    (bad / "labels.json").write_text((bad / "labels.json").read_text().replace("negative", "nagative"))
    link = tmp_path / "current"
    os.symlink(v1, link)
    total = RATE * SECONDS
    records = [(f"t{i % 8}".encode(), json.dumps({"id": f"s{i}", "topic": f"t{i % 8}",
                                                  "text": f"company {i % 97} shares move after news {i}"}).encode())
               for i in range(total)]
    with running_broker() as brokers:
        worker = WorkerProcess(link, brokers, tmp_path / "worker.log", env={
            "SENTIWATCH_MODEL_RELOAD_SECONDS": "1", "SENTIWATCH_BATCH_WITHIN_SECONDS": "0.05",
            "SENTIWATCH_BATCH_MAX": "64"})
        try:
            worker.wait_ready()
            assert model_versions(worker) == {"model-v1"}
            settings = load_settings(environ={"SENTIWATCH_BROKERS": brokers})
            producer = threading.Thread(target=lambda: asyncio.run(
                replay_produce(settings, "sentiwatch.texts", records, rate=RATE)))
            started = time.monotonic()
            producer.start()

            time.sleep(TAMPER_AT)
            point(link, bad)
            wait_for(lambda: worker.metrics().get(("sentiwatch_model_reloads_total", (("result", "refused"),)))
                     == 1, 30, "the tampered bundle's refusal", worker)
            assert model_versions(worker) == {"model-v1"}
            assert "refused" in worker.log_path.read_text() and "labels.json" in worker.log_path.read_text()

            time.sleep(max(0.0, SWITCH_AT - (time.monotonic() - started)))
            point(link, v2)
            switch_seconds = wait_for(lambda: model_versions(worker) == {"model-v2"}, 30,
                                      "model-v2 on sentiwatch_model_info", worker)
            producer.join(timeout=SECONDS * 3)
            assert not producer.is_alive()
            produced_in = time.monotonic() - started

            scored = consume(brokers, "sentiwatch.scored", total, timeout=120)
            dead = consume(brokers, "sentiwatch.dlq", 1, timeout=5)  # any dead letter at all fails
        finally:
            worker.terminate()

    values = [json.loads(r.value) for r in scored]
    ids = Counter(v["id"] for v in values)
    assert set(ids) == {f"s{i}" for i in range(total)}, f"{total - len(ids)} records lost"
    assert max(ids.values()) == 1, f"scored twice: {[i for i, n in ids.items() if n > 1][:5]}"
    assert dead == []
    assert {v["model_version"] for v in values} == {"model-v1", "model-v2"}
    # Per input partition, in input order: v1 up to the switch, v2 after it; never back and forth.
    by_source: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for record, value in zip(scored, values, strict=True):
        headers = dict(record.headers)
        by_source[headers["sentiwatch-source"].decode()].append((int(headers["sentiwatch-offset"]),
                                                                 value["model_version"]))
    for source, seen in by_source.items():
        versions = [version for _, version in sorted(seen)]
        first_new = versions.index("model-v2") if "model-v2" in versions else len(versions)
        assert set(versions[first_new:]) <= {"model-v2"}, f"input partition {source} went back to model-v1"
    stamps = sorted(datetime.fromisoformat(v["scored_at"].replace("Z", "+00:00")).timestamp() for v in values)
    gap = max(b - a for a, b in zip(stamps, stamps[1:], strict=False))
    assert gap <= 2.0, f"no record scored for {gap:.2f} s"
    assert switch_seconds <= 30
    print(f"\nswitch under load: {total} records in {produced_in:.1f} s ({total / produced_in:.0f}/s asked "
          f"{RATE}/s), scored over {stamps[-1] - stamps[0]:.1f} s; new version on sentiwatch_model_info "
          f"{switch_seconds:.1f} s after the link moved; longest gap in scored_at {gap:.2f} s; "
          f"v1 {sum(v['model_version'] == 'model-v1' for v in values)}, "
          f"v2 {sum(v['model_version'] == 'model-v2' for v in values)}, lost 0, twice 0")
