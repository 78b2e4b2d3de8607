from sentiwatch.streamer.ops.status import Progress, status_document


def test_liveness_fails_only_when_behind_and_stalled():
    progress = Progress(stall_seconds=60)
    start = progress.last_progress
    assert progress.liveness(start + 600) == (True, "ok")  # idle with nothing to do is healthy
    progress.update_lag({0: 10, 1: None})
    assert progress.liveness(start + 30)[0] is True
    healthy, reason = progress.liveness(start + 61)
    assert not healthy and "10 records behind" in reason
    progress.on_batch({0: 9}, records=10)
    assert progress.update_lag({0: 10}) == {0: 0}
    assert progress.liveness(progress.last_progress + 600)[0] is True


def test_lag_forgets_partitions_no_longer_assigned():
    progress = Progress(stall_seconds=60)
    progress.on_batch({0: 4, 1: 7}, records=5)
    assert progress.update_lag({1: 20}) == {1: 12}
    assert progress.positions == {1: 8}


def test_status_document_has_counts_but_no_texts():
    windows = {"ACME": {"open": {"60": {"start": 60, "end": 120, "total": 2, "counts": {"negative": 2},
                                        "score_sums": {}, "terms": {"secret": 2},
                                        "examples": [["a", "secret text", 0.9]]}},
                        "closed_until": 60, "watermark": 100.0, "moved_at": 0.0, "sources": {}}}
    statuses = {"ACME": {"recent": [{"start": 0, "end": 60, "total": 4, "negative": 1, "counts": {}}],
                         "latest": {"start": 0, "end": 60, "total": 4, "negative": 1}}}
    document = status_document({"version": "v1"}, Progress(60), windows, statuses, {"ACME"})
    topic = document["topics"]["ACME"]
    assert topic["current_window"]["total"] == 2 and topic["long_window"]["negative_ratio"] == 0.25
    assert topic["watermark"] == "1970-01-01T00:01:40.000Z"
    assert "secret" not in str(document)
