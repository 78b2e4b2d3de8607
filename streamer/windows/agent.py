"""The window agent's loop: scored records in, per-topic windows, detection and alerts out.

Because the scored topic is keyed by topic, all of a topic's records arrive on one partition, and the
tables (`TopicKeyed`) use the same key bytes and partitioner, so one worker owns a topic's windows.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import faust

from sentiwatch.config import Settings
from sentiwatch.streamer.scoring.agent import OFFSET_HEADER, SOURCE_HEADER
from sentiwatch.streamer.windows.stage import ScoredMessage, WindowStage


class WindowAgent:
    """The body of the Faust agent `windows`: hands each batch of scored records to the window stage."""

    def __init__(self, settings: Settings, stage: WindowStage) -> None:
        self.settings = settings
        self.stage = stage

    async def run(self, stream: faust.StreamT) -> None:
        async for events in stream.take_events(self.settings.batch_max, within=self.settings.batch_within_seconds):
            batch = [ScoredMessage(_key(e.message.key), e.message.value, e.message.timestamp,
                                   *_origin(e.message.headers)) for e in events]
            self.stage.process(batch)  # synchronous: a shutdown cannot cut a batch in half here


class TopicKeyed(MutableMapping[str, Any]):
    """A bytes-keyed Faust table seen through str keys (topic labels)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, key: str) -> Any:
        return self.table[key.encode("utf-8")]

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[key.encode("utf-8")] = value

    def __delitem__(self, key: str) -> None:
        del self.table[key.encode("utf-8")]

    def __iter__(self) -> Iterator[str]:
        return (key.decode("utf-8", errors="replace") for key in self.table)

    def __len__(self) -> int:
        return len(self.table)


def _origin(headers: Any) -> tuple[str, int | None]:
    """(input partition, input offset) from a scored record's headers; ("", None) if it has none."""
    found = dict(headers or ())
    source = found.get(SOURCE_HEADER, b"").decode("utf-8", errors="replace")
    try:
        offset = int(found[OFFSET_HEADER])
    except (KeyError, ValueError):
        offset = None
    return source, offset


def _key(raw: bytes | None) -> str | None:
    return raw.decode("utf-8", errors="replace") if raw is not None else None
