"""The training loop: one encoder, two heads, one readable loop (in the spirit of nanoGPT's train.py).

The knobs are the defaults of `TrainConfig` right below; `sentiwatch train` overrides epochs, limit,
seed and device. They were chosen so the default full run fits in an hour on a 2-core CPU; see
docs/benchmarks/training.md for what they reach.

Multi-task: an example carries a sentiment label, a topic label or both; each head's loss is the
mean over the examples of the batch labelled for it, so a tweet never teaches the topic head and a
news article never teaches the sentiment head.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from sentiwatch.trainer.data import Example
from sentiwatch.trainer.metrics import evaluate_predictor, head_scores, selection_score
from sentiwatch.trainer.model import TwoHeadClassifier
from sentiwatch.trainer.predict import TorchPredictor, pad_batch

log = logging.getLogger(__name__)

IGNORE = -100  # the target of a head an example has no label for


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 8e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06  # of all optimizer steps, then linear decay to 0
    grad_clip: float = 1.0
    max_length: int = 128  # tokens; BBC articles are cut here, tweets rarely reach 60
    # Validation (and maybe a new best checkpoint) this many times per epoch; early stopping
    # after `patience` validations without improvement of the mean validation macro-F1.
    evals_per_epoch: int = 2
    patience: int = 2
    # Class weights (n / (k * n_c)) ** power: the target is macro-F1 and the tweets are 2.3:1
    # negative:positive; 0.5 is a middle ground between no weighting (0) and inverse frequency (1).
    class_weight_power: float = 0.5
    topic_loss_weight: float = 1.0
    # Train the sentiment head on soft targets built from each example's annotator confidence (the
    # label gets the confidence, the other classes share the rest): a third of the tweets were labelled
    # with confidence below 0.7, and a hard target on a text the annotators split on teaches noise.
    # Examples without a confidence keep a hard target.
    soft_sentiment_targets: bool = True
    # With --limit, the topic task keeps at least this share of the examples (BBC is 6% of the data).
    min_topic_share: float = 0.1
    # The word-embedding matrix is half of MiniLM's parameters; freezing it saves its gradient and
    # AdamW update (roughly 77 -> 89 examples/s here) and keeps the pre-trained vocabulary.
    freeze_word_embeddings: bool = True
    # Also freeze the embeddings and this many bottom encoder layers: no gradient flows below them, so a
    # step costs about a forward pass plus the backward pass of the layers above (the 12-layer multilingual
    # encoder on this shared 2-core CPU; see scripts/train_multilingual.py).
    frozen_layers: int = 0
    # Wall-clock budget for the loop. The learning rate decays with whichever is further along,
    # steps or time, so a run the budget cuts short still ends annealed; at the budget it
    # validates once more and stops. The machine is shared, so the epoch count alone cannot
    # promise the hour. None: no budget (then the schedule and the result depend on steps only).
    time_budget_minutes: float | None = 50.0
    # Length bucketing: batches are cut from chunks of this many batches sorted by length.
    bucket_batches: int = 50
    eval_batch_size: int = 128
    # CPU intra-op threads; None: the cores not already busy when training starts (see cpu_threads).
    cpu_threads: int | None = None
    limit: int | None = None
    # Validation texts per evaluation (None: all of a full run's, max(1000, limit / 4) with --limit) and test
    # texts scored per source (None: all). For encoders too slow on this CPU to score every held-out text;
    # a sample is spread evenly over each source's split, and training.json records the sizes.
    validation_limit: int | None = None
    test_per_source: int | None = None
    seed: int = 13
    device: str = "auto"


@dataclasses.dataclass
class TrainResult:
    best_score: float
    best_epoch: float  # fractional: 1.5 = the validation half-way through epoch 2
    best_validation: dict
    history: dict  # steps, losses, seen, validation points
    interrupted: bool
    seconds: float
    examples_seen: int


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from sentiwatch.errors import SentiwatchError

        raise SentiwatchError("--device cuda: no CUDA device is available to PyTorch")
    return torch.device(name)


def cpu_threads(requested: int | None) -> int:
    """Intra-op threads for CPU training: `requested`, else the cores this process may use minus the load.

    On a shared machine, a thread per core collapses throughput: threads wait for each other on
    cores that other processes hold (measured here, 2 cores under load: 1.9 examples/s with 2
    threads, 15.7 with 1).
    """
    if requested is not None:
        return max(1, requested)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - busy)))


def freeze_bottom(model: TwoHeadClassifier, layers: int) -> None:
    """Stop the gradient below the top layers of a BERT-style encoder (embeddings + the first `layers`)."""
    from sentiwatch.errors import SentiwatchError

    stack = getattr(getattr(model.encoder, "encoder", None), "layer", None)
    embeddings = getattr(model.encoder, "embeddings", None)
    if stack is None or embeddings is None or layers > len(stack):
        raise SentiwatchError(f"cannot freeze {layers} layers: the encoder is not a BERT-style stack of that depth")
    embeddings.requires_grad_(False)
    for layer in stack[:layers]:
        layer.requires_grad_(False)


def spread_per_source(examples: Sequence[Example], per_source: int | None) -> list[Example]:
    """At most `per_source` examples of each source, spread evenly over its examples (order kept)."""
    if per_source is None:
        return list(examples)
    by_source: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        by_source.setdefault(example.source, []).append(i)
    keep: set[int] = set()
    for rows in by_source.values():
        step = max(1, math.ceil(len(rows) / per_source))
        keep.update(rows[::step][:per_source])
    return [example for i, example in enumerate(examples) if i in keep]


def limit_examples(examples: Sequence[Example], limit: int | None, min_topic_share: float,
                   seed: int) -> list[Example]:
    """At most `limit` examples, sampled so that both tasks stay represented."""
    if limit is None or limit >= len(examples):
        return list(examples)
    rng = random.Random(seed)
    topic = [e for e in examples if e.topic is not None]
    rest = [e for e in examples if e.topic is None]
    if rest:
        n_topic = max(round(limit * len(topic) / len(examples)), math.ceil(limit * min_topic_share))
    else:
        n_topic = limit
    n_topic = min(len(topic), n_topic)
    n_rest = min(len(rest), limit - n_topic)
    return rng.sample(topic, n_topic) + rng.sample(rest, n_rest)


def class_weights(labels: Sequence[str | None], classes: Sequence[str], power: float) -> torch.Tensor:
    counts = Counter(label for label in labels if label is not None)
    total = sum(counts.values())
    weights = [((total / (len(classes) * counts[c])) ** power) if counts[c] else 1.0 for c in classes]
    return torch.tensor(weights, dtype=torch.float32)


def soft_targets(labels: torch.Tensor, confidence: torch.Tensor, classes: int) -> torch.Tensor:
    """Target distributions: `confidence` on the label (at least 1/classes), the rest spread over the others."""
    on = confidence.clamp(min=1.0 / classes, max=1.0)
    targets = ((1.0 - on) / (classes - 1)).unsqueeze(1).repeat(1, classes)
    targets.scatter_(1, labels.unsqueeze(1), on.unsqueeze(1))
    return targets


def weighted_soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                                class_weight: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against target distributions with class weights, normalised by the total target weight:
    with one-hot targets it equals `F.cross_entropy(logits, labels, weight=class_weight)`."""
    weighted = targets * class_weight
    return -(weighted * F.log_softmax(logits, dim=1)).sum() / weighted.sum()


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, bucket_batches: int,
                            rng: random.Random) -> list[list[int]]:
    """Shuffle, sort by length within chunks, cut batches, shuffle batches: little padding, still random."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


class CtrlC:
    """While training, the first Ctrl-C only sets `pressed`; the loop stops at the end of the step in hand.

    An exception raised wherever the main thread happens to be (inside tqdm, logging or a checkpoint
    write) can leave those half-done; a flag checked between steps cannot. The first press restores the
    previous handler, so a second one interrupts at once. Outside the main thread signals cannot be
    caught, and Ctrl-C keeps its default behaviour."""

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._press)

    def _press(self, signum: int, frame: Any) -> None:
        self.pressed = True
        self.restore()

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def train(model: TwoHeadClassifier, tokenizer, train_examples: Sequence[Example],
          validation_examples: Sequence[Example], config: TrainConfig,
          on_best: Callable[[TwoHeadClassifier, dict, float], None]) -> TrainResult:
    """Fine-tune `model` in place; at the end it holds the best validated weights.

    `on_best(model, validation_metrics, epoch)` is called at every new best (to write the
    checkpoint), so an interrupted or killed run still leaves the best model on disk. Ctrl-C stops
    training cleanly after the step in hand; the result says so (a second Ctrl-C interrupts at once).
    Before the first validation there is no best, and Ctrl-C propagates.
    """
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    # bf16 autocast only where the hardware does it natively; on CPU it is slower than fp32 here.
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(config.cpu_threads))
    model.to(device)
    if config.freeze_word_embeddings:
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    if config.frozen_layers:
        freeze_bottom(model, config.frozen_layers)

    sentiment_index = {label: i for i, label in enumerate(model.sentiment_labels)}
    topic_index = {label: i for i, label in enumerate(model.topic_labels)}
    predictor = TorchPredictor(model, tokenizer, config.max_length, config.eval_batch_size, device)
    encoded, _ = predictor.encode([e.text for e in train_examples])
    rows = [{key: values[i] for key, values in encoded.items()} for i in range(len(train_examples))]
    lengths = [len(row["input_ids"]) for row in rows]
    sentiment_targets = [sentiment_index[e.sentiment] if e.sentiment is not None else IGNORE for e in train_examples]
    sentiment_confidence = [e.sentiment_confidence if config.soft_sentiment_targets and e.sentiment_confidence
                            else 1.0 for e in train_examples]
    topic_targets = [topic_index.get(e.topic, IGNORE) if e.topic is not None else IGNORE for e in train_examples]
    sentiment_weight = class_weights([e.sentiment for e in train_examples], model.sentiment_labels,
                                     config.class_weight_power).to(device)
    topic_weight = class_weights([e.topic for e in train_examples], model.topic_labels,
                                 config.class_weight_power).to(device)

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in trainable if p.ndim < 2 or "LayerNorm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.learning_rate)
    steps_per_epoch = math.ceil(len(rows) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = max(1, int(total_steps * config.warmup_fraction))

    seen, step, started = 0, 0, time.monotonic()
    budget_seconds = None if config.time_budget_minutes is None else config.time_budget_minutes * 60

    def lr_factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if budget_seconds is not None:
            progress = max(progress, (time.monotonic() - started) / budget_seconds)
        return max(0.0, 1.0 - progress)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    eval_at = {round(steps_per_epoch * k / config.evals_per_epoch) for k in range(1, config.evals_per_epoch + 1)}

    history: dict = {"step": [], "loss": [], "seen": [], "validation": []}
    best_score, best_epoch, best_validation, best_state = -1.0, 0.0, {}, None
    evals_without_improvement = 0
    interrupted = False
    stop = ""
    rng = random.Random(config.seed)
    log.info("training on %s (%d threads): %d examples, %d steps/epoch, up to %d epochs%s", device,
             torch.get_num_threads(), len(rows), steps_per_epoch, config.epochs,
             " (bf16 autocast)" if use_bf16 else "")
    model.train()
    ctrl_c = CtrlC()
    try:
        for epoch in range(config.epochs):
            batches = length_bucketed_batches(lengths, config.batch_size, config.bucket_batches, rng)
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", file=sys.stderr,
                       mininterval=1.0 if sys.stderr.isatty() else 30.0, dynamic_ncols=True)
            for batch_number, batch_rows in enumerate(bar, start=1):
                batch = {k: v.to(device) for k, v in pad_batch([rows[i] for i in batch_rows],
                                                               tokenizer.pad_token_id or 0).items()}
                y_sentiment = torch.tensor([sentiment_targets[i] for i in batch_rows], device=device)
                y_topic = torch.tensor([topic_targets[i] for i in batch_rows], device=device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    sentiment_logits, topic_logits = model(**batch)
                loss = torch.zeros((), device=device)
                labelled = y_sentiment != IGNORE
                if labelled.any():
                    confidence = torch.tensor([sentiment_confidence[i] for i in batch_rows], device=device)
                    targets = soft_targets(y_sentiment[labelled], confidence[labelled], len(sentiment_index))
                    loss = loss + weighted_soft_cross_entropy(sentiment_logits.float()[labelled], targets,
                                                              sentiment_weight)
                if (y_topic != IGNORE).any():
                    loss = loss + config.topic_loss_weight * F.cross_entropy(
                        topic_logits.float(), y_topic, weight=topic_weight, ignore_index=IGNORE)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                seen += len(batch_rows)
                history["step"].append(step)
                history["loss"].append(loss.item())
                history["seen"].append(seen)
                rate = seen / max(1e-9, time.monotonic() - started)
                bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", ex_per_s=f"{rate:.0f}", refresh=False)
                if ctrl_c.pressed:
                    if best_state is None:
                        raise KeyboardInterrupt
                    interrupted, stop = True, "Ctrl-C"
                    break

                out_of_time = budget_seconds is not None and time.monotonic() - started >= budget_seconds
                if batch_number in eval_at or out_of_time:
                    position = epoch + batch_number / steps_per_epoch
                    metrics, _ = evaluate_predictor(predictor, validation_examples)
                    model.train()
                    score = selection_score(metrics)
                    history["validation"].append({"epoch": round(position, 3), "seen": seen, "score": score,
                                                  **head_scores(metrics)})
                    log.info("epoch %.2f: validation macro-F1 %s (mean %.4f), %.0f examples/s",
                             position, head_scores(metrics), score, rate)
                    if score > best_score:
                        best_score, best_epoch, best_validation = score, position, metrics
                        best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
                        evals_without_improvement = 0
                        on_best(model, metrics, position)
                    else:
                        evals_without_improvement += 1
                    if evals_without_improvement >= config.patience:
                        stop = f"{evals_without_improvement} validations without improvement"
                    elif out_of_time:
                        stop = f"the {config.time_budget_minutes:g}-minute time budget is spent"
                    if stop:
                        log.info("stopping: %s", stop)
                        break
            bar.close()
            if stop:
                break
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the first validation
        if best_state is None:
            raise
        interrupted = True
    finally:
        ctrl_c.restore()
    if interrupted:
        log.warning("interrupted: keeping the best checkpoint (epoch %.2f, validation macro-F1 %.4f)",
                    best_epoch, best_score)
    if best_state is None:  # no validation happened (e.g. a validation split with no examples)
        on_best(model, {}, float(config.epochs))
    else:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(best_score, best_epoch, best_validation, history, interrupted,
                       time.monotonic() - started, seen)

