"""Where a request waits for a later attempt: the durable spool when configured, else memory.

A ``Job`` is a request on its way: the request, the batch it came from
(``seq``, for ``flush()``) and, when it was claimed from the spool, its row. A
job parked again whose row is still its own only gives the row back (it is not
stored twice); a narrowed one (poison events removed) replaces its row. Memory
holds at most ``limit`` events: past that the oldest are dropped (``backlog_full``).
A spool that refuses a request (full, or unusable) leaves it in memory.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from .._errors import UndeliveredError
from .._spool.store import Spool
from .ledger import Ledger
from .wire import EVENTS_PATH, Request

__all__ = ["Job", "Parked"]

#: A spool lease outlives the longest delivery round by this much (seconds).
LEASE_MARGIN: Final = 60.0


@dataclass(slots=True, eq=False)
class Job:
    """One request on its way, and what it is tied to."""

    request: Request
    seq: int = 0
    row: int | None = None
    deadline: float = 0.0
    # Sent in order after this one, on the same thread: a batch's user upserts
    # go before its events.
    then: list[Job] = field(default_factory=list)
    done: Callable[[bool], None] | None = field(default=None, repr=False)

    @property
    def weight(self) -> int:
        """How many events it stands for (1 for a user upsert)."""
        return self.request.weight


class Parked:
    """The parked requests of one pipeline; thread-safe."""

    def __init__(self, limit: int, ledger: Ledger, spool: Spool | None) -> None:
        self._limit = limit
        self._ledger = ledger
        self.spool = spool
        if spool is not None:
            spool.resume()  # a reopened pipeline uses the spool its shutdown closed
            spool.on_lost = self._spool_lost
        self._lock = threading.Lock()
        self._memory: deque[Job] = deque()
        self._weight = 0
        # Whether the spool may hold rows this process could claim (checked lazily).
        self.spool_dirty = spool is not None

    def after_fork(self) -> None:
        """In a forked child: nothing parked (the parent's jobs stay with the parent)."""
        self._lock = threading.Lock()
        self._memory = deque()
        self._weight = 0
        if self.spool is not None:
            self.spool.after_fork()
            self.spool_dirty = True

    def __len__(self) -> int:
        """Events parked in memory."""
        return self._weight

    def park(
        self,
        job: Job,
        *,
        source: str | None = None,
        narrowed: bool = False,
        stopping: bool = False,
    ) -> str:
        """Keep ``job`` for later: ``spooled``, ``parked`` (memory) or ``dropped`` (stopping).

        ``source`` is the state its events leave (``in_flight``), in the same step.
        """
        spool = self.spool
        if job.row is not None and spool is not None:
            if not narrowed and spool.release(job.row):
                self._ledger.move(job.weight, source, None)
                return "spooled"
            spool.finish(job.row)  # narrowed: the row holds events already settled
            job.row = None
        if spool is not None and spool.usable:
            stored, evicted = spool.add([job.request])
            self._ledger.drop_requests(
                "spool_evicted", evicted, UndeliveredError("spool full (spool_max_bytes)")
            )
            if stored:
                self.spool_dirty = True
                if job.request.path == EVENTS_PATH:
                    self._ledger.spooled(len(job.request.events))
                self._ledger.move(job.weight, source, None)
                return "spooled"
        if stopping:
            self._ledger.move(job.weight, source, None)
            return "dropped"
        with self._lock:
            self._memory.append(job)
            self._weight += job.weight
            evicted_jobs = []
            # The newest job always stays, even when it alone is over the limit.
            while self._weight > self._limit and len(self._memory) > 1:
                oldest = self._memory.popleft()
                self._weight -= oldest.weight
                evicted_jobs.append(oldest)
        self._ledger.move(job.weight, source, "parked")
        for oldest in evicted_jobs:
            self._ledger.move(oldest.weight, "parked", None)
            self._ledger.drop_requests(
                "backlog_full", [oldest.request], self._ledger.undelivered("retry backlog full")
            )
        return "parked"

    def take(self, limit: int | None = None) -> list[Job]:
        """Up to ``limit`` jobs parked in memory, oldest first.

        Their events still count as parked: the caller moves them on (``Ledger.move``).
        """
        with self._lock:
            count = len(self._memory) if limit is None else min(limit, len(self._memory))
            jobs = [self._memory.popleft() for _ in range(count)]
            self._weight -= sum(job.weight for job in jobs)
        return jobs

    def claim(self, limit: int) -> list[Job]:
        """A claim on the spool's oldest rows this process may send (none if no spool)."""
        if self.spool is None or not self.spool_dirty or limit <= 0:
            return []
        claimed = self.spool.claim(limit)
        if not claimed:
            self.spool_dirty = False
        return [Job(request, 0, row) for request, row in claimed]

    def done(self, job: Job) -> None:
        """``job`` was sent or refused for good: its spool row goes."""
        if job.row is not None and self.spool is not None:
            self.spool.finish(job.row)
            job.row = None

    def claimable(self) -> int:
        """Events in the spool this process could send now (0 without a spool)."""
        if self.spool is None:
            return 0
        claimable = getattr(self.spool, "claimable", self.spool.pending)  # TODO helper
        return int(claimable())

    def _spool_lost(self, requests: list[Request], why: str) -> None:
        """Spooled requests this process can no longer send: counted and reported."""
        error = UndeliveredError(f"spooled events not delivered: {why}")
        self._ledger.drop_requests("spool_lost", requests, error)

    def close(self) -> None:
        """Close the spool (rows stay on disk for the next start)."""
        if self.spool is not None:
            self.spool.close()
