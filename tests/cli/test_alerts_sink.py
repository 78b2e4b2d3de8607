"""`sentiwatch alerts-sink`: alert events from Kafka to a JSON-lines file and Loki, at least once.

Loki itself cannot run here (no binary in the package sources this machine reaches); a small HTTP server stands in
for its push endpoint, records what it receives, and refuses the first push, so the test sees the sink keep its
offsets while Loki is down. The broker is the real embedded one."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sentiwatch.config import load_settings
from sentiwatch.tools import alerts_sink
from sentiwatch.tools.alerts_sink import loki_payload, push_to_loki, run_sink, write_jsonl
from tests.streaming_helpers import produce, running_broker


def event(n: int, state: str = "open", topic: str = "acme") -> dict:
    return {"alert_id": f"a{n}", "topic": topic, "state": state, "severity": "warning", "top_terms": ["recall"],
            "examples": [{"id": f"t{n}", "text": "the recall is a mess"}], "negative_ratio": 0.8}


def test_loki_payload_groups_by_labels_and_keeps_order() -> None:
    events = [event(1), event(2, "resolved"), event(3), {"raw": "not json"}]
    payload = loki_payload(events, now_ns=1_000)
    streams = {tuple(sorted(s["stream"].items())): s["values"] for s in payload["streams"]}
    opened = streams[(("app", "sentiwatch"), ("kind", "alert"), ("severity", "warning"), ("state", "open"),
                      ("topic", "acme"))]
    assert [json.loads(line)["alert_id"] for _, line in opened] == ["a1", "a3"]
    assert [int(ts) for ts, _ in opened] == [1000, 1002]  # increasing: Loki keeps the order
    assert sum(len(values) for values in streams.values()) == 4  # nothing dropped, not even the broken one


@dataclasses.dataclass
class FakeLoki:
    url: str
    pushes: list[dict]
    refuse_first: bool = True


@contextlib.contextmanager
def fake_loki() -> Iterator[FakeLoki]:
    """A stand-in for Loki's POST /loki/api/v1/push (see the module docstring)."""
    state = FakeLoki("", [])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path != "/loki/api/v1/push" or self.headers["Content-Type"] != "application/json":
                self.send_response(400)
            elif state.refuse_first:
                state.refuse_first = False
                self.send_response(503)
            else:
                state.pushes.append(json.loads(body))
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield state
    finally:
        server.shutdown()


def test_push_to_loki_names_loki_when_it_refuses() -> None:
    with fake_loki() as loki:
        with pytest.raises(alerts_sink.SentiwatchError, match="Loki at"):
            push_to_loki(loki.url, [event(1)])
        push_to_loki(loki.url, [event(1)])
        assert len(loki.pushes) == 1


@pytest.mark.integration
def test_sink_copies_every_event_to_file_and_loki_once_loki_is_back(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts_sink, "RETRY_SECONDS", 0.2)
    events = [event(1), event(2, "update"), event(3, "resolved"), event(4, topic="globex")]
    out = tmp_path / "alerts.jsonl"
    with running_broker() as brokers, fake_loki() as loki:
        settings = load_settings(environ={"SENTIWATCH_BROKERS": brokers})
        produce(brokers, settings.alerts_topic, [(e["topic"].encode(), json.dumps(e).encode()) for e in events])
        produce(brokers, settings.alerts_topic, [(None, b"\xffnot json")])

        async def run_until_copied() -> int:
            stop = asyncio.Event()
            with out.open("a", encoding="utf-8") as stream:
                writers = [lambda batch: write_jsonl(stream, batch), lambda batch: push_to_loki(loki.url, batch)]
                task = asyncio.create_task(run_sink(settings, writers, group="sink-test", stop=stop))
                for _ in range(300):
                    if sum(len(s["values"]) for p in loki.pushes for s in p["streams"]) >= 5:
                        break
                    await asyncio.sleep(0.1)
                stop.set()
                return await task

        assert asyncio.run(run_until_copied()) == 5
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        # Loki refused the first push: those events were written to the file again with the retry (at least once).
        assert {e.get("alert_id") for e in lines} == {"a1", "a2", "a3", "a4", None}
        assert {"raw": "\ufffdnot json"} in lines
        pushed = [json.loads(line) for p in loki.pushes for s in p["streams"] for _, line in s["values"]]
        assert sorted(e.get("alert_id") or "raw" for e in pushed) == ["a1", "a2", "a3", "a4", "raw"]

        # The offsets were committed: a second run of the same group copies nothing again.
        async def second_run() -> int:
            stop = asyncio.Event()
            task = asyncio.create_task(run_sink(settings, [lambda batch: None], group="sink-test", stop=stop))
            await asyncio.sleep(3)
            stop.set()
            return await task

        assert asyncio.run(second_run()) == 0
