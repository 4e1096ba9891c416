"""When the worker lets the app's threads run: it hands the GIL back while it builds.

A thread waiting for the GIL gets it only when the holder lets go: at the latest
after the switch interval (5 ms), a long time on a request path. A batch takes a
few ms to build and encode, so the worker lets go every ``PAUSE_EVERY`` events,
unless it is hurried: a flush() or shutdown waits for it (handing the GIL back and
forth costs time they would wait), or the queue is past half full (the worker
takes its share, so the queue drains).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sized

__all__ = ["Pace"]


class Pace:
    """Whether the worker is hurried, and its pause when it is not."""

    __slots__ = ("_flush_waiting", "_max_queue_size", "_queue", "_stop")

    def __init__(
        self,
        *,
        queue: Sized,
        max_queue_size: int,
        stop: threading.Event,
        flush_waiting: Callable[[], bool],
    ) -> None:
        self._queue = queue
        self._max_queue_size = max_queue_size
        self._stop = stop
        self._flush_waiting = flush_waiting

    def hurried(self) -> bool:
        """Build without pausing: a flush() or shutdown waits, or the queue is past half."""
        return (
            self._flush_waiting()
            or self._stop.is_set()
            or len(self._queue) * 2 > self._max_queue_size
        )

    def pause(self) -> None:
        """Let the app's threads run, unless hurried."""
        if not self.hurried():
            _yield_gil()


def _yield_gil() -> None:
    """Let a thread waiting for the GIL take it: a sleep releases it, even for 0 s."""
    time.sleep(0)
