"""Where parked requests wait: the durable spool when configured, else a bounded backlog.

A request taken from the spool carries its row id, so that when it is parked
again the row is only released (not stored twice), and once it is sent or
refused for good the row is deleted.
"""

from __future__ import annotations

import threading
from typing import Final

from .._config import Settings
from .._errors import UndeliveredError
from .._spool.store import Spool, event_weight
from .backlog import Backlog
from .outcomes import Outcomes
from .stats import Counters
from .wire import Request

__all__ = ["Item", "Parking"]

#: A spool lease outlives the longest delivery round by this much (seconds).
LEASE_MARGIN: Final = 60.0

# A request with its spool row id (None when it is not from the spool).
Item = tuple[Request, int | None]


class Parking:
    """The spool (optional) and the in-memory backlog behind it; thread-safe."""

    def __init__(self, settings: Settings, counters: Counters, outcomes: Outcomes) -> None:
        self._limit = settings.max_queue_size
        self._counters = counters
        self._outcomes = outcomes
        self.backlog = Backlog(self._limit)
        # Weight taken from the backlog and being retried now: still waiting, so counted.
        self._in_flight = 0
        self._lock = threading.Lock()
        self.spool: Spool | None = None
        if settings.spool_path is not None:
            lease = settings.export_timeout + settings.timeout + LEASE_MARGIN
            self.spool = Spool(settings.spool_path, settings.spool_max_bytes, lease=lease)
            self.spool.open()  # a bad path is reported now, not at the first outage

    def after_fork(self) -> None:
        """In a forked child: an empty backlog and the spool's own new connection."""
        self.backlog = Backlog(self._limit)
        self._in_flight = 0
        self._lock = threading.Lock()
        if self.spool is not None:
            self.spool.after_fork()

    @property
    def in_memory(self) -> int:
        """Events parked in memory, including those taken for a retry that is under way."""
        return len(self.backlog) + self._in_flight

    @property
    def waiting(self) -> int:
        """Events waiting: in the memory backlog, plus every process's in the spool."""
        spooled = self.spool.pending() if self.spool is not None else 0
        return self.in_memory + spooled

    def take(self) -> tuple[list[Item], int]:
        """A claim on the spool's oldest rows, then the whole backlog; and its weight.

        Pass the weight to :meth:`settle` once each taken request is sent or parked again.
        """
        claimed = self.spool.claim() if self.spool is not None else []
        taken = self.backlog.take()
        weight = sum(r.weight for r in taken)
        with self._lock:
            self._in_flight += weight
        return [*claimed, *((r, None) for r in taken)], weight

    def hold(self, weight: int) -> int:
        """Count ``weight`` more events as in flight (fresh requests being sent)."""
        with self._lock:
            self._in_flight += weight
        return weight

    def settle(self, weight: int) -> None:
        """Requests taken from the backlog (``weight`` in all) are no longer in flight."""
        with self._lock:
            self._in_flight -= weight

    def done(self, row: int | None) -> None:
        """A request from ``row`` was sent or refused for good."""
        if row is not None and self.spool is not None:
            self.spool.finish(row)

    def park(self, request: Request, row: int | None, *, narrowed: bool, stopped: bool) -> bool:
        """Hold ``request`` for later; False if it had to be dropped (after shutdown)."""
        spool = self.spool
        if row is not None and spool is not None:
            if not narrowed and spool.release(row):
                return True
            # Narrowed: the row holds events already settled; what is left is a new row.
            spool.finish(row)
        if spool is not None:
            stored, evicted = spool.add([request])
            error = UndeliveredError("spool full (spool_max_bytes)")
            self._outcomes.drop_requests("spool_evicted", evicted, error)
            if stored:
                self._counters.add("spooled", event_weight([request]))
                return True
        if stopped:
            # After close() nothing will retry it: count it now rather than hold it.
            error = UndeliveredError("not delivered before shutdown")
            self._outcomes.drop_requests("shutdown", [request], error)
            return False
        error = UndeliveredError("retry backlog full")
        self._outcomes.drop_requests("backlog_full", self.backlog.add(request), error)
        return True

    def close(self) -> None:
        """Spool what is in memory (or count it as dropped); close the spool."""
        for request in self.backlog.take():
            self.park(request, None, narrowed=False, stopped=True)
        if self.spool is not None:
            self.spool.close()
