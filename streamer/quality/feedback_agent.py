"""The feedback agent's loop: validate analysts' labels, count them against the model, keep the latest per id.

Every record read from `sentiwatch.feedback` ends either in the table (and the metrics) or in the DLQ
with a reason, like any input. The model's label an analyst is compared with is the one this worker
gave that id (`RecentLabels`); when the id was scored elsewhere or too long ago and the feedback
carries the text, the serving model scores the text now (off the event loop); otherwise the verdict
is `unmatched`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import faust

from sentiwatch.config import Settings
from sentiwatch.streamer.inference.reload import ModelSlot
from sentiwatch.streamer.quality.feedback import Feedback, FeedbackMetrics, RecentLabels, merge, validate_feedback
from sentiwatch.streamer.scoring.records import Rejected, dead_letter

log = logging.getLogger(__name__)


class FeedbackAgent:
    """The body of the Faust agent `feedback`. `table` maps the id's UTF-8 bytes to the kept label's JSON."""

    def __init__(self, app: faust.App, settings: Settings, slot: ModelSlot, recent: RecentLabels,
                 metrics: FeedbackMetrics, table: MutableMapping[bytes, Any],
                 count_dead: Callable[[str], None]) -> None:
        self.app = app
        self.settings = settings
        self.slot = slot
        self.recent = recent
        self.metrics = metrics
        self.table = table
        self.count_dead = count_dead

    async def run(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            checked = validate_feedback(message.value)
            if isinstance(checked, Rejected):
                record = dead_letter(message.value, checked, message.topic, message.partition, message.offset,
                                     time.time())
                delivery = await self.app.producer.send(self.settings.dlq_topic, None,
                                                        json.dumps(record).encode("utf-8"), None, None, None)
                await delivery  # delivered before the event is acked (the end of this iteration)
                self.count_dead(checked.reason)
                continue
            await self.take(checked)

    async def take(self, feedback: Feedback) -> str | None:
        """Count one valid label and merge it into the label kept for its id; returns the sentiment verdict."""
        model_label = self.recent.get(feedback.id)
        if model_label is None and feedback.text is not None and feedback.sentiment is not None:
            model_label = await asyncio.to_thread(self.label_now, feedback.text)
        found = self.metrics.count(feedback, model_label)
        key = feedback.id.encode("utf-8")
        kept = self.table.get(key)
        self.table[key] = merge(Feedback(**kept) if kept else None, feedback).as_json()
        return found

    def label_now(self, text: str) -> str:
        scorer = self.slot.current.scorer
        probs = scorer.predict([text]).sentiment_probs[0]
        return scorer.sentiment_labels[int(probs.argmax())]

