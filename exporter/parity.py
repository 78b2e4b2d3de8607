"""Does an exported graph still give the model's answers? Pure comparisons of two sets of predictions.

`export` scores the same validation texts with PyTorch and with each ONNX variant and fails when a
limit is missed: fp32 must match the probabilities almost exactly; int8 and fp16 are allowed small
numeric drift but must agree on the labels and (int8) keep macro-F1 within a point.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sentiwatch.predictor import Prediction
from sentiwatch.trainer.metrics import head_metrics

HEADS: tuple[str, str] = ("sentiment", "topic")


@dataclasses.dataclass(frozen=True)
class ParityLimits:
    """Thresholds from the exporter issue; tests on random tiny models pass their own (and say why)."""

    fp32_max_abs_diff: float = 1e-4
    int8_min_agreement: float = 0.99
    int8_max_f1_drop: float = 0.01
    fp16_min_agreement: float = 0.995


def compare(reference: Prediction, candidate: Prediction, labels: dict[str, Sequence[str]],
            gold: dict[str, Sequence[str | None]] | None = None) -> dict[str, Any]:
    """Max abs probability difference, label agreement per head and (with gold labels) macro-F1 of both.

    `labels[head]` are the model's labels in output order; `gold[head][i]` is row i's true label, or
    None when the row has none for that head (or one the model does not know). A head's agreement is
    measured on the rows labelled for it when there are any: a tweet's topic (or a news article's
    sentiment) is a guess the model was never taught, and flips of near-uniform guesses say nothing
    about the quantization. Unlabelled texts (random test models) are compared on every row.
    """
    report: dict[str, Any] = {"n": int(len(reference.sentiment_probs)), "max_abs_diff": 0.0, "agreement": {},
                              "agreement_n": {}, "agreement_ci95": {}, "macro_f1": {}}
    for head in HEADS:
        ref = getattr(reference, f"{head}_probs")
        cand = getattr(candidate, f"{head}_probs")
        if len(ref) == 0:
            continue
        report["max_abs_diff"] = max(report["max_abs_diff"], float(np.abs(ref - cand).max()))
        ref_labels, cand_labels = ref.argmax(axis=1), cand.argmax(axis=1)
        truth = (gold or {}).get(head) or ()
        labelled = [i for i, label in enumerate(truth) if label in labels[head]]
        rows = labelled or list(range(len(ref)))
        agreeing = int((ref_labels[rows] == cand_labels[rows]).sum())
        report["agreement"][head] = agreeing / len(rows)
        report["agreement_n"][head] = len(rows)
        # Recorded, not used to decide: it shows how far from the limit a pass or a miss really is.
        report["agreement_ci95"][head] = [round(bound, 4) for bound in wilson_interval(agreeing, len(rows))]
        if labelled:
            names = labels[head]
            true_names = [truth[i] for i in labelled]
            report["macro_f1"][head] = {
                "n": len(labelled),
                "reference": head_metrics(true_names, [names[k] for k in ref_labels[labelled]], names)["macro_f1"],
                "candidate": head_metrics(true_names, [names[k] for k in cand_labels[labelled]], names)["macro_f1"],
            }
    return report


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sound near 100%, unlike the normal approximation)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_abs_diff(reference: Prediction, candidate: Prediction) -> float:
    """Mean absolute probability difference over both heads' outputs."""
    return float(np.mean([np.abs(reference.sentiment_probs - candidate.sentiment_probs).mean(),
                          np.abs(reference.topic_probs - candidate.topic_probs).mean()]))


def subset(prediction: Prediction, rows: Sequence[int]) -> Prediction:
    return Prediction(sentiment_probs=prediction.sentiment_probs[rows], topic_probs=prediction.topic_probs[rows],
                      truncated=prediction.truncated[rows])


def problems(variant: str, report: dict[str, Any], limits: ParityLimits) -> list[str]:
    """Every limit the variant misses, as readable sentences (empty: it passed)."""
    found: list[str] = []
    if variant == "fp32" and report["max_abs_diff"] > limits.fp32_max_abs_diff:
        found.append(f"fp32 max abs probability difference {report['max_abs_diff']:.2e} "
                     f"> {limits.fp32_max_abs_diff:.0e}")
    minimum = {"int8": limits.int8_min_agreement, "fp16": limits.fp16_min_agreement}.get(variant)
    if minimum is not None:
        for head, agreement in report["agreement"].items():
            if agreement < minimum:
                found.append(f"{variant} {head} label agreement {agreement:.2%} < {minimum:.2%}")
    if variant == "int8":
        for head, f1 in report["macro_f1"].items():
            drop = f1["reference"] - f1["candidate"]
            if drop > limits.int8_max_f1_drop:
                found.append(f"int8 {head} macro-F1 drop {drop * 100:.2f} points > {limits.int8_max_f1_drop * 100:.2f}")
    return found
