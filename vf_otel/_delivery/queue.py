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
record would cost each log call a lock and a notify for nothing. ``woken`` says
the queue has woken it since the worker last looked. Before it looks at the queue's
length the worker clears its wake event, then ``woken`` (``rearm``), so a record
that finds ``woken`` set is seen all the same, and ``woken`` is never left set with
the event cleared (which would leave every later record unwoken).

Items are kept flat: a tuple of ``RECORD_FIELDS`` fields (a queued log call, see
``PendingEvent``) as its fields, one after another, and any other item boxed to
the same width. A log call then leaves no object of its own in the queue, only
strings, numbers and dicts of them, which the garbage collector does not track:
thousands of queued calls no longer make every collection on the app's threads
longer, nor bring the next full one sooner. ``deque.extend`` of a tuple is as
atomic as ``append``; ``take`` puts the tuples back together on the worker.

The logging handler inlines ``put``'s common case (``VibefollowHandler._queue_call``):
``len(items) < room`` (open and not full), extend ``items``, wake at ``wake_at``
fields unless ``woken``. Anything else goes through ``put``, which counts it.

The queue is bounded in bytes too (``max_queue_bytes``), at no cost to ``put``:
the worker measures the events it takes as it encodes them (``QueueBytes``) and
lowers the queue's limit in items to what the bound holds at the recent size per
event. A run of huge events thus fills it to about ``max_queue_bytes`` of JSON,
not to ``max_queue_size`` of them; what does not fit is refused as ``queue_full``.
"""

from __future__ import annotations

import itertools
import operator
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar, cast

from . import threads

__all__ = ["RECORD_FIELDS", "REFUSALS", "EventQueue", "QueueBytes"]

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
        "_closed",
        "_limit_fields",
        "_limiting",
        "_wake",
        "_waking",
        "items",
        "no_api_key",
        "queue_full",
        "reopen",
        "room",
        "shutdown",
        "wake_at",
        "woken",
    )

    def __init__(self, limit: int, batch_size: int, wake: Callable[[], None]) -> None:
        self._limit_fields = limit * RECORD_FIELDS
        self._batch_fields = batch_size * RECORD_FIELDS
        #: The queue's length in fields from which a put wakes the worker: a batch, or
        #: one item while the worker would send it at once (``wake_early``).
        self.wake_at = self._batch_fields
        self._wake = wake
        #: Whether the queue woke the worker since it last looked (see the module docstring).
        self.woken = False
        #: RECORD_FIELDS fields per item, oldest first.
        self.items: deque[object] = deque()
        self._waking = threads.Lock()
        # Held while ``room`` is set (the worker's limit, a close): re-entrant, as a stop
        # from a signal handler may interrupt a close on the same thread.
        self._limiting = threads.RLock()
        self._closed = False
        #: A put may append while ``len(items)`` is below this: the limit, 0 once closed.
        self.room = self._limit_fields
        # Called by ``put`` on a closed queue: True when it opened the queue again (the
        # logging handler's pipeline, FileHandler's convention); None: stay closed.
        self.reopen: Callable[[], bool] | None = None
        # Refusals, by reason (see REFUSALS); only ever incremented.
        self.queue_full = 0
        self.shutdown = 0
        self.no_api_key = 0

    def __len__(self) -> int:
        return len(self.items) // RECORD_FIELDS

    @property
    def closed(self) -> bool:
        """Whether the queue refuses items (counted as ``shutdown``) unless ``reopen`` opens it."""
        return self._closed

    @closed.setter
    def closed(self, closed: bool) -> None:
        with self._limiting:
            self._closed = closed
            self.room = 0 if closed else self._limit_fields

    @property
    def limit(self) -> int:
        """The most items it holds now: ``max_queue_size``, or fewer by bytes."""
        return self._limit_fields // RECORD_FIELDS

    def limit_to(self, limit: int) -> None:
        """Hold at most ``limit`` items from now (the worker's byte bound, ``QueueBytes``)."""
        with self._limiting:
            self._limit_fields = limit * RECORD_FIELDS
            if not self._closed:
                self.room = self._limit_fields

    def put(self, item: T) -> bool:
        """Queue ``item``; False (counted) when full or closed. Never blocks."""
        items = self.items
        if self._closed and not self._reopened():
            self.shutdown += 1
            return False
        if len(items) >= self._limit_fields:
            self.queue_full += 1
            return False
        if isinstance(item, tuple) and len(item) == RECORD_FIELDS:
            items.extend(item)  # a log call (see the module docstring)
        else:
            items.extend((item, _BOXED, *_PADDING))
        if len(items) >= self.wake_at and not self.woken:
            self.wake()
        return True

    def _reopened(self) -> bool:
        """Closed: whether ``reopen`` opened it again (off the hot path: only when closed)."""
        reopen = self.reopen
        return reopen is not None and reopen()

    def rearm(self, clear_wake: Callable[[], None]) -> None:
        """The worker is about to look at the queue: ``clear_wake`` (its wake event's
        ``clear``), then forget ``woken``, in this order (see the module docstring)."""
        clear_wake()
        self.woken = False

    def wake_early(self, early: bool) -> None:
        """Wake the worker at the first item (``early``: it would send it at once) or at a
        full batch. Set by the worker before it looks at the queue's length, so an item
        put meanwhile is either seen there or wakes it."""
        self.wake_at = RECORD_FIELDS if early else self._batch_fields

    def rewire(self, wake: Callable[[], None]) -> None:
        """A reopened pipeline's new worker: wake it from now on; items and counts stay."""
        self._wake = wake
        self.woken = False

    def refuse(self, reason: str) -> None:
        """Count one event refused before it was queued (``no_api_key``)."""
        if reason == "no_api_key":
            self.no_api_key += 1

    def wake(self) -> None:
        """Wake the worker, unless this thread is already doing so (a signal handler)."""
        if self._waking.acquire(blocking=False):
            try:
                self.woken = True
                self._wake()
            finally:
                self._waking.release()

    def take(self, limit: int) -> list[T]:
        """Up to ``limit`` of the oldest items (worker side)."""
        # Only the worker takes, so the fields counted now are still there below
        # (app threads only add whole items meanwhile).
        # Loops that run in C: a batch is thousands of fields.
        items, width = self.items, RECORD_FIELDS
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
        self, wake: Callable[[], None] | None = None, *, keep_items: bool = False
    ) -> None:
        """In a forked child: the parent's items and counts stay with the parent.

        The object itself stays (a handler holds it, and its bound ``put``); ``wake``,
        when given, wakes the child's worker. ``keep_items``: a fork noticed late, when
        the child's own items are mixed with the parent's copy (they are kept, all).
        """
        if not keep_items:
            self.items = deque()
        self._waking = threads.Lock()
        self._limiting = threads.RLock()
        self.woken = False
        if wake is not None:
            self._wake = wake
        self.queue_full = self.shutdown = self.no_api_key = 0


class QueueBytes:
    """The queue's limit in items from ``max_queue_bytes`` and the sizes the worker measures.

    The size per event is the recent mean of the events taken, as JSON: bytes over
    events, each sum halved at every measure (what was measured before counts half as
    much each time), so a run of huge events lowers the limit at once, and a batch of
    small ones raises it again as fast.
    """

    __slots__ = ("_bytes", "_events", "_max_bytes", "_max_items", "_queue")

    def __init__(self, queue: EventQueue[Any], max_items: int, max_bytes: int) -> None:
        self._queue = queue
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._bytes = 0.0  # measured lately (see the class docstring)
        self._events = 0.0

    def measured(self, events: int, size: int) -> None:
        """``events`` taken from the queue were ``size`` bytes of JSON."""
        if events <= 0:
            return
        self._bytes = self._bytes / 2 + size
        self._events = self._events / 2 + events
        mean = max(1.0, self._bytes / self._events)
        limit = min(self._max_items, max(1, int(self._max_bytes // mean)))
        if limit != self._queue.limit:
            self._queue.limit_to(limit)
