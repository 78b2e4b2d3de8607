"""Switching the worker's model without a restart: watch the bundle path, verify, load beside, switch.

The worker scores every batch with whatever `ModelSlot.current` holds when the batch is handed to a
scoring thread, and keeps that one model for the whole batch, so a switch falls between two batches:
each scored record names the version that really scored it, and the batches themselves (taken,
scored, delivered and acked by the score agent) are untouched, so nothing is lost or scored twice.

`BundleWatcher.check` runs off the event loop on a timer. A new bundle is noticed by its identity
(the path's resolved target plus the manifest's hash and the files' sizes and mtimes), so a switched
symlink, a folder renamed over the old one, or a Kubernetes volume's `..data` swap all count. It is
loaded only once that identity held still for one check (a copy in progress is not a bundle yet);
`load_bundle` verifies every hash and the label maps, and a bundle that fails is refused with a log
line and `sentiwatch_model_reloads_total{result="refused"}` while the old model keeps serving. With
`model_shadow_records` > 0 the new model first scores that many records beside the old one (the old
one's answers are sent) and the label agreement is exported before it takes over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from sentiwatch.config import Settings
from sentiwatch.errors import SentiwatchError
from sentiwatch.streamer.inference.bundle import MANIFEST
from sentiwatch.streamer.scoring.stage import BatchOutcome, BatchScorer, BatchScoring, RawMessage, Scorer
from sentiwatch.streamer.scoring.topics import TopicCap

log = logging.getLogger(__name__)

SWITCHED = "switched"
REFUSED = "refused"


class AfterBatch(Protocol):
    """What the slot hands each scored batch to (`streamer.quality.live.LiveQuality.after_batch`)."""

    def __call__(self, model: LoadedModel, outcome: BatchOutcome, values: list[dict[str, Any]]) -> BatchOutcome: ...


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """One loaded bundle: the batch scorer built on it, its raw scorer and its `sentiwatch_model_info` labels."""

    batch_scorer: BatchScoring
    scorer: Scorer
    info: dict[str, str]  # version, provider, precision
    manifest: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the bundle's (drift reference, languages)

    @property
    def version(self) -> str:
        return self.info["version"]


@dataclasses.dataclass(frozen=True)
class BundleIdentity:
    """What makes a bundle on disk this bundle; any change means another one (or one being copied)."""

    resolved: str
    fingerprint: str


def bundle_identity(path: str | os.PathLike[str]) -> BundleIdentity | None:
    """The identity of the bundle at `path` now, or None while there is no readable manifest there."""
    resolved = Path(os.path.realpath(path))
    digest = hashlib.sha256()
    try:
        digest.update((resolved / MANIFEST).read_bytes())
        for entry in sorted(resolved.iterdir()):
            stat = entry.stat()
            digest.update(f"{entry.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    except OSError:
        return None
    return BundleIdentity(str(resolved), digest.hexdigest())


class ReloadMetrics:
    """The reload's metrics, registered in the worker's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reloads = Counter("sentiwatch_model_reloads", "Bundles found at the bundle path, by outcome",
                               ["result"], registry=registry)
        self.shadow_agreement = Gauge("sentiwatch_model_shadow_agreement",
                                      "Share of shadow-scored records where the new model gave the serving model's "
                                      "sentiment label", ["version"], registry=registry)
        self.shadow_records = Counter("sentiwatch_model_shadow_records", "Records scored in shadow by a new model",
                                      ["version"], registry=registry)
        for result in (SWITCHED, REFUSED):
            self.reloads.labels(result=result)  # zeros from the start, so increase() sees the first one


@dataclasses.dataclass
class _Shadow:
    candidate: LoadedModel
    wanted: int
    scored: int = 0
    agreed: int = 0


