"""The drift reference a bundle carries: what the model's answers looked like on its validation split.

Written into the manifest at export (`drift_reference`) so that the worker can say how far live traffic
has moved from it (sentiwatch.streamer.quality.drift). It reuses the reference predictions the export
already made for its parity check (the PyTorch model on the parity texts, which default to the
validation split), so it costs no extra scoring; the exported variants agree with those on at least
99% of labels (the parity limit), which is far inside what drift is measured at. The manifest is not
among the hashed files, so adding a key to it leaves the bundle verifiable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sentiwatch.predictor import Prediction
from sentiwatch.streamer.inference.bundle import MANIFEST


def drift_reference(prediction: Prediction, sentiment_labels: tuple[str, ...], source: str) -> dict[str, Any]:
    """The figures the worker's drift gauges are compared with."""
    probs = prediction.sentiment_probs
    n = len(probs)
    if n == 0:
        raise ValueError("no texts to build a drift reference from")
    counts = np.bincount(probs.argmax(axis=1), minlength=len(sentiment_labels))
    return {
        "texts": n,
        "source": source,
        "sentiment_distribution": {label: round(float(c) / n, 6) for label, c in zip(sentiment_labels, counts,
                                                                                     strict=True)},
        "mean_top_probability": round(float(probs.max(axis=1).mean()), 6),
        "truncated_share": round(float(np.asarray(prediction.truncated, dtype=bool).mean()), 6),
    }


def add_drift_reference(bundle_dir: Path, prediction: Prediction, sentiment_labels: tuple[str, ...],
                        source: str) -> dict[str, Any]:
    """Write the reference into the bundle's manifest; returns the manifest."""
    path = Path(bundle_dir) / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["drift_reference"] = drift_reference(prediction, sentiment_labels, source)
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
