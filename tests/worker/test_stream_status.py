from sentiwatch.streamer.ops.status import Progress, status_document
from sentiwatch.streamer.windows.stage import TopicState


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
    state = TopicState.from_dict({
        "version": 1, "detector": None, "baseline": {},
        "windows": {"open": {"60": {"start": 60, "end": 120, "total": 2, "counts": {"negative": 2},
                                    "score_sums": {}, "terms": {"secret": 2}, "examples": [["a", "secret text", 0.9]]}},
                    "closed_until": 60, "watermark": 100.0, "moved_at": 0.0, "sources": {}, "counted": {}},
        "recent": [{"start": 0, "end": 60, "total": 4, "negative": 1, "counts": {}}],
        "latest": {"start": 0, "end": 60, "total": 4, "negative": 1, "counts": {}, "score": 0.1, "active": False,
                   "baseline_ratio": 0.25}})
    document = status_document({"version": "v1"}, Progress(60), {"ACME": state}, {"ACME"})
    topic = document["topics"]["ACME"]
    assert topic["current_window"]["total"] == 2 and topic["long_window"]["negative_ratio"] == 0.25
    assert topic["watermark"] == "1970-01-01T00:01:40.000Z"
    assert "secret" not in str(document)


def test_a_worker_idle_for_ten_minutes_that_has_just_fetched_records_is_not_stalled():
    """Issue 13, item 2: the stall used to count from the last batch, so this read "no progress for 600 s"."""
    progress = Progress(stall_seconds=60)
    start = progress.last_progress
    progress.update_lag({0: 0, 1: 0}, now=start + 5)
    progress.update_lag({0: 3, 1: 0}, now=start + 600)  # 3 records arrive after ten idle minutes
    assert progress.liveness(start + 601) == (True, "ok")
    progress.update_lag({0: 3, 1: 0}, now=start + 630)  # still pending: the stall counts from when they came
    assert progress.liveness(start + 659)[0] is True
    healthy, reason = progress.liveness(start + 661)
    assert not healthy and "3 records behind and no progress for 61 s" in reason


def test_lag_series_of_revoked_partitions_are_removed():
    """Issue 13, item 1: after a rebalance the old owner's last lag value stayed and `max by (partition)` fired."""
    from sentiwatch.streamer.ops.metrics import WorkerMetrics
    from tests.streaming_helpers import parse_metrics

    metrics = WorkerMetrics()
    metrics.set_consumer_lag({0: 500, 1: 7, 2: 0})
    metrics.set_consumer_lag({1: 2})  # partitions 0 and 2 revoked
    lags = {dict(labels)["partition"]: value for (name, labels), value in parse_metrics(metrics.render().decode())
            .items() if name == "sentiwatch_consumer_lag"}
    assert lags == {"1": 2}
    metrics.set_consumer_lag({0: 1, 1: 0})  # one comes back
    lags = {dict(labels)["partition"]: value for (name, labels), value in parse_metrics(metrics.render().decode())
            .items() if name == "sentiwatch_consumer_lag"}
    assert lags == {"0": 1, "1": 0}


def test_readiness_waits_for_the_assignment_and_recovered_tables():
    from sentiwatch.streamer.ops.status import readiness

    assert readiness(assigned=False, rebalancing=False, recovered=False)[0] is False
    assert readiness(assigned=True, rebalancing=True, recovered=True) == (False, "rebalancing")
    assert readiness(assigned=True, rebalancing=False, recovered=False) == (False, "recovering tables")
    assert readiness(assigned=True, rebalancing=False, recovered=True) == (True, "ok")


def test_lag_of_a_partition_with_nothing_processed_counts_from_its_committed_offset():
    """Seen in a takeover here: a survivor that fetched its new partitions to the end but processed nothing read
    lag 0 (the consumer's fetch position), healthy, so the watchdog never restarted it. The consumer below is a
    stand-in for Faust's (which needs a broker): assignment, committed offset, fetch position, high-water."""
    import asyncio
    from types import SimpleNamespace

    from sentiwatch.streamer.ops.lag import LagMeter
    from sentiwatch.streamer.ops.metrics import WorkerMetrics

    texts = [SimpleNamespace(topic="texts", partition=p) for p in (0, 1)]

    class Consumer:
        def assignment(self):
            return texts

        def committed_position(self, tp):
            return {0: 40, 1: None}[tp.partition]  # partition 1: nothing committed yet

        async def position(self, tp):
            return 500  # fetched to the end

        def highwater(self, tp):
            return 500

    progress = Progress(stall_seconds=60)
    meter = LagMeter(SimpleNamespace(consumer=Consumer()), "texts", progress, WorkerMetrics())
    asyncio.run(meter.measure())
    assert progress.lag == {0: 460, 1: 0}
