"""The worker's per-batch quality pass through a real ModelSlot, BatchScorer and the tiny bundle (no Kafka):
languages counted, uncovered ones dead-lettered when asked (each record in exactly one place), the drift
window and feedback's recent labels fed, review picks queued."""

from __future__ import annotations

import base64
import json

from prometheus_client import CollectorRegistry

from sentiwatch.config import Settings
from sentiwatch.streamer.inference.reload import ModelSlot, ReloadMetrics, bundle_loader
from sentiwatch.streamer.quality.live import UNCOVERED_LANGUAGE, LiveQuality
from sentiwatch.streamer.scoring.stage import RawMessage
from sentiwatch.streamer.scoring.topics import TopicCap

TEXTS = ["ACME shares plunge after fraud probe", "银行股大跌，投资者恐慌抛售", "Акции упали после отчёта",
         "ACME reports record profit", "株価が急落した"]


def batch() -> list[RawMessage]:
    records = [{"id": f"m{i}", "text": text} for i, text in enumerate(TEXTS)]
    records.append({"id": "m9", "text": "银行股大跌", "lang": "en"})  # the producer's word wins
    records.append({"id": "bad"})  # invalid: dead-lettered by validation, untouched here
    return [RawMessage(json.dumps(r, ensure_ascii=False).encode(), "sentiwatch.texts", 0, i, 1_700_000_000.0)
            for i, r in enumerate(records)]


def run(tiny_bundle_dir, **settings_overrides):
    settings = Settings(intra_op_threads=1, drift_window_records=100, **settings_overrides)
    registry = CollectorRegistry()
    quality = LiveQuality(settings, registry)
    model = bundle_loader(settings, TopicCap(10))(str(tiny_bundle_dir))
    slot = ModelSlot(model, ReloadMetrics(registry), after_batch=quality.after_batch)
    return slot.score(batch()), quality, registry


def test_uncovered_languages_counted_and_scored_by_default(tiny_bundle_dir):
    outcome, quality, registry = run(tiny_bundle_dir)
    assert sorted(json.loads(o.value)["id"] for o in outcome.scored) == ["m0", "m1", "m2", "m3", "m4", "m9"]
    assert [d.reason for d in outcome.dead] == ["missing_text"]

    def count(lang: str, covered: str) -> float | None:
        return registry.get_sample_value("sentiwatch_language_records_total", {"lang": lang, "covered": covered})

    assert count("und-Latn", "true") == 2 and count("en", "true") == 1
    assert count("zh", "false") == 1 and count("und-Cyrl", "false") == 1 and count("ja", "false") == 1
    mix = quality.language_mix.snapshot()
    assert mix["uncovered_share"] == 0.5 and mix["uncovered"] == {"zh": 1, "und-Cyrl": 1, "ja": 1}
    assert registry.get_sample_value("sentiwatch_drift_window_records") == 6
    assert registry.get_sample_value("sentiwatch_drift_uncovered_language_share") == 0.5
    label = json.loads(outcome.scored[0].value)["sentiment"]["label"]
    assert quality.recent_labels.get(json.loads(outcome.scored[0].value)["id"]) == label
    assert quality.take_review() == []  # off by default


def test_uncovered_languages_dead_lettered_when_asked(tiny_bundle_dir):
    outcome, quality, _ = run(tiny_bundle_dir, dead_letter_uncovered_languages=True, review_per_minute=600,
                              review_confidence_below=1.0)
    scored_ids = sorted(json.loads(o.value)["id"] for o in outcome.scored)
    assert scored_ids == ["m0", "m3", "m9"]
    letters = [json.loads(d.value) for d in outcome.dead if d.reason == UNCOVERED_LANGUAGE]
    assert len(letters) == 3 and all("not covered by the bundle (en)" in letter["detail"] for letter in letters)
    originals = sorted(json.loads(base64.b64decode(letter["raw"]))["id"] for letter in letters)
    assert originals == ["m1", "m2", "m4"]  # the original bytes, as for any dead letter
    assert len(scored_ids) + len(outcome.dead) == len(batch())  # every record in exactly one place
    assert quality.recent_labels.get("m1") is None and quality.recent_labels.get("m0") is not None
    # Every scored record is below a confidence of 1.0: all of them are picked, with their why.
    review = [json.loads(value) for value in quality.take_review()]
    assert sorted(r["id"] for r in review) == scored_ids and {r["why"] for r in review} == {"low_confidence"}
