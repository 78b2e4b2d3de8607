"""`sentiwatch backtest` at default settings on a real count series nobody here wrote, chosen without
looking at the detector's settings (from session 6 on it also holds later changes to this series).

New York's cancelled departures per 5 minutes, January to March 2013 (tests/detection/data/README.md):
mostly zeros and ones, a daily cycle, and the blizzard of 8-9 February 2013 (Winter Storm Nemo), when
the airports shut down. An analyst wants the blizzard, and not a page a week for the rest.
"""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

from sentiwatch.cli import main

DATA = Path(__file__).parent / "data" / "nyc_cancelled_5min_2013q1.csv.gz"
WEEKS = 25908 * 300 / (7 * 86400)  # rows x 5 minutes


def test_backtest_on_real_flight_cancellations_catches_the_blizzard_and_stays_quiet_otherwise(tmp_path: Path):
    source, out = tmp_path / "nyc.csv", tmp_path / "out.csv"
    with gzip.open(DATA, "rb") as packed, open(source, "wb") as plain:
        shutil.copyfileobj(packed, plain)
    assert main(["backtest", "--input", str(source), "--output", str(out)]) == 0
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 25908
    openings = [row["timestamp"] for previous, row in zip([{"alert": "0"}, *rows[:-1]], rows, strict=True)
                if row["alert"] == "1" and previous["alert"] != "1"]
    # At most one alert a week on average (the target), counting every opening as if it were false.
    assert 1 <= len(openings) <= WEEKS
    # The blizzard's first day is one event: one alert, not a string of them.
    assert len([t for t in openings if "2013-02-08T12:00:00Z" <= t < "2013-02-09T03:00:00Z"]) == 1
    # The blizzard: an alert is open through the evening of 8 February (UTC), when cancellations peaked.
    peak = [row for row in rows if "2013-02-08T21:00:00Z" <= row["timestamp"] < "2013-02-09T00:00:00Z"]
    assert peak and all(row["alert"] == "1" for row in peak)
    # The score is graded, never saturated: the blizzard's peak scores above any window outside Feb 8-9.
    scores = [float(row["anomaly_score"]) for row in rows]
    assert max(scores) < 1.0
    outside = max(float(row["anomaly_score"]) for row in rows if not row["timestamp"].startswith(("2013-02-08",
                                                                                                "2013-02-09")))
    assert max(float(row["anomaly_score"]) for row in peak) > outside
