"""Writing a bundle's label map and manifest, the files `sentiwatch.streamer.inference.bundle.load_bundle` checks.

The manifest records where the model came from (version, base model, training data and split
fingerprints, training metrics) and, for every variant, its file, precision, intended execution
provider and parity results, plus the sha256 of every file so a changed byte is caught at load.
"""

from __future__ import annotations

import datetime as dt
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from sentiwatch.hashing import sha256_file
from sentiwatch.streamer.inference.bundle import FORMAT_VERSION, LABELS, MANIFEST, TOKENIZER

DEFAULT_LANGUAGES: tuple[str, ...] = ("en",)
# Keys of the model folder's `config.json["sentiwatch"]` that are label maps, not provenance.
_LABEL_KEYS = ("sentiment_labels", "topic_labels", "pooling")


def write_labels(out_dir: Path, sentiment_labels: tuple[str, ...], topic_labels: tuple[str, ...]) -> None:
    (out_dir / LABELS).write_text(json.dumps({"sentiment": list(sentiment_labels), "topic": list(topic_labels)},
                                             indent=2) + "\n", encoding="utf-8")


def model_version(model_dir: Path, meta: dict[str, Any]) -> str:
    """The trainer's version string when it recorded one, else a hash of the weights."""
    if meta.get("version"):
        return str(meta["version"])
    return "sha256:" + sha256_file(model_dir / "model.safetensors")[:12]


def write_manifest(out_dir: Path, *, model_dir: Path, meta: dict[str, Any], base_model: str, max_length: int,
                   inputs: list[str], output_columns: dict[str, int], variants: dict[str, dict[str, Any]],
                   rejected_variants: dict[str, dict[str, Any]] | None = None,
                   languages: list[str] | None = None) -> dict:
    """Hash every file in out_dir (except the manifest) and write manifest.json; return it.

    `languages`: the ISO 639-1 codes the model was trained for (the trainer records them; a model folder
    that has none was trained on the English built-in data); the stream uses them for language coverage."""
    metrics_path = model_dir / "metrics.json"
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_version": model_version(model_dir, meta),
        # Where the model folder was at export time (for benchmarks that compare with PyTorch).
        "source_model": str(model_dir.resolve()),
        "base_model": str(meta.get("base_model") or base_model),
        "data_fingerprints": meta.get("data_fingerprints"),
        "training": {key: value for key, value in meta.items() if key not in _LABEL_KEYS},
        "training_metrics": json.loads(metrics_path.read_text()) if metrics_path.is_file() else None,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "exported_with": {name: _version(name) for name in ("sentiwatch", "torch", "optimum-onnx", "onnxruntime-gpu")},
        "max_length": max_length,
        "tokenizer": TOKENIZER,
        "labels": LABELS,
        "inputs": inputs,
        "outputs": output_columns,
        "variants": variants,
        # Variants asked for but left out because they missed parity, each with its reason.
        "rejected_variants": rejected_variants or {},
        "languages": list(languages or DEFAULT_LANGUAGES),
        "files": {path.name: sha256_file(path) for path in sorted(out_dir.iterdir())
                  if path.is_file() and path.name != MANIFEST},
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
