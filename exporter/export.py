"""`sentiwatch export`: model folder -> verified ONNX bundle.

The bundle is built in a scratch folder beside the target and moved into place only once every
requested variant was checked: a variant that misses parity is left out of the bundle and listed under
`rejected_variants` with the reason; only the fp32 reference failing fails the export (the others are
made from it), and then no bundle is left behind that the streamer could load. Parity is measured
through `sentiwatch.streamer.inference.scorer` itself (the `tokenizers` tokenizer, the real ONNX Runtime
session), i.e. exactly the code path production scores with.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from sentiwatch.errors import DataError, SentiwatchError
from sentiwatch.exporter import graphs, manifest, parity
from sentiwatch.exporter.drift_reference import add_drift_reference
from sentiwatch.streamer.inference.bundle import MANIFEST, OUTPUT_NAMES, TOKENIZER
from sentiwatch.streamer.inference.scorer import CPU, CUDA, load_scorer
from sentiwatch.trainer.model import load_model
from sentiwatch.trainer.predict import TorchPredictor

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 128
# Parity texts: enough that the 99% agreement limit is decided by more than a few flips (at 99%, the
# 95% interval is 98.6-99.3% on 3,565 labelled texts, 97.1-99.7% on 304). 4096 takes the whole built-in
# validation split (3,773 texts; ~45 s of PyTorch scoring on one busy core).
PARITY_TEXTS = 4096
# A spread-out sample of the parity texts for what needs no label statistics: fp32's max-difference
# check (numerical equivalence) and the int8 fallback's ranking of down-projections by mean probability
# error, a continuous measure that separates them where counts of flipped labels are mostly noise.
QUICK_TEXTS = 512
# How many of the ranked down-projections each fallback keeps in fp32 before trying all of them;
# each one kept costs int8 about 5% of its speed, so the fewest that pass parity are wanted.
KEEP_COUNTS: tuple[int, ...] = (1, 2, 4)
# After the down-projections, whole layers are kept in fp32, first layer first, while at most
# ParityLimits.max_kept_share of the weight MatMuls stays in fp32: beyond it an "int8" graph is mostly fp32
# and buys no speed, so int8 is then rejected with its reason rather than shipped.
_LAYER = re.compile(r"layer[._/](\d+)")
# Which execution provider each variant is built for; the streamer picks by what really comes up.
INTENDED_PROVIDER = {"fp32": CPU, "int8": CPU, "fp16": CUDA}
NO_GPU = "not verified: no GPU"


@dataclasses.dataclass(frozen=True)
class ParitySet:
    """Texts the variants are compared on, with gold labels per head where known (None otherwise)."""

    texts: list[str]
    gold: dict[str, list[str | None]]
    source: str


class ParityError(SentiwatchError):
    """An exported variant does not give the model's answers within the limits."""


def expand_precisions(precision: str) -> list[str]:
    return ["fp32", "int8", "fp16"] if precision == "all" else sorted({"fp32", precision})


