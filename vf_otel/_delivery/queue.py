"""The queue between the app's threads and the worker: bounded, lock-free on the app side.

``put`` runs on the app's request path, possibly inside a signal handler that
interrupted the same thread in the middle of another ``put`` (or of ``flush``).
So it takes no lock that could already be held: ``deque.append``/``popleft`` are
atomic, the refusal counts are plain integers (an ``int`` attribute update is not
interrupted between its read and its write on CPython: signals and thread
switches are handled between bytecodes that do not split it), and waking the
worker is skipped when this thread is already doing it.

The worker is woken once per batch, not once per ``put``: while it is busy the
queue may grow past ``batch_size``, and setting its wake event again for every
record would cost each log call a lock and a notify for nothing. ``woken`` tells
whether the event is still set; the worker clears it before it looks at the
queue's length, so a record that finds it set is seen all the same.

Items are kept flat: a tuple of ``RECORD_FIELDS`` fields (a queued log call, see
``PendingEvent``) as its fields, one after another, and any other item boxed to
the same width. A log call then leaves no object of its own in the queue, only
strings, numbers and dicts of them, which the garbage collector does not track:
thousands of queued calls no longer make every collection on the app's threads
longer, nor bring the next full one sooner. ``deque.extend`` of a tuple is as
atomic as ``append``; ``take`` puts the tuples back together on the worker.
"""

from __future__ import annotations

import itertools
import operator
import threading
from collections import deque
from collections.abc import Callable
from typing import Final, Generic, TypeVar, cast

__all__ = ["RECORD_FIELDS", "REFUSALS", "EventQueue"]

T = TypeVar("T")
#: Reasons the app's thread refuses an event, in the order of ``refusals()``.
REFUSALS: Final = ("queue_full", "shutdown", "no_api_key")
#: A tuple item of this many fields is kept as its fields (see the module docstring).
RECORD_FIELDS: Final = 6
# The second field of a boxed item (no field of a record is this object), then padding.
_BOXED: Final = object()
_PADDING: Final = (None,) * (RECORD_FIELDS - 2)


class EventQueue(Generic[T]):
    """A FIFO holding at most ``limit`` items; a full queue refuses the *new* item, counted."""

    __slots__ = (
        "_batch_fields",
        "_items",
        "_limit_fields",
        "_wake",
        "_waking",
        "_woken",
        "closed",
        "no_api_key",
        "queue_full",
        "reopen",
        "shutdown",
    )

    def __init__(
        self,
        limit: int,
        batch_size: int,
        wake: Callable[[], None],
        woken: Callable[[], bool] | None = None,
    ) -> None:
        self._limit_fields = limit * RECORD_FIELDS
        self._batch_fields = batch_size * RECORD_FIELDS
        self._wake = wake
        self._woken = woken or _never
        self._items: deque[object] = deque()  # RECORD_FIELDS fields per item
        self._waking = threading.Lock()
        self.closed = False
        # Called by ``put`` on a closed queue: True when it opened the queue again (the
        # logging handler's pipeline, FileHandler's convention); None: stay closed.
        self.reopen: Callable[[], bool] | None = None
        # Refusals, by reason (see REFUSALS); only ever incremented.
        self.queue_full = 0
        self.shutdown = 0
        self.no_api_key = 0

    def __len__(self) -> int:
        return len(self._items) // RECORD_FIELDS

    def put(self, item: T) -> bool:
        """Queue ``item``; False (counted) when full or closed. Never blocks."""
        items = self._items
        if self.closed and not self._reopened():
            self.shutdown += 1
            return False
        if len(items) >= self._limit_fields:
            self.queue_full += 1
            return False
        if isinstance(item, tuple) and len(item) == RECORD_FIELDS:
            items.extend(item)  # a log call (see the module docstring)
        else:
            items.extend((item, _BOXED, *_PADDING))
        if len(items) >= self._batch_fields and not self._woken():
            self.wake()
        return True

    def _reopened(self) -> bool:
        """Closed: whether ``reopen`` opened it again (off the hot path: only when closed)."""
        reopen = self.reopen
        return reopen is not None and reopen()

    def rewire(self, wake: Callable[[], None], woken: Callable[[], bool] | None = None) -> None:
        """A reopened pipeline's new worker: wake it from now on; items and counts stay."""
        self._wake = wake
        self._woken = woken or _never

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
        # Only the worker takes, so the fields counted now are still there below
        # (app threads only add whole items meanwhile).
        # Loops that run in C: a batch is thousands of fields.
        items, width = self._items, RECORD_FIELDS
        count = min(limit, len(items) // width)
        fields = list(map(operator.call, itertools.repeat(items.popleft, count * width)))
        chunks = iter(fields)
        taken: list[object] = list(zip(*(chunks,) * width, strict=True))  # ``width`` at a time
        if any(map(operator.is_, fields[1::width], itertools.repeat(_BOXED))):
            taken = [item[0] if item[1] is _BOXED else item for item in taken]  # type: ignore[index]
        return cast("list[T]", taken)

    def refusals(self) -> dict[str, int]:
        """The refusal counts so far, by reason."""
        return {
            "queue_full": self.queue_full,
            "shutdown": self.shutdown,
            "no_api_key": self.no_api_key,
        }

    def after_fork(
        self, wake: Callable[[], None] | None = None, woken: Callable[[], bool] | None = None
    ) -> None:
        """In a forked child: the parent's items and counts stay with the parent.

        The object itself stays (a handler holds its bound ``put``); ``wake`` and
        ``woken``, when given, are the child's worker's new wake event.
        """
        self._items = deque()
        self._waking = threading.Lock()
        if wake is not None:
            self._wake = wake
            self._woken = woken or _never
        self.queue_full = self.shutdown = self.no_api_key = 0


def _never() -> bool:
    return False
