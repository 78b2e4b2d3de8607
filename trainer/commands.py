"""`sentiwatch train` and `sentiwatch evaluate`: flags in, work delegated, one summary out."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from sentiwatch.errors import SentiwatchError


def train_command(args: argparse.Namespace) -> int:
    from sentiwatch.trainer.run import run_training
    from sentiwatch.trainer.train import TrainConfig

    for flag in ("limit", "epochs"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise SentiwatchError(f"--{flag} must be a positive number, got {value}")
    overrides = {"limit": args.limit, "seed": args.seed, "device": args.device}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    config = dataclasses.replace(TrainConfig(), **overrides)
    metrics = run_training(args.out, args.base, args.data or default_specs(args.base), config)
    heads = ", ".join(f"{head} macro-F1 {metrics[head]['macro_f1']:.4f}" for head in ("sentiment", "topic")
                      if head in metrics)
    print(f"model written to {args.out} (test split: {heads})")
    return 0


def default_specs(base: str | None) -> list[str]:
    """The built-in data for a base: the multilingual encoder also learns from the Chinese reviews."""
    from sentiwatch.trainer.data import DEFAULT_SPECS, MULTILINGUAL_SPECS
    from sentiwatch.trainer.model import MULTILINGUAL

    return list(MULTILINGUAL_SPECS if base == MULTILINGUAL else DEFAULT_SPECS)


def evaluate_command(args: argparse.Namespace) -> int:
    from sentiwatch.trainer.evaluate import evaluate, evaluation_examples, load_predictor
    from sentiwatch.trainer.metrics import summary_lines

    predictor = load_predictor(model_dir=args.model, bundle_dir=args.bundle)
    examples, name = evaluation_examples(args.input)
    metrics = evaluate(predictor, examples, args.output)
    if not metrics:
        raise SentiwatchError(f"{name}: no rows labelled with sentiment or topic")
    print(f"{args.model or args.bundle} on {name} ({len(examples)} texts):")
    for line in summary_lines(metrics):
        print(line)
    if args.output:
        print(f"metrics written to {args.output}", file=sys.stderr)
    return 0
