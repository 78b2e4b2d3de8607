"""The window stage's per-topic state: one typed entry per topic, written once per batch (issue 13, items 3
and 5). Pure code: a dict stands in for the Faust table, a wrapper that raises stands in for a crash."""

from __future__ import annotations

import copy
import json

import pytest

from sentiwatch.config import load_settings
from sentiwatch.streamer.ops.metrics import WorkerMetrics
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
        assert got.recent == want.recent and got.windows["open"] == want.windows["open"]
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
    assert "ACME" in stage.status_view and stage.windows_view["ACME"]["watermark"] is not None
    for minute in range(1, 12):  # no record of ACME ever arrives again
        stage.close_idle(now=1000.0 + 29 + minute * SIZE)
    assert [e["state"] for e in published if e["topic"] == "ACME"] == ["resolved"]
    others = [p for p in range(4) if p != owners[0]]
    bystander, nothing = restarted(set(others))
    bystander.close_idle(now=1000.0 + 29 + 12 * SIZE)
    assert "ACME" not in bystander.owned_topics and not [e for e in nothing if e["topic"] == "ACME"]
