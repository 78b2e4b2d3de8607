"""`sentiwatch backtest` through the real command line (in process)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from sentiwatch.cli import main

START = 1_767_225_600  # 2026-01-01T00:00:00Z


def count_series(rows: int = 400, spike_at: int = 300, spike_len: int = 4, seed: int = 0) -> list[tuple[int, int]]:
    """5-minute counts with a daily cycle and one spike of 4x."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    expected = 100 * (1 + 0.3 * np.sin(2 * math.pi * t / 288))
    expected[spike_at:spike_at + spike_len] *= 4
    return [(START + 300 * i, int(v)) for i, v in enumerate(rng.poisson(expected))]


def write_csv(path: Path, header: list[str], rows: list) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def backtest(tmp_path: Path, source: Path, *extra: str) -> tuple[int, list[dict[str, str]]]:
    out = tmp_path / "out.csv"
    status = main(["backtest", "--input", str(source), "--output", str(out), *extra])
    return status, read_csv(out) if status == 0 else []


def test_count_series_alerts_on_the_spike_only(tmp_path):
    series = count_series()
    status, rows = backtest(tmp_path, write_csv(tmp_path / "in.csv", ["timestamp", "value"], series))
    assert status == 0 and len(rows) == len(series)
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "alert"]
    assert [(int(r["timestamp"]), int(r["value"])) for r in rows] == series  # input carried through
    alerts = [i for i, r in enumerate(rows) if r["alert"] == "1"]
    assert alerts and alerts[0] == 302 and alerts[-1] < 300 + 4 + 8  # sustained for three windows
    assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)
    assert max(float(r["anomaly_score"]) for r in rows[:300]) < 0.5


def test_no_peeking_ahead(tmp_path):
    series = count_series()
    _, full = backtest(tmp_path, write_csv(tmp_path / "full.csv", ["timestamp", "value"], series))
    _, prefix = backtest(tmp_path, write_csv(tmp_path / "prefix.csv", ["timestamp", "value"], series[:302]))
    assert prefix == full[:302]


def test_total_negative_iso_unsorted_with_exact_duplicates(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(200):
        total = int(rng.poisson(150))
        share = 0.6 if 150 <= i < 156 else 0.2
        stamp = f"2026-01-01T{i // 60:02d}:{i % 60:02d}:00Z"
        rows.append([stamp, total, int(rng.binomial(total, share)), f"note {i}"])
    header = ["timestamp", "total", "negative", "note"]
    _, ordered = backtest(tmp_path, write_csv(tmp_path / "ordered.csv", header, rows))
    shuffled = rows[::-1] + [rows[10]]  # reversed, plus an exact repeat of one row
    _, result = backtest(tmp_path, write_csv(tmp_path / "shuffled.csv", header, shuffled))
    assert list(result[0]) == header + ["anomaly_score", "alert"]
    assert result[:-1] == ordered[::-1]  # same verdicts, input order kept
    assert result[-1] == ordered[10]
    assert [r["alert"] for r in ordered[152:156]] == ["1", "1", "1", "1"]
    assert sum(r["alert"] == "1" for r in ordered[:152]) == 0


@pytest.mark.parametrize(("header", "rows", "message"), [
    (["timestamp", "value"], [[START, 5], [START + 60, "lots"], [START + 120, -1]],
     "2 unusable row(s): line 3: value 'lots' is not a number; line 4: value '-1' must be a whole number"),
    (["timestamp", "value"], [["yesterday", 5]], "line 2: timestamp 'yesterday' is neither ISO-8601 nor epoch"),
    (["timestamp", "total", "negative"], [[START, 10, 11]], "line 2: negative (11) is larger than total (10)"),
    (["timestamp", "value"], [[START, 5], [START, 6]], "lines 2 and 3 have the same timestamp with different counts"),
    (["time", "count"], [[START, 5]], "expected columns timestamp,value or timestamp,total,negative"),
    (["timestamp", "value"], [], "no data rows"),
])
def test_bad_input_fails_with_one_line_naming_the_rows(tmp_path, capsys, header, rows, message):
    source = write_csv(tmp_path / "bad.csv", header, rows)
    status, _ = backtest(tmp_path, source)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and message in err[-1] and err[-1].startswith("sentiwatch backtest: error:")
    assert not (tmp_path / "out.csv").exists()


def test_config_file_and_plot(tmp_path):
    source = write_csv(tmp_path / "in.csv", ["timestamp", "value"], count_series())
    config = tmp_path / "detector.toml"
    config.write_text("[detector]\nmin_volume = 100000\n", encoding="utf-8")
    plot = tmp_path / "plot.png"
    status, rows = backtest(tmp_path, source, "--config", str(config), "--plot", str(plot))
    assert status == 0 and all(r["alert"] == "0" for r in rows)  # no time scale holds 100,000 texts
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20_000
    config.write_text("[detector]\nmin_lift = 0.5\n", encoding="utf-8")
    assert main(["backtest", "--input", str(source), "--output", str(tmp_path / "o.csv"), "--config", str(config)]) == 1
