"""Analysts' feedback through a real worker on the embedded broker, then `sentiwatch feedback export`: every
feedback record ends counted or dead-lettered, the verdicts match what the model really said, and the export
holds the latest label per id with the text joined from the scored topic when the feedback had none."""

from __future__ import annotations

import base64
import json

import pytest

from sentiwatch.cli import main
from sentiwatch.trainer.data import read_labelled_file
from tests.streaming_helpers import WorkerProcess, consume, produce, running_broker

pytestmark = pytest.mark.integration

N = 40
OTHER = {"negative": "positive", "neutral": "negative", "positive": "neutral"}


def test_feedback_counted_dead_lettered_and_exported(tiny_bundle_dir, tmp_path):
    with running_broker() as brokers:
        # Review on, every record below the confidence bar: the picks leave at the bucket's rate (10 at once).
        worker = WorkerProcess(tiny_bundle_dir, brokers, tmp_path / "worker.log",
                               env={"SENTIWATCH_BATCH_WITHIN_SECONDS": "0.05", "SENTIWATCH_REVIEW_PER_MINUTE": "600",
                                    "SENTIWATCH_REVIEW_CONFIDENCE_BELOW": "1.0"})
        try:
            worker.wait_ready()
            texts = [(None, json.dumps({"id": f"f{i}", "text": f"the bank's results {i} were a surprise"}).encode())
                     for i in range(N)]
            produce(brokers, "sentiwatch.texts", texts)
            scored = {v["id"]: v for v in (json.loads(r.value) for r in consume(brokers, "sentiwatch.scored", N))}
            assert len(scored) == N
            said = {record_id: value["sentiment"]["label"] for record_id, value in scored.items()}
            review = [json.loads(r.value) for r in consume(brokers, "sentiwatch.review", 10, timeout=30)]
            assert len(review) >= 10 and {r["why"] for r in review} == {"low_confidence"}
            assert all(r["id"] in scored and r["text"] == scored[r["id"]]["text"] for r in review)

            # Even ids: the analyst agrees; odd ids: corrects. No text: the worker compares with what it scored.
            feedback = [{"id": f"f{i}", "sentiment": said[f"f{i}"] if i % 2 == 0 else OTHER[said[f"f{i}"]],
                         "by": "ana", "at": 1_800_000_000 + i} for i in range(N)]
            # An older label for f0 arriving later must not replace the newer one; a text-carrying label for an id
            # the worker never scored is compared with the model's label for that text, scored now.
            feedback.append({"id": "f0", "sentiment": OTHER[said["f0"]], "at": 1_700_000_000})
            feedback.append({"id": "new-1", "text": "a text nobody streamed", "sentiment": "negative"})
            feedback.append({"id": "f1", "topic": "Business"})  # topic only: no sentiment verdict
            bad = [b"{broken", b'{"id": "f2", "sentiment": "furious"}', b'{"id": "f3"}', b'{"sentiment": "negative"}']
            produce(brokers, "sentiwatch.feedback", [(None, json.dumps(f).encode()) for f in feedback]
                    + [(None, raw) for raw in bad])

            dead = consume(brokers, "sentiwatch.dlq", len(bad), timeout=60)
            assert sorted(base64.b64decode(json.loads(r.value)["raw"]) for r in dead) == sorted(bad)
            assert sorted(json.loads(r.value)["reason"] for r in dead) == sorted(
                ["not_json", "unknown_label", "no_label", "missing_id"])

            def counts() -> dict[str, float]:
                found: dict[str, float] = {}
                for (name, labels), value in worker.metrics().items():
                    if name == "sentiwatch_feedback_total":
                        verdict = dict(labels)["verdict"]
                        found[verdict] = found.get(verdict, 0) + value
                return found

            import time
            deadline = time.monotonic() + 30
            while sum(counts().values()) < N + 2 and time.monotonic() < deadline:
                time.sleep(0.3)
            found = counts()
            # f0's late old label is a correction too; new-1 was scored now, so it is agree or correct, not unmatched.
            assert found.get("agree", 0) + found.get("correct", 0) == N + 2 and found.get("unmatched", 0) == 0
            assert found["agree"] in (N // 2, N // 2 + 1) and found["correct"] >= N // 2 + 1
            metrics = worker.metrics()
            assert metrics[("sentiwatch_topic_feedback_total", ())] == 1
        finally:
            worker.terminate()

        out = tmp_path / "feedback.jsonl"
        assert main(["feedback", "export", "--out", str(out), "--brokers", brokers]) == 0
    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {f"f{i}" for i in range(N)} | {"new-1"}
    for i in range(2, N):
        assert rows[f"f{i}"]["text"] == scored[f"f{i}"]["text"]  # joined from the scored topic
        assert rows[f"f{i}"]["sentiment"] == feedback[i]["sentiment"]
    assert rows["f0"]["sentiment"] == said["f0"]  # the newer label won over the late older one
    assert rows["f1"] == {"id": "f1", "text": scored["f1"]["text"], "sentiment": feedback[1]["sentiment"],
                          "topic": "business"}  # the topic-only label added its topic
    assert rows["new-1"]["text"] == "a text nobody streamed"
    examples, _ = read_labelled_file(out)  # what `train --data` reads
    assert len(examples) == N + 1
