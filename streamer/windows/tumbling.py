"""Event-time tumbling windows per topic: arithmetic, per-batch aggregation and closing. Pure code.

The worker aggregates a whole batch first (`aggregate`) and then touches each topic's state once
(`merge` + `close_ready`), because a Faust table update per record costs more than the model.
State is a plain JSON-able dict per topic so that it lives in a Faust table and survives restarts.

Each topic has its own watermark. A topic's records reach its window stage from several sources
(input partitions, scored by different workers at different paces), so the watermark is the
*slowest* active source's newest event time: a fast partition must not close windows that a slower
one is still filling (a replay of history at full speed would otherwise make most records late).
A source that sent nothing for `idle_seconds` of wall-clock time stops holding the watermark back,
and once the topic's watermark has not moved for `idle_seconds` (whether records stopped or only old
ones arrive) it follows the wall clock, so its windows still close. A window [start, start + size)
closes once the watermark passes its end plus the allowed lateness; a record for a window that
has already closed is late: counted, never merged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

from sentiwatch.streamer.detection import detector

# Distinct negative terms kept per window; bounded so a flood of unique words cannot grow the state.
MAX_TERMS_PER_WINDOW = 500
# Longest run of silent windows closed as empty windows after a gap (the rest of the gap is skipped): the
# detector's rule, shared with `sentiwatch backtest` so that both give the detector the same windows.
MAX_GAP_WINDOWS = detector.MAX_GAP_WINDOWS
# A redelivered record is at most a commit interval behind the newest one counted from its source (a few
# seconds of input). An offset further behind than this means the input topic was recreated and its
# offsets started again: such a record is new, and counting restarts from it.
REDELIVERY_HORIZON = 100_000


def window_start(event_time: float, size: int) -> int:
    return int(math.floor(event_time / size) * size)


@dataclasses.dataclass(frozen=True)
class ScoredItem:
    """What the window aggregation needs from one scored record."""

    topic: str  # the capped label
    event_time: float
    sentiment: str
    scores: dict[str, float]
    id: str
    text: str
    terms: tuple[str, ...] = ()  # terms of a negative text (for alert top terms); empty otherwise
    source: str = ""  # where the record came from (input partition): see the watermark above
    offset: int | None = None  # its input offset (None: unknown, never treated as a redelivery)


def empty_window(start: int, size: int) -> dict[str, Any]:
    return {"start": start, "end": start + size, "total": 0, "counts": {}, "score_sums": {}, "terms": {},
            "examples": []}


def aggregate(items: Iterable[ScoredItem], size: int, max_examples: int) -> dict[tuple[str, int], dict[str, Any]]:
    """One partial window per (topic, window start) touched by the batch."""
    partials: dict[tuple[str, int], dict[str, Any]] = {}
    for item in items:
        start = window_start(item.event_time, size)
        window = partials.get((item.topic, start))
        if window is None:
            window = partials[(item.topic, start)] = empty_window(start, size)
        _add(window, item, max_examples)
    return partials


def _add(window: dict[str, Any], item: ScoredItem, max_examples: int) -> None:
    window["total"] += 1
    window["counts"][item.sentiment] = window["counts"].get(item.sentiment, 0) + 1
    for label, score in item.scores.items():
        window["score_sums"][label] = window["score_sums"].get(label, 0.0) + float(score)
    if item.sentiment == "negative":
        _add_terms(window["terms"], {term: 1 for term in item.terms})
        if max_examples > 0:
            _keep_examples(window, [[item.id, item.text, float(item.scores.get("negative", 0.0))]], max_examples)


def _add_terms(into: dict[str, int], counts: dict[str, int]) -> None:
    for term, count in counts.items():
        if term in into:
            into[term] += count
        elif len(into) < MAX_TERMS_PER_WINDOW:
            into[term] = count


def _keep_examples(window: dict[str, Any], new: list[list[Any]], max_examples: int) -> None:
    # The most confidently negative texts are the most telling examples of a surge.
    merged = window["examples"] + new
    merged.sort(key=lambda example: -example[2])
    window["examples"] = merged[:max_examples]


def new_topic_state() -> dict[str, Any]:
    """A topic's window state: open windows, end of the newest closed one, watermark and its sources."""
    return {"open": {}, "closed_until": None, "watermark": None, "moved_at": 0.0, "sources": {}, "counted": {}}


def drop_counted(state: dict[str, Any], items: Sequence[ScoredItem]) -> tuple[list[ScoredItem], int]:
    """The items this topic's windows have not counted yet, and how many were skipped as redeliveries.

    Delivery is at least once: a record whose input offset was not committed before a crash or a
    rebalance is scored again, and a worker taking over a topic re-reads scored records whose window
    update already reached the changelog. The state keeps the newest input offset counted per source;
    it is written in the same table update as the counts, so after a restart both or neither hold a
    record. Records of one source reach a topic in input-offset order (one producer per input
    partition, one scored partition per topic), so anything at or below that offset was counted.
    """
    counted = state.setdefault("counted", {})
    fresh: list[ScoredItem] = []
    for item in items:
        if item.offset is not None and item.source:
            newest = counted.get(item.source)
            if newest is not None and newest - REDELIVERY_HORIZON < item.offset <= newest:
                continue
            counted[item.source] = item.offset
        fresh.append(item)
    return fresh, len(items) - len(fresh)


