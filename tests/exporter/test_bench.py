"""`sentiwatch bench --skip-end-to-end` on the tiny bundle: the contract JSON shape with real measurements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sentiwatch.cli import main
from sentiwatch.errors import SentiwatchError
from sentiwatch.exporter.bench import latency_stats, parse_batch_sizes


def test_bench_writes_contract_json(tiny_bundle_dir: Path, tiny_model_dir: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # One thread: two OpenMP threads crawl when the test machine's cores are busy with other work.
    monkeypatch.setenv("SENTIWATCH_INTRA_OP_THREADS", "1")
    out = tmp_path / "bench.json"
    assert main(["bench", "--bundle", str(tiny_bundle_dir), "--model", str(tiny_model_dir), "--skip-end-to-end",
                 "--batch-sizes", "1,8", "--texts", "16", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
    assert "end_to_end" not in result
    rows = result["inference"]
    keys = {"engine", "provider", "batch_size", "tokenization", "texts_per_s", "p50_ms", "p99_ms"}
    assert all(keys <= set(row) for row in rows)
    assert {(r["engine"], r["batch_size"], r["tokenization"]) for r in rows} == {
        (engine, size, mode) for engine in ("torch-fp32", "onnx-fp32", "onnx-int8")
        for size in (1, 8) for mode in ("included", "excluded")}
    for row in rows:
        assert row["texts_per_s"] > 0 and row["texts_per_cpu_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"], row
        assert row["threads"] == 1
    assert "onnx-int8" in capsys.readouterr().out  # the readable table


def test_stats_and_arguments() -> None:
    assert latency_stats([0.1, 0.1, 0.2, 0.2], texts_per_batch=8, cpu_seconds=0.4) == {
        "texts_per_s": 53.3, "p50_ms": 150.0, "p99_ms": 200.0, "texts_per_cpu_s": 80.0}
    assert parse_batch_sizes("1, 8,32") == [1, 8, 32]
    for bad in ("", "8,x", "0,4"):
        with pytest.raises(SentiwatchError, match="--batch-sizes"):
            parse_batch_sizes(bad)
