"""Exit rather than hang: a thread beside the Faust worker that ends the process (status 1) when the
worker can no longer do its job, so that its supervisor (Kubernetes) restarts it.

Why a thread and a separate Kafka connection: when the brokers go away, Faust and aiokafka retry forever
inside the event loop — measured here, a worker kept retrying for 80 s after SIGTERM, and after a broker
restart that lost its data (the embedded broker keeps everything in memory) it sat waiting for topics
that no longer existed, never scoring again. Neither the event loop nor the worker's own clients can be
trusted to notice, so the watchdog asks the brokers itself and keeps its own clock. Three rules:

- no broker has answered for `kafka_unreachable_exit_seconds` -> exit;
- the brokers answer but one of the worker's topics is gone (they lost their data) -> exit, because
  only a fresh start recreates the topics and rejoins cleanly. This must happen before the worker
  commits anything there: on rejoining an emptied broker, Faust commits its old offsets while the
  partitions are revoked (seen here: 0.4 s after reconnecting), which makes a restarted worker skip
  the records produced since. So every rebalance first probes the brokers synchronously
  (`guard_rebalances`), and while the brokers are away the thread probes every
  PROBE_INTERVAL_OUTAGE_SECONDS;
- the worker's own liveness check (the one behind /healthz: behind, and no progress for
  `liveness_stall_seconds`) fails -> exit, as a Kubernetes liveness probe would restart it, so that a
  worker run by any other supervisor does not sit stuck either (seen here: after a takeover, a
  survivor that held its new partitions but never fetched from them);
- SIGTERM/SIGINT received and the process still alive after `shutdown_timeout_seconds` -> exit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sentiwatch.config import Settings
from sentiwatch.streamer.kafka.connection import aiokafka_options

log = logging.getLogger(__name__)

EXIT_STATUS = 1
PROBE_INTERVAL_SECONDS = 2.5
PROBE_INTERVAL_OUTAGE_SECONDS = 0.5
PROBE_TIMEOUT_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Probe:
    """One look at the brokers: did any answer, and which of the worker's topics were missing."""

    reachable: bool
    missing: tuple[str, ...] = ()


class BrokerVerdict:
    """Pure decision over successive probes: None while all is well, else the reason to exit."""

    def __init__(self, brokers: str, unreachable_limit: float) -> None:
        self._brokers = brokers
        self._limit = unreachable_limit
        self._unreachable_since: float | None = None
        self._missing_before: tuple[str, ...] = ()

    def interval(self) -> float:
        """Seconds to the next probe: short while the brokers are away, to see them come back at once."""
        return PROBE_INTERVAL_OUTAGE_SECONDS if self._unreachable_since is not None else PROBE_INTERVAL_SECONDS

    def observe(self, probe: Probe, now: float) -> str | None:
        if not probe.reachable:
            if self._unreachable_since is None:
                self._unreachable_since = now
                log.warning("watchdog: Kafka at %s does not answer; exiting if it stays away for %.0f s",
                            self._brokers, self._limit)
            if now - self._unreachable_since >= self._limit:
                return f"Kafka at {self._brokers} unreachable for {now - self._unreachable_since:.0f} s"
            return None
        after_outage = self._unreachable_since is not None
        if after_outage:
            log.info("watchdog: Kafka at %s answers again", self._brokers)
        self._unreachable_since = None
        # Without an outage, two probes in a row: a topic a peer is recreating is not mistaken for loss.
        gone = probe.missing if after_outage else tuple(name for name in probe.missing if name in self._missing_before)
        self._missing_before = probe.missing
        if gone:
            return (f"Kafka topic(s) {', '.join(gone)} no longer exist at {self._brokers} "
                    "(the brokers lost their data?); a restart recreates them")
        return None


