"""Where a request waits for a later attempt: the durable spool when configured, else memory.

A ``Job`` is a request on its way: the request, the batch it came from
(``seq``, for ``flush()``) and, when it was claimed from the spool, its row. A
job parked again whose row is still its own only gives the row back (it is not
stored twice); a narrowed one (poison events removed) replaces its row. Memory
holds at most ``limit`` events: past that the oldest are dropped (``backlog_full``).
A spool that refuses a request (full, or unusable) leaves it in memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from .._errors import UndeliveredError
from .._spool.store import Spool
from . import threads
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
    # Called once at its first outcome (sent, refused, parked): a batch's events wait
    # for every user upsert of the batch sent side by side (jobs.Upserts).
    after: Callable[[], None] | None = field(default=None, repr=False)
    # Given to the spool (or reported) at shutdown while its request was still out: its
    # sender's outcome, if it ever comes, settles nothing more.
    handed_over: bool = False
    #: Where it went at its last outcome, for deliver()'s receipt: ``sent``, ``refused``,
    #: ``spooled``, ``parked`` (memory) or ``dropped``; empty until then.
    outcome: str = ""

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
        self._lock = threads.Lock()
        self._memory: deque[Job] = deque()
        self._weight = 0
        # Whether the spool may hold rows this process could claim (checked lazily).
        self.spool_dirty = spool is not None
        #: Called for each job evicted from memory (``backlog_full``): its batch is
        #: settled there, or no flush() could ever finish again (the job runner sets it).
        self.on_evicted: Callable[[Job], None] = _nothing
        # Jobs a sender is running now, for the hand-over at shutdown.
        self._out: dict[int, tuple[Job, list[Job]]] = {}
        self._handed = False  # shutdown handed over what was out: later ones follow

    def after_fork(self) -> None:
        """In a forked child: nothing parked (the parent's jobs stay with the parent)."""
        self._lock = threads.Lock()
        self._out = {}
        self._handed = False
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
                self._ledger.move_request(job.request, source, None)
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
                self._ledger.move_request(job.request, source, None)
                return "spooled"
        if stopping:
            self._ledger.move_request(job.request, source, None)
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
        self._ledger.move_request(job.request, source, "parked")
        for oldest in evicted_jobs:
            self._ledger.move_request(oldest.request, "parked", None)
            self._ledger.drop_requests(
                "backlog_full", [oldest.request], self._ledger.undelivered("retry backlog full")
            )
            self.on_evicted(oldest)
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
        return self.spool.claimable()

    def going(self, job: Job, rest: list[Job]) -> bool:
        """A sender starts ``job``'s request, ``rest`` of its chain to follow; False (not to
        be sent: spooled now) once shutdown handed what was out to the spool."""
        with self._lock:
            if not self._handed:
                self._out[id(job)] = (job, rest)
                return True
            job.handed_over = True
        self._hand_over_chain([(job, rest)])
        return False

    def back(self, job: Job) -> bool:
        """``job``'s request ended; False if it was handed over meanwhile (settle nothing)."""
        with self._lock:
            self._out.pop(id(job), None)
            return not job.handed_over

    def hand_over_in_flight(self) -> None:
        """Shutdown's deadline: the requests still out go to the spool.

        The same key and body as the request out: if that one landed too, the server
        deduplicates the replay. Without a usable spool they stay counted in flight (a
        late answer still settles them) and are reported to ``on_error``: their outcome
        is unknown, they may have landed.
        """
        spool = self.spool
        with self._lock:
            out = list(self._out.values())
            if spool is not None and spool.usable:
                self._handed = True
                self._out.clear()
                for job, _ in out:
                    job.handed_over = True
        if self._handed:
            self._hand_over_chain(out)
            return
        for job, _ in out:
            self._report_in_flight(job)

    def _hand_over_chain(self, out: list[tuple[Job, list[Job]]]) -> None:
        for job, rest in out:
            if not self._hand_over(job, source="in_flight"):
                self._report_in_flight(job)  # refused by the spool: still counted in flight
            for later in rest:  # never started, counted in flight since it was chained
                if not self._hand_over(later, source="in_flight"):
                    self._ledger.move_request(later.request, "in_flight", None)
                    error = self._ledger.undelivered("not delivered before shutdown")
                    self._ledger.drop_requests("shutdown", [later.request], error)

    def _report_in_flight(self, job: Job) -> None:
        if job.request.path == EVENTS_PATH:
            error = UndeliveredError(
                "still in flight at shutdown; outcome unknown (it may have landed)"
            )
            self._ledger.report(error, job.request.events)

    def _hand_over(self, job: Job, *, source: str | None) -> bool:
        """``job`` into the spool, its events leaving ``source``; False if refused."""
        spool = self.spool
        if job.row is not None and spool is not None:
            # Its row is in the file already; close() gives it back for the next start.
            self._ledger.move_request(job.request, source, None)
            return True
        if spool is None or not spool.usable:
            return False
        stored, evicted = spool.add([job.request])
        self._ledger.drop_requests(
            "spool_evicted", evicted, UndeliveredError("spool full (spool_max_bytes)")
        )
        if not stored:
            return False
        if job.request.path == EVENTS_PATH:
            self._ledger.spooled(len(job.request.events))
        self._ledger.move_request(job.request, source, None)
        return True

    def _spool_lost(self, requests: list[Request], why: str) -> None:
        """Spooled requests this process can no longer send: counted and reported."""
        error = UndeliveredError(f"spooled events not delivered: {why}")
        self._ledger.drop_requests("spool_lost", requests, error)

    def close(self) -> None:
        """Close the spool (rows stay on disk for the next start)."""
        if self.spool is not None:
            self.spool.close()


def _nothing(job: Job) -> None:
    """No one to tell about an evicted job (before a job runner is attached)."""
