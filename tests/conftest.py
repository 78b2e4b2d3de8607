"""Shared fixtures. The model fixtures build a tiny randomly initialised BERT in the test run, so the
suite exercises real training, export and ONNX Runtime code without the 90 MB base model."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the real MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from sentiwatch.trainer.model import default_base_dir

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-base")
    tokenizer = AutoTokenizer.from_pretrained(default_base_dir(), use_fast=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(out, safe_serialization=True)
    tokenizer.model_max_length = 128
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained two-head model folder on the tiny base (for export and streaming tests)."""
    import torch

    from sentiwatch.labels import DEFAULT_TOPIC_LABELS, SENTIMENT_LABELS
    from sentiwatch.trainer.model import TwoHeadClassifier, load_base, save_model

    torch.manual_seed(1)
    encoder, tokenizer, _ = load_base(tiny_base_dir)
    model = TwoHeadClassifier(encoder, SENTIMENT_LABELS, DEFAULT_TOPIC_LABELS)
    out = tmp_path_factory.mktemp("tiny-model")
    save_model(model, tokenizer, out, extra={"version": "tiny-test"})
    return out


@pytest.fixture
def copy_dir(tmp_path: Path):
    def _copy(src: Path) -> Path:
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        return dst
    return _copy


@pytest.fixture(scope="session")
def tiny_bundle_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_model_dir` exported to an ONNX bundle (fp32 + int8) through the real exporter. Treat it as
    read-only (copy it with `copy_dir` to tamper). Random weights give near-uniform probabilities, so
    int8 must agree on 95% of labels here instead of the 99% required of trained models."""
    from sentiwatch.exporter.export import export_bundle, validation_parity_set
    from sentiwatch.exporter.parity import ParityLimits

    out = tmp_path_factory.mktemp("tiny-bundle") / "bundle"
    export_bundle(tiny_model_dir, out, ["fp32", "int8"], "auto", validation_parity_set(limit=64),
                  ParityLimits(int8_min_agreement=0.95, int8_max_f1_drop=0.05))
    return out
