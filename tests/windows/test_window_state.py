"""The window stage's per-topic state: one typed entry per topic, written once per batch (issue 13, items 3
and 5). Pure code: a dict stands in for the Faust table, a wrapper that raises stands in for a crash."""

from __future__ import annotations

import copy
import json

import pytest

from sentiwatch.config import load_settings
from sentiwatch.streamer.ops.metrics import WorkerMetrics
from sentiwatch.streamer.windows import tumbling as win
from sentiwatch.streamer.windows.stage import ScoredMessage, TopicState, WindowStage

SIZE = 60
T0 = 1_767_225_600


class Crash(Exception):
    pass


class CrashingTable(dict):
    """A table whose `crash_at`-th write never happens: the process dies there."""

    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.writes = 0
        self.crash_at = crash_at

    def __setitem__(self, key, value):
        self.writes += 1
        if self.writes == self.crash_at:
            raise Crash
        super().__setitem__(key, copy.deepcopy(value))  # what reaches the changelog: a copy, not a live object


def settings():
    return load_settings(environ={"SENTIWATCH_DETECTOR_MIN_VOLUME": "5", "SENTIWATCH_ALLOWED_LATENESS_SECONDS": "0"})


def batches(windows: int = 40, surge: range = range(25, 29)) -> list[list[ScoredMessage]]:
    """One batch per window for two topics: 40 texts, 20% negative, 90% for ACME in the surge; each record with
    its input partition and offset, so a redelivered record is recognised."""
    out, offset = [], 0
    for index in range(windows):
        batch = []
        for topic in ("ACME", "GLOBEX"):
            for j in range(40):
                negative = j < (36 if topic == "ACME" and index in surge else 8)
                value = {"id": f"{topic}{offset}", "text": "late again" if negative else "fine",
                         "ts": T0 + index * SIZE + j,
                         "sentiment": {"label": "negative" if negative else "positive",
                                       "scores": {"negative": 0.9 if negative else 0.1}}, "topic": topic}
                batch.append(ScoredMessage(topic, json.dumps(value).encode(), T0, source="0", offset=offset))
                offset += 1
        out.append(batch)
    return out


def run(table, stage_batches, alerts, start: int = 0) -> None:
    stage = WindowStage(settings(), WorkerMetrics(), table, lambda topic, event: alerts.append(event))
    for index, batch in enumerate(stage_batches[start:], start=start):
        stage.process(batch, now=1000.0 + index)


@pytest.mark.parametrize("crash_at", [7, 20, 51, 52, 57])
def test_a_crash_between_writes_neither_applies_a_window_twice_nor_skips_one(crash_at):
    all_batches = batches()
    reference: dict = {}
    run(reference, all_batches, [])

    table, alerts = CrashingTable(crash_at), []
    stage = WindowStage(settings(), WorkerMetrics(), table, lambda topic, event: alerts.append(event))
    crashed_in = None
    for index, batch in enumerate(all_batches):
        try:
            stage.process(batch, now=1000.0 + index)
        except Crash:
            crashed_in = index
            break
    assert crashed_in is not None
    # Restart from what the table holds; offsets were not committed for the crashed batch: it comes again.
    survivor = dict(table)
    run(survivor, all_batches, alerts, start=crashed_in)
    for topic in ("ACME", "GLOBEX"):
        got, want = TopicState.from_dict(survivor[topic]), TopicState.from_dict(reference[topic])
        assert got.detector == want.detector, topic  # every closed window applied exactly once
        assert got.recent == want.recent and got.windows.open == want.windows.open
    assert [e["state"] for e in alerts if e["topic"] == "ACME"].count("resolved") <= 1


def test_state_is_one_versioned_plain_dict_and_other_versions_are_refused():
    table: dict = {}
    run(table, batches(10), [])
    assert set(table) == {"ACME", "GLOBEX"} and table["ACME"]["version"] == 1
    assert json.loads(json.dumps(table)) == table
    state = TopicState.from_dict(table["ACME"])
    assert state.detector.windows >= 8 and TopicState.from_dict(state.to_dict()) == state
    with pytest.raises(ValueError, match="topic state version 7"):
        TopicState.from_dict({**table["ACME"], "version": 7})


