"""When the worker lets the app's threads run: it hands the GIL back while it builds,
and steps back while they are busy.

A thread waiting for the GIL gets it only when the holder lets go: at the latest
after the switch interval (5 ms), a long time on a request path. A batch takes a
few ms to build and encode, so the worker lets go every ``PAUSE_EVERY`` events.
When getting the GIL back took ``BUSY_AFTER`` or more, the app's threads kept it
until the interpreter made them let go: they are computing, not waiting for I/O.
The worker then waits ``STEP_BACK`` before it goes on, so a burst of log calls is
not slowed by the delivery of the calls before it; the queue holds them meanwhile.
Two bounds keep that a burst's pause: a step back ends before the queue could reach
half full at ``FASTEST_LOGGING`` events/s, and once the app has been busy for
``patience`` seconds (the ``flush_interval``) in a row (pauses that find it busy,
``RUN_GAP`` apart at most) the worker stops stepping back and takes its share of
the GIL. None of this while the worker is hurried: a flush() or shutdown waits for
it (handing the GIL back and forth costs time they would wait; a flush ends a step
back at once), or the queue is past half full (the worker takes its share, so the
queue drains).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sized
from typing import Final, TypeVar

from . import threads

__all__ = ["BUSY_AFTER", "FASTEST_LOGGING", "PAUSE_EVERY", "STEP_BACK", "Pace"]

T = TypeVar("T")
R = TypeVar("R")
#: The worker lets go of the GIL after building (and after encoding) this many events.
PAUSE_EVERY: Final = 20

#: Getting the GIL back took this long (seconds): the app's threads are busy.
BUSY_AFTER: Final = 0.001
#: How long the worker then stays out of their way (seconds), unless hurried.
STEP_BACK: Final = 0.02
#: Busy pauses further apart than this (seconds) are not one run of a busy app.
RUN_GAP: Final = 1.0
#: Faster than one interpreter can log (events/s): a step back lasts no longer than
#: the queue would take to fill up to half at this rate.
FASTEST_LOGGING: Final = 200_000


class Pace:
    """Whether the worker is hurried, and its pause when it is not."""

    __slots__ = (
        "_busy_since",
        "_clock",
        "_flush_waiting",
        "_hurry",
        "_hurrying",
        "_last_busy",
        "_max_queue_size",
        "_patience",
        "_queue",
        "_stop",
    )

    def __init__(
        self,
        *,
        queue: Sized,
        max_queue_size: int,
        stop: threads.Event,
        flush_waiting: Callable[[], bool],
        patience: float,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._queue = queue
        self._max_queue_size = max_queue_size
        self._stop = stop
        self._flush_waiting = flush_waiting
        self._patience = patience
        self._clock = clock
        self._hurry = threads.Event()
        self._hurrying = threads.Lock()
        # When the app's threads were first found busy in the present run of such pauses,
        # and last found busy (a longer gap than RUN_GAP ends a run: the worker was idle,
        # or hurried, meanwhile).
        self._busy_since: float | None = None
        self._last_busy = 0.0

    def hurried(self) -> bool:
        """Build without pausing: a flush() or shutdown waits, or the queue is past half."""
        return (
            self._flush_waiting()
            or self._stop.is_set()
            or len(self._queue) * 2 > self._max_queue_size
        )

    def hurry(self) -> None:
        """A flush() or shutdown now waits: end a step back at once.

        Unless this thread is already doing so (a SIGTERM hook's flush interrupting
        a flush): ``Event.set`` holds a lock it cannot take twice, and the outer
        call sets the event anyway.
        """
        if self._hurrying.acquire(blocking=False):
            try:
                self._hurry.set()
            finally:
                self._hurrying.release()

    def pause(self) -> None:
        """Let the app's threads run, unless hurried; step back while they are busy."""
        if self.hurried():
            return
        started = self._clock()
        _yield_gil()
        now = self._clock()
        if now - started < BUSY_AFTER:
            self._busy_since = None
            return  # nobody was waiting for the GIL: go on
        if self._busy_since is None or now - self._last_busy > RUN_GAP:
            self._busy_since = now  # a new run of busy pauses
        self._last_busy = now
        if now - self._busy_since > self._patience:
            return  # busy for longer than a burst: the hand-over above is the app's share
        half = self._max_queue_size / 2
        step = min(STEP_BACK, (half - len(self._queue)) / FASTEST_LOGGING)
        if step <= 0:
            return
        self._hurry.clear()
        if not self.hurried():  # asked again after the clear: a hurry() is never missed
            self._hurry.wait(step)

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
    threads.sleep(0)
