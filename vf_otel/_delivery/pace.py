"""When the worker lets the app's threads run: it hands the GIL back while it builds,
and steps back while they are busy.

A thread waiting for the GIL gets it only when the holder lets go: at the latest
after the switch interval (5 ms), a long time on a request path. A batch takes a
few ms to build and encode, so the worker lets go every ``PAUSE_EVERY`` events.
When getting the GIL back took ``BUSY_AFTER`` or more, the app's threads kept it
until the interpreter made them let go: they are computing, not waiting for I/O.
The worker then waits ``STEP_BACK`` before it goes on, so a burst of log calls is
not slowed by the delivery of the calls before it; the queue is there to hold them
meanwhile. None of this while the worker is hurried: a flush() or shutdown waits
for it (handing the GIL back and forth costs time they would wait; a flush ends a
step back at once), or the queue is past half full (the worker takes its share, so
the queue drains).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sized
from typing import Final, TypeVar

__all__ = ["BUSY_AFTER", "PAUSE_EVERY", "STEP_BACK", "Pace"]

T = TypeVar("T")
R = TypeVar("R")
#: The worker lets go of the GIL after building (and after encoding) this many events.
PAUSE_EVERY: Final = 20

#: Getting the GIL back took this long (seconds): the app's threads are busy.
BUSY_AFTER: Final = 0.001
#: How long the worker then stays out of their way (seconds), unless hurried.
STEP_BACK: Final = 0.02


class Pace:
    """Whether the worker is hurried, and its pause when it is not."""

    __slots__ = ("_clock", "_flush_waiting", "_hurry", "_max_queue_size", "_queue", "_stop")

    def __init__(
        self,
        *,
        queue: Sized,
        max_queue_size: int,
        stop: threading.Event,
        flush_waiting: Callable[[], bool],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._queue = queue
        self._max_queue_size = max_queue_size
        self._stop = stop
        self._flush_waiting = flush_waiting
        self._clock = clock
        self._hurry = threading.Event()

    def hurried(self) -> bool:
        """Build without pausing: a flush() or shutdown waits, or the queue is past half."""
        return (
            self._flush_waiting()
            or self._stop.is_set()
            or len(self._queue) * 2 > self._max_queue_size
        )

    def hurry(self) -> None:
        """A flush() or shutdown now waits: end a step back at once."""
        self._hurry.set()

    def pause(self) -> None:
        """Let the app's threads run, unless hurried; step back while they are busy."""
        if self.hurried():
            return
        started = self._clock()
        _yield_gil()
        if self._clock() - started < BUSY_AFTER:
            return  # nobody was waiting for the GIL: go on
        self._hurry.clear()
        if not self.hurried():  # asked again after the clear: a hurry() is never missed
            self._hurry.wait(STEP_BACK)

    def in_steps(self, build: Callable[[list[T]], list[R]], items: list[T]) -> list[R]:
        """``build(items)``, ``PAUSE_EVERY`` items at a time with a pause after each
        (at once when hurried)."""
        if self.hurried():
            return build(items)
        built: list[R] = []
        for start in range(0, len(items), PAUSE_EVERY):
            built += build(items[start : start + PAUSE_EVERY])
            self.pause()
        return built


def _yield_gil() -> None:
    """Let a thread waiting for the GIL take it: a sleep releases it, even for 0 s."""
    time.sleep(0)
