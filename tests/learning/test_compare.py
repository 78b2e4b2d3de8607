"""`sentiwatch compare` with real bundles and the streamer's scorer: the tiny bundle against a re-signed copy
whose sentiment labels are permuted (so nearly every sentiment label changes), on a file labelled with the
tiny model's own answers (so the old model is right everywhere and the new one is not)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sentiwatch.cli import main
from sentiwatch.hashing import sha256_file
from sentiwatch.streamer.inference.scorer import load_scorer
from sentiwatch.tools.compare import regressions

TEXTS = [f"{word} results from the bank, quarter {i}" for i, word in enumerate(
    ["awful", "record", "flat", "terrible", "great", "steady", "weak", "strong", "mixed", "shocking"] * 3)]


def permuted_bundle(bundle: Path, dest: Path) -> Path:
    """A valid bundle (hashes re-signed, as a new export would be) that names the sentiment columns differently."""
    shutil.copytree(bundle, dest)
    labels = json.loads((dest / "labels.json").read_text())
    labels["sentiment"] = labels["sentiment"][1:] + labels["sentiment"][:1]
    (dest / "labels.json").write_text(json.dumps(labels))
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["files"]["labels.json"] = sha256_file(dest / "labels.json")
    manifest["model_version"] = "permuted"
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


@pytest.fixture
def bundles(tiny_bundle_dir, tmp_path):
    old = tiny_bundle_dir
    new = permuted_bundle(tiny_bundle_dir, tmp_path / "permuted")
    scorer = load_scorer(old)
    said = [scorer.sentiment_labels[int(row.argmax())] for row in scorer.predict(TEXTS).sentiment_probs]
    labelled = tmp_path / "held-back.jsonl"
    labelled.write_text("".join(json.dumps({"id": f"h{i}", "text": text, "sentiment": label}) + "\n"
                                for i, (text, label) in enumerate(zip(TEXTS, said, strict=True))))
    return old, new, labelled


def test_a_worse_bundle_exits_non_zero_and_lists_changed_texts(bundles, tmp_path, capsys):
    old, new, labelled = bundles
    out = tmp_path / "compare.json"
    status = main(["compare", "--old", str(old), "--new", str(new), "--input", str(labelled), "--skip-builtin",
                   "--show", "3", "--output", str(out)])
    printed = capsys.readouterr()
    assert status == 1
    assert "regression: " in printed.err and "sentiment macro-F1 1.0000 ->" in printed.err
    assert f"changed labels: {len(TEXTS)}" in printed.out  # a permutation moves every argmax
    assert printed.out.count("[broken]") == 3 and f"and {len(TEXTS) - 3} more" in printed.out
    result = json.loads(out.read_text())[0]
    assert result["n"] == len(TEXTS) and result["old"]["sentiment"]["macro_f1"] == 1.0
    assert {c["id"] for c in result["changed"]} == {f"h{i}" for i in range(len(TEXTS))}


def test_a_better_bundle_passes_and_marks_fixed_texts(bundles, capsys):
    old, new, labelled = bundles
    assert main(["compare", "--old", str(new), "--new", str(old), "--input", str(labelled), "--skip-builtin"]) == 0
    printed = capsys.readouterr().out
    assert "[fixed]" in printed and "[broken]" not in printed and "REGRESSION" not in printed


def test_the_same_bundle_on_the_builtin_split_changes_nothing(bundles, capsys):
    old, _, _ = bundles
    assert main(["compare", "--old", str(old), "--new", str(old)]) == 0
    printed = capsys.readouterr().out
    assert "== built-in test split" in printed and "changed labels: 0" in printed


def test_regression_margins():
    def metrics(macro: float, negative: float) -> dict:
        return {"sentiment": {"macro_f1": macro, "per_class": {"negative": {"f1": negative, "support": 10},
                                                               "neutral": {"f1": 0.5, "support": 0}}}}

    assert regressions(metrics(0.80, 0.80), metrics(0.795, 0.78), 0.01, 0.05) == []
    found = regressions(metrics(0.80, 0.80), metrics(0.78, 0.70), 0.01, 0.05)
    assert len(found) == 2 and found[0].startswith("sentiment macro-F1") and "negative F1" in found[1]
    # A head only one of the two was measured on is not compared.
    assert regressions({}, metrics(0.1, 0.1), 0.01, 0.05) == []