def export_bundle(model_dir: str | Path, out_dir: str | Path, precisions: Sequence[str], int8_isa: str = "auto",
                  parity_set: ParitySet | None = None, limits: parity.ParityLimits | None = None) -> dict[str, Any]:
    """Export, verify and write the bundle; return its manifest. fp32 is always built: it is the reference
    the others are made from. Parity texts default to the validation split of the model's training data.
    A variant other than fp32 that misses parity is not written; the manifest lists it under
    `rejected_variants` with the reason."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    limits = limits or parity.ParityLimits()
    _check_target(out_dir)
    model, tokenizer, meta = load_model(model_dir)
    parity_set = parity_set or validation_parity_set(meta.get("data_specs"))
    encoder_config = model.encoder.config
    max_length = min(int(meta.get("max_length") or DEFAULT_MAX_LENGTH), encoder_config.max_position_embeddings)
    isa = graphs.detect_int8_isa() if int8_isa == "auto" else int8_isa

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-") as scratch:
        work, bundle = Path(scratch) / "work", Path(scratch) / "bundle"
        work.mkdir()
        bundle.mkdir()
        raw = work / "model.onnx"
        inputs = graphs.export_fp32(model, tokenizer, raw)
        _write_tokenizer(tokenizer, bundle / TOKENIZER, max_length)
        manifest.write_labels(bundle, model.sentiment_labels, model.topic_labels)
        columns = {OUTPUT_NAMES[0]: len(model.sentiment_labels), OUTPUT_NAMES[1]: len(model.topic_labels)}
        variants: dict[str, dict[str, Any]] = {}
        rejected: dict[str, dict[str, Any]] = {}
        reference = TorchPredictor(model, tokenizer, max_length=max_length).predict(parity_set.texts)
        labels = {"sentiment": model.sentiment_labels, "topic": model.topic_labels}
        quick_rows = _spread(len(parity_set.texts), QUICK_TEXTS)
        quick_texts = [parity_set.texts[i] for i in quick_rows]

        def write() -> dict[str, Any]:
            return manifest.write_manifest(bundle, model_dir=model_dir, meta=meta,
                                           base_model=encoder_config.name_or_path, max_length=max_length,
                                           inputs=inputs, output_columns=columns, variants=variants,
                                           rejected_variants=rejected, languages=meta.get("languages"))

        def check(name: str) -> list[str]:
            """Score the parity texts with the variant exactly as the streamer would; the limits it misses."""
            write()
            scorer = load_scorer(bundle, variant=name)
            if name == "fp16" and scorer.provider != CUDA:
                variants[name]["parity"] = {"status": NO_GPU}
                return []
            if name == "fp32":
                gold = {head: [values[i] for i in quick_rows] for head, values in parity_set.gold.items()}
                report = parity.compare(parity.subset(reference, quick_rows), scorer.predict(quick_texts), labels,
                                        gold)
            else:
                report = parity.compare(reference, scorer.predict(parity_set.texts), labels, parity_set.gold,
                                        limits.near_tie_margin)
            missed = parity.problems(name, report, limits)
            report.update(status="failed" if missed else "passed", texts=parity_set.source, provider=scorer.provider)
            variants[name]["parity"] = report
            log.info("parity %s on %s: %s", name, scorer.provider, report)
            return missed

        def int8_error() -> float:
            """Mean probability error of the current int8 graph on the quick texts."""
            write()
            candidate = load_scorer(bundle, variant="int8").predict(quick_texts)
            return parity.mean_abs_diff(parity.subset(reference, quick_rows), candidate)

        for name in ("fp32", "int8", "fp16"):
            if name not in precisions:
                continue
            target = bundle / f"model-{name}.onnx"
            variants[name] = {"file": target.name, "precision": name, "provider": INTENDED_PROVIDER[name]}
            if name == "int8":
                variants[name]["isa"] = isa
                missed = _build_int8(raw, encoder_config, target, isa, variants[name], lambda: check("int8"),
                                     int8_error, limits.max_kept_share)
            else:
                graphs.optimize(raw, encoder_config, target, for_gpu=name == "fp16")
                missed = check(name)
            if not missed:
                continue
            if name == "fp32":
                raise ParityError(f"export of {model_dir} failed parity on {len(parity_set.texts)} texts from "
                                  f"{parity_set.source}: " + "; ".join(missed))
            log.warning("%s variant left out of the bundle: %s", name, "; ".join(missed))
            rejected[name] = _rejection(variants.pop(name), missed)
            target.unlink(missing_ok=True)
        result = write()
        # What the model's answers look like on these texts, for the worker's drift gauges (drift_reference.py).
        result = add_drift_reference(bundle, reference, model.sentiment_labels, parity_set.source)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.move(str(bundle), out_dir)
    return result


def _rejection(entry: dict[str, Any], missed: list[str]) -> dict[str, Any]:
    """The manifest's record of a variant left out: why, and what was tried."""
    record = {"reason": "; ".join(missed), "precision": entry["precision"], "provider": entry["provider"]}
    for key in ("isa", "fp32_nodes", "parity"):
        if key in entry:
            record[key] = entry[key]
    return record


def _build_int8(raw: Path, encoder_config: Any, target: Path, isa: str, entry: dict[str, Any],
                check: Callable[[], list[str]], error: Callable[[], float], max_kept_share: float) -> list[str]:
    """Quantize every weight MatMul; while parity is missed, keep MatMuls in fp32 by the plans of
    `_fallback_plans`, fastest first. Returns the limits the last plan still missed."""

    def build(keep: list[str]) -> None:
        graphs.quantize_int8(raw, encoder_config, target, isa, keep_fp32=keep)
        entry["fp32_nodes"] = keep
        entry.pop("blockwise_nodes", None)

    def error_keeping(node: str) -> float:
        build([node])
        return error()

    build([])
    missed = check()
    if not missed:
        return []
    # Measured on the fully trained MiniLM (3,565 labelled validation tweets): all int8 flipped 59 labels,
    # any one down-projection kept 52-60, all six 33, the 6 up-projections or 18 attention projections
    # kept 54-69. Down-projections (inputs: GELU outputs with outliers, which make a per-tensor activation
    # scale coarse) are what helps; which of them matters differs by model (layer 2's alone sufficed on a
    # lightly trained one), so they are ranked, at one short scoring each rather than a full check.
    ranked = sorted(graphs.down_projections(raw), key=error_keeping)
    matmuls = graphs.weight_matmuls(raw)
    for keep in _fallback_plans(matmuls, ranked, int(max_kept_share * len(matmuls))):
        log.info("int8 missed parity (%s); retrying with %d MatMul(s) kept in fp32: %s", "; ".join(missed),
                 len(keep), ", ".join(keep))
        build(keep)
        missed = check()
        if not missed:
            if isa == "avx512_vnni":
                _try_blockwise(target, keep, entry, check)
            return []
    return missed


