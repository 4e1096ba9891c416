"""The replayer: a small thread that retries parked requests when sending is possible again.

Without it, requests parked during an outage would wait for the next export,
which only comes with new events. It replays the spool at start (what a previous
process left behind), then wakes every interval, or when the circuit breaker
next lets a probe through, whichever is later. Each round is bounded by the
export deadline and cut short by shutdown; ``stop`` interrupts the wait.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .._observe.ratelimit import RateLimitedLog

__all__ = ["Replayer"]

_logger = logging.getLogger("vf_otel.replay")


class Replayer:
    """Calls ``retry()`` now and then every ``next_delay()`` seconds until stopped."""

    def __init__(self, retry: Callable[[], object], next_delay: Callable[[], float]) -> None:
        self._retry = retry
        self._next_delay = next_delay
        self._log = RateLimitedLog(_logger)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (again, in a forked child, where the parent's does not exist)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="VibefollowReplay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Ask the thread to end and wait up to ``timeout`` seconds for its round to finish."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, timeout))

    def _run(self) -> None:
        stop = self._stop
        while not stop.is_set():
            try:
                self._retry()
            except Exception:  # noqa: BLE001 - the thread must outlive one bad round
                self._log.log(logging.ERROR, "replay", "vf-otel replay failed", exc_info=True)
            if stop.wait(self._next_delay()):
                return