class ModelSlot:
    """The model in use, read once per batch; `switch` replaces it for the batches taken after it.

    Thread-safe: batches are scored on executor threads while the watcher switches from another.
    `on_switch(old_info, new_info)` is called after every switch (the app moves `sentiwatch_model_info`);
    `after_batch(model, outcome, decoded scored values)` sees every scored batch on the scoring thread and
    returns the outcome to send (`streamer.quality.live`: feedback labels, languages, drift, review).
    """

    def __init__(self, current: LoadedModel, metrics: ReloadMetrics,
                 on_switch: Callable[[dict[str, str], dict[str, str]], None] | None = None,
                 after_batch: AfterBatch | None = None) -> None:
        self._current = current
        self._metrics = metrics
        self._on_switch = on_switch
        self._after_batch = after_batch
        self._shadow: _Shadow | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> LoadedModel:
        return self._current

    @property
    def shadowing(self) -> str | None:
        """The version scoring in shadow, if any."""
        shadow = self._shadow
        return shadow.candidate.version if shadow else None

    def offer(self, candidate: LoadedModel, shadow_records: int) -> None:
        """Take a verified model: at once, or after it scored `shadow_records` records in shadow."""
        if shadow_records <= 0:
            self.switch(candidate)
            return
        with self._lock:
            self._shadow = _Shadow(candidate, shadow_records)
        log.info("model %s scores the next %d records in shadow of %s", candidate.version, shadow_records,
                 self._current.version)

    def switch(self, new: LoadedModel) -> None:
        with self._lock:
            old, self._current, self._shadow = self._current, new, None
        log.info("model switched from %s to %s (%s, %s)", old.version, new.version, new.info.get("precision"),
                 new.info.get("provider"))
        self._metrics.reloads.labels(result=SWITCHED).inc()
        if self._on_switch is not None:
            self._on_switch(old.info, new.info)

    def score(self, messages: Sequence[RawMessage], now: float | None = None) -> BatchOutcome:
        """Score one batch with the current model (and the shadow model beside it, while there is one)."""
        model, shadow = self._current, self._shadow
        outcome = model.batch_scorer.score(messages, now)
        if (shadow is None and self._after_batch is None) or not outcome.scored:
            return outcome
        values = [out.record for out in outcome.scored]
        if shadow is not None:
            self._shadow_score(shadow, values)
        if self._after_batch is not None:
            outcome = self._after_batch(model, outcome, values)
        return outcome

    def _shadow_score(self, shadow: _Shadow, values: list[dict[str, Any]]) -> None:
        try:
            prediction = shadow.candidate.scorer.predict([value["text"] for value in values])
        except Exception as exc:  # a model that cannot score live text is not switched to
            log.warning("model %s failed in shadow (%s: %s); refused, %s keeps serving", shadow.candidate.version,
                         type(exc).__name__, exc, self._current.version)
            with self._lock:
                if self._shadow is shadow:
                    self._shadow = None
            self._metrics.reloads.labels(result=REFUSED).inc()
            return
        labels = shadow.candidate.scorer.sentiment_labels
        agreed = sum(labels[int(row.argmax())] == value["sentiment"]["label"]
                     for row, value in zip(prediction.sentiment_probs, values, strict=True))
        version = shadow.candidate.version
        with self._lock:
            if self._shadow is not shadow:
                return
            shadow.scored += len(values)
            shadow.agreed += agreed
            done = shadow.scored >= shadow.wanted
            if done:
                self._shadow = None  # the other scoring thread must not switch to it a second time
        self._metrics.shadow_records.labels(version=version).inc(len(values))
        self._metrics.shadow_agreement.labels(version=version).set(shadow.agreed / shadow.scored)
        if done:
            log.info("model %s agreed with %s on %d of %d shadow-scored records", version, self._current.version,
                     shadow.agreed, shadow.scored)
            self.switch(shadow.candidate)


class BundleWatcher:
    """Checks the bundle path for a new bundle and hands a verified, loaded one to the slot."""

    def __init__(self, path: str | os.PathLike[str], slot: ModelSlot, load: Callable[[str], LoadedModel],
                 metrics: ReloadMetrics, shadow_records: int = 0) -> None:
        self.path = str(path)
        self._slot = slot
        self._load = load
        self._metrics = metrics
        self._shadow_records = shadow_records
        self._serving = bundle_identity(self.path)  # what the worker started with
        self._seen: BundleIdentity | None = self._serving
        self._refused: BundleIdentity | None = None

    def check(self) -> str | None:
        """One look at the path (blocking; run it off the event loop). Returns SWITCHED or REFUSED when it
        acted on a new bundle (SWITCHED also when the new one went into shadow), else None."""
        identity = bundle_identity(self.path)
        previous, self._seen = self._seen, identity
        if identity is None or identity in (self._serving, self._refused):
            return None
        if identity != previous:
            return None  # changed since the last look: may still be being copied; load it once it holds still
        started = time.monotonic()
        try:
            loaded = self._load(identity.resolved)
        except SentiwatchError as exc:
            self._refused = identity
            self._metrics.reloads.labels(result=REFUSED).inc()
            log.error("new model bundle at %s refused, %s keeps serving: %s", self.path, self._slot.current.version,
                      exc)
            return REFUSED
        self._serving = identity
        log.info("new model bundle %s (version %s) verified and loaded in %.1f s", identity.resolved,
                 loaded.version, time.monotonic() - started)
        self._slot.offer(loaded, self._shadow_records)
        return SWITCHED


def model_info(scorer: Scorer) -> dict[str, str]:
    """`sentiwatch_model_info`'s labels for a loaded scorer."""
    return {"version": scorer.version, "provider": getattr(scorer, "provider", ""),
            "precision": getattr(scorer, "precision", "")}


def bundle_loader(settings: Settings, cap: TopicCap) -> Callable[[str], LoadedModel]:
    """How the worker loads a bundle: the settings' variant and threads, the worker's topic cap."""

    def load(path: str) -> LoadedModel:
        from sentiwatch.streamer.inference.scorer import load_scorer

        scorer = load_scorer(path, settings.variant, settings.intra_op_threads)
        return LoadedModel(BatchScorer(scorer, settings, cap), scorer, model_info(scorer), scorer.bundle.manifest)

    return load


def serving_slot(settings: Settings, scorer: Scorer, shown: dict[str, str], cap: TopicCap, info: Gauge,
                 registry: CollectorRegistry, after_batch: AfterBatch | None = None
                 ) -> tuple[ModelSlot, BundleWatcher | None]:
    """The worker's slot for the scorer it started with, and the watcher of its bundle path (None when
    `model_reload_seconds` is 0). A switch moves `info` (sentiwatch_model_info) and updates `shown` in place,
    the model dict /status serves."""
    metrics = ReloadMetrics(registry)

    def show(old: dict[str, str], new: dict[str, str]) -> None:
        info.labels(**new).set(1)
        if old != new:
            info.remove(*(old[name] for name in ("version", "provider", "precision")))
        shown.clear()
        shown.update(new)

    bundle = getattr(scorer, "bundle", None)
    first = LoadedModel(BatchScorer(scorer, settings, cap), scorer, dict(shown), bundle.manifest if bundle else {})
    slot = ModelSlot(first, metrics, on_switch=show, after_batch=after_batch)
    if settings.model_reload_seconds <= 0 or not settings.bundle:
        return slot, None
    return slot, BundleWatcher(settings.bundle, slot, bundle_loader(settings, cap), metrics,
                               settings.model_shadow_records)
