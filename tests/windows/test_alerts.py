"""Alert reasons (terms) and the alert record."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from sentiwatch.streamer.detection.alerts import TermBaseline, build_alert_event, extract_terms, top_terms
from sentiwatch.streamer.detection.detector import Detection, WindowStats

CALM_TEXTS = [
    "the delivery was late again", "customer support never answers", "price went up this month",
    "app keeps crashing on login", "refund still not processed", "the new plan is too expensive",
    "waited an hour on the phone", "billing page shows the wrong amount",
]
SURGE_TEXTS = [
    "my battery caught fire last night", "battery fire in the kitchen, terrifying",
    "another battery fire reported downtown", "recall now, the battery exploded",
]


def document_frequencies(texts: list[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(extract_terms(text))
    return counts


def test_extract_terms_drops_noise_and_keeps_bigrams():
    terms = extract_terms("RT @bob The Battery EXPLODED!! see https://x.co/a?b=1 #fail the battery's fire, 2024")
    assert terms[:3] == ["battery", "exploded", "battery exploded"]
    assert "fail" in terms and "battery fire" in terms
    assert not {"rt", "@bob", "bob", "the", "2024", "https", "x.co"} & set(terms)
    assert len(terms) == len(set(terms))  # distinct: a document frequency per text
    assert extract_terms("") == [] and extract_terms("the of and 123") == []


def test_top_terms_names_the_injected_term():
    rng = random.Random(0)
    baseline = TermBaseline()
    for _ in range(200):  # calm windows: ten negative texts each
        texts = [rng.choice(CALM_TEXTS) for _ in range(10)]
        baseline.update(document_frequencies(texts), len(texts))
    surge = [rng.choice(CALM_TEXTS) for _ in range(20)] + [rng.choice(SURGE_TEXTS) for _ in range(30)]
    ranked = top_terms(document_frequencies(surge), len(surge), baseline, n=5)
    assert ranked[0] in ("battery", "battery fire")
    assert "battery fire" in ranked
    assert not {"delivery", "price", "support", "refund"} & set(ranked)  # as common as always: not a reason
    assert top_terms({}, 0, baseline) == []


def test_top_terms_without_history_still_ranks_by_surge_frequency():
    surge = ["battery fire again"] * 6 + ["the weather is fine"] * 1
    ranked = top_terms(document_frequencies(surge), len(surge), TermBaseline(), n=3)
    assert ranked[0] == "battery fire"


def test_term_baseline_decays_is_bounded_and_round_trips():
    baseline = TermBaseline(halflife_windows=1.0, max_terms=3)
    baseline.update({"a1": 4, "b2": 3, "c3": 2, "d4": 1}, 10)
    assert set(baseline.counts) == {"a1", "b2", "c3"}
    baseline.update({}, 0)
    assert baseline.counts["a1"] == pytest.approx(2.0) and baseline.documents == pytest.approx(5.0)
    assert TermBaseline.from_dict(json.loads(json.dumps(baseline.to_dict()))) == baseline


def test_alert_event_matches_the_contract():
    detection = Detection(score=0.97, active=True, transition="open", severity="warning", alert_id="acme/x",
                          negative_ratio=0.5123456, baseline_ratio=0.2, lift=2.5)
    window = WindowStats("acme", 1_700_000_040.0, 1_700_000_100.0, 200, 102)
    event = build_alert_event(detection, window, ["battery fire"], [{"id": 7, "text": "it burned", "extra": "x"}])
    assert set(event) == {"alert_id", "topic", "state", "severity", "window_start", "window_end", "total",
                          "negative", "negative_ratio", "baseline_ratio", "score", "top_terms", "examples"}
    assert event["state"] == "open" and event["topic"] == "acme" and event["negative_ratio"] == 0.5123
    assert event["window_start"] == "2023-11-14T22:14:00Z" and event["window_end"] == "2023-11-14T22:15:00Z"
    assert event["examples"] == [{"id": "7", "text": "it burned"}]
    json.dumps(event)
    with pytest.raises(ValueError, match="no alert transition"):
        build_alert_event(Detection(0.1, False, None, None, None, 0.2, 0.2), window, [], [])
