import dataclasses
import json

import pytest

from sentiwatch.config import load_settings
from sentiwatch.streamer.ops.metrics import WorkerMetrics
from sentiwatch.streamer.windows import tumbling as win
from sentiwatch.streamer.windows.stage import ScoredMessage, WindowStage, parse_scored
from tests.streaming_helpers import parse_metrics

SIZE = 60
W0 = 1_700_000_040  # a window start (a multiple of SIZE)
T0 = W0 + 20


def item(topic="ACME", t=T0, sentiment="negative", text="the battery is on fire", id_="x"):
    scores = {"negative": 0.9, "neutral": 0.05, "positive": 0.05} if sentiment == "negative" else \
        {"negative": 0.1, "neutral": 0.1, "positive": 0.8}
    terms = tuple(text.split()) if sentiment == "negative" else ()
    return win.ScoredItem(topic, t, sentiment, scores, id_, text, terms)


def test_window_start_is_aligned():
    assert win.window_start(T0, SIZE) == W0
    assert win.window_start(W0, SIZE) == W0
    assert win.window_start(W0 - 0.1, SIZE) == W0 - SIZE


def test_aggregate_makes_one_partial_per_topic_window():
    items = [item(), item(t=T0 + 5, sentiment="positive"), item(t=T0 + 50), item(topic="Globex")]
    partials = win.aggregate(items, SIZE, max_examples=1)
    assert set(partials) == {("ACME", W0), ("ACME", W0 + SIZE), ("Globex", W0)}
    first = partials[("ACME", W0)]
    assert first.total == 2
    assert first.counts == {"negative": 1, "positive": 1}
    assert first.score_sums["positive"] == pytest.approx(0.85)
    assert first.terms["fire"] == 1
    assert first.examples == [win.Example("x", "the battery is on fire", 0.9)]


def test_merge_counts_records_of_closed_windows_as_late():
    state = win.TopicWindows()
    assert win.merge(state, win.aggregate([item(), item()], SIZE, 0).values(), 0) == 0
    state.watermark = T0 + 200
    closed = win.close_ready(state, size=SIZE, lateness=120)
    assert [w.total for w in closed] == [2]
    assert state.closed_until == W0 + SIZE
    late = win.merge(state, win.aggregate([item(t=T0 + 1)], SIZE, 0).values(), 0)
    assert late == 1
    assert state.open == {}


def test_close_waits_for_lateness_and_fills_silent_windows():
    state = win.TopicWindows()
    win.merge(state, win.aggregate([item(), item(t=T0 + 4 * SIZE)], SIZE, 0).values(), 0)
    # window 1 ends at T0+40; with lateness 120 it may close once the watermark reaches T0+160.
    state.watermark = T0 + 159
    assert not win.has_closable(state, SIZE, 120) and win.close_ready(state, SIZE, 120) == []
    state.watermark = T0 + 4 * SIZE + 200
    assert win.has_closable(state, SIZE, 120)
    closed = win.close_ready(state, SIZE, 120)
    assert [w.total for w in closed] == [1, 0, 0, 0, 1]
    assert [w.start for w in closed] == [W0 + i * SIZE for i in range(5)]
    assert not win.has_closable(state, SIZE, 120)


def settings(**overrides):
    env = {"SENTIWATCH_DETECTOR_MIN_VOLUME": "5",
           "SENTIWATCH_ALERT_EXAMPLES": "2", "SENTIWATCH_ALLOWED_LATENESS_SECONDS": "0"}
    env.update({f"SENTIWATCH_{k.upper()}": v for k, v in overrides.items()})
    return load_settings(environ=env)


def scored_message(topic, t, negative, id_, text=None):
    label = "negative" if negative else "positive"
    value = {"id": id_, "text": text or ("slow delivery again" if negative else "lovely day"), "ts": t,
             "sentiment": {"label": label, "scores": {"negative": 0.9 if negative else 0.1,
                                                      "positive": 0.1 if negative else 0.9}}, "topic": topic}
    return ScoredMessage(topic, json.dumps(value).encode(), t)


