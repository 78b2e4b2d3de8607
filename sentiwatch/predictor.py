"""What every scorer (PyTorch in the trainer, ONNX Runtime in the exporter and streamer) provides.

Evaluation and scoring are written against this protocol, so `evaluate --model` and
`evaluate --bundle` share one code path and their numbers are comparable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import numpy as np


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Probabilities for a batch of texts, rows in input order."""

    sentiment_probs: np.ndarray  # (n, len(sentiment_labels)), float32, rows sum to 1
    topic_probs: np.ndarray  # (n, len(topic_labels)), float32, rows sum to 1
    truncated: np.ndarray  # (n,), bool: the text was longer than the model's maximum length


class Predictor(Protocol):
    sentiment_labels: tuple[str, ...]
    topic_labels: tuple[str, ...]
    max_length: int

    def predict(self, texts: Sequence[str]) -> Prediction:
        """Score texts in one or more forward passes; each pass yields both heads."""
        ...
