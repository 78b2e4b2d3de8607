"""The demo's code path, end to end, on the tiny test model: cached model -> bundle -> broker -> worker ->
replay -> live table -> clean exit with nothing left running."""

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sentiwatch.streamer.scoring.topics import Watchlist
from sentiwatch.tools.demo_stream import DEMO_WATCHLIST, DemoPlan, build_demo_stream

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_stream_has_the_planned_surge():
    rows = [{"text": f"my iphone {i} broke", "sentiment": "negative"} for i in range(20)]
    rows += [{"text": f"apple keynote {i} was fine", "sentiment": "neutral"} for i in range(20)]
    rows += [{"text": f"flight {i} on time", "sentiment": "positive"} for i in range(20)]
    rows += [{"text": f"driverless car {i}", "sentiment": "neutral"} for i in range(20)]
    rows += [{"text": f"brady again {i}", "sentiment": "negative"} for i in range(20)]
    rows += [{"text": "apple flight", "sentiment": "negative"}]  # two subjects: never used
    plan = DemoPlan(normal_before=3, surge_windows=2, normal_after=2)
    records = build_demo_stream(rows, plan, start=1_000_020.0, rng=random.Random(1))
    watchlist = Watchlist(DEMO_WATCHLIST)
    assert [r["ts"] for r in records] == sorted(r["ts"] for r in records)
    assert len({r["id"] for r in records}) == len(records)
    assert all(r["text"] != "apple flight" for r in records)
    per_window: dict[tuple[int, str], int] = {}
    for record in records:
        window = int((record["ts"] - 1_000_020.0) // plan.window_seconds)
        topic = watchlist.match(record["text"])
        per_window[(window, topic)] = per_window.get((window, topic), 0) + 1
    normal, surge = per_window[(0, "apple")], per_window[(3, "apple")]
    assert normal == 40 and surge == 40 + plan.surge_extra_negative
    assert per_window[(3, "airlines")] == 60


@pytest.mark.integration
def test_demo_runs_end_to_end_and_leaves_nothing_running(tiny_bundle_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sentiwatch.cli", "demo", "--bundle", str(tiny_bundle_dir), "--work-dir",
         str(tmp_path / "demo"), "--until-stream-done", "--timeout", "240"],
        capture_output=True, text=True, timeout=400, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "/metrics" in result.stdout and "/status" in result.stdout
    assert "demo finished" in result.stdout
    for topic in DEMO_WATCHLIST:
        assert topic in result.stdout
    broker_url = "tcp://" + re.search(r"broker (127\.0\.0\.1:\d+)", result.stdout).group(1)
    bundle = str(tiny_bundle_dir).encode()
    leftovers = [pid for pid, cmdline, environ in _processes()
                 if broker_url.encode() in cmdline or bundle in environ]
    assert not leftovers, f"the demo left processes running: {leftovers}"


def _processes():
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "cmdline").read_bytes(), (entry / "environ").read_bytes()
            except OSError:
                continue


def _alert(state, terms, example):
    return {"alert_id": "a1", "topic": "apple", "state": state, "severity": "warning", "window_start": "10:00",
            "window_end": "10:01", "total": 90, "negative": 60, "negative_ratio": 0.67, "baseline_ratio": 0.2,
            "score": 0.97, "top_terms": terms, "examples": [{"id": "t1", "text": example}]}


def test_alert_details_stay_on_screen_below_the_live_table():
    """On a terminal the table is redrawn every second; the alerts' terms and examples are part of every redraw,
    under the table, instead of being printed once and cleared a second later (the resolved one at once)."""
    from sentiwatch.tools.demo_stream import screen_text

    status = {"records_processed": 500, "topics": {"apple": {"latest_closed_window": {
        "total": 90, "negative": 60, "baseline_ratio": 0.2, "score": 0.97, "active": True}}}}
    alerts = [_alert("open", ["battery", "recall"], "my iphone battery died again"),
              _alert("resolved", ["recall"], "still waiting for the recall")]
    for _ in range(3):  # three refreshes later the details are still there
        screen = screen_text(status, 1000, alerts)
    table_end = screen.index("apple ")
    assert screen.index("*** ALERT OPEN") > table_end and screen.index("*** ALERT RESOLVED") > table_end
    assert "top terms: battery, recall" in screen and "my iphone battery died again" in screen
    assert "still waiting for the recall" in screen
    many = screen_text(status, 1000, alerts * 5, keep_alerts=4)
    assert many.count("*** ALERT") == 4 and "latest 4 of 10" in many
    assert "*** ALERT" not in screen_text(status, 1000, [])
