"""The trainer end to end on the tiny random BERT: the real CLI, real training, real files."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sentiwatch.cli import main
from sentiwatch.errors import SentiwatchError
from sentiwatch.trainer.data import load_examples, split_examples
from sentiwatch.trainer.metrics import head_metrics

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT_FILES = ("config.json", "model.safetensors", "heads.safetensors", "tokenizer.json", "metrics.json",
                "confusion_sentiment.png", "confusion_topic.png", "training_curves.png", "model_card.md",
                "training.json")

WORDS = {
    "positive": ["love", "great", "wonderful", "happy", "excellent"],
    "negative": ["hate", "awful", "terrible", "angry", "broken"],
    "neutral": ["scheduled", "located", "listed", "printed", "measured"],
    "sport": ["match", "goal", "team", "league", "coach"],
    "tech": ["software", "chip", "computer", "network", "phone"],
}


def write_labelled_csv(path: Path, n: int, seed: int = 0) -> Path:
    """Short texts whose label shows in their words; rows carry a sentiment or a topic label, never both."""
    rng = random.Random(seed)
    lines = ["id,text,sentiment,topic"]
    for i in range(n):
        label = rng.choice(list(WORDS))
        words = rng.sample(WORDS[label], 3) + [f"item{i}"]
        rng.shuffle(words)
        sentiment, topic = (label, "") if label in ("positive", "negative", "neutral") else ("", label)
        lines.append(f"r{i},{' '.join(words)},{sentiment},{topic}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def labelled_csv(tmp_path_factory) -> Path:
    return write_labelled_csv(tmp_path_factory.mktemp("data") / "labelled.csv", 320)


@pytest.fixture(scope="module")
def trained_dir(tiny_base_dir, labelled_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "model"
    status = main(["train", "--out", str(out), "--base", str(tiny_base_dir), "--data", str(labelled_csv),
                   "--epochs", "2", "--seed", "3"])
    assert status == 0
    return out


def assert_metrics_shape(metrics: dict, heads: set[str]) -> None:
    assert set(metrics) == heads | {"by_language", "by_source"}
    for group in (*metrics["by_language"].values(), *metrics["by_source"].values()):
        assert set(group) <= heads
    for m in (metrics[head] for head in heads):
        assert set(m) == {"n", "accuracy", "macro_f1", "per_class"}
        assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["macro_f1"] <= 1.0
        assert sum(c["support"] for c in m["per_class"].values()) == m["n"]
        for c in m["per_class"].values():
            assert set(c) == {"precision", "recall", "f1", "support"}


def test_train_writes_model_metrics_plots_and_card(trained_dir, labelled_csv):
    for name in OUTPUT_FILES:
        assert (trained_dir / name).stat().st_size > 0, name
    for name in ("confusion_sentiment.png", "confusion_topic.png", "training_curves.png"):
        assert (trained_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    examples, _ = load_examples([str(labelled_csv)])
    test = split_examples(examples)["test"]
    metrics = json.loads((trained_dir / "metrics.json").read_text())
    assert_metrics_shape(metrics, {"sentiment", "topic"})
    assert metrics["sentiment"]["n"] == sum(e.sentiment is not None for e in test)
    assert metrics["topic"]["n"] == sum(e.topic is not None for e in test)

    meta = json.loads((trained_dir / "config.json").read_text())["sentiwatch"]
    assert meta["sentiment_labels"] == ["negative", "neutral", "positive"]
    assert meta["topic_labels"] == ["sport", "tech"]
    assert meta["max_length"] == 128
    assert set(meta["data_fingerprints"]) == {"train", "validation", "test", "train_used"}
    assert meta["version"] and meta["best_epoch"] > 0

    card = (trained_dir / "model_card.md").read_text()
    for phrase in ("Apache-2.0", "licence is not stated", "Copyright BBC", "Trained for en only", "macro-F1",
                   "soft targets", "Languages: en"):
        assert phrase in card
    training = json.loads((trained_dir / "training.json").read_text())
    assert training["training"]["interrupted"] is False
    assert training["history"]["validation"], "validation ran"


def test_training_learns_the_synthetic_task(tiny_base_dir, labelled_csv, tmp_path):
    """Words give the label away: the tiny random BERT must beat chance (1/3 and 1/2) clearly.

    The defaults are tuned for MiniLM; a random 32-wide model needs a higher rate and trainable embeddings.
    """
    from sentiwatch.trainer.run import run_training
    from sentiwatch.trainer.train import TrainConfig

    config = TrainConfig(epochs=4, batch_size=16, learning_rate=3e-3, freeze_word_embeddings=False, seed=5)
    metrics = run_training(tmp_path / "model", str(tiny_base_dir), [str(labelled_csv)], config)
    assert metrics["sentiment"]["accuracy"] > 0.6
    assert metrics["topic"]["accuracy"] > 0.8


def test_evaluate_model_on_a_labelled_file(trained_dir, tmp_path, capsys):
    data = write_labelled_csv(tmp_path / "eval.csv", 40, seed=9)
    output = tmp_path / "out" / "metrics.json"
    assert main(["evaluate", "--model", str(trained_dir), "--input", str(data), "--output", str(output)]) == 0
    metrics = json.loads(output.read_text())
    assert_metrics_shape(metrics, {"sentiment", "topic"})
    assert metrics["sentiment"]["n"] + metrics["topic"]["n"] == 40
    printed = capsys.readouterr().out
    assert "eval.csv (40 texts)" in printed and f"macro-F1={metrics['sentiment']['macro_f1']:.4f}" in printed


def test_evaluate_reports_a_bad_file_in_one_line(trained_dir, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,sentiment\nfine,great\n")
    assert main(["evaluate", "--model", str(trained_dir), "--input", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.csv" in err and "line 2: unknown sentiment 'great'" in err


def test_predictor_probabilities_order_and_truncation(trained_dir):
    from sentiwatch.trainer.model import load_model
    from sentiwatch.trainer.predict import TorchPredictor

    model, tokenizer, _ = load_model(trained_dir)
    predictor = TorchPredictor(model, tokenizer, max_length=16, batch_size=2)
    texts = ["great match", "word " * 40, "awful chip", "x"]
    first = predictor.predict(texts)
    second = predictor.predict(list(reversed(texts)))
    assert first.truncated.tolist() == [False, True, False, False]
    np.testing.assert_allclose(first.sentiment_probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(first.topic_probs, second.topic_probs[::-1], atol=1e-5)
    assert predictor.predict([]).sentiment_probs.shape == (0, 3)


def test_ctrl_c_keeps_the_best_checkpoint_and_writes_the_outputs(tiny_base_dir, labelled_csv, tmp_path):
    out = tmp_path / "model"
    # Training that never stops by itself (no early stopping, no time budget), in a real process.
    script = ("import logging, sys; logging.basicConfig(level=logging.INFO)\n"
              "from sentiwatch.trainer.run import run_training\nfrom sentiwatch.trainer.train import TrainConfig\n"
              "run_training(sys.argv[1], sys.argv[2], [sys.argv[3]],"
              " TrainConfig(epochs=100000, patience=10**9, time_budget_minutes=None))\n")
    process = subprocess.Popen([sys.executable, "-c", script, str(out), str(tiny_base_dir), str(labelled_csv)],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "heads.safetensors").exists():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.2)
        time.sleep(1.0)  # a few more epochs
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("no exit within 120 s of Ctrl-C; its log ends with: " + process.communicate()[1][-3000:])
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "interrupted: keeping the best checkpoint" in stderr
    training = json.loads((out / "training.json").read_text())
    assert training["training"]["interrupted"] is True
    assert_metrics_shape(json.loads((out / "metrics.json").read_text()), {"sentiment", "topic"})
    assert main(["evaluate", "--model", str(out), "--input", str(labelled_csv)]) == 0


def test_limit_keeps_both_tasks():
    from sentiwatch.trainer.data import Example
    from sentiwatch.trainer.train import limit_examples

    examples = [Example(f"t{i}", "neutral", None, "s") for i in range(1000)] + [
        Example(f"n{i}", None, "tech", "s") for i in range(50)]
    chosen = limit_examples(examples, 100, min_topic_share=0.1, seed=1)
    assert len(chosen) == 100
    assert sum(e.topic is not None for e in chosen) == 10
    assert limit_examples(examples, 100, 0.1, seed=1) == chosen


def test_head_metrics_match_hand_computed_values():
    m = head_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b", "c"])
    assert m["accuracy"] == 0.75 and m["n"] == 4
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert m["per_class"]["b"] == {"precision": 0.6667, "recall": 1.0, "f1": 0.8, "support": 2}
    assert "c" not in m["per_class"]
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2, abs=1e-4)


def test_train_rejects_a_non_positive_limit(capsys):
    assert main(["train", "--out", "unused", "--limit", "0"]) == 1
    assert "--limit must be a positive number" in capsys.readouterr().err


def test_packaged_minilm_is_hash_checked(tmp_path, monkeypatch):
    import sentiwatch.trainer.model as model_module

    packaged = model_module.default_base_dir()
    tampered = tmp_path / "minilm"
    shutil.copytree(packaged, tampered)
    weights = tampered / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(model_module, "default_base_dir", lambda: tampered)
    with pytest.raises(SentiwatchError, match="sha256 .* is not the upstream all-MiniLM-L6-v2 file"):
        model_module.load_base(None)
    # The same folder given explicitly is the user's own choice and is not checked.
    model_module.load_base(tampered)


def test_evaluate_reproduces_the_training_test_metrics(trained_dir, labelled_csv, tmp_path):
    """`evaluate` and training score through the same code: same rows, same numbers."""
    from sentiwatch.trainer.data import example_row

    examples, _ = load_examples([str(labelled_csv)])
    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join(json.dumps(example_row(e)) + "\n" for e in split_examples(examples)["test"]))
    output = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(trained_dir), "--input", str(test_file), "--output", str(output)]) == 0
    evaluated, trained = json.loads(output.read_text()), json.loads((trained_dir / "metrics.json").read_text())
    for key in ("sentiment", "topic", "by_language"):  # by_source names the file each was read from
        assert evaluated[key] == trained[key]
    assert list(evaluated["by_source"].values()) == list(trained["by_source"].values())


def test_offsets_move_the_boundary_towards_macro_f1():
    import numpy as np

    from sentiwatch.trainer.calibrate import macro_f1, tune_offsets

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=600)
    # A model that under-predicts class 2: its true class-2 rows look like class 0 by a small margin.
    probs = np.full((600, 3), 0.1)
    probs[np.arange(600), truth] = 0.8
    shy = (truth == 2) & (rng.random(600) < 0.6)
    probs[shy] = [0.5, 0.1, 0.4]
    offsets, tuned = tune_offsets(probs, truth)
    baseline = macro_f1(truth, probs.argmax(axis=1), 3)
    assert offsets[0] == 0.0 and offsets[2] > 0.0
    assert tuned > baseline + 0.1
    # Nothing to gain: the offsets stay at zero.
    perfect = np.eye(3)[truth] * 0.9 + 0.05
    assert tune_offsets(perfect, truth)[0].tolist() == [0.0, 0.0, 0.0]


def test_soft_targets_put_the_confidence_on_the_label_and_match_hard_cross_entropy_at_one():
    import torch
    import torch.nn.functional as F

    from sentiwatch.trainer.train import soft_targets, weighted_soft_cross_entropy

    labels = torch.tensor([0, 2, 1])
    targets = soft_targets(labels, torch.tensor([1.0, 0.6, 0.2]), 3)
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]])
    assert torch.allclose(targets, expected)
    logits = torch.tensor([[2.0, 0.1, -1.0], [0.3, 0.2, 0.9], [1.0, -2.0, 0.5]])
    weight = torch.tensor([0.8, 1.0, 1.5])
    hard = soft_targets(labels, torch.ones(3), 3)
    assert torch.allclose(weighted_soft_cross_entropy(logits, hard, weight),
                          F.cross_entropy(logits, labels, weight=weight))
    assert not torch.allclose(weighted_soft_cross_entropy(logits, targets, weight),
                              F.cross_entropy(logits, labels, weight=weight))


def test_checkpoint_score_weighs_each_head_by_its_validation_texts():
    from sentiwatch.trainer.metrics import selection_score

    run3_epoch2 = {"sentiment": {"n": 3565, "macro_f1": 0.7979}, "topic": {"n": 208, "macro_f1": 0.9734}}
    run3_epoch2_5 = {"sentiment": {"n": 3565, "macro_f1": 0.7959}, "topic": {"n": 208, "macro_f1": 0.9785}}
    assert selection_score(run3_epoch2) > selection_score(run3_epoch2_5)
    assert selection_score({"topic": {"n": 10, "macro_f1": 0.5}}) == 0.5
    assert selection_score({}) == 0.0


def test_metrics_are_broken_down_by_language_and_source() -> None:
    from sentiwatch.predictor import Prediction
    from sentiwatch.trainer.data import Example
    from sentiwatch.trainer.metrics import evaluate_predictor

    class Fixed:
        """Says negative to Chinese text and positive to the rest."""

        sentiment_labels = ("negative", "neutral", "positive")
        topic_labels = ("business",)
        max_length = 64

        def predict(self, texts):
            probs = np.array([[1.0, 0, 0] if any("\u4e00" <= ch <= "\u9fff" for ch in t) else [0, 0, 1.0]
                              for t in texts], dtype=np.float32)
            return Prediction(probs, np.ones((len(texts), 1), np.float32), np.zeros(len(texts), bool))

    examples = [Example("good news", "positive", None, "wire"), Example("shares rose", "positive", None, "desk"),
                Example("股价大跌", "negative", None, "desk"), Example("利润大增", "positive", None, "desk", lang="zh")]
    metrics, _ = evaluate_predictor(Fixed(), examples)
    assert metrics["sentiment"]["accuracy"] == 0.75
    assert metrics["by_language"]["en"]["sentiment"]["accuracy"] == 1.0
    assert metrics["by_language"]["zh"]["sentiment"]["n"] == 2
    assert metrics["by_language"]["zh"]["sentiment"]["accuracy"] == 0.5
    assert metrics["by_source"]["wire"]["sentiment"]["n"] == 1
    assert metrics["by_source"]["desk"]["sentiment"]["accuracy"] == 0.6667


def test_frozen_layers_get_no_gradient_and_the_top_ones_do(tiny_base_dir) -> None:
    import torch

    from sentiwatch.labels import DEFAULT_TOPIC_LABELS, SENTIMENT_LABELS
    from sentiwatch.trainer.model import TwoHeadClassifier, load_base
    from sentiwatch.trainer.train import freeze_bottom

    encoder, tokenizer, _ = load_base(tiny_base_dir)
    model = TwoHeadClassifier(encoder, SENTIMENT_LABELS, DEFAULT_TOPIC_LABELS)
    freeze_bottom(model, 1)
    batch = tokenizer(["a fine day", "a bad one"], padding=True, return_tensors="pt")
    sentiment, _ = model(batch["input_ids"], batch["attention_mask"])
    sentiment.sum().backward()
    layers = model.encoder.encoder.layer
    assert all(p.grad is None for p in model.encoder.embeddings.parameters())
    assert all(p.grad is None for p in layers[0].parameters())
    assert all(p.grad is not None and torch.any(p.grad != 0) for p in layers[1].attention.self.query.parameters())
    with pytest.raises(SentiwatchError, match="cannot freeze 3 layers"):
        freeze_bottom(model, 3)


def test_test_sample_is_spread_over_each_source() -> None:
    from sentiwatch.trainer.data import Example
    from sentiwatch.trainer.train import spread_per_source

    examples = [Example(f"a{i}", "positive", None, "a") for i in range(10)] + [Example("b0", "negative", None, "b")]
    chosen = spread_per_source(examples, 3)
    assert [e.text for e in chosen] == ["a0", "a4", "a8", "b0"]
    assert spread_per_source(examples, None) == examples


def test_default_data_follows_the_base() -> None:
    from sentiwatch.trainer.commands import default_specs

    assert default_specs(None) == ["builtin"]
    assert default_specs("multilingual") == ["builtin", "builtin:zh"]


def test_word_list_baselines_count_terms_and_chinese_matches_longest_first() -> None:
    from sentiwatch.trainer.lexicons import LexiconPredictor, WordList, vader

    words = WordList(frozenset({"gain", "大涨", "涨"}), frozenset({"loss", "大跌", "跌"}))
    assert words.score("Gain, gain and a loss", substrings=False) == 1
    assert words.score("股价大涨后大跌再跌", substrings=True) == -1  # 大涨 +1, 大跌 -1, 跌 -1
    predictor = LexiconPredictor("list", lambda text: float(words.score(text, True)))
    labels = predictor.predict(["大涨", "大跌", "持平"]).sentiment_probs.argmax(axis=1).tolist()
    assert labels == [2, 0, 1]
    scores = vader().predict(["What a wonderful, excellent day", "A terrible, awful loss", "The meeting is at 3"])
    assert scores.sentiment_probs.argmax(axis=1).tolist() == [2, 0, 1]
