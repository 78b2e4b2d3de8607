"""ONNX Runtime scoring of texts with a verified bundle: the streamer's (and `score`'s) Predictor.

The session is built for the variant that fits the hardware, and which provider really came up is
read back from `session.get_providers()` afterwards: onnxruntime-gpu silently falls back to the CPU
when CUDA cannot start, and a fp16 graph on the CPU would be slow. Tokenization uses the Rust
`tokenizers` package (no transformers), truncates to the bundle's max_length and pads each batch
only to its own longest text. Imports no torch.

On the CPU, a batch's passes run side by side, one per core, each on one thread, instead of one pass
at a time spread over all cores: these matrices are too small for ONNX Runtime's intra-op threads
to keep two cores busy (measured on MiniLM int8, 2 cores, texts/s at batch 1 / 8 / 32 / 128: two
intra-op threads 307 / 411 / 511 / 535, two one-thread passes side by side 283 / 558 / 660 / 774,
small calls cut into one pass per core). Passes are handed out longest first, so the call's last
pass is a short one and no core idles long waiting for it (batch 32: 602 -> 660 texts/s).

A scorer may be called from several threads at once (the worker scores two batches at a time): the
session and tokenizer are thread-safe, and all passes go through one pool of `parallel_passes` threads,
so inference never uses more cores than configured however many callers there are.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from sentiwatch.errors import BundleError
from sentiwatch.predictor import Prediction
from sentiwatch.streamer.inference.bundle import OUTPUT_NAMES, Bundle, load_bundle
from sentiwatch.streamer.inference.cpu_quota import usable_cpus

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
VARIANTS = ("auto", "fp32", "fp16", "int8")
# Texts per forward pass. On the CPU, cost grows with rows x padded length, so a call is cut into
# small passes of similar-length texts (measured on MiniLM int8, 2-core EPYC: passes of 8 score
# ~40% more texts per CPU-second than one pass of 32; 4 is no better). A GPU wants large passes.
DEFAULT_PASS_SIZE = {CPU: 8, CUDA: 256}


@dataclasses.dataclass(frozen=True)
class EncodedBatch:
    """Model inputs for one batch, padded to the batch's longest text."""

    input_ids: np.ndarray  # (n, seq) int64
    attention_mask: np.ndarray  # (n, seq) int64
    token_type_ids: np.ndarray  # (n, seq) int64
    truncated: np.ndarray  # (n,) bool


