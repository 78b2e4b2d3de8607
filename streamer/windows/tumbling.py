"""Event-time tumbling windows per topic: arithmetic, per-batch aggregation and closing. Pure code.

The worker aggregates a whole batch first (`aggregate`) and then touches each topic's state once
(`merge` + `close_ready`), because a Faust table update per record costs more than the model.
State is typed (`TopicWindows`, `Window`, `WindowSummary`...); each type's `to_dict`/`from_dict` gives the
plain JSON-able form that lives in the topic's Faust table entry and survives restarts.

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
from collections.abc import Iterable, Mapping, Sequence
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
    """Windows are aligned to multiples of `size`, so every worker and the backtest cut the same windows."""
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


@dataclasses.dataclass(frozen=True)
class Example:
    """A negative text kept to show in an alert; stored as the list [id, text, negative score]."""

    id: str
    text: str
    score: float  # the model's negative probability: the most confident texts are the most telling

    def to_list(self) -> list[Any]:
        return [self.id, self.text, self.score]


@dataclasses.dataclass
class Window:
    """One window of one topic: a batch's partial window, an open one, or one just closed."""

    start: int
    end: int
    total: int = 0
    counts: dict[str, int] = dataclasses.field(default_factory=dict)  # records per sentiment label
    score_sums: dict[str, float] = dataclasses.field(default_factory=dict)  # summed probability per label
    terms: dict[str, int] = dataclasses.field(default_factory=dict)  # negative texts per term (alert top terms)
    examples: list[Example] = dataclasses.field(default_factory=list)  # most negative first

    def summary(self) -> WindowSummary:
        """Counts without texts or terms: what /status and the long view keep."""
        return WindowSummary(self.start, self.end, self.total, self.counts.get("negative", 0), dict(self.counts))

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "total": self.total, "counts": dict(self.counts),
                "score_sums": dict(self.score_sums), "terms": dict(self.terms),
                "examples": [example.to_list() for example in self.examples]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Window:
        # New containers throughout: a table's value is live, and the state loaded from it is changed.
        return cls(start=data["start"], end=data["end"], total=data["total"], counts=dict(data["counts"]),
                   score_sums=dict(data["score_sums"]), terms=dict(data["terms"]),
                   examples=[Example(*example) for example in data["examples"]])


@dataclasses.dataclass(frozen=True)
class WindowSummary:
    """A window's counts without texts or terms: the closed-window history, /status and the long view."""

    start: int
    end: int
    total: int
    negative: int
    counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "total": self.total, "negative": self.negative,
                "counts": dict(self.counts)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowSummary:
        return cls(data["start"], data["end"], data["total"], data["negative"], dict(data["counts"]))


@dataclasses.dataclass(frozen=True)
class WindowVerdict:
    """The newest closed window and what the detector said about it (/status's latest closed window)."""

    summary: WindowSummary
    score: float
    active: bool
    baseline_ratio: float

    def to_dict(self) -> dict[str, Any]:
        # Flat, the summary's fields first: the form /status has always shown.
        return {**self.summary.to_dict(), "score": self.score, "active": self.active,
                "baseline_ratio": self.baseline_ratio}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowVerdict:
        return cls(WindowSummary.from_dict(data), data["score"], data["active"], data["baseline_ratio"])


@dataclasses.dataclass(frozen=True)
class LongView:
    """The closed windows of the last long_window_seconds taken together (/status's long window)."""

    start: int
    end: int
    total: int
    negative: int

    @property
    def negative_ratio(self) -> float:
        return negative_ratio(self.total, self.negative)

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "total": self.total, "negative": self.negative,
                "negative_ratio": self.negative_ratio}


@dataclasses.dataclass(frozen=True)
class SourceClock:
    """One source's newest event time and when (wall clock) it last sent; stored as [newest, seen_at]."""

    newest: float
    seen_at: float

    def to_list(self) -> list[float]:
        return [self.newest, self.seen_at]


@dataclasses.dataclass
class TopicWindows:
    """A topic's window state: open windows by start, end of the newest closed one, the watermark and its
    sources, and the newest input offset counted per source (see `drop_counted`)."""

    open: dict[int, Window] = dataclasses.field(default_factory=dict)
    closed_until: int | None = None
    watermark: float | None = None
    moved_at: float = 0.0  # wall-clock time the watermark last moved
    sources: dict[str, SourceClock] = dataclasses.field(default_factory=dict)
    counted: dict[str, int] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"open": {str(start): window.to_dict() for start, window in self.open.items()},  # JSON keys: str
                "closed_until": self.closed_until, "watermark": self.watermark, "moved_at": self.moved_at,
                "sources": {source: clock.to_list() for source, clock in self.sources.items()},
                "counted": dict(self.counted)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TopicWindows:
        return cls(open={int(start): Window.from_dict(window) for start, window in data["open"].items()},
                   closed_until=data["closed_until"], watermark=data["watermark"], moved_at=data["moved_at"],
                   sources={source: SourceClock(*clock) for source, clock in data["sources"].items()},
                   counted=dict(data["counted"]))


def aggregate(items: Iterable[ScoredItem], size: int, max_examples: int) -> dict[tuple[str, int], Window]:
    """One partial window per (topic, window start) touched by the batch."""
    partials: dict[tuple[str, int], Window] = {}
    for item in items:
        start = window_start(item.event_time, size)
        window = partials.get((item.topic, start))
        if window is None:
            window = partials[(item.topic, start)] = Window(start, start + size)
        _add(window, item, max_examples)
    return partials


