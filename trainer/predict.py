"""The PyTorch implementation of `sentiwatch.predictor.Predictor`.

It is the reference the ONNX scorer is checked against (parity) and the `torch-fp32` engine of
`sentiwatch bench`, and training uses it for validation, so all three measure the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from sentiwatch.predictor import Prediction
from sentiwatch.trainer.model import TwoHeadClassifier


class TorchPredictor:
    """Softmax probabilities of both heads, batched by length so padding stays small."""

    def __init__(self, model: TwoHeadClassifier, tokenizer: PreTrainedTokenizerBase, max_length: int = 128,
                 batch_size: int = 64, device: str | torch.device = "cpu") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.sentiment_labels = model.sentiment_labels
        self.topic_labels = model.topic_labels

    def predict(self, texts: Sequence[str]) -> Prediction:
        n = len(texts)
        sentiment = np.zeros((n, len(self.sentiment_labels)), dtype=np.float32)
        topic = np.zeros((n, len(self.topic_labels)), dtype=np.float32)
        if n == 0:
            return Prediction(sentiment, topic, np.zeros(0, dtype=bool))
        encoded, truncated = self.encode(texts)
        order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, n, self.batch_size):
                    rows = order[start:start + self.batch_size]
                    batch = pad_batch([{key: values[i] for key, values in encoded.items()} for i in rows],
                                      self.tokenizer.pad_token_id or 0)
                    batch = {key: value.to(self.device) for key, value in batch.items()}
                    sentiment_logits, topic_logits = self.model(**batch)
                    sentiment[rows] = torch.softmax(sentiment_logits.float(), dim=-1).cpu().numpy()
                    topic[rows] = torch.softmax(topic_logits.float(), dim=-1).cpu().numpy()
        finally:
            self.model.train(was_training)
        return Prediction(sentiment, topic, truncated)

    def encode(self, texts: Sequence[str]) -> tuple[dict[str, list[list[int]]], np.ndarray]:
        """Token ids cut to max_length, and which texts were longer than that (a text is never dropped)."""
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length,
                                 return_overflowing_tokens=True)
        owner = encoded.pop("overflow_to_sample_mapping")
        first: dict[int, int] = {}
        truncated = np.zeros(len(texts), dtype=bool)
        for row, text_index in enumerate(owner):
            if text_index in first:
                truncated[text_index] = True
            else:
                first[text_index] = row
        keep = [first[i] for i in range(len(texts))]
        columns = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded]
        return {key: [encoded[key][row] for row in keep] for key in columns}, truncated


def pad_batch(rows: Sequence[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token id lists to the longest row of this batch (dynamic padding)."""
    width = max(len(row["input_ids"]) for row in rows)
    batch: dict[str, torch.Tensor] = {}
    for key in rows[0]:
        fill = pad_token_id if key == "input_ids" else 0
        batch[key] = torch.tensor([row[key] + [fill] * (width - len(row[key])) for row in rows], dtype=torch.long)
    return batch