class OnnxScorer:
    """Scores texts with one ONNX Runtime session; implements `sentiwatch.predictor.Predictor`."""

    def __init__(self, bundle: Bundle, variant: str, session: ort.InferenceSession, tokenizer: Tokenizer,
                 max_pass_size: int | None = None, parallel_passes: int = 1) -> None:
        self.bundle = bundle
        self.variant = variant
        self.precision = bundle.variants[variant].precision
        self.version = bundle.version
        self.provider = session.get_providers()[0]
        self.sentiment_labels = bundle.sentiment_labels
        self.topic_labels = bundle.topic_labels
        self.max_length = bundle.max_length
        self.max_pass_size = max_pass_size or DEFAULT_PASS_SIZE.get(self.provider, DEFAULT_PASS_SIZE[CPU])
        self._session = session
        self._tokenizer = tokenizer
        self._input_names = tuple(node.name for node in session.get_inputs())
        self.parallel_passes = max(1, parallel_passes)
        self._pass_pool = concurrent.futures.ThreadPoolExecutor(self.parallel_passes, thread_name_prefix="pass")

    def predict(self, texts: Sequence[str]) -> Prediction:
        """Score texts in input order, in passes of at most `max_pass_size` texts of similar length."""
        return self.predict_encoded(self.tokenize(texts))

    def predict_encoded(self, encodings: Sequence[Encoding]) -> Prediction:
        """`predict` on already tokenized texts (the benchmark times tokenization apart)."""
        n = len(encodings)
        sentiment = np.zeros((n, len(self.sentiment_labels)), dtype=np.float32)
        topic = np.zeros((n, len(self.topic_labels)), dtype=np.float32)
        truncated = np.zeros(n, dtype=bool)
        # Grouping texts of similar length keeps padding (wasted compute) small; longest first (see the module
        # docstring). Results go back to their original rows through `chunk`.
        size = self.pass_size(n)
        order = sorted(range(n), key=lambda i: -len(encodings[i].ids)) if n > size else list(range(n))
        chunks = [order[start:start + size] for start in range(0, n, size)]
        batches = [pad_batch([encodings[i] for i in chunk]) for chunk in chunks]
        results = self._pass_pool.map(self.run, batches)
        for chunk, batch, (sentiment_probs, topic_probs) in zip(chunks, batches, results, strict=True):
            sentiment[chunk], topic[chunk] = sentiment_probs, topic_probs
            truncated[chunk] = batch.truncated
        return Prediction(sentiment_probs=sentiment, topic_probs=topic, truncated=truncated)

    def pass_size(self, n: int) -> int:
        """Texts per pass for a call of n texts: at most `max_pass_size`, and small enough that every core
        gets a pass (one text per pass at worst) rather than some sitting idle."""
        return max(1, min(self.max_pass_size, math.ceil(n / self.parallel_passes)))

    def tokenize(self, texts: Sequence[str]) -> list[Encoding]:
        """Token ids per text, truncated to max_length (an overflow marks the text as truncated)."""
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text #{index} is {type(text).__name__}, expected str")
        return self._tokenizer.encode_batch(list(texts))

    def encode(self, texts: Sequence[str]) -> EncodedBatch:
        """Tokenize and pad texts as one batch, as one pass would see them."""
        return pad_batch(self.tokenize(texts))

    def run(self, batch: EncodedBatch) -> tuple[np.ndarray, np.ndarray]:
        """One forward pass; returns (sentiment_probs, topic_probs) as float32."""
        if len(batch.input_ids) == 0:
            return (np.zeros((0, len(self.sentiment_labels)), np.float32),
                    np.zeros((0, len(self.topic_labels)), np.float32))
        feeds = {name: getattr(batch, name) for name in self._input_names}
        if self.provider == CUDA:
            # IO binding: outputs stay in device memory until one copy back, no per-run allocation
            # negotiation on the host.
            binding = self._session.io_binding()
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            for name in OUTPUT_NAMES:
                binding.bind_output(name, "cuda")
            self._session.run_with_iobinding(binding)
            sentiment_logits, topic_logits = binding.copy_outputs_to_cpu()
        else:
            sentiment_logits, topic_logits = self._session.run(list(OUTPUT_NAMES), feeds)
        return softmax(sentiment_logits), softmax(topic_logits)


def default_threads(intra_op_threads: int) -> int:
    """The configured count, or (0) the CPUs the container may use: its cgroup CPU quota, not the node's cores."""
    return intra_op_threads if intra_op_threads > 0 else usable_cpus()


def load_scorer(bundle_dir: str | os.PathLike[str], variant: str = "auto", intra_op_threads: int = 0,
                max_pass_size: int | None = None) -> OnnxScorer:
    """Verify the bundle and open a session: auto = fp16 on CUDA when CUDA really comes up, else int8
    (else fp32) on the CPU. `intra_op_threads` is how many cores inference may use (0: all this process may
    use); on the CPU that many passes run at once, one thread each. `max_pass_size` None means the
    provider's default (DEFAULT_PASS_SIZE)."""
    if variant not in VARIANTS:
        raise BundleError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if max_pass_size is not None and max_pass_size <= 0:
        raise ValueError(f"max_pass_size must be > 0, got {max_pass_size}")
    bundle = load_bundle(bundle_dir)
    threads = default_threads(intra_op_threads)
    cuda_available = cuda_possible()
    session, chosen = None, ""
    for name, provider in candidate_plan(bundle, variant, cuda_available):
        # CPU: one thread per pass, `threads` passes at a time (see the module docstring).
        session = _open_session(bundle.variants[name].path, provider, 1 if provider == CPU else threads)
        actual = session.get_providers()[0]
        if provider == CUDA and actual != CUDA:
            log.info("CUDA did not come up for the %s variant (got %s); trying the next variant", name, actual)
            session = None
            continue
        chosen = name
        break
    if session is None:
        raise BundleError(f"{bundle.path}: no variant of {sorted(bundle.variants)} could start for variant={variant}")
    _check_graph(bundle, session, chosen)
    scorer = OnnxScorer(bundle, chosen, session, _load_tokenizer(bundle.tokenizer_path, bundle.max_length),
                        max_pass_size, parallel_passes=threads if session.get_providers()[0] == CPU else 1)
    log.info("scoring with bundle %s version %s: variant %s (%s) on %s, passes of <= %d texts, %d at a time",
             bundle.path, scorer.version, scorer.variant, scorer.precision, scorer.provider, scorer.max_pass_size,
             scorer.parallel_passes)
    return scorer


