"""Bundle verification: every file's sha256, labels against the graph, no torch in the streamer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sentiwatch.errors import BundleError
from sentiwatch.hashing import sha256_file
from sentiwatch.streamer.inference.bundle import load_bundle
from sentiwatch.streamer.inference.scorer import load_scorer
from tests.conftest import REPO_ROOT

BUNDLE_FILES = ["model-fp32.onnx", "model-int8.onnx", "tokenizer.json", "labels.json"]


def test_load_bundle_reads_labels_and_variants(tiny_bundle_dir: Path) -> None:
    bundle = load_bundle(tiny_bundle_dir)
    assert bundle.sentiment_labels == ("negative", "neutral", "positive")
    assert bundle.topic_labels == ("business", "entertainment", "politics", "sport", "tech")
    assert bundle.max_length == 128
    assert bundle.version == "tiny-test"
    assert {name: v.provider for name, v in bundle.variants.items()} == {
        "fp32": "CPUExecutionProvider", "int8": "CPUExecutionProvider"}


@pytest.mark.parametrize("name", BUNDLE_FILES)
def test_one_changed_byte_stops_the_load_naming_the_file(tiny_bundle_dir: Path, copy_dir, name: str) -> None:
    bundle = copy_dir(tiny_bundle_dir)
    data = bytearray((bundle / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{name}: sha256 .* does not match"):
        load_bundle(bundle)


def test_missing_file_stops_the_load_naming_it(tiny_bundle_dir: Path, copy_dir) -> None:
    bundle = copy_dir(tiny_bundle_dir)
    (bundle / "model-int8.onnx").unlink()
    with pytest.raises(BundleError, match="model-int8.onnx: listed in the bundle manifest but missing"):
        load_bundle(bundle)
    (bundle / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json: missing"):
        load_bundle(bundle)


def _relabel(bundle: Path, topics: list[str], manifest_columns: int) -> None:
    """Change the topic labels and re-hash, as a careless hand edit of a bundle would."""
    labels = json.loads((bundle / "labels.json").read_text())
    labels["topic"] = topics
    (bundle / "labels.json").write_text(json.dumps(labels))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["labels.json"] = sha256_file(bundle / "labels.json")
    manifest["outputs"]["topic_logits"] = manifest_columns
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_labels_must_match_the_graph_outputs(tiny_bundle_dir: Path, copy_dir) -> None:
    bundle = copy_dir(tiny_bundle_dir)
    six = ["business", "entertainment", "politics", "sport", "tech", "health"]
    _relabel(bundle, six, manifest_columns=5)
    with pytest.raises(BundleError, match="6 labels but the graph output 'topic_logits' has 5"):
        load_bundle(bundle)
    # The manifest can be edited to agree; the graph itself still has 5 columns.
    _relabel(bundle, six, manifest_columns=6)
    with pytest.raises(BundleError, match="output 'topic_logits' has 5 columns but labels.json has 6"):
        load_scorer(bundle, variant="fp32")


def test_bundle_and_scorer_import_no_torch() -> None:
    code = ("import sys, sentiwatch.streamer.inference.bundle, sentiwatch.streamer.inference.scorer; "
            "bad = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