def source_maxima(items: Iterable[ScoredItem]) -> dict[str, dict[str, float]]:
    """Newest event time per topic and source in a batch."""
    maxima: dict[str, dict[str, float]] = {}
    for item in items:
        per_source = maxima.setdefault(item.topic, {})
        if item.event_time > per_source.get(item.source, float("-inf")):
            per_source[item.source] = item.event_time
    return maxima


def advance_watermark(state: dict[str, Any], newest: dict[str, float], now: float, idle_seconds: float) -> None:
    """Fold a batch's newest event time per source in; the watermark only moves forward."""
    sources = state["sources"]
    for source, event_time in newest.items():
        previous = sources.get(source)
        sources[source] = [max(previous[0], event_time) if previous else event_time, now]
    active = [event_time for event_time, seen in sources.values() if now - seen <= idle_seconds]
    if active and (state["watermark"] is None or min(active) > state["watermark"]):
        state["watermark"], state["moved_at"] = min(active), now


def advance_idle(state: dict[str, Any], now: float, idle_seconds: float) -> None:
    """While nothing moves the watermark for `idle_seconds`, it follows the wall clock."""
    idle = now - state["moved_at"]
    if state["watermark"] is not None and idle > idle_seconds:
        state["watermark"] += idle
        state["moved_at"] = now


def merge(state: dict[str, Any], partials: Iterable[dict[str, Any]], max_examples: int) -> int:
    """Fold a batch's partial windows for one topic into its state; returns how many records were late."""
    late = 0
    for partial in partials:
        if state["closed_until"] is not None and partial["start"] < state["closed_until"]:
            late += partial["total"]
            continue
        key = str(partial["start"])  # JSON object keys are strings
        window = state["open"].get(key)
        if window is None:
            state["open"][key] = window = empty_window(partial["start"], partial["end"] - partial["start"])
        window["total"] += partial["total"]
        for field in ("counts", "score_sums"):
            for label, value in partial[field].items():
                window[field][label] = window[field].get(label, 0) + value
        _add_terms(window["terms"], partial["terms"])
        if max_examples > 0 and partial["examples"]:
            _keep_examples(window, partial["examples"], max_examples)
    return late


def close_ready(state: dict[str, Any], size: int, lateness: float) -> list[dict[str, Any]]:
    """Remove and return, oldest first, every window whose end + lateness the topic's watermark has passed.

    Once a topic has closed a window, the silent windows after it close too (as empty windows), so
    the detector sees a quiet topic as quiet; a gap longer than MAX_GAP_WINDOWS is skipped over.
    """
    if state["watermark"] is None:
        return []
    closable_end = state["watermark"] - lateness
    ready = sorted((w for w in state["open"].values() if w["end"] <= closable_end), key=lambda w: w["start"])
    closed: list[dict[str, Any]] = []
    cursor = state["closed_until"]
    last_end = window_start(closable_end, size)  # windows ending at or before this may close
    for window in ready + [None]:
        stop = window["start"] if window is not None else last_end
        if cursor is not None and stop > cursor:
            cursor = max(cursor, stop - MAX_GAP_WINDOWS * size)
            while cursor + size <= stop:
                closed.append(empty_window(cursor, size))
                cursor += size
        if window is not None:
            del state["open"][str(window["start"])]
            closed.append(window)
            cursor = window["end"]
    state["closed_until"] = cursor
    return closed


def window_summary(window: dict[str, Any]) -> dict[str, Any]:
    """Counts without texts or terms: what /status and the long view keep."""
    return {"start": window["start"], "end": window["end"], "total": window["total"],
            "negative": window["counts"].get("negative", 0), "counts": dict(window["counts"])}


def negative_ratio(total: int, negative: int) -> float:
    return negative / total if total else 0.0


def add_to_history(recent: list[dict[str, Any]], summary: dict[str, Any], long_seconds: int) -> list[dict[str, Any]]:
    """The closed-window summaries that make up the long view (long_seconds, hopping by one window)."""
    kept = [s for s in recent if s["end"] > summary["end"] - long_seconds]
    kept.append(summary)
    return kept


def long_view(recent: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not recent:
        return None
    total = sum(s["total"] for s in recent)
    negative = sum(s["negative"] for s in recent)
    return {"start": recent[0]["start"], "end": recent[-1]["end"], "total": total, "negative": negative,
            "negative_ratio": negative_ratio(total, negative)}


def current_window(state: dict[str, Any]) -> dict[str, Any] | None:
    """The newest open window's counts (no texts), for /status."""
    if not state["open"]:
        return None
    newest = max(state["open"].values(), key=lambda w: w["start"])
    return window_summary(newest)


def open_windows(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Counts of every open window, oldest first (bounded by the allowed lateness)."""
    return [window_summary(w) for w in sorted(state["open"].values(), key=lambda w: w["start"])]
