"""Reading a model bundle (written by `sentiwatch export`) and proving it is the one that was exported.

A bundle is a folder: ONNX graphs (one per variant), `tokenizer.json`, `labels.json` and
`manifest.json`, which lists the sha256 of every other file. Loading checks every hash before
anything is used, so a half-copied or edited bundle stops the worker with the file's name instead
of scoring with the wrong weights. Imports neither torch nor transformers: the streamer image has
neither.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from sentiwatch.errors import BundleError
from sentiwatch.hashing import sha256_file

MANIFEST = "manifest.json"
LABELS = "labels.json"
TOKENIZER = "tokenizer.json"
FORMAT_VERSION = 1
# The graph's outputs, in this order, in every variant.
OUTPUT_NAMES: tuple[str, str] = ("sentiment_logits", "topic_logits")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One ONNX graph of the bundle and the execution provider it was built for."""

    name: str  # fp32, fp16 or int8
    path: Path
    precision: str
    provider: str  # CPUExecutionProvider or CUDAExecutionProvider
    parity: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A verified bundle: every file's hash matched the manifest."""

    path: Path
    manifest: dict[str, Any]
    version: str
    sentiment_labels: tuple[str, ...]
    topic_labels: tuple[str, ...]
    max_length: int
    tokenizer_path: Path
    variants: dict[str, Variant]


def load_bundle(bundle_dir: str | os.PathLike[str]) -> Bundle:
    """Read and verify a bundle; raise BundleError naming the first missing, changed or inconsistent file."""
    root = Path(bundle_dir)
    manifest = _read_json(root / MANIFEST, what="bundle manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{root / MANIFEST}: unsupported format_version {manifest.get('format_version')!r} "
                          f"(this sentiwatch reads {FORMAT_VERSION}); re-export the bundle")
    files = _required(manifest, "files", dict, root)
    for name, expected in sorted(files.items()):
        _verify_file(root, name, expected)

    labels = _read_json(root / LABELS, what="label map")
    sentiment_labels = tuple(labels.get("sentiment") or ())
    topic_labels = tuple(labels.get("topic") or ())
    if not sentiment_labels or not topic_labels:
        raise BundleError(f"{root / LABELS}: needs non-empty 'sentiment' and 'topic' label lists")
    outputs = manifest.get("outputs") or {}
    for output, count in ((OUTPUT_NAMES[0], len(sentiment_labels)), (OUTPUT_NAMES[1], len(topic_labels))):
        if outputs.get(output) != count:
            raise BundleError(f"{root / LABELS}: {count} labels but the graph output {output!r} has "
                              f"{outputs.get(output)!r} columns (manifest 'outputs')")

    variants: dict[str, Variant] = {}
    for name, entry in _required(manifest, "variants", dict, root).items():
        if name not in PRECISIONS:
            raise BundleError(f"{root / MANIFEST}: unknown variant {name!r}")
        file_name = entry.get("file")
        if file_name not in files:
            raise BundleError(f"{root / MANIFEST}: variant {name!r} file {file_name!r} is not listed under 'files'")
        variants[name] = Variant(name=name, path=root / file_name, precision=entry.get("precision", name),
                                 provider=entry.get("provider", "CPUExecutionProvider"),
                                 parity=dict(entry.get("parity") or {}))
    if not variants:
        raise BundleError(f"{root / MANIFEST}: the bundle has no variants")
    if TOKENIZER not in files:
        raise BundleError(f"{root / MANIFEST}: {TOKENIZER} is not listed under 'files'")
    max_length = _required(manifest, "max_length", int, root)
    if max_length <= 0:
        raise BundleError(f"{root / MANIFEST}: max_length must be > 0, got {max_length}")
    return Bundle(
        path=root,
        manifest=manifest,
        version=str(manifest.get("model_version") or "unknown"),
        sentiment_labels=sentiment_labels,
        topic_labels=topic_labels,
        max_length=max_length,
        tokenizer_path=root / TOKENIZER,
        variants=variants,
    )


def _verify_file(root: Path, name: str, expected: str) -> None:
    # Names come from the manifest: refuse paths that climb out of the bundle.
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise BundleError(f"{root / MANIFEST}: file name {name!r} points outside the bundle")
    path = root / name
    if not path.is_file():
        raise BundleError(f"{path}: listed in the bundle manifest but missing")
    actual = sha256_file(path)
    if actual != expected:
        raise BundleError(f"{path}: sha256 {actual[:12]}… does not match the manifest ({str(expected)[:12]}…); "
                          "the file was changed after export")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise BundleError(f"{path}: missing ({what}); is {path.parent} a bundle written by `sentiwatch export`?")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise BundleError(f"{path}: expected a JSON object")
    return value


def _required(manifest: dict[str, Any], key: str, kind: type, root: Path) -> Any:
    value = manifest.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BundleError(f"{root / MANIFEST}: key {key!r} missing or not a {kind.__name__}")
    return value
