"""The multilingual model's training run, sized for this shared 2-core CPU (about 40 minutes of wall time).

`sentiwatch train --base multilingual` trains with the English defaults (every layer, 128 tokens, up to
3 epochs), which on this machine would take many hours for the 12-layer encoder. This run keeps what fits:
the bottom half of the encoder frozen, 64 tokens (tweets and most Chinese reviews fit), one epoch over a
sample of the built-in English data and the Chinese reviews, and a spread sample of each source's
validation and test split. Measured throughput and the figures it reached are in docs/model.md.

    nice -n 10 .venv/bin/python scripts/train_multilingual.py --out models/multilingual
"""

from __future__ import annotations

import argparse
import logging
import sys

from sentiwatch.trainer.data import MULTILINGUAL_SPECS
from sentiwatch.trainer.model import MULTILINGUAL
from sentiwatch.trainer.run import run_training
from sentiwatch.trainer.train import TrainConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, default=4000, help="training examples (sampled over all sources)")
    parser.add_argument("--minutes", type=float, default=26.0, help="time budget of the training loop")
    parser.add_argument("--frozen-layers", type=int, default=6)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--validation-limit", type=int, default=600)
    parser.add_argument("--test-per-source", type=int, default=600)
    parser.add_argument("--data", action="append", help=f"data specs (default: {' '.join(MULTILINGUAL_SPECS)})")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = TrainConfig(epochs=1, limit=args.limit, max_length=args.max_length, frozen_layers=args.frozen_layers,
                         learning_rate=5e-5, time_budget_minutes=args.minutes, evals_per_epoch=2,
                         validation_limit=args.validation_limit, test_per_source=args.test_per_source, seed=args.seed)
    metrics = run_training(args.out, MULTILINGUAL, args.data or list(MULTILINGUAL_SPECS), config)
    print({head: metrics[head]["macro_f1"] for head in ("sentiment", "topic") if head in metrics})
    return 0


if __name__ == "__main__":
    sys.exit(main())
