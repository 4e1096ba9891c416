"""Jobs on their way: handed to a sender, run there, and settled or parked.

A job is dispatched to one of the :class:`Senders` unless the circuit keeps
requests back, or every sender is busy while the queue fills past half: then it
is parked at once (to the spool when there is one) so the worker keeps draining.
On its sender the job runs the attempt loop; its outcome is settled here, in one
place: delivered or refused (its spool row goes), or parked for a later attempt.

A batch's user upserts go out side by side, like events (as many at once as
senders run); its events wait until every one of them has an outcome
(:class:`Upserts`), then are handed back to the worker to dispatch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from .._compat import suppressed_instrumentation
from .._errors import UndeliveredError
from . import threads
from .attempt import Attempts
from .batches import Batches
from .ledger import Ledger
from .parked import Job, Parked
from .policy import CircuitBreaker
from .senders import MAX_CONCURRENT_REQUESTS, Senders

__all__ = ["SLOT_POLL", "JobRunner", "Upserts"]

#: How long dispatch waits for a free sender before checking the queue again (seconds).
SLOT_POLL: Final = 0.05


class Upserts:
    """A batch's user upserts on their way; its events are released when all have an outcome."""

    def __init__(self, count: int, events: Sequence[Job], release: Callable[[list[Job]], None]):
        self._left = count
        self._events = list(events)
        self._release = release
        self._lock = threads.Lock()

    def one_done(self) -> None:
        """One upsert was sent, refused or parked: after the last, the events may go."""
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._release(self._events)


