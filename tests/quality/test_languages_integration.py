"""Languages through a real worker on the embedded broker with `dead_letter_uncovered_languages` on: texts the
English bundle does not cover (detected Chinese, or a producer's `lang` it does not list) go to the DLQ with
their original bytes, the rest are scored, every id in exactly one place; /status and the metric show the mix."""

from __future__ import annotations

import base64
import json

import pytest

from tests.streaming_helpers import WorkerProcess, consume, produce, running_broker

pytestmark = pytest.mark.integration


def test_uncovered_languages_dead_lettered_by_a_worker(tiny_bundle_dir, tmp_path):
    english = [{"id": f"en{i}", "text": f"ACME shares fell {i} percent after the report"} for i in range(30)]
    chinese = [{"id": f"zh{i}", "text": f"银行股大跌，投资者恐慌抛售 {i}"} for i in range(8)]
    german = [{"id": f"de{i}", "text": f"Die Aktie fiel um {i} Prozent", "lang": "de"} for i in range(4)]
    tagged = [{"id": "en-tagged", "text": "银行", "lang": "en"}]  # the producer's word wins over the script
    records = english + chinese + german + tagged
    raw = {r["id"]: json.dumps(r, ensure_ascii=False).encode() for r in records}
    with running_broker() as brokers:
        worker = WorkerProcess(tiny_bundle_dir, brokers, tmp_path / "worker.log",
                               env={"SENTIWATCH_DEAD_LETTER_UNCOVERED_LANGUAGES": "true",
                                    "SENTIWATCH_BATCH_WITHIN_SECONDS": "0.05"})
        try:
            worker.wait_ready()
            produce(brokers, "sentiwatch.texts", [(None, value) for value in raw.values()])
            scored = [json.loads(r.value) for r in consume(brokers, "sentiwatch.scored", 31)]
            dead = [json.loads(r.value) for r in consume(brokers, "sentiwatch.dlq", 12, timeout=30)]
            languages = worker.status()["languages"]
            metrics = worker.metrics()
        finally:
            worker.terminate()
    assert sorted(v["id"] for v in scored) == sorted([r["id"] for r in english] + ["en-tagged"])
    assert {d["reason"] for d in dead} == {"uncovered_language"}
    dead_ids = sorted(json.loads(base64.b64decode(d["raw"]))["id"] for d in dead)
    assert dead_ids == sorted(r["id"] for r in chinese + german)
    assert all(base64.b64decode(d["raw"]) == raw[json.loads(base64.b64decode(d["raw"]))["id"]] for d in dead)
    assert len(scored) + len(dead) == len(records)  # each record in exactly one place
    assert languages["records"] == {"und-Latn": 30, "zh": 8, "de": 4, "en": 1}
    assert languages["uncovered"] == {"zh": 8, "de": 4}
    assert metrics[("sentiwatch_language_records_total", (("covered", "false"), ("lang", "zh")))] == 8
    assert metrics[("sentiwatch_dead_letters_total", (("reason", "uncovered_language"),))] == 12
