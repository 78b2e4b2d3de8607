"""`sentiwatch export` on the tiny random model: real torch.onnx export, Optimum optimizer and quantizer,
real ONNX Runtime parity checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from sentiwatch.cli import main
from sentiwatch.errors import SentiwatchError
from sentiwatch.exporter.export import NO_GPU, ParityError, _fallback_plans, export_bundle, validation_parity_set
from sentiwatch.exporter.graphs import detect_int8_isa
from sentiwatch.exporter.parity import ParityLimits, wilson_interval
from sentiwatch.streamer.inference.scorer import CUDA, load_scorer

TEXTS = ["What a great day!", "the service was awful and slow", "", "Stocks fell 3% after the earnings call " * 20]


def test_bundle_has_both_heads_dynamic_axes_and_passed_parity(tiny_bundle_dir: Path) -> None:
    manifest = json.loads((tiny_bundle_dir / "manifest.json").read_text())
    assert set(manifest["variants"]) == {"fp32", "int8"}
    assert manifest["variants"]["int8"]["provider"] == "CPUExecutionProvider"
    assert manifest["variants"]["int8"]["isa"] in ("avx512_vnni", "avx512", "avx2")
    assert manifest["model_version"] == "tiny-test"
    fp32, int8 = manifest["variants"]["fp32"]["parity"], manifest["variants"]["int8"]["parity"]
    assert fp32["status"] == int8["status"] == "passed"
    assert fp32["max_abs_diff"] <= 1e-4 and fp32["n"] == 64
    assert min(int8["agreement"].values()) >= 0.95
    for head, (low, high) in int8["agreement_ci95"].items():
        assert low <= int8["agreement"][head] <= high
    listed = set(manifest["files"])
    assert listed == {p.name for p in tiny_bundle_dir.iterdir()} - {"manifest.json"}
    for variant in ("fp32", "int8"):
        session = ort.InferenceSession(str(tiny_bundle_dir / f"model-{variant}.onnx"),
                                       providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["sentiment_logits", "topic_logits"]
        assert [o.shape[1] for o in session.get_outputs()] == [3, 5]
        for node in session.get_inputs():
            assert all(isinstance(dim, str) for dim in node.shape), node  # batch and sequence are symbolic


def test_fp32_graph_matches_pytorch(tiny_model_dir: Path, tiny_bundle_dir: Path) -> None:
    from sentiwatch.trainer.model import load_model
    from sentiwatch.trainer.predict import TorchPredictor

    model, tokenizer, _ = load_model(tiny_model_dir)
    reference = TorchPredictor(model, tokenizer, max_length=128).predict(TEXTS)
    onnx = load_scorer(tiny_bundle_dir, variant="fp32").predict(TEXTS)
    assert np.abs(reference.sentiment_probs - onnx.sentiment_probs).max() <= 1e-4
    assert np.abs(reference.topic_probs - onnx.topic_probs).max() <= 1e-4
    assert reference.truncated.tolist() == onnx.truncated.tolist() == [False, False, False, True]


def test_int8_missing_parity_is_left_out_with_its_reason_and_fp32_still_written(
        tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    impossible = ParityLimits(int8_min_agreement=1.01)
    manifest = export_bundle(tiny_model_dir, out, ["fp32", "int8"], "avx2", validation_parity_set(limit=16),
                             impossible)
    assert set(manifest["variants"]) == {"fp32"}
    rejected = manifest["rejected_variants"]["int8"]
    assert "int8 sentiment label agreement" in rejected["reason"]
    assert rejected["parity"]["status"] == "failed" and rejected["isa"] == "avx2"
    assert sorted(p.name for p in out.iterdir()) == ["labels.json", "manifest.json", "model-fp32.onnx",
                                                     "tokenizer.json"]
    assert load_scorer(out).predict(TEXTS).sentiment_probs.shape == (4, 3)  # the streamer loads what is left
    assert json.loads((out / "manifest.json").read_text())["rejected_variants"] == manifest["rejected_variants"]


def test_cli_reports_a_left_out_variant_and_succeeds(tiny_model_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import sentiwatch.exporter.export as export_module

    monkeypatch.setattr(export_module.parity, "ParityLimits", lambda: ParityLimits(int8_min_agreement=1.01))
    monkeypatch.setattr(export_module, "PARITY_TEXTS", 16)
    out = tmp_path / "bundle"
    assert main(["export", "--model", str(tiny_model_dir), "--out", str(out), "--precision", "int8"]) == 0
    printed = capsys.readouterr().out
    assert "int8  not written: int8 sentiment label agreement" in printed
    assert "languages en" in printed


def test_fp32_missing_parity_fails_the_export_and_leaves_no_bundle(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    impossible = ParityLimits(fp32_max_abs_diff=-1.0)
    with pytest.raises(ParityError, match="fp32 max abs probability difference"):
        export_bundle(tiny_model_dir, out, ["fp32", "int8"], "avx2", validation_parity_set(limit=16), impossible)
    assert list(tmp_path.iterdir()) == []


def test_near_tie_flips_are_counted_apart_from_confident_ones() -> None:
    from sentiwatch.exporter.parity import compare, problems
    from sentiwatch.predictor import Prediction

    topic = np.full((4, 1), 1.0, dtype=np.float32)
    # Rows 0-1: the reference is near-tied (margin 0.04) and int8 flips it; row 2: a confident flip
    # (margin 0.6); row 3: no flip.
    reference = np.array([[0.50, 0.46, 0.04], [0.30, 0.32, 0.38], [0.8, 0.2, 0.0], [0.1, 0.1, 0.8]], np.float32)
    candidate = np.array([[0.47, 0.49, 0.04], [0.30, 0.36, 0.34], [0.3, 0.7, 0.0], [0.1, 0.1, 0.8]], np.float32)
    pred = [Prediction(probs, topic, np.zeros(4, bool)) for probs in (reference, candidate)]
    labels = {"sentiment": ("negative", "neutral", "positive"), "topic": ("business",)}
    strict = compare(*pred, labels)
    assert strict["agreement"]["sentiment"] == 0.25 and strict["near_tie_flips"]["sentiment"] == 0
    lenient = compare(*pred, labels, near_tie_margin=0.1)
    assert lenient["agreement"]["sentiment"] == 0.75
    assert lenient["near_tie_flips"]["sentiment"] == 2 and lenient["confident_flips"]["sentiment"] == 1
    missed = problems("int8", lenient, ParityLimits())
    assert missed == ["int8 sentiment label agreement 75.00% < 99.00% (1 confident flips in 4; "
                      "2 near-tie flips not counted)"]


def test_cli_export_fp16_records_that_it_was_not_verified(tiny_model_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    assert main(["export", "--model", str(tiny_model_dir), "--out", str(out), "--precision", "fp16"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["variants"]) == {"fp32", "fp16"}
    assert manifest["variants"]["fp16"]["provider"] == CUDA
    if load_scorer(out, variant="fp16").provider != CUDA:
        assert manifest["variants"]["fp16"]["parity"] == {"status": NO_GPU}
        assert NO_GPU in capsys.readouterr().out


def test_export_refuses_to_replace_a_folder_that_is_not_a_bundle(tiny_model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SentiwatchError, match="is not a bundle"):
        export_bundle(tiny_model_dir, tmp_path, ["fp32"], "auto", validation_parity_set(limit=4))
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(("flags", "expected"), [
    ("fpu sse avx2 avx512f avx512bw avx512_vnni", "avx512_vnni"),
    ("fpu sse avx2 avx512f avx512bw", "avx512"),
    ("fpu sse avx2", "avx2"),
])
def test_int8_isa_comes_from_cpu_flags(tmp_path: Path, flags: str, expected: str) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert detect_int8_isa(cpuinfo) == expected


def test_int8_keeps_named_matmuls_in_fp32(tiny_model_dir: Path, tmp_path: Path) -> None:
    import onnx

    from sentiwatch.exporter.graphs import down_projections, export_fp32, quantize_int8, weight_matmuls
    from sentiwatch.trainer.model import load_model

    model, tokenizer, _ = load_model(tiny_model_dir)
    raw = tmp_path / "model.onnx"
    export_fp32(model, tokenizer, raw)
    downs = down_projections(raw)
    assert len(downs) == 2 and all("output/dense" in name and "attention" not in name for name in downs)
    assert len(weight_matmuls(raw)) == 2 * 6  # q, k, v, attention output, FFN up, FFN down per layer
    quantize_int8(raw, model.encoder.config, tmp_path / "int8.onnx", "avx512_vnni", keep_fp32=downs[:1])
    nodes = onnx.load(str(tmp_path / "int8.onnx")).graph.node
    assert sum(node.op_type == "MatMulInteger" for node in nodes) == 11
    assert downs[0] in {node.name for node in nodes if node.op_type == "MatMul"}


def test_blockwise_int8_replaces_the_kept_matmuls_and_stays_close(tiny_model_dir: Path, tmp_path: Path) -> None:
    import onnx

    from sentiwatch.exporter.export import _try_blockwise
    from sentiwatch.exporter.graphs import blockwise_int8, down_projections, export_fp32, quantize_int8
    from sentiwatch.trainer.model import load_model

    model, tokenizer, _ = load_model(tiny_model_dir)
    raw = tmp_path / "model.onnx"
    export_fp32(model, tokenizer, raw)
    downs = down_projections(raw)
    kept, blockwise = tmp_path / "kept.onnx", tmp_path / "blockwise.onnx"
    quantize_int8(raw, model.encoder.config, kept, "avx512_vnni", keep_fp32=downs)
    blockwise_int8(kept, downs, blockwise)
    ops = [node.op_type for node in onnx.load(str(blockwise)).graph.node]
    assert ops.count("MatMulNBits") == 2 and ops.count("MatMulInteger") == 10
    feed = {k: v.numpy() for k, v in tokenizer(["a fine day", "a much worse day than yesterday"], padding=True,
                                               return_tensors="pt").items()}
    logits = [ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]
              for path in (kept, blockwise)]
    np.testing.assert_allclose(logits[1], logits[0], atol=0.05 * float(np.abs(logits[0]).max()))

    # Parity decides: if the blockwise graph misses it, the fp32-kept graph and its manifest entry come back.
    rejected: dict = {"fp32_nodes": downs}
    verdicts = iter([["int8 sentiment label agreement"], []])
    _try_blockwise(kept, downs, rejected, lambda: next(verdicts))
    assert rejected == {"fp32_nodes": downs}
    assert "MatMulNBits" not in {node.op_type for node in onnx.load(str(kept)).graph.node}
    accepted: dict = {"fp32_nodes": downs}
    _try_blockwise(kept, downs, accepted, lambda: [])
    assert accepted == {"fp32_nodes": [], "blockwise_nodes": downs}
    assert "MatMulNBits" in {node.op_type for node in onnx.load(str(kept)).graph.node}


def test_int8_fallbacks_keep_the_fewest_down_projections_first_then_whole_layers() -> None:
    # Three layers: q, k, v, attention output, FFN up, FFN down each; ranking put layer 1's down first.
    matmuls = [f"/layer.{layer}/{part}/MatMul" for layer in (0, 1, 2) for part in ("q", "k", "v", "o", "up", "down")]
    downs = ["/layer.1/down/MatMul", "/layer.0/down/MatMul", "/layer.2/down/MatMul"]
    layer0 = [f"/layer.0/{part}/MatMul" for part in ("q", "k", "v", "o", "up")]
    layer1 = [f"/layer.1/{part}/MatMul" for part in ("q", "k", "v", "o", "up")]
    plans = _fallback_plans(matmuls, downs, max_kept=len(matmuls))
    assert plans[:4] == [downs[:1], downs[:2], downs, downs + layer0]
    assert plans[4] == downs + layer0 + layer1
    assert len(plans) == 6 and sorted(plans[-1]) == sorted(matmuls)  # as far as parity needs...
    assert _fallback_plans(matmuls, downs, max_kept=7) == [downs[:1], downs[:2], downs]  # ...within the cap
    assert _fallback_plans(matmuls, [], max_kept=18) == []


def test_agreement_interval_shows_how_much_a_few_flips_weigh() -> None:
    low, high = wilson_interval(301, 304)  # the old 512-text parity set: 3 flips in 304 tweets
    assert low < 0.975 and high > 0.996  # anything from 97.1% to 99.7%
    low, high = wilson_interval(3530, 3565)  # the whole validation split, same 99.0%
    assert 0.986 < low < 0.99 < high < 0.993  # 98.6% to 99.3%
    assert wilson_interval(0, 0) == (0.0, 1.0)
