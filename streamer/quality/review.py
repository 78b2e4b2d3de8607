"""What to label next: a bounded stream of scored records worth an analyst's look, for `sentiwatch.review`.

Three reasons (the record's `why`), in this order of preference when the budget is short:
- `low_confidence`: the top sentiment probability is below `review_confidence_below`: the model is unsure.
- `disagreement`: the record's sentiment goes against its topic's current mood (positive while at least
  `_MOOD_EXTREME` of the topic's recent records were negative, or negative while at most 1 - that were),
  judged on this worker's running mood per topic once it has seen `_MOOD_MIN_RECORDS` of the topic.
- `new_vocabulary`: most of the text's words never appeared in the texts this worker scored before (after a
  warm-up), i.e. a new name, product or slang the training data cannot have held.
At most `review_per_minute` records leave (a token bucket, so a burst is spread rather than dropped all at
once), lowest confidence first; the rest are simply not sampled. Off by default: texts leave the worker.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

LOW_CONFIDENCE = "low_confidence"
DISAGREEMENT = "disagreement"
NEW_VOCABULARY = "new_vocabulary"
WHYS: tuple[str, ...] = (LOW_CONFIDENCE, DISAGREEMENT, NEW_VOCABULARY)

_MOOD_EXTREME = 0.7  # share of negatives (or non-negatives) that makes a topic's mood clear
_MOOD_MIN_RECORDS = 50
_MOOD_DECAY = 0.98  # per record of the topic: the mood follows roughly the topic's last 50 records
_MOODS_CAP = 10_000  # topics whose mood is kept; producer topics are not bounded, so the least recent go
_VOCABULARY_WARM_UP = 1000  # records before any word counts as new
_VOCABULARY_CAP = 200_000  # words remembered; beyond it the oldest are forgotten
_NEW_WORD_SHARE = 0.5
_MIN_NEW_WORDS = 2
_WORD = re.compile(r"[^\W\d_]{4,}")  # words of 4+ letters: short ones are mostly function words


@dataclasses.dataclass(frozen=True)
class ReviewPick:
    why: str
    confidence: float
    value: dict[str, Any]

    def record(self) -> dict[str, Any]:
        return {**self.value, "why": self.why}


@dataclasses.dataclass
class _Mood:
    negative: float = 0.0
    weight: float = 0.0
    records: int = 0


class ReviewSampler:
    """Picks review candidates from scored records (thread-safe: two scoring threads call it)."""

    def __init__(self, per_minute: float, confidence_below: float, clock: Any = time.monotonic) -> None:
        self.per_minute = per_minute
        self.confidence_below = confidence_below
        self._clock = clock
        self._tokens = min(per_minute, 10.0)
        self._last = clock()
        self._moods: collections.OrderedDict[str, _Mood] = collections.OrderedDict()
        self._words: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._seen_records = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def sample(self, values: list[Mapping[str, Any]]) -> list[ReviewPick]:
        """The records of one scored batch to send for review, within the rate."""
        if not self.enabled:
            return []
        with self._lock:
            candidates = [pick for value in values if (pick := self._judge(value)) is not None]
            now = self._clock()
            self._tokens = min(self.per_minute, self._tokens + (now - self._last) * self.per_minute / 60.0)
            self._last = now
            candidates.sort(key=lambda pick: (WHYS.index(pick.why), pick.confidence))
            taken = candidates[:int(self._tokens)]
            self._tokens -= len(taken)
        return taken

    def _judge(self, value: Mapping[str, Any]) -> ReviewPick | None:
        sentiment = value["sentiment"]
        confidence = max(sentiment["scores"].values())
        negative = sentiment["label"] == "negative"
        mood = self._mood(str(value.get("topic")))
        new_words = self._new_words(str(value.get("text") or ""))
        why = None
        if confidence < self.confidence_below:
            why = LOW_CONFIDENCE
        elif mood.records >= _MOOD_MIN_RECORDS:
            share = mood.negative / mood.weight
            if (share >= _MOOD_EXTREME and sentiment["label"] == "positive") or (share <= 1 - _MOOD_EXTREME
                                                                                  and negative):
                why = DISAGREEMENT
        if why is None and new_words:
            why = NEW_VOCABULARY
        mood.negative = mood.negative * _MOOD_DECAY + negative
        mood.weight = mood.weight * _MOOD_DECAY + 1
        mood.records += 1
        return ReviewPick(why, confidence, dict(value)) if why else None

    def _mood(self, topic: str) -> _Mood:
        mood = self._moods.get(topic)
        if mood is None:
            mood = self._moods[topic] = _Mood()
            if len(self._moods) > _MOODS_CAP:
                self._moods.popitem(last=False)
        else:
            self._moods.move_to_end(topic)
        return mood

    def _new_words(self, text: str) -> bool:
        words = {word.lower() for word in _WORD.findall(text)}
        unseen = [word for word in words if word not in self._words]
        for word in words:
            self._words[word] = None
            self._words.move_to_end(word)
        while len(self._words) > _VOCABULARY_CAP:
            self._words.popitem(last=False)
        self._seen_records += 1
        if self._seen_records <= _VOCABULARY_WARM_UP or not words:
            return False
        return len(unseen) >= _MIN_NEW_WORDS and len(unseen) / len(words) >= _NEW_WORD_SHARE