def _add(window: Window, item: ScoredItem, max_examples: int) -> None:
    window.total += 1
    window.counts[item.sentiment] = window.counts.get(item.sentiment, 0) + 1
    for label, score in item.scores.items():
        window.score_sums[label] = window.score_sums.get(label, 0.0) + float(score)
    if item.sentiment == "negative":
        _add_terms(window.terms, {term: 1 for term in item.terms})
        if max_examples > 0:
            _keep_examples(window, [Example(item.id, item.text, float(item.scores.get("negative", 0.0)))],
                           max_examples)


def _add_terms(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for term, count in counts.items():
        if term in into:
            into[term] += count
        elif len(into) < MAX_TERMS_PER_WINDOW:
            into[term] = count


def _keep_examples(window: Window, new: list[Example], max_examples: int) -> None:
    # The most confidently negative texts are the most telling examples of a surge.
    merged = window.examples + new
    merged.sort(key=lambda example: -example.score)
    window.examples = merged[:max_examples]


def drop_counted(state: TopicWindows, items: Sequence[ScoredItem]) -> tuple[list[ScoredItem], int]:
    """The items this topic's windows have not counted yet, and how many were skipped as redeliveries.

    Delivery is at least once: a record whose input offset was not committed before a crash or a
    rebalance is scored again, and a worker taking over a topic re-reads scored records whose window
    update already reached the changelog. The state keeps the newest input offset counted per source;
    it is written in the same table update as the counts, so after a restart both or neither hold a
    record. Records of one source reach a topic in input-offset order (one producer per input
    partition, one scored partition per topic), so anything at or below that offset was counted.
    """
    counted = state.counted
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


def advance_watermark(state: TopicWindows, newest: Mapping[str, float], now: float, idle_seconds: float) -> None:
    """Fold a batch's newest event time per source in; the watermark only moves forward."""
    sources = state.sources
    for source, event_time in newest.items():
        previous = sources.get(source)
        sources[source] = SourceClock(max(previous.newest, event_time) if previous else event_time, now)
    active = [clock.newest for clock in sources.values() if now - clock.seen_at <= idle_seconds]
    if active and (state.watermark is None or min(active) > state.watermark):
        state.watermark, state.moved_at = min(active), now


def advance_idle(state: TopicWindows, now: float, idle_seconds: float) -> None:
    """While nothing moves the watermark for `idle_seconds`, it follows the wall clock."""
    idle = now - state.moved_at
    if state.watermark is not None and idle > idle_seconds:
        state.watermark += idle
        state.moved_at = now


def merge(state: TopicWindows, partials: Iterable[Window], max_examples: int) -> int:
    """Fold a batch's partial windows for one topic into its state; returns how many records were late."""
    late = 0
    for partial in partials:
        if state.closed_until is not None and partial.start < state.closed_until:
            late += partial.total
            continue
        window = state.open.get(partial.start)
        if window is None:
            state.open[partial.start] = window = Window(partial.start, partial.end)
        window.total += partial.total
        for label, count in partial.counts.items():
            window.counts[label] = window.counts.get(label, 0) + count
        for label, score in partial.score_sums.items():
            window.score_sums[label] = window.score_sums.get(label, 0) + score
        _add_terms(window.terms, partial.terms)
        if max_examples > 0 and partial.examples:
            _keep_examples(window, partial.examples, max_examples)
    return late


def close_ready(state: TopicWindows, size: int, lateness: float) -> list[Window]:
    """Remove and return, oldest first, every window whose end + lateness the topic's watermark has passed.

    Once a topic has closed a window, the silent windows after it close too (as empty windows), so
    the detector sees a quiet topic as quiet; a gap longer than MAX_GAP_WINDOWS is skipped over.
    """
    if state.watermark is None:
        return []
    closable_end = state.watermark - lateness
    ready = sorted((w for w in state.open.values() if w.end <= closable_end), key=lambda w: w.start)
    closed: list[Window] = []
    cursor = state.closed_until
    last_end = window_start(closable_end, size)  # windows ending at or before this may close
    for window in [*ready, None]:
        stop = window.start if window is not None else last_end
        if cursor is not None and stop > cursor:
            cursor = max(cursor, stop - MAX_GAP_WINDOWS * size)
            while cursor + size <= stop:
                closed.append(Window(cursor, cursor + size))
                cursor += size
        if window is not None:
            del state.open[window.start]
            closed.append(window)
            cursor = window.end
    state.closed_until = cursor
    return closed


def has_closable(state: TopicWindows, size: int, lateness: float) -> bool:
    """Whether `close_ready` would close anything now: an open window, or silent ones after the last closed."""
    if state.watermark is None:
        return False
    limit = state.watermark - lateness
    if any(w.end <= limit for w in state.open.values()):
        return True
    return state.closed_until is not None and state.closed_until + size <= limit


def negative_ratio(total: int, negative: int) -> float:
    """0 for an empty window: a quiet topic reads as calm, not as an error."""
    return negative / total if total else 0.0


def add_to_history(recent: list[WindowSummary], summary: WindowSummary, long_seconds: int) -> list[WindowSummary]:
    """The closed-window summaries that make up the long view (long_seconds, hopping by one window)."""
    kept = [s for s in recent if s.end > summary.end - long_seconds]
    kept.append(summary)
    return kept


def long_view(recent: Sequence[WindowSummary]) -> LongView | None:
    """The history taken together; None before any window has closed."""
    if not recent:
        return None
    return LongView(recent[0].start, recent[-1].end, sum(s.total for s in recent), sum(s.negative for s in recent))


def current_window(state: TopicWindows) -> WindowSummary | None:
    """The newest open window's counts (no texts), for /status."""
    if not state.open:
        return None
    return max(state.open.values(), key=lambda w: w.start).summary()


def open_windows(state: TopicWindows) -> list[WindowSummary]:
    """Counts of every open window, oldest first (bounded by the allowed lateness)."""
    return [w.summary() for w in sorted(state.open.values(), key=lambda w: w.start)]