async def probe_brokers(options: dict[str, Any], topics: Sequence[str]) -> Probe:
    """Ask the brokers for their topic list with a short-lived client of our own."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    client = AIOKafkaClient(**options, request_timeout_ms=int(PROBE_TIMEOUT_SECONDS * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), PROBE_TIMEOUT_SECONDS)
        existing = set(client.cluster.topics())
    except (KafkaError, OSError):  # OSError includes TimeoutError
        return Probe(reachable=False)
    finally:
        await client.close()
    return Probe(reachable=True, missing=tuple(name for name in topics if name not in existing))


class Watchdog:
    """Runs the probes in a daemon thread with its own event loop; `arm_shutdown` starts the stop deadline."""

    def __init__(self, settings: Settings, topics: Sequence[str],
                 exit_process: Callable[[int], Any] = os._exit) -> None:
        self._options = aiokafka_options(settings)
        self._topics = tuple(dict.fromkeys(topics))
        self._verdict = BrokerVerdict(settings.brokers, settings.kafka_unreachable_exit_seconds)
        self._shutdown_timeout = settings.shutdown_timeout_seconds
        self._exit_process = exit_process
        self._stopping = threading.Event()
        self._liveness: Callable[[], tuple[bool, str]] | None = None

    def start(self) -> None:
        threading.Thread(target=self._run_probes, name="watchdog", daemon=True).start()

    def watch_liveness(self, liveness: Callable[[], tuple[bool, str]]) -> None:
        """Also exit when `liveness()` (e.g. `Progress.liveness`, behind /healthz) says the worker is stuck."""
        self._liveness = liveness

    def guard_rebalances(self, app: Any) -> None:
        """Probe before every rebalance of `app` (a faust.App), ahead of the commit Faust makes on revoke."""
        start_rebalance = app.on_rebalance_start

        def checked_rebalance_start() -> None:
            self.check_now()
            start_rebalance()

        # Instance attribute: Faust's rebalance listener calls app.on_rebalance_start() first thing.
        app.on_rebalance_start = checked_rebalance_start

    def check_now(self) -> None:
        """One synchronous probe; exits if a topic is gone. Runs in its own thread: the caller may be in a loop."""
        result: list[Probe] = []
        probe = threading.Thread(target=lambda: result.append(asyncio.run(probe_brokers(self._options, self._topics))),
                                 name="watchdog-check", daemon=True)
        probe.start()
        probe.join(PROBE_TIMEOUT_SECONDS + 1)
        if result and result[0].reachable and result[0].missing and not self._stopping.is_set():
            self._give_up(f"Kafka topic(s) {', '.join(result[0].missing)} no longer exist at a rebalance "
                          "(the brokers lost their data?); a restart recreates them")

    def arm_shutdown(self) -> None:
        """A stop was asked for: from now on the process has `shutdown_timeout_seconds` to be gone."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        timer = threading.Timer(self._shutdown_timeout, self._give_up,
                                args=(f"shutdown did not finish within {self._shutdown_timeout:.0f} s",))
        timer.daemon = True
        timer.start()

    def _run_probes(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            # While stopping, a vanishing broker is expected; the deadline alone decides then.
            while not self._stopping.wait(self._verdict.interval()):
                probe = loop.run_until_complete(probe_brokers(self._options, self._topics))
                reason = self._verdict.observe(probe, time.monotonic()) or self._stuck()
                if reason and not self._stopping.is_set():
                    self._give_up(reason)
                    return
        finally:
            loop.close()

    def _stuck(self) -> str | None:
        if self._liveness is None:
            return None
        healthy, why = self._liveness()
        return None if healthy else f"worker is {why}"

    def _give_up(self, reason: str) -> None:
        exit_now(f"watchdog: {reason}", self._exit_process)


def exit_now(reason: str, exit_process: Callable[[int], Any] = os._exit) -> None:
    """Log one line and end the process with status 1 at once: no stop handlers run, so nothing is committed
    after this (what the worker has not acked is read again by the next one)."""
    log.critical("%s; exiting with status %d", reason, EXIT_STATUS)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    exit_process(EXIT_STATUS)


def guarded_worker_class(worker_class: type, watchdog: Watchdog) -> type:
    """A faust.Worker subclass whose stop signals also arm the watchdog's deadline.

    Faust installs its signal handlers on the event loop (`loop.add_signal_handler`), replacing any we
    could set, and the handlers it calls (`_on_sigterm`, `_on_sigint`) are its only hook that runs at
    signal time — `on_worker_shutdown` runs only after the stop completed, i.e. not when it hangs.
    """

    class GuardedWorker(worker_class):  # type: ignore[misc, valid-type]
        def _on_sigterm(self) -> None:
            watchdog.arm_shutdown()
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            watchdog.arm_shutdown()
            super()._on_sigint()

    return GuardedWorker
