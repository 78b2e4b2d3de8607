"""Progress, lag and liveness of one worker, and the JSON behind `/status`. No texts ever go in here."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sentiwatch.streamer.scoring.records import iso_utc
from sentiwatch.streamer.windows import tumbling as win

if TYPE_CHECKING:
    from sentiwatch.streamer.windows.stage import TopicState


class Progress:
    """What the worker has consumed, per input partition, and when it last moved forward."""

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self.started_at = time.monotonic()
        self.last_progress = self.started_at
        self.records = 0
        self.positions: dict[int, int] = {}  # input partition -> next offset to process
        self.lag: dict[int, int] = {}
        # When the lag last went from 0 to more (None while there is none): a stall counts from then, not from
        # the last batch, else a worker idle for ten minutes reads as stalled the moment records arrive.
        self.pending_since: float | None = None

    def on_batch(self, offsets: Mapping[int, int], records: int) -> None:
        """`offsets`: the highest offset processed per partition in the batch."""
        for partition, offset in offsets.items():
            self.positions[partition] = max(self.positions.get(partition, 0), offset + 1)
        self.records += records
        self.last_progress = time.monotonic()

    def update_lag(self, highwaters: Mapping[int, int | None], now: float | None = None) -> dict[int, int]:
        """Lag per assigned partition with a known end; partitions not assigned any more are dropped."""
        self.lag = {partition: max(0, end - self.positions.get(partition, 0))
                    for partition, end in highwaters.items() if end is not None}
        self.positions = {p: o for p, o in self.positions.items() if p in highwaters}
        if not sum(self.lag.values()):
            self.pending_since = None
        elif self.pending_since is None:
            self.pending_since = time.monotonic() if now is None else now
        return self.lag

    def liveness(self, now: float | None = None) -> tuple[bool, str]:
        """Unhealthy only when records have been pending (lag > 0) for `stall_seconds` and nothing has moved
        in that time."""
        now = time.monotonic() if now is None else now
        behind = sum(self.lag.values())
        if behind == 0 or self.pending_since is None:
            return True, "ok"
        stalled_for = now - max(self.last_progress, self.pending_since)
        if stalled_for > self.stall_seconds:
            return False, f"stalled: {behind} records behind and no progress for {stalled_for:.0f} s"
        return True, "ok"


def readiness(assigned: bool, rebalancing: bool, recovered: bool) -> tuple[bool, str]:
    """Ready to take traffic: the worker has had its partitions assigned (an empty share counts: more workers
    than partitions) and its tables are recovered, and no rebalance is under way."""
    if not assigned:
        return False, "waiting for the consumer group to assign partitions"
    if rebalancing:
        return False, "rebalancing"
    if not recovered:
        return False, "recovering tables"
    return True, "ok"


def status_document(model: Mapping[str, Any], progress: Progress, states: Mapping[str, TopicState],
                    owned_topics: set[str]) -> dict[str, Any]:
    """Per-topic current window and latest closed window, model info, lag; counts only."""
    topics: dict[str, Any] = {}
    for topic in sorted(owned_topics):
        state = states.get(topic)
        windows = state.windows if state else None
        current = win.current_window(windows) if windows else None
        history = state.recent if state else []
        long_view = win.long_view(history)
        topics[topic] = {
            "watermark": iso_utc(windows.watermark) if windows and windows.watermark is not None else None,
            "current_window": current.to_dict() if current else None,
            "open_windows": [summary.to_dict() for summary in win.open_windows(windows)] if windows else [],
            "latest_closed_window": state.latest.to_dict() if state and state.latest else None,
            "long_window": long_view.to_dict() if long_view else None,
            "closed_windows": [summary.to_dict() for summary in history],
        }
    healthy, reason = progress.liveness()
    return {
        "model": dict(model),
        "healthy": healthy,
        "health": reason,
        "records_processed": progress.records,
        "seconds_since_progress": round(time.monotonic() - progress.last_progress, 3),
        "lag": {str(p): n for p, n in sorted(progress.lag.items())},
        "topics": topics,
    }
