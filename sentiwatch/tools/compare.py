"""`sentiwatch compare --old BUNDLE --new BUNDLE [--input FILE]...`: is a retrained model safe to roll out?

Both bundles score the same labelled texts (the built-in test split, and each `--input` file, e.g. the
analysts' held-back feedback) through the streamer's own ONNX scorer, so what is compared is what
would be served. Prints per head and per class the F1 of both and the difference, then the texts whose
label changed; the exit status is 1 when the new bundle is worse than the old beyond the margins on any
set (macro-F1 by more than `--margin`, or one class's F1 by more than `--class-margin`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from sentiwatch.errors import DataError
from sentiwatch.predictor import Predictor
from sentiwatch.trainer.data import Example, load_examples, read_labelled_file, split_examples
from sentiwatch.trainer.metrics import evaluate_predictor

HEADS = ("sentiment", "topic")


@dataclasses.dataclass(frozen=True)
class Changed:
    """A text one of whose labels differs between the two models."""

    id: str
    head: str
    old: str
    new: str
    gold: str | None
    text: str


@dataclasses.dataclass
class SetComparison:
    name: str
    n: int
    old: dict[str, Any]  # metrics.json shape
    new: dict[str, Any]
    changed: list[Changed]
    regressions: list[str]


def compare_command(args: argparse.Namespace) -> int:
    from sentiwatch.streamer.inference.scorer import load_scorer  # onnxruntime only: no torch

    old, new = load_scorer(args.old), load_scorer(args.new)
    sets: list[tuple[str, list[Example]]] = []
    if not args.skip_builtin:
        examples, _ = load_examples(["builtin"])
        sets.append(("built-in test split", split_examples(examples)["test"]))
    for path in args.input:
        sets.append((path, read_labelled_file(path)[0]))
    if not sets:
        raise DataError("nothing to compare on: --skip-builtin and no --input")
    results = [compare_on(name, examples, old, new, args.margin, args.class_margin) for name, examples in sets]
    print_report(results, f"{old.version} ({args.old})", f"{new.version} ({args.new})", args.show, sys.stdout)
    if args.output:
        Path(args.output).write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2,
                                                ensure_ascii=False) + "\n", encoding="utf-8")
    regressions = [f"{r.name}: {problem}" for r in results for problem in r.regressions]
    if regressions:
        print(f"sentiwatch compare: regression: {'; '.join(regressions)}", file=sys.stderr)
        return 1
    return 0


def compare_on(name: str, examples: Sequence[Example], old: Predictor, new: Predictor, margin: float,
               class_margin: float) -> SetComparison:
    """Metrics of both models on one labelled set, the texts they label differently, and the regressions."""
    old_metrics, old_pairs = evaluate_predictor(old, examples)
    new_metrics, new_pairs = evaluate_predictor(new, examples)
    changed: list[Changed] = []
    for head in HEADS:
        if head not in old_pairs:
            continue
        rows = [e for e in examples if getattr(e, head) is not None]
        (gold, old_pred, _), (_, new_pred, _) = old_pairs[head], new_pairs[head]
        changed += [Changed(e.id, head, a, b, g, e.text)
                    for e, g, a, b in zip(rows, gold, old_pred, new_pred, strict=True) if a != b]
    return SetComparison(name, len(examples), old_metrics, new_metrics, changed,
                         regressions(old_metrics, new_metrics, margin, class_margin))


def regressions(old: dict[str, Any], new: dict[str, Any], margin: float, class_margin: float) -> list[str]:
    """What got worse beyond the margins, one line each."""
    found = []
    for head in HEADS:
        if head not in old or head not in new:
            continue
        drop = old[head]["macro_f1"] - new[head]["macro_f1"]
        if drop > margin:
            found.append(f"{head} macro-F1 {old[head]['macro_f1']:.4f} -> {new[head]['macro_f1']:.4f} "
                         f"(-{drop:.4f} > {margin})")
        for label, scores in old[head]["per_class"].items():
            after = new[head]["per_class"].get(label)
            if after is None or not scores.get("support"):
                continue
            class_drop = scores["f1"] - after["f1"]
            if class_drop > class_margin:
                found.append(f"{head} {label} F1 {scores['f1']:.4f} -> {after['f1']:.4f} "
                             f"(-{class_drop:.4f} > {class_margin})")
    return found


def print_report(results: Sequence[SetComparison], old_name: str, new_name: str, show: int, out: TextIO) -> None:
    print(f"old: {old_name}\nnew: {new_name}", file=out)
    for result in results:
        print(f"\n== {result.name} ({result.n} texts)", file=out)
        for head in HEADS:
            if head not in result.old:
                continue
            old, new = result.old[head], result.new[head]
            print(f"{head}: macro-F1 {old['macro_f1']:.4f} -> {new['macro_f1']:.4f} "
                  f"({new['macro_f1'] - old['macro_f1']:+.4f}), accuracy {old['accuracy']:.4f} -> "
                  f"{new['accuracy']:.4f} ({new['accuracy'] - old['accuracy']:+.4f})", file=out)
            print(f"  {'class':<16} {'support':>7} {'old F1':>7} {'new F1':>7} {'diff':>7}", file=out)
            for label, scores in old["per_class"].items():
                after = new["per_class"].get(label, {"f1": 0.0})
                print(f"  {label[:16]:<16} {scores.get('support', 0):>7} {scores['f1']:>7.4f} {after['f1']:>7.4f} "
                      f"{after['f1'] - scores['f1']:>+7.4f}", file=out)
        print(f"changed labels: {len(result.changed)}", file=out)
        for change in result.changed[:show]:
            gold = f", gold {change.gold}" if change.gold else ""
            mark = "fixed" if change.new == change.gold else "broken" if change.old == change.gold else "other"
            text = " ".join(change.text.split())
            print(f"  [{mark}] {change.id} {change.head}: {change.old} -> {change.new}{gold}: {text[:100]}", file=out)
        if len(result.changed) > show:
            print(f"  ... and {len(result.changed) - show} more (--show N, --output FILE.json)", file=out)
        for problem in result.regressions:
            print(f"REGRESSION: {problem}", file=out)
