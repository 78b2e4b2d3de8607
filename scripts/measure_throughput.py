"""PyTorch inference speed of model folders on the same texts, one thread: texts/s and texts per CPU-second.

    .venv/bin/python scripts/measure_throughput.py --model models/default --model models/multilingual

On a machine shared with other jobs texts/s depends on the neighbours; texts per CPU-second (the process's
own CPU time) much less, so both are printed. Texts: the hand-labelled financial sentences (English and
Chinese), the mix the users' desks send.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEXTS = REPO / "benchmarks" / "data" / "financial_headlines.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    from sentiwatch.trainer.model import load_model
    from sentiwatch.trainer.predict import TorchPredictor

    torch.set_num_threads(1)
    texts = [json.loads(line)["text"] for line in TEXTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    for model_dir in args.model:
        model, tokenizer, meta = load_model(model_dir)
        predictor = TorchPredictor(model, tokenizer, max_length=int(meta.get("max_length", 128)),
                                   batch_size=args.batch_size)
        predictor.predict(texts[:args.batch_size])  # warm-up
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.repeat):
            predictor.predict(texts)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        n = len(texts) * args.repeat
        print(json.dumps({"model": model_dir, "base": meta.get("base_model"), "max_length": predictor.max_length,
                          "texts": n, "batch_size": args.batch_size, "threads": 1,
                          "texts_per_s": round(n / wall, 1), "texts_per_cpu_s": round(n / cpu, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
