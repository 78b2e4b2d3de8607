"""The end-to-end benchmark on the tiny bundle with short phases: the contract's `end_to_end` object."""

import pytest

from sentiwatch.exporter.bench_e2e import run_end_to_end

pytestmark = pytest.mark.integration


def test_end_to_end_benchmark_reports_every_contract_field(tiny_bundle_dir, tiny_model_dir):
    texts = [f"the service was {'awful' if i % 3 else 'fine'} on day {i}" for i in range(200)]
    result = run_end_to_end(str(tiny_bundle_dir), None, batch_size=16, model_dir=str(tiny_model_dir), texts=texts,
                            phase_seconds=2.0)
    for key in ("engine", "batch_size", "texts_per_s", "bare_texts_per_s", "baseline_texts_per_s", "p50_s", "p99_s"):
        assert key in result
    assert result["engine"] == "onnx-int8" and result["batch_size"] == 16
    assert result["texts_per_s"] > 0 and result["bare_texts_per_s"] > 0 and result["baseline_texts_per_s"] > 0
    assert 0 < result["p50_s"] <= result["p99_s"] < 30
    assert result["streaming_vs_bare"] == pytest.approx(result["texts_per_s"] / result["bare_texts_per_s"], rel=0.01)
    assert "note" not in result
