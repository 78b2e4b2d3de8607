"""Per-class logit offsets for the sentiment head, chosen on the validation split to maximise macro-F1.

Cross-entropy training optimises accuracy-like likelihood; the target is macro-F1, which rewards
recall on the rarer class (positive tweets are a sixth of the data). Shifting each class's logit by a
constant, chosen on validation only (never the test split), moves the decision boundaries to where
macro-F1 is highest. The offsets are folded into the head's bias, so the exported graph carries them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from sentiwatch.trainer.metrics import class_scores

# Offsets in log-probability units; ±1 is a factor e in odds, enough for any boundary worth moving.
OFFSET_GRID = np.round(np.arange(-1.0, 1.0001, 0.05), 4)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 of class indices (the grid search calls this thousands of times: a bincount, no label lookups)."""
    matrix = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    f1s = [f1 for _, _, _, f1 in class_scores(matrix)]
    return float(np.mean(f1s)) if f1s else 0.0


def tune_offsets(probs: np.ndarray, y_true: Sequence[int], grid: np.ndarray = OFFSET_GRID) -> tuple[np.ndarray, float]:
    """(offsets per class with the first fixed at 0, validation macro-F1 with them).

    Ties go to the smallest total shift, so offsets stay 0 unless they really help.
    """
    log_probs = np.log(np.clip(probs, 1e-9, 1.0))
    truth = np.asarray(y_true)
    n_classes = probs.shape[1]
    best = (macro_f1(truth, log_probs.argmax(axis=1), n_classes), 0.0, np.zeros(n_classes))
    for rest in itertools.product(grid, repeat=n_classes - 1):
        offsets = np.array((0.0, *rest))
        score = macro_f1(truth, (log_probs + offsets).argmax(axis=1), n_classes)
        shift = float(np.abs(offsets).sum())
        if score > best[0] + 1e-12 or (abs(score - best[0]) <= 1e-12 and shift < best[1]):
            best = (score, shift, offsets)
    return best[2], best[0]