def _try_blockwise(target: Path, keep: list[str], entry: dict[str, Any], check: Callable[[], list[str]]) -> None:
    """Replace the MatMuls a passing plan kept in fp32 by blockwise int8 ones if parity still holds (faster:
    on the trained MiniLM, 11 kept MatMuls made the graph 2.7x PyTorch, blockwise ones 3.0x, texts per CPU-second).
    Only for VNNI, the one ISA it was measured on; otherwise, and if parity fails, the fp32 graph stays."""
    passing = target.read_bytes()
    graphs.blockwise_int8(target, keep, target)
    entry.update(fp32_nodes=[], blockwise_nodes=keep)
    missed = check()
    if missed:
        log.info("blockwise int8 for the %d kept MatMuls missed parity (%s); keeping them in fp32", len(keep),
                 "; ".join(missed))
        target.write_bytes(passing)
        entry.update(fp32_nodes=keep)
        entry.pop("blockwise_nodes")
        check()  # the manifest and the parity report describe the fp32-kept graph again


def _fallback_plans(matmuls: list[str], ranked_downs: list[str], max_kept: int) -> list[list[str]]:
    """MatMuls to keep in fp32, cheapest first: the most sensitive down-projections (KEEP_COUNTS of them,
    then all), then all of them plus whole layers from the first on (on the trained MiniLM, all six
    down-projections still flipped 2 of 208 topic labels, a 1.1-point macro-F1 drop; adding the rest of the
    first layer, 1), as long as at most `max_kept` MatMuls stay in fp32."""
    if not ranked_downs:
        return []
    plans = [ranked_downs[:count] for count in KEEP_COUNTS if count < len(ranked_downs)]
    plans.append(list(ranked_downs))
    layers: dict[int, list[str]] = {}
    for node in matmuls:
        match = _LAYER.search(node)
        if match and node not in ranked_downs:
            layers.setdefault(int(match.group(1)), []).append(node)
    keep = list(ranked_downs)
    for layer in sorted(layers):
        keep = keep + layers[layer]
        plans.append(keep)
    return [plan for plan in plans if len(plan) <= max_kept]


def _spread(n: int, count: int) -> list[int]:
    """`count` row indices spread evenly over n rows (all of them when n <= count)."""
    step = max(1, n // max(1, count))
    return list(range(0, n, step))[:count]


def _check_target(out_dir: Path) -> None:
    # Replacing an old bundle is expected; deleting someone's unrelated folder is not.
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file())):
        raise SentiwatchError(f"{out_dir}: exists and is not a bundle; choose an empty or new --out folder")


def _write_tokenizer(hf_tokenizer: Any, path: Path, max_length: int) -> None:
    """Save the fast tokenizer with the bundle's truncation and no fixed padding (batches pad themselves)."""
    tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    tokenizer.save(str(path))


def validation_parity_set(data_specs: Sequence[str] | None = None, limit: int = PARITY_TEXTS) -> ParitySet:
    """Texts from the validation split (never trained on) of the model's training data, else the built-in
    data: every topic-labelled text up to half the budget, so the topic macro-F1 rests on more than a
    handful of texts, the rest spread evenly over the others."""
    from sentiwatch.trainer.data import load_examples, split_examples

    specs = list(data_specs or ["builtin"])
    try:
        examples = split_examples(load_examples(specs)[0])["validation"]
    except DataError as exc:
        log.warning("parity texts: cannot read the model's training data (%s); using the built-in data", exc)
        specs = ["builtin"]
        examples = split_examples(load_examples(specs)[0])["validation"]
    topical = [e for e in examples if e.topic is not None][:limit // 2]
    others = [e for e in examples if e.topic is None]
    step = max(1, len(others) // max(1, limit - len(topical)))
    chosen = topical + others[::step][:limit - len(topical)]
    if not chosen:
        raise DataError(f"no validation texts in {', '.join(specs)} to check parity on")
    return ParitySet(texts=[e.text for e in chosen],
                     gold={"sentiment": [e.sentiment for e in chosen], "topic": [e.topic for e in chosen]},
                     source=f"validation split of {', '.join(specs)}")
