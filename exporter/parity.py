"""Does an exported graph still give the model's answers? Pure comparisons of two sets of predictions.

`export` scores the same validation texts with PyTorch and with each ONNX variant and rejects a variant
that misses a limit: fp32 must match the probabilities almost exactly; int8 and fp16 are allowed small
numeric drift but must agree on the labels and (int8) keep macro-F1 within a point.

The near-tie rule: a flipped label on a row where the reference's two most likely classes are less than
`near_tie_margin` apart (in probability) is counted separately as a near-tie flip, not against the
agreement limit. There the reference itself is close to a coin toss, and rounding noise of any size moves
it; a flip of a confident answer is what quantization must not do. Near-tie flips still count in the
macro-F1 limit (measured on gold labels), so many of them that cost accuracy still fail the variant.
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
    # Reference top-two probability margin under which a flip is a near-tie flip (see the module doc).
    near_tie_margin: float = 0.10
    # The int8 fallback keeps at most this share of the weight MatMuls in fp32: beyond it the graph is
    # mostly fp32 and buys no speed, so int8 is left out instead.
    max_kept_share: float = 0.5


def compare(reference: Prediction, candidate: Prediction, labels: dict[str, Sequence[str]],
            gold: dict[str, Sequence[str | None]] | None = None, near_tie_margin: float = 0.0) -> dict[str, Any]:
    """Max abs probability difference, label agreement per head and (with gold labels) macro-F1 of both.

    Agreement is 1 - confident flips / rows: flips where the reference's top-two margin is below
    `near_tie_margin` are reported under `near_tie_flips` instead (0.0: every flip counts).

    `labels[head]` are the model's labels in output order; `gold[head][i]` is row i's true label, or
    None when the row has none for that head (or one the model does not know). A head's agreement is
    measured on the rows labelled for it when there are any: a tweet's topic (or a news article's
    sentiment) is a guess the model was never taught, and flips of near-uniform guesses say nothing
    about the quantization. Unlabelled texts (random test models) are compared on every row.
    """
    report: dict[str, Any] = {"n": int(len(reference.sentiment_probs)), "max_abs_diff": 0.0, "agreement": {},
                              "agreement_n": {}, "agreement_ci95": {}, "near_tie_margin": near_tie_margin,
                              "near_tie_flips": {}, "confident_flips": {}, "macro_f1": {}}
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
        flipped = ref_labels[rows] != cand_labels[rows]
        near_tie = top_two_margin(ref[rows]) < near_tie_margin
        confident_flips = int((flipped & ~near_tie).sum())
        agreeing = len(rows) - confident_flips
        report["near_tie_flips"][head] = int((flipped & near_tie).sum())
        report["confident_flips"][head] = confident_flips
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


def top_two_margin(probs: np.ndarray) -> np.ndarray:
    """Per row, the probability of the most likely class minus that of the runner-up."""
    if probs.shape[1] < 2:
        return np.ones(len(probs), dtype=probs.dtype)
    top = np.sort(probs, axis=1)[:, -2:]
    return top[:, 1] - top[:, 0]


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
                found.append(f"{variant} {head} label agreement {agreement:.2%} < {minimum:.2%} "
                             f"({report['confident_flips'][head]} confident flips in {report['agreement_n'][head]}; "
                             f"{report['near_tie_flips'][head]} near-tie flips not counted)")
    if variant == "int8":
        for head, f1 in report["macro_f1"].items():
            drop = f1["reference"] - f1["candidate"]
            if drop > limits.int8_max_f1_drop:
                found.append(f"int8 {head} macro-F1 drop {drop * 100:.2f} points > {limits.int8_max_f1_drop * 100:.2f}")
    return found
