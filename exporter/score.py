"""`sentiwatch score`: offline scoring of a CSV/JSONL file into JSON lines, one per input row, in order.

A row that cannot be scored (undecodable, not an object, no text, empty or non-text value) keeps its
place with an `error` and no scores; the others are scored in chunks so texts of similar length
share a batch (less padding), and the output is written as it goes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sentiwatch.predictor import Prediction
from sentiwatch.streamer.inference.scorer import OnnxScorer, load_scorer
from sentiwatch.textio import Row, read_rows, write_jsonl

DECIMALS = 6


@dataclasses.dataclass
class ScoreSummary:
    rows: int = 0
    scored: int = 0
    errors: int = 0
    truncated: int = 0
    seconds: float = 0.0


def score_file(bundle_dir: str | Path, input_path: str | Path, output_path: str | Path, text_column: str = "text",
               id_column: str = "id", batch_size: int = 64, variant: str = "auto") -> ScoreSummary:
    """Score every row of input_path into output_path (JSON lines in input order); return the counts.

    `batch_size` texts go to the scorer per call, which sorts them by length into its own passes."""
    if batch_size <= 0:
        raise ValueError(f"--batch-size must be > 0, got {batch_size}")
    rows = list(read_rows(input_path))
    scorer = load_scorer(bundle_dir, variant=variant)
    summary = ScoreSummary(rows=len(rows))
    started = time.perf_counter()
    with tqdm(total=len(rows), unit="rows", desc="scoring", disable=None) as progress:
        records = _records(scorer, rows, text_column, id_column, batch_size, summary, progress)
        write_jsonl(output_path, records)
    summary.seconds = time.perf_counter() - started
    return summary


def text_or_error(row: Row, text_column: str) -> tuple[str | None, str | None]:
    """The row's text, or why it cannot be scored."""
    if row.fields is None:
        return None, row.error or "unreadable row"
    if text_column not in row.fields:
        return None, f"no {text_column!r} field"
    text = row.fields[text_column]
    if not isinstance(text, str):
        return None, f"field {text_column!r} is {type(text).__name__}, not text"
    if not text.strip():
        return None, f"field {text_column!r} is empty"
    return text, None


def _records(scorer: OnnxScorer, rows: Sequence[Row], text_column: str, id_column: str, chunk: int,
             summary: ScoreSummary, progress: tqdm) -> Iterator[dict[str, Any]]:
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        checked = [text_or_error(row, text_column) for row in part]
        good = [i for i, (text, _) in enumerate(checked) if text is not None]
        prediction = scorer.predict([checked[i][0] for i in good])
        position = {row_index: k for k, row_index in enumerate(good)}
        for i, row in enumerate(part):
            record_id = _row_id(row, id_column)
            if i in position:
                summary.scored += 1
                summary.truncated += int(prediction.truncated[position[i]])
                yield _scored(record_id, scorer, prediction, position[i])
            else:
                summary.errors += 1
                yield {"id": record_id, "sentiment": None, "topic": None, "error": checked[i][1]}
        progress.update(len(part))


def _row_id(row: Row, id_column: str) -> str:
    value = row.fields.get(id_column) if row.fields else None
    return str(row.line) if value is None or value == "" else str(value)


def _scored(record_id: str, scorer: OnnxScorer, prediction: Prediction, k: int) -> dict[str, Any]:
    def head(labels: tuple[str, ...], probs: Any) -> dict[str, Any]:
        return {"label": labels[int(probs.argmax())],
                "scores": {label: round(float(p), DECIMALS) for label, p in zip(labels, probs, strict=True)}}

    return {"id": record_id,
            "sentiment": head(scorer.sentiment_labels, prediction.sentiment_probs[k]),
            "topic": head(scorer.topic_labels, prediction.topic_probs[k]),
            "truncated": bool(prediction.truncated[k]),
            "error": None}
