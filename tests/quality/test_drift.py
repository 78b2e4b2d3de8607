"""Drift watch without Kafka: PSI, the window's running figures, the reference from a manifest, the gauges, and
a switch to another model starting a new window."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client import CollectorRegistry

from sentiwatch.streamer.quality.drift import (
    DriftMonitor,
    DriftWindow,
    Observation,
    observation,
    psi,
    reference_from_manifest,
)

MANIFEST = {"drift_reference": {"texts": 3000, "source": "validation split", "mean_top_probability": 0.8,
                                "truncated_share": 0.01,
                                "sentiment_distribution": {"negative": 0.3, "neutral": 0.4, "positive": 0.3}}}


def draws(shares: dict[str, float], n: int, top: float = 0.8, seed: int = 0) -> list[Observation]:
    rng = random.Random(seed)
    labels = rng.choices(list(shares), weights=list(shares.values()), k=n)
    return [Observation(label, top, False, False) for label in labels]


def test_psi_known_values():
    same = {"a": 0.5, "b": 0.5}
    assert psi(same, same) == 0
    # (0.6-0.5)ln(0.6/0.5) + (0.4-0.5)ln(0.4/0.5)
    assert psi(same, {"a": 0.6, "b": 0.4}) == pytest.approx(0.1 * math.log(1.2) - 0.1 * math.log(0.8))
    # A class the window never saw is floored, not infinite.
    assert math.isfinite(psi(same, {"a": 1.0}))
    assert psi(same, {"a": 1.0}) > 2


def test_window_keeps_the_latest_records_only():
    window = DriftWindow(4)
    for label, top, truncated, uncovered in [("negative", 0.9, True, True)] * 4 + [("positive", 0.5, False, False)] * 2:
        window.add(Observation(label, top, truncated, uncovered))
    figures = window.figures(None)
    assert figures.records == 4 and figures.psi is None
    assert figures.distribution == {"negative": 0.5, "positive": 0.5}
    assert figures.mean_top_probability == pytest.approx(0.7)
    assert figures.truncated_share == 0.5 and figures.uncovered_language_share == 0.5


def test_reference_from_manifest():
    reference = reference_from_manifest(MANIFEST)
    assert reference is not None and reference.texts == 3000 and reference.distribution["neutral"] == 0.4
    assert reference_from_manifest({}) is None
    assert reference_from_manifest({"drift_reference": {"texts": 1}}) is None


def test_monitor_gauges_separate_stable_from_shifted_traffic():
    registry = CollectorRegistry()
    monitor = DriftMonitor(2000, registry)
    assert math.isnan(registry.get_sample_value("sentiwatch_drift_psi"))
    stable = monitor.observe("v1", MANIFEST, draws({"negative": 0.3, "neutral": 0.4, "positive": 0.3}, 2000))
    assert stable.psi is not None and stable.psi < 0.02
    # A negative surge plus an unsure model: most of the window turns negative at lower confidence.
    shifted = monitor.observe("v1", MANIFEST, draws({"negative": 0.75, "neutral": 0.2, "positive": 0.05}, 2000,
                                                    top=0.55, seed=1))
    assert shifted.psi is not None and shifted.psi > 0.25
    assert registry.get_sample_value("sentiwatch_drift_psi") == pytest.approx(shifted.psi)
    assert registry.get_sample_value("sentiwatch_drift_mean_top_probability") == pytest.approx(0.55)
    assert registry.get_sample_value("sentiwatch_drift_reference_mean_top_probability") == 0.8
    assert registry.get_sample_value("sentiwatch_drift_window_records") == 2000

    # Another model: a new window, and a bundle without a reference gives NaN PSI, not a stale number.
    fresh = monitor.observe("v2", {}, draws({"negative": 1.0}, 10))
    assert fresh.records == 10 and fresh.psi is None
    assert math.isnan(registry.get_sample_value("sentiwatch_drift_psi"))
    assert math.isnan(registry.get_sample_value("sentiwatch_drift_reference_mean_top_probability"))


def test_observation_of_a_scored_record():
    value = {"sentiment": {"label": "neutral", "scores": {"negative": 0.1, "neutral": 0.7, "positive": 0.2}},
             "truncated": True}
    assert observation(value, True) == Observation("neutral", 0.7, True, True)
    del value["truncated"]
    assert observation(value, False).truncated is False


def test_export_writes_a_reference_the_served_model_matches(tiny_bundle_dir):
    """The tiny bundle fixture goes through the real exporter: its manifest carries the reference, the bundle
    still verifies, and the served model's answers on the same texts give (nearly) the same figures."""
    from sentiwatch.exporter.export import validation_parity_set
    from sentiwatch.streamer.inference.bundle import load_bundle
    from sentiwatch.streamer.inference.scorer import load_scorer

    bundle = load_bundle(tiny_bundle_dir)
    reference = reference_from_manifest(bundle.manifest)
    assert reference is not None and reference.texts == 64
    assert sum(reference.distribution.values()) == pytest.approx(1.0)
    assert set(reference.distribution) == set(bundle.sentiment_labels)
    texts = validation_parity_set(limit=64).texts
    registry = CollectorRegistry()
    live = DriftMonitor(100, registry)
    scorer = load_scorer(tiny_bundle_dir, variant="fp32")
    prediction = scorer.predict(texts)
    labels = scorer.sentiment_labels
    figures = live.observe(scorer.version, bundle.manifest, [
        Observation(labels[int(row.argmax())], float(row.max()), bool(cut), False)
        for row, cut in zip(prediction.sentiment_probs, prediction.truncated, strict=True)])
    assert figures.psi is not None and figures.psi < 0.01
    assert figures.mean_top_probability == pytest.approx(reference.mean_top_probability, abs=0.01)
    assert figures.truncated_share == pytest.approx(reference.truncated_share)
