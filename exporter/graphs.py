"""Building the ONNX graphs of a bundle: the fp32 export and its tuned fp16 (CUDA) and int8 (CPU) variants.

Optimum's export task presets have no "two heads from one encoder" task, so the fp32 graph comes
from `torch.onnx.export` of `TwoHeadClassifier`; Optimum's `ORTOptimizer` (operator fusion, fp16)
and `ORTQuantizer` (dynamic int8) are then applied to that graph.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig, OptimizationConfig
from transformers import PretrainedConfig, PreTrainedTokenizerBase

from sentiwatch.errors import SentiwatchError
from sentiwatch.streamer.inference.bundle import OUTPUT_NAMES
from sentiwatch.trainer.model import TwoHeadClassifier

OPSET = 17
ORT_DEFAULT_LOG_SEVERITY = 2  # warnings and above
INT8_ISAS: tuple[str, ...] = ("avx512_vnni", "avx512", "avx2")
# MatMulNBits block length along the inner dimension (MiniLM's 384 and 1536 are multiples of it).
BLOCKWISE_BLOCK = 128


def input_names_for(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The graph inputs: token_type_ids only for encoders whose tokenizer produces them (BERT does)."""
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in tokenizer.model_input_names:
        names.append("token_type_ids")
    return names


def export_fp32(model: TwoHeadClassifier, tokenizer: PreTrainedTokenizerBase, out_path: Path) -> list[str]:
    """Trace the two-head model to one ONNX graph with dynamic batch and sequence axes; return its inputs."""
    names = input_names_for(tokenizer)
    # Two rows of different lengths so the trace sees padding; shapes stay symbolic anyway.
    sample = tokenizer(["a short text", "a somewhat longer sample text for tracing"], padding=True,
                       return_tensors="pt")
    args = tuple(sample[name] for name in names)
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes.update({name: {0: "batch"} for name in OUTPUT_NAMES})
    model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript tracer warns about constants in transformers' mask code that are shape-independent.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(out_path), input_names=names, output_names=list(OUTPUT_NAMES),
                          dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False)
    return names


def optimize(fp32_path: Path, encoder_config: PretrainedConfig, out_path: Path, for_gpu: bool) -> None:
    """Fuse attention, LayerNorm and GELU (exact GELU kept, so parity holds); on GPU also convert to fp16."""
    config = OptimizationConfig(optimization_level=2, optimize_for_gpu=for_gpu, fp16=for_gpu,
                                enable_gelu_approximation=False)
    with tempfile.TemporaryDirectory() as work:
        # The GPU optimization opens a CUDA session; on a machine without a GPU onnxruntime logs a page
        # of library errors before it falls back, which would read as a failed export.
        ort.set_default_logger_severity(4 if for_gpu else ORT_DEFAULT_LOG_SEVERITY)
        try:
            # ORTOptimizer also writes config/preprocessor files; only the graph goes into the bundle.
            with _fusion_logs_hidden():
                ORTOptimizer([fp32_path], config=encoder_config).optimize(config, save_dir=work, file_suffix=None)
        finally:
            ort.set_default_logger_severity(ORT_DEFAULT_LOG_SEVERITY)
        shutil.move(str(Path(work) / fp32_path.name), out_path)


def quantize_int8(fp32_path: Path, encoder_config: PretrainedConfig, out_path: Path, isa: str,
                  keep_fp32: Sequence[str] = ()) -> None:
    """Dynamic int8 quantization for an ISA: int8 weights per channel, activations quantized at run time.

    Only MatMuls with a weight are quantized: the attention score products (activation x activation)
    lose accuracy for no gain here, and the two heads are too small to matter. `keep_fp32` names
    MatMuls that stay in fp32 (the exporter picks them when parity needs it)."""
    if isa not in INT8_ISAS:
        raise SentiwatchError(f"unknown int8 ISA {isa!r}; expected one of {', '.join(INT8_ISAS)}")
    nodes = [name for name in weight_matmuls(fp32_path) if name not in set(keep_fp32)]
    # reduce_range: AVX2/AVX-512 without VNNI saturate u8*s8 pairs (VPMADDUBSW), 7-bit weights avoid it.
    if isa == "avx512_vnni":
        config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True, nodes_to_quantize=nodes)
    else:
        config = getattr(AutoQuantizationConfig, isa)(is_static=False, per_channel=True, reduce_range=True,
                                                      nodes_to_quantize=nodes)
    with tempfile.TemporaryDirectory() as work:
        with _fusion_logs_hidden():
            quantizer = ORTQuantizer(fp32_path, config=encoder_config)
            written = quantizer.quantize(quantization_config=config, save_dir=work, file_suffix=None)
        shutil.move(str(Path(written) / fp32_path.name), out_path)


def blockwise_int8(path: Path, nodes: Sequence[str], out_path: Path) -> None:
    """Turn the named fp32 weight MatMuls into ONNX Runtime's MatMulNBits: 8-bit weights in blocks of
    BLOCKWISE_BLOCK, activations quantized at run time per row and block (accuracy level 4, VNNI).

    For MatMuls that dynamic int8 gets wrong. Its error comes from the one activation scale per tensor
    (measured on the trained MiniLM: per-tensor activations alone flip 1.7% of sentiment labels, per-token
    ones 0.1%); per-row blocks keep the precision, and the op still runs faster than fp32 here. It is
    slower than dynamic int8, so only the MatMuls that need it get it."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    others = [name for name in weight_matmuls(path) if name not in set(nodes)]
    config = DefaultWeightOnlyQuantConfig(block_size=BLOCKWISE_BLOCK, is_symmetric=True, accuracy_level=4, bits=8)
    with _fusion_logs_hidden():
        quantizer = MatMulNBitsQuantizer(onnx.load(str(path)), nodes_to_exclude=others, algo_config=config)
        quantizer.process()
    quantizer.model.save_model_to_file(str(out_path), use_external_data_format=False)


def weight_matmuls(path: Path) -> list[str]:
    """Names of the MatMul nodes whose second input is a weight (an initializer), in graph order."""
    graph = onnx.load(str(path)).graph
    weights = {init.name for init in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in weights]


def down_projections(path: Path) -> list[str]:
    """Weight MatMuls that shrink the width (the feed-forward output, 4h -> h): their inputs are the GELU
    outputs whose outliers make dynamic int8 least accurate, so they are the first to keep in fp32."""
    graph = onnx.load(str(path)).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    return [node.name for node in graph.node
            if node.op_type == "MatMul" and len(shapes.get(node.input[1], ())) == 2
            and shapes[node.input[1]][0] > shapes[node.input[1]][1]]


@contextlib.contextmanager
def _fusion_logs_hidden() -> Iterator[None]:
    """ORT's optimizer and quantizer log every fusion and every tensor at INFO through the root logger,
    hundreds of lines per export; they stay visible with --debug."""
    root = logging.getLogger()
    level = root.level
    if level > logging.DEBUG:
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)


def detect_int8_isa(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The best int8 instruction set this CPU has, from its flags (avx2 when unknown)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return "avx2"
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    if {"avx512f", "avx512_vnni"} <= flags:
        return "avx512_vnni"
    if {"avx512f", "avx512bw"} <= flags:
        return "avx512"
    return "avx2"
