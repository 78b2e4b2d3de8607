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

from sentiwatch.errors import ConfigError
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
    """Which topics get their own label (metrics, windows, `/status`, alert ids); every other one is `other`.

    The same on every worker and after every restart, so a subject is never keyed two ways and a flood of
    junk producer topics cannot take a slot: only configured topics get a label, in this order of
    preference, at most `cap` of them: the watchlist's, the model's topic labels (added by the scorer that
    uses this cap, `prefer_model_labels`), then `topic_allowlist`. A label must be a valid label
    (`valid_label`); a configured one that is not stops the start. Thread-safe: the worker scores two
    batches at a time, and a model reload may add labels while they run.
    """

    def __init__(self, cap: int, preferred: Iterable[str] = (), allowlist: Iterable[str] = ()) -> None:
        self._cap = cap
        self._watchlist = _checked(preferred, "watchlist")
        self._allowlist = _checked(allowlist, "topic_allowlist")
        self._model: list[str] = []
        self._lock = threading.Lock()
        self._admitted = self._admit()

    def prefer_model_labels(self, labels: Iterable[str]) -> None:
        """The model's topic labels, preferred after the watchlist's (invalid ones are left to `other`)."""
        with self._lock:
            self._model = list(dict.fromkeys([*self._model, *(label for label in labels if valid_label(label))]))
            self._admitted = self._admit()

    def _admit(self) -> frozenset[str]:
        ordered = dict.fromkeys([*self._watchlist, *self._model, *self._allowlist])
        ordered.pop(OTHER_TOPIC, None)  # `other` is always a label and does not count against the cap
        return frozenset([*list(ordered)[: self._cap], OTHER_TOPIC])

    def label(self, topic: str) -> str:
        return topic if topic in self._admitted else OTHER_TOPIC

    @property
    def admitted(self) -> frozenset[str]:
        return self._admitted


# Letters and digits of any script, space and a few separators. Excluded, among others: control and format
# characters (RTL marks, zero-width joiners), quotes, backslashes, braces and emoji, which would garble
# Prometheus' text format, alert ids, logs and dashboards, or let two labels look alike.
_LABEL = re.compile(r"[\w .:/&+$#@'()-]+")


def valid_label(topic: str) -> bool:
    """Whether `topic` may be a label: 1..MAX_LABEL_CHARS characters of `_LABEL`, not only spaces."""
    return 0 < len(topic) <= MAX_LABEL_CHARS and topic.strip() == topic and _LABEL.fullmatch(topic) is not None


def _checked(topics: Iterable[str], key: str) -> list[str]:
    checked = list(topics)
    for topic in checked:
        if not isinstance(topic, str) or not valid_label(topic):
            raise ConfigError(f"config key {key!r}: topic {str(topic)[:40]!r} is not a valid label (1-"
                              f"{MAX_LABEL_CHARS} letters, digits, spaces or . : / & + $ # @ ' ( ) - _)")
    return checked