class JobRunner:
    """Dispatches, runs and settles the jobs of one pipeline."""

    def __init__(
        self,
        *,
        attempts: Attempts,
        parked: Parked,
        circuit: CircuitBreaker,
        ledger: Ledger,
        batches: Batches,
        wake: threads.Event,
        stop: threads.Event,
        queue_filling: Callable[[], bool],
        when_stopped: Callable[[], None],
        clock: Callable[[], float],
    ) -> None:
        self._attempts = attempts
        self._parked = parked
        self._circuit = circuit
        self._ledger = ledger
        self._batches = batches
        self._wake = wake
        self._stop = stop
        self._queue_filling = queue_filling
        self._when_stopped = when_stopped  # e.g. close the HTTP client
        self._clock = clock
        self.senders: Senders[Job] = Senders(self._run)
        # Events whose batch's upserts all have their outcome: the worker dispatches them.
        self._ready: deque[Job] = deque()
        parked.on_evicted = self._evicted

    def after_fork(self, batches: Batches) -> None:
        """In a forked child: no sender threads, the child's own batch numbers."""
        self.senders.after_fork()
        self._batches = batches
        self._ready = deque()

    def release(self, jobs: list[Job]) -> None:
        """``jobs`` may go now (their batch's upserts are answered): at the worker's next turn.

        Once stopping, the worker may have made its last turn: parked here instead.
        """
        self._ready.extend(jobs)
        self._wake.set()
        if self._stop.is_set():
            for job in self.take_ready():  # whoever takes a job parks it: once each
                self.park(job, source="in_flight")

    def take_ready(self) -> list[Job]:
        """The jobs released since the last call (already open in their batch, and counted
        in flight)."""
        jobs = []
        while self._ready:
            jobs.append(self._ready.popleft())
        return jobs

    @staticmethod
    def _reached(job: Job) -> None:
        """``job`` has its first outcome: tell whoever waits on it (once)."""
        after, job.after = job.after, None
        if after is not None:
            after()

    @property
    def concurrency(self) -> int:
        """Requests allowed out at once: one until the API answered and after a failure
        (a slow start), else all."""
        return 1 if self._circuit.cautious else MAX_CONCURRENT_REQUESTS

    def dispatch(
        self, job: Job, deadline: float, *, source: str | None = None, tracked: bool = False
    ) -> None:
        """Hand ``job`` to a sender, or park it (circuit closed to it, senders all busy)."""
        if not tracked:
            self._batches.opened(job.seq)
        job.deadline = deadline
        self._ledger.move_request(job.request, source, "in_flight")
        while not self._stop.is_set() and self._circuit.ready():
            try:
                if self.senders.submit(job, SLOT_POLL, limit=self.concurrency):
                    return
            except RuntimeError:  # no sender thread could be started: kept for later
                self._ledger.error("senders", "vf-otel could not start a sender", exc_info=True)
                break
            if self._queue_filling() or self._clock() >= deadline:
                break  # the queue is filling while every sender is busy: park, keep draining
        self.park(job, source="in_flight")
        for current in job.then:
            self.park(current, source="in_flight")  # chained: counted in flight already
        job.then = []

    def park(self, job: Job, *, source: str | None = None, narrowed: bool = False) -> None:
        """Keep ``job`` for a later attempt (memory or spool); dropped, counted, if stopping."""
        stopping = self._stop.is_set()
        self._reached(job)
        where = self._parked.park(job, source=source, narrowed=narrowed, stopping=stopping)
        job.outcome = where
        if where == "dropped":
            # With the last error as its cause: held by a refused key, a redirect, an outage.
            error = self._ledger.undelivered("not delivered before shutdown")
            self._ledger.drop_requests("shutdown", [job.request], error)
        if where != "parked":
            self._settle(job, sent=False)
            return
        if job.done is not None:
            # deliver() waits for an answer, and "parked for later" is one: not sent now.
            job.done(False)
            job.done = None
        self._wake.set()  # a flush waiting on it may want it tried again

    def _evicted(self, job: Job) -> None:
        """``job`` was dropped from a full backlog (counted there): its batch is settled."""
        self._settle(job, sent=False)

    def park_everything(self) -> None:
        """Stopping: what memory holds goes to the spool, or is dropped (counted)."""
        for job in self._parked.take():
            self.park(job, source="parked")
        for job in self.take_ready():
            self.park(job, source="in_flight")

    # -- on a sender thread ---------------------------------------------------

    def _run(self, job: Job) -> None:
        """The job, then the jobs chained after it, in order."""
        chain = [job, *job.then]
        job.then = []
        for i, current in enumerate(chain):
            if current is not job:
                current.deadline = job.deadline  # in flight since it was chained
            if not self._run_one(current, chain[i + 1 :]):
                break  # shutdown gave it and the rest of the chain to the spool
        if self._stop.is_set() and self.senders.busy <= 1:
            self._when_stopped()  # the last request out at shutdown has its answer

    def _run_one(self, job: Job, rest: list[Job]) -> bool:
        """Run ``job``; False if shutdown took it (and ``rest``) over meanwhile."""
        if not self._parked.going(job, rest):
            return False  # shutdown is past its deadline: handed over without sending
        with suppressed_instrumentation():
            try:
                outcome, request = self._attempts.run(job.request, job.deadline)
            except Exception:  # noqa: BLE001 - counted and reported, never raised
                self._ledger.error("internal", "vf-otel delivery failed", exc_info=True)
                error = UndeliveredError("internal error in delivery")
                self._ledger.drop("internal_error", job.request.events, error)
                outcome, request = "refused", job.request
        if not self._parked.back(job):
            return False  # handed over at shutdown: spooled (or reported) and settled there
        before = job.request
        narrowed = request is not before
        job.request = request
        if outcome == "parked":
            # Events dead-lettered meanwhile (only an events request is ever narrowed).
            self._ledger.move(before.weight - request.weight, "in_flight", None)
            self.park(job, source="in_flight", narrowed=narrowed)
        else:
            self._ledger.move_request(before, "in_flight", None)
            self._parked.done(job)
            job.outcome = outcome
            self._settle(job, sent=outcome == "sent")
        return True

    def _settle(self, job: Job, *, sent: bool) -> None:
        self._reached(job)
        self._batches.settled(job.seq)
        if job.done is not None:
            job.done(sent)
        self._wake.set()
