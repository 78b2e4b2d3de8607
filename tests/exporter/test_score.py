"""The ONNX scorer and `sentiwatch score` on the tiny bundle (real ONNX Runtime, real tokenizers)."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sentiwatch.cli import main
from sentiwatch.errors import BundleError
from sentiwatch.exporter.score import score_file
from sentiwatch.streamer.inference.scorer import CPU, load_scorer


def test_auto_picks_int8_on_cpu_and_reports_the_provider_that_came_up(tiny_bundle_dir: Path) -> None:
    scorer = load_scorer(tiny_bundle_dir)
    assert scorer.provider == scorer._session.get_providers()[0]
    if scorer.provider == CPU:
        assert (scorer.variant, scorer.precision) == ("int8", "int8")
    assert scorer.version == "tiny-test"
    with pytest.raises(BundleError, match="has no fp16 variant"):
        load_scorer(tiny_bundle_dir, variant="fp16")


def test_large_calls_sorted_by_length_keep_input_order(tiny_bundle_dir: Path) -> None:
    scorer = load_scorer(tiny_bundle_dir, variant="fp32", intra_op_threads=1, max_pass_size=4)
    texts = [("word " * (i * 7 % 23)) + f"text {i}" for i in range(11)]
    together = scorer.predict(texts)
    one_by_one = [scorer.predict([text]) for text in texts]
    for i, single in enumerate(one_by_one):
        np.testing.assert_allclose(together.sentiment_probs[i], single.sentiment_probs[0], atol=1e-5)
        np.testing.assert_allclose(together.topic_probs[i], single.topic_probs[0], atol=1e-5)
    np.testing.assert_allclose(together.sentiment_probs.sum(axis=1), 1.0, atol=1e-5)
    assert scorer.predict([]).sentiment_probs.shape == (0, 3)


def test_passes_run_side_by_side_give_the_same_answers_in_order(tiny_bundle_dir: Path) -> None:
    """Two cores: passes run two at a time on one intra-op thread each; same numbers as one at a time."""
    texts = [("word " * (i * 5 % 17)) + f"text {i}" for i in range(37)]
    sequential = load_scorer(tiny_bundle_dir, variant="int8", intra_op_threads=1, max_pass_size=4)
    parallel = load_scorer(tiny_bundle_dir, variant="int8", intra_op_threads=2, max_pass_size=4)
    assert (sequential.parallel_passes, parallel.parallel_passes) == (1, 2)
    expected, got = sequential.predict(texts), parallel.predict(texts)
    np.testing.assert_array_equal(got.sentiment_probs, expected.sentiment_probs)
    np.testing.assert_array_equal(got.topic_probs, expected.topic_probs)
    assert got.truncated.tolist() == expected.truncated.tolist()


def test_concurrent_callers_share_the_pass_pool_and_get_their_own_answers(tiny_bundle_dir: Path) -> None:
    """The worker scores two batches at a time: never more passes at once than configured cores, each
    caller gets its own rows, and a call's longest pass goes first."""
    scorer = load_scorer(tiny_bundle_dir, variant="int8", intra_op_threads=1, max_pass_size=4)
    calls = [[("word " * ((i * 7 + c) % 23)) + f"call {c} text {i}" for i in range(13)] for c in range(4)]
    expected = [scorer.predict(texts) for texts in calls]
    running, most, widths = 0, 0, []
    lock = threading.Lock()
    run = scorer.run

    def counting_run(batch):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            widths.append(batch.input_ids.shape[1])
        time.sleep(0.01)  # long enough for another caller's pass to start if the pool let it
        try:
            return run(batch)
        finally:
            with lock:
                running -= 1

    scorer.run = counting_run
    with concurrent.futures.ThreadPoolExecutor(4) as callers:
        got = list(callers.map(scorer.predict, calls))
    assert most == 1
    for one, want in zip(got, expected, strict=True):
        np.testing.assert_array_equal(one.sentiment_probs, want.sentiment_probs)
        np.testing.assert_array_equal(one.topic_probs, want.topic_probs)
    widths.clear()
    scorer.predict(calls[0])
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]


def test_long_texts_are_truncated_and_flagged(tiny_bundle_dir: Path) -> None:
    scorer = load_scorer(tiny_bundle_dir, variant="int8")
    batch = scorer.encode(["short", "long " * 500])
    assert batch.input_ids.shape == (2, 128)
    assert batch.truncated.tolist() == [False, True]
    assert batch.attention_mask[0].sum() == 3  # [CLS] short [SEP], the rest is padding


def test_score_keeps_order_and_marks_bad_rows(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(b"id,text\n"
                       b"a,I love it\n"
                       b"b,\n"
                       b"c,\xff\xfe not utf-8\n"
                       b",no id here\n"
                       b"e," + b"very long " * 200 + b"\n"
                       b"f,g,h\n"
                       b"g,awful\n")
    out = tmp_path / "out.jsonl"
    summary = score_file(tiny_bundle_dir, source, out, batch_size=2)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    # Ids come from the id column, else the CSV line number (also for rows too broken to read an id from).
    assert [r["id"] for r in records] == ["a", "b", "4", "5", "e", "7", "g"]
    errors = {r["id"]: r["error"] for r in records if r["error"]}
    assert set(errors) == {"b", "4", "7"}
    assert "empty" in errors["b"] and "utf-8" in errors["4"] and "columns" in errors["7"]
    for record in records:
        if record["error"]:
            assert record["sentiment"] is None and record["topic"] is None
        else:
            assert record["sentiment"]["label"] in record["sentiment"]["scores"]
            assert abs(sum(record["topic"]["scores"].values()) - 1) < 1e-4
    assert (summary.rows, summary.scored, summary.errors, summary.truncated) == (7, 4, 3, 1)


def test_cli_score_jsonl_with_custom_columns(tiny_bundle_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"key": "x1", "body": "good"}\n{"key": "x2", "body": 42}\n')
    out = tmp_path / "out.jsonl"
    assert main(["score", "--bundle", str(tiny_bundle_dir), "--input", str(source), "--output", str(out),
                 "--text-column", "body", "--id-column", "key"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["x1", "x2"]
    assert records[0]["error"] is None and "is int, not text" in records[1]["error"]
    assert "2 rows, 1 scored, 1 with errors, 0 truncated" in capsys.readouterr().out
    assert main(["score", "--bundle", str(tmp_path), "--input", str(source), "--output", str(out)]) == 1


def test_variant_plan_puts_fp16_on_cuda_and_int8_only_on_cpu(tiny_bundle_dir: Path) -> None:
    import dataclasses

    from sentiwatch.streamer.inference.bundle import Variant, load_bundle
    from sentiwatch.streamer.inference.scorer import CUDA, candidate_plan

    bundle = load_bundle(tiny_bundle_dir)
    fp16 = Variant("fp16", tiny_bundle_dir / "model-fp16.onnx", "fp16", CUDA, {})
    full = dataclasses.replace(bundle, variants={**bundle.variants, "fp16": fp16})
    assert candidate_plan(full, "auto", cuda_available=True) == [
        ("fp16", CUDA), ("fp32", CUDA), ("int8", CPU), ("fp32", CPU)]
    assert candidate_plan(full, "auto", cuda_available=False) == [("int8", CPU), ("fp32", CPU)]
    assert candidate_plan(full, "int8", cuda_available=True) == [("int8", CPU)]
    assert candidate_plan(full, "fp32", cuda_available=True) == [("fp32", CUDA), ("fp32", CPU)]
