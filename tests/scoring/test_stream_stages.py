"""The score stage with the real ONNX scorer on the tiny bundle, no broker."""

import base64
import json

import pytest

from sentiwatch.config import load_settings
from sentiwatch.streamer.inference.scorer import load_scorer
from sentiwatch.streamer.scoring import records
from sentiwatch.streamer.scoring.stage import BatchScorer, RawMessage
from sentiwatch.streamer.scoring.topics import TopicCap

TS = 1_700_000_000.0


@pytest.fixture(scope="module")
def scorer(tiny_bundle_dir):
    return load_scorer(tiny_bundle_dir, "fp32", 1)


def message(value: bytes | None, offset: int) -> RawMessage:
    return RawMessage(value, "sentiwatch.texts", 0, offset, TS + offset)


def test_batch_scores_valid_records_and_dead_letters_the_rest(scorer):
    settings = load_settings(environ={"SENTIWATCH_WATCHLIST": '{"ACME": ["$acme"]}', "SENTIWATCH_MAX_TEXT_BYTES": "50",
                                      "SENTIWATCH_TOPIC_ALLOWLIST": '["markets"]'})
    stage = BatchScorer(scorer, settings, TopicCap(settings.topic_cap, settings.watchlist, settings.topic_allowlist))
    raw = [
        json.dumps({"id": "p", "text": "Shares fell", "topic": "markets", "source": "wire", "ts": TS - 5}).encode(),
        b"\xff\xfe",
        json.dumps({"id": "w", "text": "I sold $ACME today"}).encode(),
        json.dumps({"id": "long", "text": "x" * 51}).encode(),
        json.dumps({"id": "m", "text": "a quiet day"}).encode(),
    ]
    outcome = stage.score([message(value, i) for i, value in enumerate(raw)], now=TS + 100)
    assert [d.reason for d in outcome.dead] == [records.NOT_UTF8, records.TEXT_TOO_LONG]
    dead = json.loads(outcome.dead[0].value)
    assert base64.b64decode(dead["raw"]) == b"\xff\xfe" and dead["offset"] == 1
    scored = {json.loads(o.value)["id"]: (o, json.loads(o.value)) for o in outcome.scored}
    assert list(scored) == ["p", "w", "m"]  # input order
    out, value = scored["p"]
    assert (value["topic"], value["topic_source"], value["source"], value["ts"]) == ("markets", "producer", "wire",
                                                                                  TS - 5)
    assert value["model_version"] == scorer.version and value["scored_at"].endswith("Z")
    assert set(value["sentiment"]["scores"]) == set(scorer.sentiment_labels)
    assert value["sentiment"]["label"] == max(value["sentiment"]["scores"], key=value["sentiment"]["scores"].get)
    assert out.key == "markets" and out.timestamp == TS + 0
    assert scored["w"][1]["topic"] == "ACME" and scored["w"][1]["topic_source"] == "watchlist"
    assert scored["m"][1]["topic_source"] == "model"
    assert outcome.inference_seconds > 0


def test_a_poison_text_fails_alone(scorer):
    class Flaky:
        sentiment_labels, topic_labels, version = scorer.sentiment_labels, scorer.topic_labels, scorer.version

        def predict(self, texts):
            if any("poison" in text for text in texts):
                raise RuntimeError("cannot score")
            return scorer.predict(texts)

    settings = load_settings(environ={})
    stage = BatchScorer(Flaky(), settings, TopicCap(5))
    raw = [json.dumps({"id": str(i), "text": "poison" if i == 1 else f"text {i}"}).encode() for i in range(3)]
    outcome = stage.score([message(value, i) for i, value in enumerate(raw)])
    assert [json.loads(o.value)["id"] for o in outcome.scored] == ["0", "2"]
    assert [d.reason for d in outcome.dead] == [records.SCORING_FAILED]


def test_topic_labels_are_capped_and_the_models_labels_are_preferred(scorer):
    settings = load_settings(environ={})
    cap = TopicCap(len(scorer.topic_labels) + 2, allowlist=["t3", "t0", "t4"])
    stage = BatchScorer(scorer, settings, cap)
    raw = [json.dumps({"id": str(i), "text": "t", "topic": f"t{i}"}).encode() for i in range(5)]
    raw.append(json.dumps({"id": "m", "text": "t", "topic": scorer.topic_labels[-1]}).encode())
    outcome = stage.score([message(value, i) for i, value in enumerate(raw)])
    # The model's labels first, then the allowlist in its order until the cap: t4 is left out; t1, t2 unlisted.
    assert [o.key for o in outcome.scored] == ["t0", "other", "other", "t3", "other", scorer.topic_labels[-1]]
    assert [json.loads(o.value)["topic"] for o in outcome.scored][:5] == [f"t{i}" for i in range(5)]
