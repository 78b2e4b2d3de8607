"""Why an alert fired: the terms over-represented in a surge's negative texts, and the alert record.

Pure code. The worker counts, per topic and window, in how many negative texts each term occurs
(`Counter(extract_terms(text))` per text, summed), feeds the counts of calm windows into the
topic's `TermBaseline`, and on an alert transition ranks the surge windows' counts against that
baseline with `top_terms`.

The ranking is the weighted log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi
& Quinn 2008, "Fightin' Words"), on document frequencies: a term scores high when the share of
surge texts containing it is well above its share in the baseline, and the z-score form keeps rare
terms seen twice from beating frequent, clearly over-represented ones.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from sentiwatch.streamer.detection.detector import Detection, WindowStats

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<!\w)@\w+")
_WORD = re.compile(r"[^\W\d_](?:[\w'’-]*\w)?")
# A term must be at least this clearly over-represented (log-odds z-score) to be named at all.
_MIN_Z = 1.0
# English function words; "no" and "not" are kept on purpose, since "not working" or "no refund" is a reason.
STOPWORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being below between
both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each few for from
further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his
how how's i i'd i'll i'm i've if in into is isn't it it's its itself just let's me more most mustn't my myself
nor of off on once only or other ought our ours ourselves out over own rt same shan't she she'd she'll she's
should shouldn't so some such than that that's the their theirs them themselves then there there's these they
they'd they'll they're they've this those through to too under until up us very via was wasn't we we'd we'll we're
we've were weren't what what's when when's where where's which while who who's whom why why's will with won't would
wouldn't you you'd you'll you're you've your yours yourself yourselves
""".split())


def extract_terms(text: str) -> list[str]:
    """Distinct terms of a text, in order of first occurrence: lowercase words and adjacent-word bigrams.

    URLs, @mentions, stopwords, numbers and one-letter words are dropped ('#' is stripped, the tag
    kept). Distinct, so `Counter(extract_terms(t))` summed over texts gives document frequencies.
    """
    text = _MENTION.sub(" ", _URL.sub(" ", text.lower().replace("’", "'")))
    # Stopwords split the text into runs; bigrams never span a removed word.
    terms: dict[str, None] = {}
    previous: str | None = None
    for match in _WORD.finditer(text):
        word = match.group().strip("'-").removesuffix("'s")
        if len(word) < 2 or word in STOPWORDS:
            previous = None
            continue
        terms.setdefault(word, None)
        if previous is not None:
            terms.setdefault(f"{previous} {word}", None)
        previous = word
    return list(terms)


@dataclasses.dataclass
class TermBaseline:
    """Decayed document frequencies of terms in a topic's negative texts outside surges.

    Bounded: after each update only the `max_terms` most frequent terms are kept, so the state in
    the Faust table stays small however varied the texts are.
    """

    halflife_windows: float = 1440.0  # one day of 60 s windows
    max_terms: int = 2000
    documents: float = 0.0
    counts: dict[str, float] = dataclasses.field(default_factory=dict)

    def update(self, window_term_counts: Mapping[str, int], documents: int) -> None:
        """Fold one window's negative texts (term -> texts containing it, and how many texts) in."""
        decay = 0.5 ** (1.0 / self.halflife_windows)
        self.documents = self.documents * decay + documents
        merged = {term: count * decay for term, count in self.counts.items()}
        for term, count in window_term_counts.items():
            merged[term] = merged.get(term, 0.0) + count
        if len(merged) > self.max_terms:
            merged = dict(sorted(merged.items(), key=lambda item: item[1], reverse=True)[: self.max_terms])
        self.counts = merged

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TermBaseline:
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def top_terms(surge_term_counts: Mapping[str, int], surge_documents: int, baseline: TermBaseline,
              n: int = 10, prior_documents: float = 10.0, min_count: int = 2) -> list[str]:
    """The `n` terms most over-represented in the surge's negative texts versus the baseline.

    `prior_documents` is the prior's weight in pseudo-documents, spread over terms by their overall
    frequency; terms in fewer than `min_count` surge texts are ignored (one text proves nothing).
    Without enough baseline (a new topic) the surge's most frequent terms are returned instead.
    """
    if surge_documents <= 0:
        return []
    if baseline.documents < prior_documents:
        # No history to contrast with yet (a new topic): the surge's most common terms, phrases first.
        frequent = sorted((term for term, count in surge_term_counts.items() if count >= min_count),
                          key=lambda term: (-surge_term_counts[term], -term.count(" "), term))
        return _drop_redundant(frequent, n)
    scored: list[tuple[float, str]] = []
    for term, count in surge_term_counts.items():
        if count < min_count:
            continue
        count = min(count, surge_documents)
        background = min(baseline.counts.get(term, 0.0), baseline.documents)
        # The prior follows the term's frequency in surge and baseline together, as in the paper.
        alpha = prior_documents * (count + background + 0.5) / (surge_documents + baseline.documents + 1.0)
        rest = prior_documents - alpha
        delta = (math.log((count + alpha) / (surge_documents - count + rest))
                 - math.log((background + alpha) / (baseline.documents - background + rest)))
        variance = 1 / (count + alpha) + 1 / (background + alpha)
        z = delta / math.sqrt(variance)
        if z > _MIN_Z:
            scored.append((z, term))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return _drop_redundant([term for _, term in scored], n)


def _drop_redundant(ranked: list[str], n: int) -> list[str]:
    """Skip a word already shown inside a higher-ranked bigram, so the list says more in n entries."""
    chosen: list[str] = []
    shown: set[str] = set()
    for term in ranked:
        if " " not in term and term in shown:
            continue
        chosen.append(term)
        shown.update(term.split(" "))
        if len(chosen) == n:
            break
    return chosen


def build_alert_event(detection: Detection, window: WindowStats, top_terms: list[str],
                      examples: list[dict]) -> dict[str, Any]:
    """The `sentiwatch.alerts` record (contract) for a window on which the alert changed state.

    `examples` are the caller's choice of negative texts (empty when the privacy switch is off);
    only their `id` and `text` go out. Window bounds are ISO-8601 UTC.
    """
    if detection.transition is None or detection.alert_id is None:
        raise ValueError("build_alert_event: the detection has no alert transition")
    return {
        "alert_id": detection.alert_id,
        "topic": window.topic,
        "state": detection.transition,
        "severity": detection.severity,
        "window_start": _iso(window.window_start),
        "window_end": _iso(window.window_end),
        "total": window.total,
        "negative": window.negative,
        "negative_ratio": round(detection.negative_ratio, 4),
        "baseline_ratio": round(detection.baseline_ratio, 4),
        "score": round(detection.score, 4),
        "top_terms": list(top_terms),
        "examples": [{"id": str(example["id"]), "text": str(example["text"])} for example in examples],
    }


def _iso(epoch_seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))
