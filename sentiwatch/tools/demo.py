"""`sentiwatch demo`: the whole system on one machine, from a trained model to a resolved alert.

The composition root of the demo, outside the streamer so that the streamer never imports torch:
reuse (or train with `trainer`, then export with `exporter`) a small model in a cache folder, then hand
the bundle and built-in texts to `sentiwatch.tools.demo_stream`, which runs the broker, the worker and the live view.
Only texts from the validation and test splits are replayed, never ones the model trained on.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

from sentiwatch.errors import SentiwatchError


def demo_command(args: argparse.Namespace) -> int:
    from sentiwatch.tools.demo_stream import DemoPlan, build_demo_stream, demo_settings, run_demo

    work_dir = Path(args.work_dir or os.environ.get("SENTIWATCH_DEMO_DIR", ".cache/demo"))
    plan = DemoPlan()
    settings = demo_settings(args.config, plan)
    if args.bundle:
        bundle_dir = Path(args.bundle)
    else:
        model_dir = Path(args.model) if args.model else ensure_model(work_dir / "model")
        bundle_dir = ensure_bundle(model_dir, work_dir / "bundle")
    records = build_demo_stream(demo_rows(), plan, start=_window_floor(time.time(), plan.window_seconds)
                                - plan.windows * plan.window_seconds, rng=random.Random(7))
    until = "stream-done" if args.until_stream_done else "alert-resolved"
    return run_demo(settings, bundle_dir, records, plan, work_dir, until=until, keep_running=args.keep_running,
                    timeout=args.timeout)


def ensure_model(model_dir: Path) -> Path:
    """A cached small model, trained once (a few minutes on a laptop CPU) when missing."""
    if (model_dir / "heads.safetensors").is_file():
        print(f"using the cached demo model in {model_dir}", flush=True)
        return model_dir
    from sentiwatch.trainer.run import run_training
    from sentiwatch.trainer.train import TrainConfig

    print(f"training a small demo model into {model_dir} (once; later demos reuse it)", flush=True)
    partial = model_dir.with_name(model_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    # A 4-minute budget keeps `make demo` near 10 minutes on a 2-core laptop; the learning rate anneals
    # within it, and the model it gives (sentiment macro-F1 about 0.75) is plenty to see a surge.
    config = dataclasses.replace(TrainConfig(), limit=4000, epochs=2, time_budget_minutes=4.0)
    run_training(partial, None, ["builtin"], config)
    shutil.rmtree(model_dir, ignore_errors=True)
    partial.rename(model_dir)
    return model_dir


def ensure_bundle(model_dir: Path, bundle_dir: Path) -> Path:
    """Export the model unless a bundle made from this very model folder is already there."""
    from sentiwatch.streamer.inference.bundle import load_bundle

    stamp = bundle_dir / ".source-model"
    source = str(model_dir.resolve())
    if stamp.is_file() and stamp.read_text() == source:
        with contextlib.suppress(SentiwatchError):
            load_bundle(bundle_dir)
            return bundle_dir
    from sentiwatch.exporter.export import export_bundle, validation_parity_set

    print(f"exporting {model_dir} to an ONNX bundle in {bundle_dir}", flush=True)
    shutil.rmtree(bundle_dir, ignore_errors=True)
    # The demo checks parity on 1,024 validation texts instead of the exporter's whole validation split:
    # a quarter of the export time, and the demo's verdict needs no tighter interval.
    parity_texts = validation_parity_set(limit=1024)
    # A briefly trained demo model can sit close to its decision boundaries, where int8 flips labels; the
    # exporter then leaves int8 out and the worker runs on fp32 (slower, same answers).
    manifest = export_bundle(model_dir, bundle_dir, ["fp32", "int8"], "auto", parity_texts)
    for name, rejected in manifest.get("rejected_variants", {}).items():
        print(f"{name} variant not written ({rejected['reason']}); the demo runs on fp32", flush=True)
    stamp.write_text(source)
    return bundle_dir


def demo_rows() -> list[dict[str, Any]]:
    """Built-in labelled texts the model never trained on (validation and test splits)."""
    from sentiwatch.trainer.data import load_examples, split_examples

    examples, _ = load_examples(["builtin:sentiment"])
    splits = split_examples(examples)
    return [{"text": e.text, "sentiment": e.sentiment} for split in ("validation", "test") for e in splits[split]]


def _window_floor(t: float, window_seconds: int) -> float:
    return t - t % window_seconds