def run_surge(stage, topic="ACME"):
    """20 calm windows (20% negative), then 3 windows of 90% negative, then calm; one batch per window."""
    n = 0
    for index in range(30):
        surge = 20 <= index < 23
        batch = []
        for j in range(40):
            negative = j < (36 if surge else 8)
            text = f"battery caught fire {n}" if surge and negative else None
            batch.append(scored_message(topic, T0 + index * SIZE + j, negative, f"r{n}", text))
            n += 1
        stage.process(batch, now=1000.0 + index)


def test_stage_closes_windows_runs_detector_and_publishes_alerts():
    metrics = WorkerMetrics()
    states, alerts = {}, []
    stage = WindowStage(settings(), metrics, states, lambda topic, event: alerts.append((topic, event)))
    run_surge(stage)
    kinds = [event["state"] for _, event in alerts]
    assert kinds[0] == "open" and "resolved" in kinds
    opened = alerts[0][1]
    assert opened["topic"] == "ACME" and opened["negative"] == 36 and opened["total"] == 40
    assert "battery" in " ".join(opened["top_terms"])
    assert len(opened["examples"]) == 2 and opened["examples"][0]["text"].startswith("battery")
    # windows closed so far are in the history, the newest one still open
    assert len(states["ACME"]["recent"]) >= 15
    assert [w["total"] for w in states["ACME"]["windows"]["open"].values()] == [40]
    samples = parse_metrics(metrics.render().decode())
    assert samples[("sentiwatch_alerts_total", (("state", "open"), ("topic", "ACME")))] == 1
    assert samples[("sentiwatch_negative_ratio", (("topic", "ACME"),))] == pytest.approx(0.2)
    assert samples[("sentiwatch_spike_active", (("topic", "ACME"),))] == 0
    # State is plain JSON: it survives a Faust table's changelog.
    assert json.loads(json.dumps(states)) == states


def test_privacy_switch_keeps_texts_out_of_alerts():
    alerts = []
    stage = WindowStage(settings(alert_examples_enabled="false"), WorkerMetrics(), {},
                        lambda topic, event: alerts.append(event))
    run_surge(stage)
    assert alerts and all(event["examples"] == [] for event in alerts)


def test_idle_stream_closes_windows_by_wall_clock():
    states = {}
    stage = WindowStage(settings(), WorkerMetrics(), states, lambda *_: None)
    stage.process([scored_message("ACME", T0, True, "a")], now=1000.0)
    assert states["ACME"]["recent"] == []
    stage.close_idle(now=1000.0 + 2 * SIZE)
    assert [w["total"] for w in states["ACME"]["recent"]][:1] == [1]


def test_watermark_follows_the_slowest_active_source():
    state = win.TopicWindows()
    win.advance_watermark(state, {"0": 500.0, "1": 100.0}, now=10.0, idle_seconds=60)
    assert state.watermark == 100.0
    win.advance_watermark(state, {"1": 300.0}, now=20.0, idle_seconds=60)
    assert state.watermark == 300.0
    # source 1 falls silent: after idle_seconds it no longer holds the watermark back
    win.advance_watermark(state, {"0": 900.0}, now=85.0, idle_seconds=60)
    assert state.watermark == 900.0
    win.advance_watermark(state, {"1": 400.0}, now=86.0, idle_seconds=60)
    assert state.watermark == 900.0  # never moves back
    assert state.sources == {"0": win.SourceClock(900.0, 85.0), "1": win.SourceClock(400.0, 86.0)}
    win.advance_idle(state, now=85.0 + 61, idle_seconds=60)  # it last moved at 85
    assert state.watermark == 900.0 + 61


def test_a_fast_source_does_not_make_a_slow_one_late():
    metrics = WorkerMetrics()
    windows = {}
    stage = WindowStage(settings(), metrics, windows, lambda *_: None)
    fast = [ScoredMessage("ACME", scored_message("ACME", T0 + i * SIZE, False, f"f{i}").value, 0, "0")
            for i in range(10)]
    slow = [ScoredMessage("ACME", scored_message("ACME", T0 + i * SIZE, False, f"s{i}").value, 0, "1")
            for i in range(10)]
    stage.process(fast[:1] + slow[:1], now=1000.0)
    stage.process(fast[1:], now=1001.0)
    stage.process(slow[1:], now=1002.0)
    samples = parse_metrics(metrics.render().decode())
    assert samples[("sentiwatch_late_records_total", ())] == 0


