"""`sentiwatch evaluate`: the same metrics for a PyTorch model folder or an ONNX bundle."""

from __future__ import annotations

import json
from pathlib import Path

from sentiwatch.predictor import Predictor
from sentiwatch.trainer.data import Example, load_examples, read_labelled_file, split_examples
from sentiwatch.trainer.metrics import evaluate_predictor


def load_predictor(model_dir: str | None = None, bundle_dir: str | None = None) -> Predictor:
    """A TorchPredictor for a model folder, or the streamer's ONNX scorer for a bundle."""
    if bundle_dir is not None:
        from sentiwatch.streamer.inference.scorer import (
            load_scorer,  # onnxruntime only; imported when a bundle is asked for
        )

        return load_scorer(bundle_dir)
    from sentiwatch.trainer.model import load_model
    from sentiwatch.trainer.predict import TorchPredictor

    model, tokenizer, meta = load_model(model_dir)
    return TorchPredictor(model, tokenizer, max_length=int(meta.get("max_length", 128)))


def evaluation_examples(input_file: str | None) -> tuple[list[Example], str]:
    """The labelled rows of `input_file`, or the built-in test split; and a name for the summary."""
    if input_file is not None:
        examples, _ = read_labelled_file(input_file)
        return examples, input_file
    examples, _ = load_examples(["builtin"])
    return split_examples(examples)["test"], "the built-in test split"


def evaluate(predictor: Predictor, examples: list[Example], output: str | None = None) -> dict:
    """Metrics in the metrics.json shape; written to `output` when given."""
    metrics, _ = evaluate_predictor(predictor, examples)
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
