"""What ``flush()`` waits for: batches numbered as the worker takes them, and who waits.

The worker gives each batch it takes (and each exporter call) a number; every job
of a batch counts as open until it is settled — delivered, refused for good,
dropped, or spooled (the spool is then waited for on its own). A flush asked
before a take waits for every batch up to the number the take ended with: the
events queued before the flush are in those batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from . import threads

__all__ = ["Batches", "Waiter"]


class Waiter:
    """One caller of flush(): the batches it waits for, and its answer."""

    __slots__ = ("answer", "deadline", "done", "target")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.target: int | None = None  # set once the worker took the queue
        self.done = threads.Event()
        self.answer = False

    def resolve(self, answer: bool) -> None:
        """Give the caller its answer."""
        self.answer = answer
        self.done.set()


class Batches:
    """Batch numbers, the jobs still open per batch, and the flushes waiting; thread-safe."""

    def __init__(self) -> None:
        # Re-entrant: a SIGTERM hook may flush() while the main thread is inside flush().
        self._lock = threads.RLock()
        self._open: Counter[int] = Counter()  # batch number -> jobs in flight or parked
        self._last = 0
        self._waiters: list[Waiter] = []

    def next(self) -> int:
        """A new batch number."""
        with self._lock:
            self._last += 1
            return self._last

    def opened(self, batch: int) -> None:
        """One more job of ``batch`` is on its way."""
        with self._lock:
            self._open[batch] += 1

    def settled(self, batch: int) -> None:
        """One job of ``batch`` reached its outcome."""
        with self._lock:
            self._open[batch] -= 1
            if self._open[batch] <= 0:
                del self._open[batch]

    # -- flushes --------------------------------------------------------------

    def ask(self, deadline: float) -> Waiter:
        """A flush starts waiting."""
        waiter = Waiter(deadline)
        with self._lock:
            self._waiters.append(waiter)
        return waiter

    def withdraw(self, waiter: Waiter) -> None:
        """A flush stopped waiting (answered or timed out)."""
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    @property
    def waiting(self) -> bool:
        """Whether any flush waits."""
        return bool(self._waiters)

    def earliest_deadline(self) -> float | None:
        """The nearest deadline of the flushes waiting, if any."""
        with self._lock:
            return min((w.deadline for w in self._waiters), default=None)

    def unassigned(self) -> list[Waiter]:
        """The flushes whose batches are not known yet (asked before the next take)."""
        with self._lock:
            return [w for w in self._waiters if w.target is None]

    def assign(self, waiters: list[Waiter]) -> None:
        """The take covering these flushes ended: they wait for every batch up to now."""
        with self._lock:
            for waiter in waiters:
                waiter.target = self._last

    def answer(self, spool_clear: Callable[[], bool], hopeless: Callable[[Waiter], bool]) -> None:
        """Resolve the flushes whose batches are all settled (and the spool holds nothing
        this process could send), or that cannot finish before their deadline."""
        with self._lock:
            waiting = [w for w in self._waiters if w.target is not None]
            oldest = min(self._open, default=None)
        clear: bool | None = None
        for waiter in waiting:
            if oldest is None or oldest > (waiter.target or 0):
                if clear is None:
                    clear = spool_clear()
                if clear:
                    self._resolve(waiter, True)
                    continue
            if hopeless(waiter):
                self._resolve(waiter, False)

    def _resolve(self, waiter: Waiter, answer: bool) -> None:
        self.withdraw(waiter)
        waiter.resolve(answer)