def test_late_records_are_counted_not_merged():
    metrics = WorkerMetrics()
    windows = {}
    stage = WindowStage(settings(), metrics, windows, lambda *_: None)
    stage.process([scored_message("ACME", T0 + 10 * SIZE, False, "new")], now=1000.0)
    stage.process([scored_message("ACME", T0 + 11 * SIZE, False, "b")], now=1001.0)
    stage.process([scored_message("ACME", T0 + 10 * SIZE, False, "late")], now=1002.0)
    samples = parse_metrics(metrics.render().decode())
    assert samples[("sentiwatch_late_records_total", ())] == 1


def test_malformed_scored_record_is_skipped():
    assert parse_scored(ScoredMessage("ACME", b"{oops", T0)) is None
    assert parse_scored(ScoredMessage(None, b'{"id": "a"}', T0)) is None


def test_forgetting_topics_drops_their_gauges():
    metrics = WorkerMetrics()
    stage = WindowStage(settings(), metrics, {}, lambda *_: None)
    stage.process([scored_message("ACME", T0, True, "a")], now=1000.0)
    stage.close_idle(now=1000.0 + 2 * SIZE)
    assert ("sentiwatch_spike_score", (("topic", "ACME"),)) in parse_metrics(metrics.render().decode())
    stage.forget_topics()
    assert not [k for k in parse_metrics(metrics.render().decode()) if dict(k[1]).get("topic") == "ACME"
                and k[0] != "sentiwatch_alerts_total"]
    assert stage.owned_topics == set()


def test_redelivered_records_are_not_counted_twice():
    """A record scored again after a crash or a takeover (same source, offset already counted) is skipped."""
    state = win.TopicWindows()
    first = [dataclasses.replace(item(id_=f"r{i}"), source="0", offset=i) for i in range(5)]
    fresh, skipped = win.drop_counted(state, first)
    assert (len(fresh), skipped) == (5, 0)
    # offsets 3..6 from source 0 (3, 4 again), 2..3 from source 1 (new), one without an offset (always new)
    again = [dataclasses.replace(item(), source="0", offset=i) for i in range(3, 7)]
    other = [dataclasses.replace(item(), source="1", offset=i) for i in (2, 3)]
    fresh, skipped = win.drop_counted(state, again + other + [item()])
    assert skipped == 2
    assert [(i.source, i.offset) for i in fresh] == [("0", 5), ("0", 6), ("1", 2), ("1", 3), ("", None)]
    assert state.counted == {"0": 6, "1": 3}


def test_a_recreated_input_topic_counts_again_from_its_new_offsets():
    state = win.TopicWindows()
    win.drop_counted(state, [dataclasses.replace(item(), source="0", offset=win.REDELIVERY_HORIZON + 500)])
    fresh, skipped = win.drop_counted(state, [dataclasses.replace(item(), source="0", offset=i) for i in range(3)])
    assert (len(fresh), skipped) == (3, 0)
    assert state.counted == {"0": 2}


def test_stage_counts_a_redelivered_batch_once():
    metrics = WorkerMetrics()
    windows = {}
    stage = WindowStage(settings(), metrics, windows, lambda *_: None)
    batch = [dataclasses.replace(scored_message("ACME", T0 + i, True, f"r{i}"), source="0", offset=100 + i)
             for i in range(10)]
    stage.process(batch, now=1000.0)
    stage.process(batch[6:] + [dataclasses.replace(scored_message("ACME", T0 + 11, False, "new"), source="0",
                                                   offset=110)], now=1001.0)
    assert [w["total"] for w in windows["ACME"]["windows"]["open"].values()] == [11]
    samples = parse_metrics(metrics.render().decode())
    assert samples[("sentiwatch_redelivered_records_total", ())] == 4
    assert json.loads(json.dumps(windows)) == windows
