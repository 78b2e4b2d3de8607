"""`sentiwatch bench`: how many texts per second each engine scores, and the end-to-end figure.

Engines: PyTorch fp32 (with --model), ONNX fp32, ONNX int8 and, where CUDA really comes up, ONNX
fp16. Each runs at every batch size over real texts of the built-in test split (the tweets, whose
lengths are what the stream sees), once timing tokenization + padding + inference ("included")
and once timing padding + inference on pre-tokenized batches ("excluded"). Every engine scores a
batch the same way the ONNX scorer does: sorted by length into passes of at most `pass_size`
texts (recorded in each row), so the comparison is between engines, not batching strategies.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sentiwatch.config import load_settings
from sentiwatch.errors import SentiwatchError
from sentiwatch.streamer.inference.bundle import load_bundle
from sentiwatch.streamer.inference.scorer import CPU, CUDA, DEFAULT_PASS_SIZE, OnnxScorer, load_scorer

log = logging.getLogger(__name__)

WARMUP_BATCHES = 2


def bench_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    bundle = args.bundle or settings.bundle
    if not bundle:
        raise SentiwatchError("no bundle: pass --bundle DIR or set SENTIWATCH_BUNDLE")
    batch_sizes = parse_batch_sizes(args.batch_sizes)
    if args.texts <= 0:
        raise SentiwatchError(f"--texts must be > 0, got {args.texts}")
    if args.end_to_end_batch_size <= 0:
        raise SentiwatchError(f"--end-to-end-batch-size must be > 0, got {args.end_to_end_batch_size}")
    texts = bench_texts(args.texts)
    # One thread count for every engine (SENTIWATCH_INTRA_OP_THREADS, default: the usable cores), so
    # engines are compared on the same cores.
    threads = settings.intra_op_threads or len(os.sched_getaffinity(0))
    result: dict[str, Any] = {"machine": machine_info(), "texts": text_stats(texts, bundle),
                              "inference": run_inference(bundle, args.model, texts, batch_sizes, threads)}
    if not args.skip_end_to_end:
        from sentiwatch.exporter.bench_e2e import run_end_to_end

        result["end_to_end"] = run_end_to_end(bundle, args.brokers, batch_size=args.end_to_end_batch_size,
                                              model_dir=args.model)
    print(format_table(result))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        print(json.dumps(result, indent=2))
    return 0


def parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SentiwatchError(f"--batch-sizes: expected comma-separated integers, got {text!r}") from None
    if not sizes or any(size <= 0 for size in sizes):
        raise SentiwatchError(f"--batch-sizes: expected positive integers, got {text!r}")
    return sizes


def bench_texts(n: int) -> list[str]:
    """The first n tweets of the built-in test split, repeated when n is larger than the split."""
    from sentiwatch.trainer.data import builtin_test_texts

    tweets = [row["text"] for row in builtin_test_texts() if "sentiment" in row]
    return [tweets[i % len(tweets)] for i in range(n)]


def run_inference(bundle: str, model_dir: str | None, texts: Sequence[str], batch_sizes: Sequence[int],
                  threads: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if model_dir:
        rows += _bench_torch(model_dir, texts, batch_sizes, load_bundle(bundle).max_length, threads)
    for variant in ("fp32", "int8", "fp16"):
        try:
            scorer = load_scorer(bundle, variant, intra_op_threads=threads)
        except SentiwatchError as exc:
            log.info("skipping onnx-%s: %s", variant, exc)
            continue
        if variant == "fp16" and scorer.provider != CUDA:
            log.info("skipping onnx-fp16: CUDA did not come up (%s)", scorer.provider)
            continue
        rows += _bench_onnx(scorer, texts, batch_sizes, threads)
    return rows


def measure(batches: Sequence[Any], step: Callable[[Any], object], texts_per_batch: int) -> dict[str, float]:
    """Run step on every batch after a warm-up; throughput, per-batch latency percentiles and texts per
    CPU-second of this process (with one thread, that figure hardly moves when other processes share
    the cores, unlike wall-clock throughput)."""
    for batch in batches[:WARMUP_BATCHES]:
        step(batch)
    seconds = []
    cpu_started = time.process_time()
    for batch in batches:
        started = time.perf_counter()
        step(batch)
        seconds.append(time.perf_counter() - started)
    return latency_stats(seconds, texts_per_batch, cpu_seconds=time.process_time() - cpu_started)


def latency_stats(seconds: Sequence[float], texts_per_batch: int, cpu_seconds: float) -> dict[str, float]:
    total, texts = float(np.sum(seconds)), len(seconds) * texts_per_batch
    return {"texts_per_s": round(texts / total, 1) if total else 0.0,
            "p50_ms": round(float(np.percentile(seconds, 50)) * 1000, 3),
            "p99_ms": round(float(np.percentile(seconds, 99)) * 1000, 3),
            "texts_per_cpu_s": round(texts / cpu_seconds, 1) if cpu_seconds > 0 else 0.0}


def _batches(texts: Sequence[str], size: int) -> list[list[str]]:
    """Full batches only; with fewer texts than one batch, the texts repeated to fill one."""
    if len(texts) < size:
        texts = [texts[i % len(texts)] for i in range(size)]
    return [list(texts[i:i + size]) for i in range(0, len(texts) - size + 1, size)]


def _bench_onnx(scorer: OnnxScorer, texts: Sequence[str], batch_sizes: Sequence[int],
                threads: int) -> list[dict[str, Any]]:
    rows = []
    for size in batch_sizes:
        batches = _batches(texts, size)
        tokenized = [scorer.tokenize(batch) for batch in batches]
        for mode, stats in (("included", measure(batches, scorer.predict, size)),
                            ("excluded", measure(tokenized, scorer.predict_encoded, size))):
            rows.append({"engine": f"onnx-{scorer.variant}", "provider": scorer.provider, "batch_size": size,
                         "tokenization": mode, **stats, "pass_size": min(size, scorer.pass_size(size)),
                         "threads": threads})
            log.info("%s", rows[-1])
    return rows


def _bench_torch(model_dir: str, texts: Sequence[str], batch_sizes: Sequence[int], max_length: int,
                 threads: int) -> list[dict[str, Any]]:
    import torch

    from sentiwatch.trainer.model import load_model
    from sentiwatch.trainer.predict import TorchPredictor, pad_batch

    torch.set_num_threads(threads)
    model, tokenizer, _ = load_model(model_dir)
    pass_size = DEFAULT_PASS_SIZE[CPU]
    predictor = TorchPredictor(model, tokenizer, max_length=max_length, batch_size=pass_size)

    def predict_encoded(encoded: dict[str, list[list[int]]]) -> None:
        """TorchPredictor.predict without its tokenizer call: length-sorted passes, padding, forward, softmax."""
        n = len(encoded["input_ids"])
        order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
        with torch.inference_mode():
            for start in range(0, n, pass_size):
                rows = order[start:start + pass_size]
                batch = pad_batch([{key: values[i] for key, values in encoded.items()} for i in rows],
                                  tokenizer.pad_token_id or 0)
                sentiment, topic = model(**batch)
                _ = torch.softmax(sentiment, dim=-1).numpy(), torch.softmax(topic, dim=-1).numpy()

    rows = []
    for size in batch_sizes:
        batches = _batches(texts, size)
        encoded = [predictor.encode(batch)[0] for batch in batches]
        for mode, stats in (("included", measure(batches, predictor.predict, size)),
                            ("excluded", measure(encoded, predict_encoded, size))):
            rows.append({"engine": "torch-fp32", "provider": "cpu", "batch_size": size, "tokenization": mode,
                         **stats, "pass_size": min(size, pass_size), "threads": threads})
            log.info("%s", rows[-1])
    return rows


def machine_info() -> dict[str, Any]:
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = fields.get("model name") or platform.processor() or platform.machine()
    flags = fields.get("flags", "")
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "gpu": gpu_name(),
            "cpu_flags": [flag for flag in wanted if flag in flags.split()], "os": platform.platform()}


def gpu_name() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def text_stats(texts: Sequence[str], bundle: str) -> dict[str, Any]:
    """How long the benchmark texts are in tokens (after truncation), so figures compare across machines."""
    lengths = load_scorer(bundle, "fp32").encode(texts).attention_mask.sum(axis=1)
    return {"source": "built-in test split (tweets)", "n": len(texts),
            "mean_tokens": round(float(lengths.mean()), 1), "max_tokens": int(lengths.max())}


def format_table(result: dict[str, Any]) -> str:
    machine, stats = result["machine"], result["texts"]
    lines = [f"machine: {machine['cpu']}, {machine['cores']} cores, GPU: {machine['gpu'] or 'none'}",
             f"texts: {stats['n']} from the {stats['source']}, mean {stats['mean_tokens']} tokens",
             f"{'engine':<11} {'provider':<22} {'threads':>7} {'batch':>5} {'tokenization':<12} {'texts/s':>9} "
             f"{'p50 ms':>9} {'p99 ms':>9} {'texts/cpu-s':>11}"]
    for row in result["inference"]:
        lines.append(f"{row['engine']:<11} {row['provider']:<22} {row['threads']:>7} {row['batch_size']:>5} "
                     f"{row['tokenization']:<12} {row['texts_per_s']:>9.1f} {row['p50_ms']:>9.2f} "
                     f"{row['p99_ms']:>9.2f} {row['texts_per_cpu_s']:>11.1f}")
    e2e = result.get("end_to_end")
    if e2e:
        lines.append("end to end: " + ", ".join(f"{key} {value}" for key, value in e2e.items()))
    return "\n".join(lines)
