"""Models and word-list baselines on the same labelled files, broken down by language.

    .venv/bin/python scripts/evaluate_baselines.py --input benchmarks/data/financial_headlines.jsonl \
        --model models/default --model models/multilingual --output benchmarks/financial_headlines.json

Baselines: VADER (English, general), Loughran-McDonald (English, finance; needs cntext, see
sentiwatch.trainer.lexicons) and the Chinese Financial Sentiment Dictionary (Chinese); each is scored only on
the language it is for. A baseline whose package is missing is reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sentiwatch.errors import SentiwatchError
from sentiwatch.trainer.evaluate import load_predictor
from sentiwatch.trainer.lexicons import cntext_list, vader
from sentiwatch.trainer.metrics import evaluate_predictor

BASELINES = {"vader": ("en", vader), "loughran-mcdonald": ("en", lambda: cntext_list("loughran-mcdonald")),
             "zh-finance": ("zh", lambda: cntext_list("zh-finance"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", action="append", required=True, help="labelled CSV/JSONL (repeatable)")
    parser.add_argument("--model", action="append", default=[], help="model folder (repeatable)")
    parser.add_argument("--bundle", action="append", default=[], help="ONNX bundle (repeatable)")
    parser.add_argument("--output", help="write all results as JSON here")
    args = parser.parse_args(argv)
    from sentiwatch.trainer.data import read_labelled_file

    results: dict = {}
    predictors = [(f"model {path}", lambda p=path: load_predictor(model_dir=p), None) for path in args.model]
    predictors += [(f"bundle {path}", lambda p=path: load_predictor(bundle_dir=p), None) for path in args.bundle]
    predictors += [(name, factory, lang) for name, (lang, factory) in BASELINES.items()]
    for input_file in args.input:
        examples, _ = read_labelled_file(input_file)
        results[input_file] = {}
        for name, factory, only in predictors:
            try:
                predictor = factory()
            except SentiwatchError as exc:
                print(f"{name}: skipped ({exc})", file=sys.stderr)
                continue
            chosen = [e for e in examples if only is None or e.lang == only]
            if not chosen:
                continue
            metrics, _ = evaluate_predictor(predictor, chosen)
            results[input_file][name] = metrics
            for lang, group in metrics["by_language"].items():
                sentiment = group["sentiment"]
                print(f"{Path(input_file).name} {lang} {name}: n={sentiment['n']} accuracy={sentiment['accuracy']:.4f} "
                      f"macro-F1={sentiment['macro_f1']:.4f}")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
