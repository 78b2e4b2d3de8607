"""How far live traffic has moved from what the model was validated on.

At export, the bundle's manifest gets a `drift_reference` (exporter/drift_reference.py): the share of each
predicted sentiment class, the mean top probability and the share of truncated texts on the validation
split. The worker keeps the same figures over its latest `drift_window_records` scored records and
exports them beside the reference, plus the population stability index (PSI) of the predicted classes,
sum((live - ref) * ln(live / ref)). Rules of thumb for PSI: under 0.1 no real change, 0.1-0.25 a shift
worth a look, over 0.25 a different population; `ModelDriftSuspected` in deploy/prometheus/rules.yml
uses 0.25, or a mean top probability 0.15 below the reference. Gauges only, no texts.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

# Shares below this are raised to it before the log: a class the window never predicted would make PSI infinite.
PSI_FLOOR = 1e-4


@dataclasses.dataclass(frozen=True)
class DriftReference:
    """The validation split's figures for one bundle (its manifest's `drift_reference`)."""

    distribution: dict[str, float]  # predicted sentiment label -> share
    mean_top_probability: float
    truncated_share: float
    texts: int


def reference_from_manifest(manifest: Mapping[str, Any]) -> DriftReference | None:
    """The bundle's reference, or None for a bundle exported before references existed (or a broken entry)."""
    entry = manifest.get("drift_reference")
    if not isinstance(entry, dict):
        return None
    try:
        distribution = {str(label): float(share) for label, share in entry["sentiment_distribution"].items()}
        return DriftReference(distribution, float(entry["mean_top_probability"]), float(entry["truncated_share"]),
                              int(entry["texts"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def psi(reference: Mapping[str, float], live: Mapping[str, float]) -> float:
    """Population stability index of two distributions over the same labels (labels in either count)."""
    total = 0.0
    for label in set(reference) | set(live):
        expected = max(reference.get(label, 0.0), PSI_FLOOR)
        actual = max(live.get(label, 0.0), PSI_FLOOR)
        total += (actual - expected) * math.log(actual / expected)
    return total


@dataclasses.dataclass(frozen=True)
class Observation:
    """What one scored record adds to the window."""

    label: str
    top_probability: float
    truncated: bool
    uncovered_language: bool


@dataclasses.dataclass(frozen=True)
class DriftFigures:
    records: int
    distribution: dict[str, float]
    mean_top_probability: float
    truncated_share: float
    uncovered_language_share: float
    psi: float | None  # None without a reference


class DriftWindow:
    """The latest `size` observations with running sums, so each record costs O(1)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.clear()

    def clear(self) -> None:
        self._items: collections.deque[Observation] = collections.deque()
        self._labels: collections.Counter[str] = collections.Counter()
        self._top = 0.0
        self._truncated = 0
        self._uncovered = 0

    def add(self, observation: Observation) -> None:
        self._items.append(observation)
        self._count(observation, 1)
        if len(self._items) > self.size:
            self._count(self._items.popleft(), -1)

    def _count(self, observation: Observation, sign: int) -> None:
        self._labels[observation.label] += sign
        self._top += sign * observation.top_probability
        self._truncated += sign * observation.truncated
        self._uncovered += sign * observation.uncovered_language

    def figures(self, reference: DriftReference | None) -> DriftFigures:
        n = len(self._items)
        if n == 0:
            return DriftFigures(0, {}, math.nan, math.nan, math.nan, None)
        distribution = {label: count / n for label, count in self._labels.items() if count}
        return DriftFigures(n, distribution, self._top / n, self._truncated / n, self._uncovered / n,
                            psi(reference.distribution, distribution) if reference else None)


class DriftMonitor:
    """Feeds the window from scored records and keeps the gauges current. A switch to another model starts
    a new window: the old model's answers say nothing about the new one."""

    def __init__(self, window_records: int, registry: CollectorRegistry) -> None:
        self._window = DriftWindow(window_records)
        self._version: str | None = None
        self._reference: DriftReference | None = None
        self._lock = threading.Lock()  # two scoring threads report at once
        r = registry
        self.psi = Gauge("sentiwatch_drift_psi", "PSI of the predicted sentiment classes, latest window against the "
                         "bundle's validation split (NaN: the bundle has no reference)", registry=r)
        self.window_records = Gauge("sentiwatch_drift_window_records", "Scored records in the drift window",
                                    registry=r)
        self.mean_top = Gauge("sentiwatch_drift_mean_top_probability", "Mean top sentiment probability, latest window",
                              registry=r)
        self.reference_top = Gauge("sentiwatch_drift_reference_mean_top_probability",
                                   "Mean top sentiment probability on the bundle's validation split", registry=r)
        self.truncated = Gauge("sentiwatch_drift_truncated_share", "Share of texts cut at the model's max length, "
                               "latest window", registry=r)
        self.reference_truncated = Gauge("sentiwatch_drift_reference_truncated_share",
                                         "Share of truncated texts on the bundle's validation split", registry=r)
        self.uncovered = Gauge("sentiwatch_drift_uncovered_language_share",
                               "Share of texts in languages the bundle does not cover, latest window", registry=r)
        for gauge in (self.psi, self.mean_top, self.reference_top, self.truncated, self.reference_truncated,
                      self.uncovered):
            gauge.set(math.nan)

    def observe(self, version: str, manifest: Mapping[str, Any], observations: list[Observation]) -> DriftFigures:
        with self._lock:
            if version != self._version:
                self._version = version
                self._reference = reference_from_manifest(manifest)
                self._window.clear()
            for observation in observations:
                self._window.add(observation)
            figures = self._window.figures(self._reference)
            reference = self._reference
        self.window_records.set(figures.records)
        self.psi.set(figures.psi if figures.psi is not None else math.nan)
        self.mean_top.set(figures.mean_top_probability)
        self.truncated.set(figures.truncated_share)
        self.uncovered.set(figures.uncovered_language_share)
        self.reference_top.set(reference.mean_top_probability if reference else math.nan)
        self.reference_truncated.set(reference.truncated_share if reference else math.nan)
        return figures


def observation(value: Mapping[str, Any], uncovered_language: bool) -> Observation:
    """The window's view of one scored record."""
    sentiment = value["sentiment"]
    return Observation(sentiment["label"], max(sentiment["scores"].values()), bool(value.get("truncated")),
                       uncovered_language)
