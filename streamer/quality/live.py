"""Everything the worker learns from its own scored records, in one pass per batch on the scoring thread.

`ModelSlot` hands each scored batch (its records decoded once) to `LiveQuality.after_batch`, which
- tells each record's language and whether the serving bundle covers it (counted; with
  `dead_letter_uncovered_languages`, an uncovered record goes to the DLQ as `uncovered_language` instead
  of the scored topic, so it still ends in exactly one place),
- remembers each id's label for analysts' feedback,
- feeds the drift window,
- picks records for review, queued for the app's timer to send to `sentiwatch.review`.
None of it may cost a record: a failure here is logged and the batch goes out as scored.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from sentiwatch.config import Settings
from sentiwatch.streamer.inference.reload import LoadedModel
from sentiwatch.streamer.quality import languages
from sentiwatch.streamer.quality.drift import DriftMonitor, observation
from sentiwatch.streamer.quality.feedback import RecentLabels
from sentiwatch.streamer.quality.review import ReviewSampler
from sentiwatch.streamer.scoring.records import Rejected, dead_letter
from sentiwatch.streamer.scoring.stage import BatchOutcome, DeadOutput, ScoredOutput

log = logging.getLogger(__name__)

UNCOVERED_LANGUAGE = "uncovered_language"  # dead-letter reason (metric label value)
REVIEW_QUEUE = 1000  # picked records waiting for the timer; beyond it the oldest are dropped (a sample anyway)


class LiveQuality:
    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.recent_labels = RecentLabels(settings.feedback_recent_ids)
        self.drift = DriftMonitor(settings.drift_window_records, registry)
        self.review = ReviewSampler(settings.review_per_minute, settings.review_confidence_below)
        self.language_mix = languages.LanguageMix()
        self.language_records = Counter("sentiwatch_language_records", "Scored records by language (a bounded "
                                        "set of codes, detected scripts as und-<Script>, the rest other) and "
                                        "whether the bundle covers it", ["lang", "covered"], registry=registry)
        self.review_sent = Counter("sentiwatch_review_records", "Records picked for review, by why", ["why"],
                                   registry=registry)
        self._review_queue: collections.deque[bytes] = collections.deque(maxlen=REVIEW_QUEUE)
        self._lock = threading.Lock()

    def after_batch(self, model: LoadedModel, outcome: BatchOutcome, values: list[dict[str, Any]]) -> BatchOutcome:
        try:
            return self._after_batch(model, outcome, values)
        except Exception:  # watching the model must never cost a record
            log.exception("live quality failed on a scored batch of %d records; sent as scored", len(values))
            return outcome

    def _after_batch(self, model: LoadedModel, outcome: BatchOutcome, values: list[dict[str, Any]]) -> BatchOutcome:
        bundle_languages = languages.bundle_languages(model.manifest)
        kept: list[tuple[ScoredOutput, dict[str, Any], bool]] = []
        dead: list[DeadOutput] = []
        for out, value in zip(outcome.scored, values, strict=True):
            language, _ = languages.record_language(value)
            covered = languages.covers(bundle_languages, language)
            label = languages.metric_label(language, bundle_languages)
            self.language_records.labels(lang=label, covered=str(covered).lower()).inc()
            self.language_mix.add(label, covered)
            if not covered and self.settings.dead_letter_uncovered_languages:
                dead.append(self._dead(out, language, bundle_languages))
                continue
            kept.append((out, value, covered))
        self.recent_labels.remember([(value["id"], value["sentiment"]["label"]) for _, value, _ in kept])
        self.drift.observe(model.version, model.manifest,
                           [observation(value, not covered) for _, value, covered in kept])
        for pick in self.review.sample([value for _, value, _ in kept]):
            self.review_sent.labels(why=pick.why).inc()
            with self._lock:
                self._review_queue.append(json.dumps(pick.record(), ensure_ascii=False).encode("utf-8"))
        if not dead:
            return outcome
        return dataclasses.replace(outcome, scored=[out for out, _, _ in kept], dead=[*outcome.dead, *dead])

    def take_review(self) -> list[bytes]:
        """The picked records not sent yet (the app's timer sends them)."""
        with self._lock:
            taken = list(self._review_queue)
            self._review_queue.clear()
        return taken

    @staticmethod
    def _dead(out: ScoredOutput, language: str, bundle_languages: tuple[str, ...]) -> DeadOutput:
        origin = out.origin
        rejected = Rejected(UNCOVERED_LANGUAGE, f"language {language} is not covered by the bundle "
                                                f"({', '.join(bundle_languages)})")
        letter = dead_letter(origin.value, rejected, origin.kafka_topic, origin.partition, origin.offset, time.time())
        return DeadOutput(UNCOVERED_LANGUAGE, json.dumps(letter).encode("utf-8"))