def candidate_plan(bundle: Bundle, variant: str, cuda_available: bool) -> list[tuple[str, str]]:
    """(variant, provider) pairs to try in order; only the first that really starts is used."""
    if variant != "auto":
        if variant not in bundle.variants:
            raise BundleError(f"{bundle.path}: the bundle has no {variant} variant "
                              f"(it has {', '.join(sorted(bundle.variants))})")
        # Quantized (int8) graphs have no CUDA kernels; the others try CUDA first when it exists.
        if variant != "int8" and cuda_available:
            return [(variant, CUDA), (variant, CPU)]
        return [(variant, CPU)]
    plan: list[tuple[str, str]] = []
    if cuda_available:
        plan += [(name, CUDA) for name in ("fp16", "fp32") if name in bundle.variants]
    plan += [(name, CPU) for name in ("int8", "fp32") if name in bundle.variants]
    if not plan:
        # Only a fp16 graph and no CUDA: slow on the CPU, but better than refusing to score.
        plan = [("fp16", CPU)]
    return plan


def cuda_possible() -> bool:
    """Whether trying CUDA is worth it: the provider is built in and an NVIDIA device is visible.

    onnxruntime-gpu lists CUDAExecutionProvider even on machines without a GPU, and trying it there
    logs a page of library errors before falling back; `get_providers()` stays the final word.
    """
    if CUDA not in ort.get_available_providers():
        return False
    return Path("/dev/nvidiactl").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def pad_batch(encodings: Sequence[Encoding]) -> EncodedBatch:
    """Right-pad token ids to the longest encoding (pad id 0, mask 0)."""
    n = len(encodings)
    width = max((len(e.ids) for e in encodings), default=0)
    input_ids = np.zeros((n, width), dtype=np.int64)
    attention_mask = np.zeros((n, width), dtype=np.int64)
    token_type_ids = np.zeros((n, width), dtype=np.int64)
    truncated = np.zeros(n, dtype=bool)
    for row, encoding in enumerate(encodings):
        length = len(encoding.ids)
        input_ids[row, :length] = encoding.ids
        attention_mask[row, :length] = 1
        token_type_ids[row, :length] = encoding.type_ids
        truncated[row] = bool(encoding.overflowing)
    return EncodedBatch(input_ids, attention_mask, token_type_ids, truncated)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _load_tokenizer(path: Path, max_length: int) -> Tokenizer:
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exception
        raise BundleError(f"{path}: cannot load tokenizer ({exc})") from None
    # The file may carry fixed-length padding from training; batches are padded here instead.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


def _open_session(path: Path, provider: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # A CUDA provider that cannot start is reported through get_providers(); its warnings are noise.
    options.log_severity_level = 3
    providers = [provider] if provider == CPU else [provider, CPU]
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BundleError(f"{path}: ONNX Runtime cannot load this graph on {provider}: {exc}") from None


def _check_graph(bundle: Bundle, session: ort.InferenceSession, variant: str) -> None:
    """The graph's outputs must match the label maps, or every label would be off."""
    path = bundle.variants[variant].path
    outputs = {node.name: node.shape for node in session.get_outputs()}
    for name, labels in zip(OUTPUT_NAMES, (bundle.sentiment_labels, bundle.topic_labels), strict=True):
        shape = outputs.get(name)
        if shape is None:
            raise BundleError(f"{path}: graph has no output {name!r} (outputs: {sorted(outputs)})")
        if shape[-1] != len(labels):
            raise BundleError(f"{path}: output {name!r} has {shape[-1]} columns but labels.json has {len(labels)}")
    unknown = [node.name for node in session.get_inputs()
               if node.name not in ("input_ids", "attention_mask", "token_type_ids")]
    if unknown:
        raise BundleError(f"{path}: graph needs inputs this scorer cannot provide: {unknown}")