# A topic's entry exactly as the worker wrote it before its state was typed (dicts of string keys), taken from a
# run of that code: one closed window, one open window with an example, two sources and their counted offsets.
# The detector's own stored forms are tested with the detector.
OLD_FORMAT_ENTRY = {
    "version": 1,
    "windows": {"open": {"1767225660": {"start": 1767225660, "end": 1767225720, "total": 2,
                                        "counts": {"negative": 1, "positive": 1},
                                        "score_sums": {"negative": 1.15, "positive": 0.85},
                                        "terms": {"battery": 1, "fire": 1, "battery fire": 1},
                                        "examples": [["r2", "battery fire", 0.9]]}},
                "closed_until": 1767225660, "watermark": 1767225665.0, "moved_at": 1001.0,
                "sources": {"0": [1767225665.0, 1001.0], "1": [1767225670.0, 1001.0]}, "counted": {"0": 2, "1": 8}},
    "detector": None,
    "baseline": {"halflife_windows": 1440.0, "max_terms": 2000, "documents": 2.0,
                 "counts": {"battery": 2.0, "fire": 2.0, "battery fire": 2.0}},
    "recent": [{"start": 1767225600, "end": 1767225660, "total": 3, "negative": 2,
                "counts": {"negative": 2, "positive": 1}}],
    "latest": {"start": 1767225600, "end": 1767225660, "total": 3, "negative": 2,
               "counts": {"negative": 2, "positive": 1}, "score": 0.0, "active": False, "baseline_ratio": 0.5},
}


def test_an_entry_written_before_the_state_was_typed_loads_and_is_written_back_unchanged():
    old = copy.deepcopy(OLD_FORMAT_ENTRY)
    state = TopicState.from_dict(old)
    window = state.windows.open[T0 + SIZE]
    assert (window.total, window.examples) == (2, [win.Example("r2", "battery fire", 0.9)])
    assert state.windows.sources["1"] == win.SourceClock(1767225670.0, 1001.0)
    assert state.windows.counted == {"0": 2, "1": 8}
    assert state.recent == [win.WindowSummary(T0, T0 + SIZE, 3, 2, {"negative": 2, "positive": 1})]
    assert state.latest == win.WindowVerdict(state.recent[0], score=0.0, active=False, baseline_ratio=0.5)
    assert json.dumps(state.to_dict()) == json.dumps(OLD_FORMAT_ENTRY)  # same form, same key order
    # Loading copies: changing the loaded state leaves the table's (live) value alone.
    window.counts["negative"] += 1
    window.examples.append(win.Example("r3", "x", 0.1))
    state.windows.counted["0"] = 99
    assert old == OLD_FORMAT_ENTRY

    # The stage carries on from it: offsets already counted are skipped, a new record joins the open window.
    table = {"ACME": copy.deepcopy(OLD_FORMAT_ENTRY)}
    stage = WindowStage(settings(), WorkerMetrics(), table, lambda *_: None)

    def message(offset: int) -> ScoredMessage:
        value = {"id": f"r{offset}", "text": "fine", "ts": T0 + SIZE + 30, "topic": "ACME",
                 "sentiment": {"label": "positive", "scores": {"negative": 0.2, "positive": 0.8}}}
        return ScoredMessage("ACME", json.dumps(value).encode(), T0, source="0", offset=offset)

    stage.process([message(2), message(3)], now=1002.0)
    after = table["ACME"]["windows"]
    assert after["open"][str(T0 + SIZE)]["total"] == 3 and after["counted"] == {"0": 3, "1": 8}
    assert table["ACME"]["recent"] == OLD_FORMAT_ENTRY["recent"]


def test_after_a_restart_a_quiet_topic_is_adopted_from_the_table_and_its_open_alert_resolves():
    table: dict = {}
    alerts: list = []
    all_batches = batches(windows=29)  # the stream stops during ACME's surge: its alert is open
    run(table, all_batches, alerts)
    assert [e["state"] for e in alerts if e["topic"] == "ACME"] == ["open"]

    def restarted(partitions: set[int]) -> tuple[WindowStage, list]:
        published: list = []
        stage = WindowStage(settings(), WorkerMetrics(), table, lambda topic, event: published.append(event))
        stage.assign(partitions, 4)
        return stage, published

    # Exactly one of the four partitions holds ACME: its owner adopts it, the others (standbys) leave it alone.
    owners = [p for p in range(4) if "ACME" in restarted({p})[0].owned_topics]
    assert len(owners) == 1
    stage, published = restarted({owners[0]})
    assert "ACME" in stage.topics_view and stage.topics_view["ACME"].windows.watermark is not None
    for minute in range(1, 12):  # no record of ACME ever arrives again
        stage.close_idle(now=1000.0 + 29 + minute * SIZE)
    assert [e["state"] for e in published if e["topic"] == "ACME"] == ["resolved"]
    others = [p for p in range(4) if p != owners[0]]
    bystander, nothing = restarted(set(others))
    bystander.close_idle(now=1000.0 + 29 + 12 * SIZE)
    assert "ACME" not in bystander.owned_topics and not [e for e in nothing if e["topic"] == "ACME"]
