"""The feedback round trip on the embedded broker: analysts' labels in `sentiwatch.feedback` (a third without
their text, which `feedback export` joins from `sentiwatch.scored`), `feedback export`, a small retrain of the
tiny model on the exported file, `export`, then `compare` against the bundle that served before: on the
feedback the retrain never saw (the trainer's held-out test split), the texts now carry the analysts' labels.

Synthetic texts whose words give the label away (as in tests/trainer/test_trainer.py), so that a 2-layer random
model can learn them in a few epochs; the real-model run is benchmarks/learning_loop.py."""

from __future__ import annotations

import json
import random

import pytest

from sentiwatch.cli import main
from sentiwatch.trainer.data import split_of
from tests.streaming_helpers import produce, running_broker

pytestmark = pytest.mark.integration

WORDS = {
    "positive": ["love", "great", "wonderful", "happy", "excellent"],
    "negative": ["hate", "awful", "terrible", "angry", "broken"],
    "neutral": ["scheduled", "located", "listed", "printed", "measured"],
}
N = 360


def analysts_labels(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(N):
        label = list(WORDS)[i % 3]
        words = rng.sample(WORDS[label], 3) + [f"item{i}"]
        rng.shuffle(words)
        rows.append({"id": f"fb{i}", "text": " ".join(words), "sentiment": label, "by": "analyst"})
    return rows


def test_feedback_export_retrain_compare(tiny_base_dir, tiny_bundle_dir, tmp_path, capsys):
    from sentiwatch.exporter.export import export_bundle, validation_parity_set
    from sentiwatch.trainer.run import run_training
    from sentiwatch.trainer.train import TrainConfig

    labels = analysts_labels()
    feedback, scored = [], []
    for i, row in enumerate(labels):
        if i % 3 == 0:  # the analyst's tool sent only the id and the label: the text is in the scored topic
            feedback.append({k: v for k, v in row.items() if k != "text"})
            scored.append({"id": row["id"], "text": row["text"], "model_version": "tiny-test",
                           "sentiment": {"label": "neutral", "scores": {"neutral": 1.0}}})
        else:
            feedback.append(row)
    exported = tmp_path / "feedback.jsonl"
    with running_broker() as brokers:
        produce(brokers, "sentiwatch.scored", [(None, json.dumps(v).encode()) for v in scored])
        produce(brokers, "sentiwatch.feedback", [(None, json.dumps(v).encode()) for v in feedback])
        assert main(["feedback", "export", "--out", str(exported), "--brokers", brokers]) == 0
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    assert {(r["id"], r["text"], r["sentiment"]) for r in rows} == {(r["id"], r["text"], r["sentiment"])
                                                                     for r in labels}

    model = tmp_path / "retrained"
    config = TrainConfig(epochs=4, batch_size=16, learning_rate=3e-3, freeze_word_embeddings=False, seed=5,
                         time_budget_minutes=None)
    run_training(model, str(tiny_base_dir), [str(exported)], config)
    bundle = tmp_path / "retrained-bundle"
    export_bundle(model, bundle, ["fp32"], parity_set=validation_parity_set([str(exported)], limit=64))

    # The held-back feedback: rows the trainer kept out (its test split), never trained or tuned on.
    held_back = tmp_path / "held-back.jsonl"
    unseen = [r for r in rows if split_of(r["text"]) == "test"]
    assert len(unseen) >= 20
    held_back.write_text("".join(json.dumps(r) + "\n" for r in unseen))
    out = tmp_path / "compare.json"
    capsys.readouterr()
    status = main(["compare", "--old", str(tiny_bundle_dir), "--new", str(bundle), "--input", str(held_back),
                   "--skip-builtin", "--output", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    result = json.loads(out.read_text())[0]
    old, new = result["old"]["sentiment"], result["new"]["sentiment"]
    assert new["accuracy"] >= 0.8 and new["accuracy"] >= old["accuracy"] + 0.3, (old, new)
    fixed = [c for c in result["changed"] if c["new"] == c["gold"]]
    broken = [c for c in result["changed"] if c["old"] == c["gold"]]
    assert len(fixed) >= 3 * max(1, len(broken)), result["changed"]
    assert "[fixed]" in printed
    print(f"\nheld-back feedback ({len(unseen)} texts): accuracy {old['accuracy']:.3f} -> {new['accuracy']:.3f}, "
          f"macro-F1 {old['macro_f1']:.3f} -> {new['macro_f1']:.3f}; {len(fixed)} fixed, {len(broken)} broken")
