"""Classification metrics in the contract's `metrics.json` shape; shared by training and `evaluate`.

Pure numpy (no torch), so any Predictor's output can be scored the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from sentiwatch.predictor import Prediction, Predictor
from sentiwatch.textio import script_language
from sentiwatch.trainer.data import Example

HEADS: tuple[str, ...] = ("sentiment", "topic")


def head_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """n, accuracy, macro-F1 and per-class precision/recall/F1/support.

    Classes are those of `labels` that occur in y_true or y_pred (as scikit-learn's default does):
    a class the data never has and the model never predicts does not pull the macro average down.
    """
    if len(y_true) != len(y_pred):
        raise ValueError("y_true and y_pred differ in length")
    matrix = confusion_matrix(y_true, y_pred, labels)
    per_class = {}
    f1s = []
    for i, precision, recall, f1 in class_scores(matrix):
        per_class[labels[i]] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                                "support": int(matrix[i, :].sum())}
        f1s.append(f1)
    n = len(y_true)
    accuracy = float(np.trace(matrix)) / n if n else 0.0
    return {"n": n, "accuracy": round(accuracy, 4), "macro_f1": round(float(np.mean(f1s)) if f1s else 0.0, 4),
            "per_class": per_class}


def class_scores(matrix: np.ndarray) -> list[tuple[int, float, float, float]]:
    """(class index, precision, recall, F1) of every class that occurs in the truth (rows) or the predictions
    (columns) of a confusion matrix."""
    scores = []
    for i in range(len(matrix)):
        predicted, support = float(matrix[:, i].sum()), float(matrix[i, :].sum())
        if not predicted and not support:
            continue
        tp = float(matrix[i, i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        scores.append((i, precision, recall, 2 * precision * recall / (precision + recall) if precision + recall
                       else 0.0))
    return scores


def confusion_matrix(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Counts, rows = true label, columns = predicted label, in `labels` order; other labels are ignored."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for true, pred in zip(y_true, y_pred, strict=True):
        if true in index and pred in index:
            matrix[index[true], index[pred]] += 1
    return matrix


def evaluate_predictor(predictor: Predictor, examples: Sequence[Example]) -> tuple[dict, dict]:
    """Score `examples` in one pass; returns (metrics per head, {head: (y_true, y_pred, labels)}).

    A head none of the examples is labelled for is left out of both, as the contract says. The metrics also
    hold `by_language` and `by_source`: the same per-head metrics for each language and each source of the
    examples, because one average over tweets, reviews and news hides where a model fails.
    """
    prediction = predictor.predict([e.text for e in examples])
    metrics, pairs = _metrics_of(predictor, prediction, examples, range(len(examples)))
    if metrics:
        for key, group_of in (("by_language", lambda e: e.lang or script_language(e.text)),
                              ("by_source", lambda e: e.source)):
            groups: dict[str, list[int]] = {}
            for i, example in enumerate(examples):
                groups.setdefault(group_of(example), []).append(i)
            metrics[key] = {name: _metrics_of(predictor, prediction, examples, rows)[0]
                            for name, rows in sorted(groups.items())}
    return metrics, pairs


def _metrics_of(predictor: Predictor, prediction: Prediction, examples: Sequence[Example],
                subset: Iterable[int]) -> tuple[dict, dict]:
    metrics: dict = {}
    pairs: dict = {}
    subset = list(subset)
    for head, probs, labels in (("sentiment", prediction.sentiment_probs, predictor.sentiment_labels),
                                ("topic", prediction.topic_probs, predictor.topic_labels)):
        rows = [i for i in subset if getattr(examples[i], head) is not None]
        if not rows:
            continue
        y_true = [getattr(examples[i], head) for i in rows]
        y_pred = [labels[int(j)] for j in probs[rows].argmax(axis=1)]
        # A label the model does not know still counts (as an error) and appears in per_class.
        all_labels = list(labels) + sorted(set(y_true) - set(labels))
        metrics[head] = head_metrics(y_true, y_pred, all_labels)
        pairs[head] = (y_true, y_pred, all_labels)
    return metrics, pairs


def head_scores(metrics: dict) -> dict[str, float]:
    """Each head's macro-F1 (the groups of `by_language` and `by_source` left out)."""
    return {head: metrics[head]["macro_f1"] for head in HEADS if head in metrics}


def selection_score(metrics: dict) -> float:
    """Early-stopping and checkpoint score: the heads' macro-F1, each weighted by how many validation texts it
    was measured on. With the built-in data the topic head is measured on 208 news articles, where one text
    moves its macro-F1 by about half a point, and the sentiment head on 3,565 tweets: weighed equally, the
    topic head's noise chose checkpoints (run 3 of the full training kept epoch 2.5, sentiment 0.7959, over
    epoch 2.0, sentiment 0.7979, for a topic score 0.005 higher)."""
    heads = [head for head in HEADS if head in metrics and metrics[head]["n"] > 0]
    if not heads:
        return 0.0
    weights = [metrics[head]["n"] for head in heads]
    return float(np.average([metrics[head]["macro_f1"] for head in heads], weights=weights))


def summary_lines(metrics: dict) -> list[str]:
    """A readable summary for the terminal."""
    lines = []
    for head in HEADS:
        if head not in metrics:
            continue
        m = metrics[head]
        lines.append(f"{head}: n={m['n']} accuracy={m['accuracy']:.4f} macro-F1={m['macro_f1']:.4f}")
        for label, c in m["per_class"].items():
            lines.append(f"  {label:<14} precision={c['precision']:.3f} recall={c['recall']:.3f} "
                         f"f1={c['f1']:.3f} support={c['support']}")
    for key, title in (("by_language", "language"), ("by_source", "source")):
        groups = metrics.get(key) or {}
        if len(groups) < 2:
            continue
        for name, group in groups.items():
            scores = ", ".join(f"{head} n={group[head]['n']} accuracy={group[head]['accuracy']:.4f} "
                               f"macro-F1={group[head]['macro_f1']:.4f}" for head in HEADS if head in group)
            lines.append(f"{title} {name}: {scores}")
    return lines
