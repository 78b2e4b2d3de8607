"""Which subject a text is about, and the bounded set of subjects that get their own metric label.

Resolution order (the `topic_source` of a scored record): the producer's `topic`, else the first
watchlist entry with a case-insensitive word match, else the model's topic head when confident enough,
else `other`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from sentiwatch.labels import OTHER_TOPIC

PRODUCER = "producer"
WATCHLIST = "watchlist"
MODEL = "model"

# A topic name longer than this never becomes a metric label (a producer could send a whole text as `topic`).
MAX_LABEL_CHARS = 100


class Watchlist:
    """Keyword lists per topic, compiled once; a term matches as a whole word ("acme" not in "acmeville")."""

    def __init__(self, entries: Mapping[str, Sequence[str]]) -> None:
        self._patterns: list[tuple[str, re.Pattern[str]]] = []
        for topic, terms in entries.items():
            # Lookarounds instead of \b so terms that start with a symbol ("$acme") still match as words.
            alternatives = "|".join(re.escape(term.strip()) for term in sorted(terms, key=len, reverse=True))
            self._patterns.append((topic, re.compile(rf"(?<![\w$#@])(?:{alternatives})(?!\w)", re.IGNORECASE)))

    @property
    def topics(self) -> list[str]:
        return [topic for topic, _ in self._patterns]

    def match(self, text: str) -> str | None:
        """The first configured topic whose terms occur in the text, or None."""
        for topic, pattern in self._patterns:
            if pattern.search(text):
                return topic
        return None


def resolve_topic(producer_topic: str | None, text: str, topic_probs: np.ndarray, topic_labels: Sequence[str],
                  watchlist: Watchlist, threshold: float) -> tuple[str, str]:
    """(topic, topic_source) for one text; `topic_probs` is the model's row for it."""
    if producer_topic:
        return producer_topic, PRODUCER
    matched = watchlist.match(text)
    if matched is not None:
        return matched, WATCHLIST
    best = int(np.argmax(topic_probs)) if len(topic_labels) else -1
    if best >= 0 and float(topic_probs[best]) >= threshold:
        return topic_labels[best], MODEL
    return OTHER_TOPIC, MODEL


class TopicCap:
    """Bounds how many distinct topics get their own label (metrics, windows); the rest become `other`.

    Topics known in advance (watchlist, model labels) are admitted first; then the first ones seen,
    until `cap` is reached. One per worker: the admitted set is per process, not global. Thread-safe: the
    worker scores two batches at a time.
    """

    def __init__(self, cap: int, preferred: Iterable[str] = ()) -> None:
        self._cap = cap
        self._admitted: set[str] = {OTHER_TOPIC}
        self._lock = threading.Lock()
        for topic in preferred:
            self.label(topic)

    def label(self, topic: str) -> str:
        if topic in self._admitted:
            return topic
        if len(topic) > MAX_LABEL_CHARS:
            return OTHER_TOPIC
        with self._lock:
            # `other` itself is admitted for free so that the cap counts real topics.
            if topic in self._admitted or len(self._admitted) - 1 < self._cap:
                self._admitted.add(topic)
                return topic
        return OTHER_TOPIC

    @property
    def admitted(self) -> frozenset[str]:
        return frozenset(self._admitted)
