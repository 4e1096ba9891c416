"""The queue between the app's threads and the worker: bounded, lock-free on the app side.

``put`` runs on the app's request path, possibly inside a signal handler that
interrupted the same thread in the middle of another ``put`` (or of ``flush``).
So it takes no lock that could already be held: ``deque.append``/``popleft`` are
atomic, the refusal counts are plain integers (an ``int`` attribute update is not
interrupted between its read and its write on CPython: signals and thread
switches are handled between bytecodes that do not split it), and waking the
worker is skipped when this thread is already doing it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Final, Generic, TypeVar

__all__ = ["REFUSALS", "EventQueue"]

T = TypeVar("T")
#: Reasons the app's thread refuses an event, in the order of ``refusals()``.
REFUSALS: Final = ("queue_full", "shutdown", "no_api_key")


class EventQueue(Generic[T]):
    """A FIFO holding at most ``limit`` items; a full queue refuses the *new* item, counted."""

    __slots__ = (
        "_batch_size",
        "_items",
        "_limit",
        "_wake",
        "_waking",
        "closed",
        "no_api_key",
        "queue_full",
        "shutdown",
    )

    def __init__(self, limit: int, batch_size: int, wake: Callable[[], None]) -> None:
        self._limit = limit
        self._batch_size = batch_size
        self._wake = wake
        self._items: deque[T] = deque()
        self._waking = threading.Lock()
        self.closed = False
        # Refusals, by reason (see REFUSALS); only ever incremented.
        self.queue_full = 0
        self.shutdown = 0
        self.no_api_key = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> bool:
        """Queue ``item``; False (counted) when full or closed. Never blocks."""
        items = self._items
        if self.closed:
            self.shutdown += 1
            return False
        if len(items) >= self._limit:
            self.queue_full += 1
            return False
        items.append(item)
        if len(items) >= self._batch_size:
            self.wake()
        return True

    def refuse(self, reason: str) -> None:
        """Count one event refused before it was queued (``no_api_key``)."""
        if reason == "no_api_key":
            self.no_api_key += 1

    def wake(self) -> None:
        """Wake the worker, unless this thread is already doing so (a signal handler)."""
        if self._waking.acquire(blocking=False):
            try:
                self._wake()
            finally:
                self._waking.release()

    def take(self, limit: int) -> list[T]:
        """Up to ``limit`` of the oldest items (worker side)."""
        items = self._items
        taken: list[T] = []
        try:
            while len(taken) < limit:
                taken.append(items.popleft())
        except IndexError:
            pass
        return taken

    def refusals(self) -> dict[str, int]:
        """The refusal counts so far, by reason."""
        return {
            "queue_full": self.queue_full,
            "shutdown": self.shutdown,
            "no_api_key": self.no_api_key,
        }

    def after_fork(self) -> None:
        """In a forked child: the parent's items and counts stay with the parent."""
        self._items = deque()
        self._waking = threading.Lock()
        self.queue_full = self.shutdown = self.no_api_key = 0
