"""The streaming half of `sentiwatch demo` (see `sentiwatch/demo.py`): with a bundle in hand, start the
embedded broker and a worker, replay an hour of texts about four subjects in compressed time — with a
negative surge injected into one of them — and show a live per-topic table and the alerts as they
arrive. It ends by itself once the surge's alert has resolved; every process it started is stopped on
the way out, Ctrl-C included. Imports nothing from the trainer or exporter.

The subjects come from the worker's keyword watchlist, as they would for a user's own watchlist.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sentiwatch.config import Settings, load_settings
from sentiwatch.errors import SentiwatchError
from sentiwatch.streamer.kafka.broker import free_port, start_broker, stop_broker
from sentiwatch.streamer.scoring.topics import Watchlist

log = logging.getLogger(__name__)

# Alert events kept in full under the live table on a terminal (the demo's surge opens, updates and resolves).
ALERTS_ON_SCREEN = 6

# Subjects of the built-in tweets, as a user would configure them (case-insensitive whole words).
DEMO_WATCHLIST: dict[str, list[str]] = {
    "airlines": ["united", "delta", "jetblue", "southwestair", "usairways", "americanair", "virginamerica",
                 "flight", "flights"],
    "apple": ["apple", "iphone", "ipad", "ios", "mac", "macbook"],
    "self-driving cars": ["self-driving", "driverless", "autonomous"],
    "deflategate": ["deflategate", "brady", "patriots", "nfl", "goodell"],
}


@dataclasses.dataclass(frozen=True)
class DemoPlan:
    """The shape of the replayed hour: normal traffic, a surge on one subject, normal traffic again."""

    window_seconds: int = 60
    normal_before: int = 40  # windows; more than the detector's warm-up
    surge_windows: int = 6
    normal_after: int = 14
    per_window: tuple[tuple[str, int], ...] = (("airlines", 60), ("apple", 40), ("self-driving cars", 30),
                                               ("deflategate", 40))
    surge_topic: str = "apple"
    surge_extra_negative: int = 60  # extra negative texts per surge window

    @property
    def windows(self) -> int:
        return self.normal_before + self.surge_windows + self.normal_after


def demo_settings(config_file: str | None, plan: DemoPlan) -> Settings:
    """The user's settings, with the demo's watchlist and window size unless they set their own."""
    overrides: dict[str, Any] = {}
    environ = os.environ
    if "SENTIWATCH_WATCHLIST" not in environ:
        overrides["watchlist"] = DEMO_WATCHLIST
    if "SENTIWATCH_WINDOW_SECONDS" not in environ:
        overrides["window_seconds"] = plan.window_seconds
    return load_settings(config_file, overrides=overrides)


def build_demo_stream(rows: Sequence[dict[str, Any]], plan: DemoPlan, start: float,
                      rng: random.Random) -> list[dict[str, Any]]:
    """Records in event-time order: `id`, `text`, `ts`, and no `topic` (the watchlist resolves it).

    A text goes to the subject the worker's watchlist will give it; only texts matching exactly one
    subject are used, so the ground truth of the demo is the same as what the worker sees.
    """
    single_topic = {topic: Watchlist({topic: terms}) for topic, terms in DEMO_WATCHLIST.items()}
    pools: dict[str, list[dict[str, Any]]] = {topic: [] for topic in DEMO_WATCHLIST}
    for row in rows:
        matches = [topic for topic, watchlist in single_topic.items() if watchlist.match(row["text"])]
        if len(matches) == 1:
            pools[matches[0]].append(row)
    for topic, pool in pools.items():
        if not pool:
            raise SentiwatchError(f"demo: no built-in texts about {topic!r}")
    surge_pool = [row for row in pools[plan.surge_topic] if row["sentiment"] == "negative"]

    records: list[dict[str, Any]] = []
    surge = range(plan.normal_before, plan.normal_before + plan.surge_windows)
    for window in range(plan.windows):
        window_start = start + window * plan.window_seconds
        chosen = [(topic, rng.choice(pools[topic])) for topic, count in plan.per_window for _ in range(count)]
        if window in surge:
            chosen += [(plan.surge_topic, rng.choice(surge_pool)) for _ in range(plan.surge_extra_negative)]
        offsets = sorted(rng.uniform(0, plan.window_seconds) for _ in chosen)
        rng.shuffle(chosen)
        for offset, (_, row) in zip(offsets, chosen, strict=True):
            records.append({"id": f"demo-{len(records)}", "text": row["text"], "ts": round(window_start + offset, 3),
                            "source": "demo"})
    return records


def run_demo(settings: Settings, bundle_dir: Path, records: list[dict[str, Any]], plan: DemoPlan, work_dir: Path,
             until: str = "alert-resolved", keep_running: bool = False, timeout: float = 600.0) -> int:
    """Broker, worker, replay and the live view; every process started here is stopped on the way out."""
    work_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    web_port = settings.web_port if _port_free(settings.web_host, settings.web_port) else free_port()
    brokers = f"127.0.0.1:{port}"
    settings = dataclasses.replace(settings, brokers=brokers, web_port=web_port, bundle=str(bundle_dir))
    broker = start_broker("127.0.0.1", port, log_file=work_dir / "broker.log")
    worker: subprocess.Popen[bytes] | None = None
    try:
        worker = _start_worker(settings, work_dir / "worker.log")
        base_url = f"http://{settings.web_host}:{web_port}"
        print(f"broker {brokers}; worker metrics {base_url}/metrics, status {base_url}/status; "
              f"logs in {work_dir}", flush=True)
        _wait_ready(worker, base_url, work_dir / "worker.log")
        outcome = asyncio.run(_replay_and_watch(settings, records, plan, base_url, worker, until, timeout))
        if keep_running:
            print("demo done; still running for exploring (Ctrl-C stops everything)", flush=True)
            while worker.poll() is None:
                time.sleep(1)
        return outcome
    finally:
        if worker is not None:
            _stop(worker)
        stop_broker(broker)


def _start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SENTIWATCH_BROKERS": settings.brokers, "SENTIWATCH_BUNDLE": settings.bundle,
           "SENTIWATCH_WEB_HOST": settings.web_host, "SENTIWATCH_WEB_PORT": str(settings.web_port),
           "SENTIWATCH_WATCHLIST": json.dumps(settings.watchlist),
           "SENTIWATCH_WINDOW_SECONDS": str(settings.window_seconds)}
    with open(log_path, "ab") as out:
        # Its own process group: a Ctrl-C in the terminal reaches us, and we stop it in order.
        return subprocess.Popen([sys.executable, "-m", "sentiwatch.cli", "stream"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _wait_ready(worker: subprocess.Popen[bytes], base_url: str, log_path: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise SentiwatchError(f"the worker exited at start ({tail[0] if tail else 'no output'}); see {log_path}")
        if _get_json(base_url + "/healthz") is not None:
            return
        time.sleep(0.3)
    raise SentiwatchError(f"the worker did not come up within {timeout:.0f} s; see {log_path}")


async def _replay_and_watch(settings: Settings, records: list[dict[str, Any]], plan: DemoPlan, base_url: str,
                            worker: subprocess.Popen[bytes], until: str, timeout: float) -> int:
    from sentiwatch.tools.replay import encode_record, produce

    alerts: list[dict[str, Any]] = []
    consumer_task = asyncio.create_task(_collect_alerts(settings, alerts))
    encoded = [encode_record(record) for record in records]
    producer_task = asyncio.create_task(produce(settings, settings.input_topic, encoded))
    deadline = time.monotonic() + timeout
    # A terminal gets a live table every second; a log file one every 10 s, to stay readable.
    render_every = 1.0 if sys.stdout.isatty() else 10.0
    shown, rendered_at = 0, 0.0
    try:
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise SentiwatchError(f"the worker stopped unexpectedly (exit status {worker.returncode})")
            if producer_task.done() and producer_task.exception():
                raise producer_task.exception()
            status = await asyncio.to_thread(_get_json, base_url + "/status")
            if status is not None and (time.monotonic() - rendered_at >= render_every or len(alerts) > shown):
                _render(status, len(records), alerts)
                rendered_at = time.monotonic()
            if not sys.stdout.isatty():  # a terminal shows the alerts under the table (see _render)
                for alert in alerts[shown:]:
                    print("\n" + alert_text(alert), flush=True)
            shown = len(alerts)
            if until == "alert-resolved" and any(a["state"] == "resolved" and a["topic"] == plan.surge_topic
                                                 for a in alerts):
                if status is not None:
                    _render(status, len(records), alerts)
                opened = sorted({a["topic"] for a in alerts if a["state"] == "open"})
                print(f"\ndemo finished: the {plan.surge_topic!r} surge opened and resolved one alert "
                      f"(alerts opened for: {', '.join(opened)})", flush=True)
                return 0
            if (until == "stream-done" and status is not None and status.get("topics")
                    and status.get("records_processed", 0) >= len(records)):
                _render(status, len(records), alerts)
                print(f"\ndemo finished: {len(records)} records scored", flush=True)
                return 0
            await asyncio.sleep(1.0)
        raise SentiwatchError(f"demo: no resolved alert for {plan.surge_topic!r} within {timeout:.0f} s")
    finally:
        for task in (consumer_task, producer_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _collect_alerts(settings: Settings, alerts: list[dict[str, Any]]) -> None:
    from aiokafka import AIOKafkaConsumer

    from sentiwatch.streamer.kafka.connection import aiokafka_options, ensure_topics

    await ensure_topics(settings, [settings.alerts_topic])
    consumer = AIOKafkaConsumer(settings.alerts_topic, **aiokafka_options(settings), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        async for message in consumer:
            with contextlib.suppress(ValueError):
                alerts.append(json.loads(message.value))
    finally:
        await consumer.stop()


def table_text(status: dict[str, Any], total_records: int) -> str:
    """The live table: the latest closed window of every topic."""
    rows = []
    for topic, info in sorted(status.get("topics", {}).items()):
        latest = info.get("latest_closed_window") or {}
        total, negative = latest.get("total", 0), latest.get("negative", 0)
        share = f"{negative / total:6.1%}" if total else "     -"
        baseline = latest.get("baseline_ratio")
        rows.append(f"  {topic:<20} {total:>6} {share:>8} {_pct(baseline):>9} {latest.get('score', 0.0):>6.2f}"
                    f"  {'ALERT' if latest.get('active') else ''}")
    header = (f"scored {status.get('records_processed', 0)}/{total_records}   latest closed window per topic:\n"
              f"  {'topic':<20} {'texts':>6} {'neg.share':>8} {'baseline':>9} {'spike':>6}")
    return header + "\n" + "\n".join(rows)


def screen_text(status: dict[str, Any], total_records: int, alerts: Sequence[dict[str, Any]],
                keep_alerts: int = ALERTS_ON_SCREEN) -> str:
    """What a terminal shows: the table, and below it the latest alert events in full (terms and examples), so they
    stay readable while the table refreshes every second instead of being cleared with it."""
    text = table_text(status, total_records)
    if alerts:
        recent = alerts[-keep_alerts:]
        earlier = len(alerts) - len(recent)
        text += "\n\nalert events" + (f" (latest {len(recent)} of {len(alerts)})" if earlier else "") + ":"
        text += "".join("\n" + alert_text(alert) for alert in recent)
    return text


def _render(status: dict[str, Any], total_records: int, alerts: Sequence[dict[str, Any]]) -> None:
    if sys.stdout.isatty():
        sys.stdout.write("\x1b[2J\x1b[H" + screen_text(status, total_records, alerts) + "\n")
    else:
        sys.stdout.write(table_text(status, total_records) + "\n")
    sys.stdout.flush()


def alert_text(alert: dict[str, Any]) -> str:
    lines = [f"*** ALERT {alert['state'].upper()} [{alert.get('severity')}] topic={alert['topic']} "
             f"window {alert['window_start']}..{alert['window_end']}: negative {alert['negative']}/{alert['total']} "
             f"({alert['negative_ratio']:.0%}) vs baseline {alert['baseline_ratio']:.0%}, score {alert['score']:.2f}"]
    if alert.get("top_terms"):
        lines.append(f"    top terms: {', '.join(alert['top_terms'])}")
    for example in alert.get("examples", [])[:3]:
        lines.append(f"    e.g. [{example['id']}] {example['text'][:120]}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "-"


def _get_json(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def _stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
