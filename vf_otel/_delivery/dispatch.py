"""Dispatch: the worker, the jobs it hands to sender threads, the batches flush() waits for."""

from __future__ import annotations

import logging
import operator
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from .._compat import suppressed_instrumentation
from .._config import Settings
from .._errors import UndeliveredError
from .._event.build import SAME_AS_IDENTIFY, count_events
from .._event.model import Event
from . import threads
from .attempt import Attempts
from .ledger import Ledger, State
from .parked import Job, Parked
from .policy import CircuitBreaker, Gather, Pace
from .queue import REFUSALS, EventQueue, QueueBytes
from .threads import mark_delivery_thread
from .wire import EVENTS_PATH, USERS_PATH, Request, prepare

__all__ = [
    "MAX_CONCURRENT_REQUESTS",
    "SLOT_POLL",
    "Batches",
    "JobRunner",
    "Receipt",
    "Senders",
    "Upserts",
    "Waiter",
    "Worker",
]


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of the events handed to :meth:`Worker.deliver` by its timeout.

    ``sent``, ``spooled`` (durable: delivered later, even after a crash) and ``refused``
    (dead-lettered, or dropped while built: counted and reported) are events;
    ``unsettled`` counts requests with none of those outcomes yet (parked in memory,
    still out at the timeout, dropped at shutdown), user upserts included.
    """

    sent: int = 0
    spooled: int = 0
    refused: int = 0
    unsettled: int = 0

    @classmethod
    def of(cls, jobs: list[Job], *, dropped: int) -> Receipt:
        """The receipt for a batch's ``jobs`` as they are now (``dropped``: events lost
        while its requests were built)."""
        counts = {"sent": 0, "spooled": 0, "refused": dropped}
        unsettled = 0
        for job in jobs:
            if job.outcome not in counts:
                unsettled += 1
            elif job.request.path == EVENTS_PATH:
                counts[job.outcome] += len(job.request.events)
        return cls(counts["sent"], counts["spooled"], counts["refused"], unsettled)

    @property
    def all_sent(self) -> bool:
        """Every event was accepted by the API."""
        return self.spooled == self.refused == self.unsettled == 0

    @property
    def durable(self) -> bool:
        """Every event was delivered, spooled or refused for good: none can be lost now."""
        return self.unsettled == 0


# The worker: one thread that turns the queue into requests and sends them through senders.
#
# Each turn of its loop, in order (posthog's consumer reads the same way):
#
# 1. take what is due from the queue (a full batch, the interval passed, a flush
#    or shutdown asked, or a partial batch the gather window lets go: see
#    ``policy.Gather``), build the Events, prepare requests, dispatch them;
# 2. when the circuit lets requests through, dispatch what is parked (memory,
#    then the spool's rows this process may claim);
# 3. answer the flushes whose batches are all settled, or that cannot finish in time;
# 4. sleep until the next of: a full batch (or the first event, when it would go
#    at once), the interval, the gather window's end, the circuit's next permit, a
#    sender finishing, a flush, shutdown.
#
# Requests run on :class:`Senders` threads, a few at once, never on this thread: a
# hung request delays only itself. When every sender is busy and the queue is
# filling, or the circuit is open, a request is parked at once (to the spool
# when there is one) instead of waiting, so the queue keeps draining.

T = TypeVar("T")
#: Parked requests are tried again at most this often, whatever flush_interval says.
MIN_REPLAY_INTERVAL: Final = 0.1
#: The longest a stop waits for sender threads that finish their last request.
SENDERS_JOIN: Final = 0.5
_NAME: Final = operator.attrgetter("name")


class Worker:
    """Owns the delivery thread of one pipeline and the bookkeeping flush() relies on."""

    def __init__(
        self,
        settings: Settings,
        *,
        queue: EventQueue[T],
        build: Callable[[list[T]], list[Event]],
        parked: Parked,
        circuit: CircuitBreaker,
        attempts: Attempts,
        ledger: Ledger,
        wake: threads.Event,
        stop: threads.Event,
        when_stopped: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._build = build
        self._parked = parked
        self._circuit = circuit
        self._attempts = attempts
        self._ledger = ledger
        self._wake = wake
        self._stop = stop
        self._clock = clock
        self._batches = Batches()
        self._jobs = JobRunner(
            attempts=attempts,
            parked=parked,
            circuit=circuit,
            ledger=ledger,
            batches=self._batches,
            wake=wake,
            stop=stop,
            queue_filling=lambda: len(queue) * 2 > queue.limit,
            when_stopped=when_stopped,
            clock=clock,
        )
        self._pace = Pace(
            queue=queue,
            max_queue_size=settings.max_queue_size,
            stop=stop,
            flush_waiting=lambda: self._batches.waiting,
            patience=settings.flush_interval,
        )
        self._interval = settings.flush_interval
        self._gather = Gather(settings.flush_interval, enabled=settings.adaptive_batching)
        self._bytes = QueueBytes(queue, settings.max_queue_size, settings.max_queue_bytes)
        self._replay_every = max(MIN_REPLAY_INTERVAL, settings.flush_interval)
        self._warned = dict.fromkeys(REFUSALS, 0)
        self._replay_now = True
        self._take_now = False
        self._thread: threads.Thread | None = None

    def start(self) -> None:
        """Start the thread (again, in a forked child)."""
        self._thread = threads.Thread(self._loop, "VibefollowWorker")
        self._thread.start()

    def hurry(self) -> None:
        """Someone waits for the worker (a flush, a shutdown): no more stepping back."""
        self._pace.hurry()

    def replay_soon(self) -> None:
        """The circuit changed: try what is parked at the next turn."""
        self._replay_now = True
        self._wake.set()

    # -- the app's side -------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait until every batch queued before now is settled; False at ``timeout``."""
        waiter = self._batches.ask(self._clock() + timeout)
        # Even if this caller stops waiting at once: send what is queued, try what is
        # parked, and look at the spool again (rows other processes freed meanwhile).
        self._take_now = self._replay_now = True
        self._parked.spool_dirty = self._parked.spool is not None
        self.hurry()
        self._queue.wake()
        answered = waiter.done.wait(max(0.0, timeout))
        self._batches.withdraw(waiter)
        return answered and waiter.answer

    def deliver(self, events: Sequence[Event], timeout: float) -> Receipt:
        """Send ``events`` now; what became of them by ``timeout``.

        The same dispatch as a batch taken from the queue (:meth:`_send`): the user
        upserts first, the events once every upsert has an outcome.
        """
        # An identify() is an upsert only: not an event.
        wanted = len(events) - list(map(SAME_AS_IDENTIFY, map(_NAME, events))).count(True)
        self._ledger.enqueued(wanted)
        requests = prepare(events, self._settings, self._ledger)
        # An event dropped while its request was built (too large, no base URL) is not sent.
        kept = sum(len(r.events) for r in requests if r.path == EVENTS_PATH)
        deadline = self._clock() + timeout
        finished = threads.Semaphore(0)
        jobs: list[Job] = []

        def done(sent: bool) -> None:
            finished.release()

        self._send(requests, deadline, done, made=jobs)
        for _ in requests:  # each job's done() is called once: settled or parked
            if not finished.acquire(timeout=max(0.0, deadline - self._clock())):
                break
        return Receipt.of(jobs, dropped=wanted - kept)

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the thread, then the senders, to end (after stop is set)."""
        end = self._clock() + timeout
        thread = self._thread
        if thread is not None and not thread.is_current():
            thread.join(max(0.0, timeout))
        self._jobs.senders.stop(timeout=min(SENDERS_JOIN, max(0.0, end - self._clock())))

    # -- the loop -------------------------------------------------------------

    def _loop(self) -> None:
        mark_delivery_thread()
        next_batch = self._clock() + self._interval
        next_replay = self._clock()
        while True:
            self._queue.rearm(self._wake.clear)
            stopping = self._stop.is_set()
            try:
                self._warn_refusals()
                now = self._clock()
                flushing = stopping or self._take_now
                self._take_now = False
                self._dispatch_ready()
                # A partial batch when the window lets it; with a full one queued, full
                # batches only (below): the crumbs wait for the next window.
                queued = len(self._queue)
                early = 0 < queued < self._settings.batch_size and self._sends_partial(now)
                everything = flushing or early or now >= next_batch
                if everything or queued >= self._settings.batch_size:
                    self._take_queue(everything=everything)
                    next_batch = now + self._interval
                if now >= next_replay and self._parked.spool is not None:
                    self._parked.spool_dirty = True  # rows freed by others, or by a lease ending
                due = self._replay_now or self._batches.waiting or now >= next_replay
                # Stopping with the API unreachable: what is parked stays in the spool.
                gave_up = self._attempts.gave_up
                if not stopping and due and not gave_up and self._replay():
                    next_replay = now + self._replay_every
                self._batches.answer(lambda: self._parked.claimable() == 0, self._hopeless)
            except Exception:  # noqa: BLE001 - the thread must outlive one bad turn
                self._ledger.error("worker", "vf-otel delivery worker failed", exc_info=True)
            if stopping and len(self._queue) == 0:
                self._jobs.park_everything()
                return
            # Before _sleep_for reads the queue's length: an item put from here on is
            # either seen there or wakes this thread (see EventQueue.wake_early).
            self._queue.wake_early(self._sends_partial(self._clock()))
            self._wake.wait(self._sleep_for(next_batch, next_replay))

    def _sends_partial(self, now: float) -> bool:
        """Whether a partial batch goes at once: its gather window is over, no request of
        this pipeline is in flight and the API is not failing (see ``policy.Gather``)."""
        return (
            now >= self._gather.opens_at(now)
            and self._jobs.senders.busy == 0
            and not self._circuit.failing
        )

    def _sleep_for(self, next_batch: float, next_replay: float) -> float:
        now = self._clock()
        waits = [self._interval if len(self._queue) == 0 else next_batch - now]
        if len(self._parked) or self._parked.spool_dirty:
            waits.append(self._replay_wait(next_replay, now))
        deadline = self._batches.earliest_deadline()
        if deadline is not None:
            waits.append(deadline - now)
        opens = self._gather.opens_at(now)
        if len(self._queue) and self._sends_partial(now):
            waits.append(0.0)  # put since this turn took the queue: take it now
        elif now < opens < float("inf"):
            waits.append(opens - now)  # then send what gathered, or wake at the next event
        return max(0.001, min(waits))

    def _replay_wait(self, next_replay: float, now: float) -> float:
        """How long until what is parked is tried again.

        The later of the circuit's next permit and the next scheduled replay; but when
        the circuit holds back a replay that was asked for (a flush waits, or the circuit
        changed), only until it lets a request through: a flush after an outage must not
        sit idle until the next scheduled replay (``flush_interval`` away) and time out
        meanwhile. With the circuit ready, a replay that could not go (every sender busy)
        waits for a sender's end, which wakes this thread, or the next scheduled replay.
        """
        ready = self._circuit.seconds_until_ready()
        if ready == float("inf"):
            ready = 1.0  # a probe is out: its end wakes this thread, this only bounds it
        if ready > 0.0 and (self._replay_now or self._batches.waiting):
            return ready
        return max(ready, next_replay - now)

    def _take_queue(self, *, everything: bool) -> None:
        # Only flushes asked before the take began: their events are in the queue now,
        # so the take below covers them. A later one waits for the next turn.
        asked = self._batches.unassigned()
        size = self._settings.batch_size
        taken = 0
        while len(self._queue) >= (1 if everything else size):
            if not everything:
                self._pace.pause()  # a full batch in the middle of a burst: the app first
            items = self._queue.take(size)
            taken += len(items)
            # Counted in flight from here, so stats() never loses sight of them while
            # they are built (a producer pacing itself on queued + backlog relies on it).
            # Events only: a refusal is counted apart, an identify() is a user upsert.
            building = count_events(items)
            self._ledger.move(building, None, "in_flight")
            try:
                requests = self._requests_for(items, building)
            finally:
                # Built: from here each request's job counts its own (dispatch, _chain),
                # so a dispatch that waits for a sender never counts them twice.
                self._ledger.move(building, "in_flight", None)
            self._send(requests)
        self._batches.assign(asked)
        self._gather.took(taken, self._clock())

    def _requests_for(self, items: list[Any], events: int) -> list[Request]:
        """The requests for a batch of queued items (``events`` of them events, as
        ``count_events`` counts); every event is counted whatever happens.

        Each event is guarded where it is built and encoded; if something no guard
        foresaw fails anyway, the events not counted yet are dropped as ``internal_error``
        and reported, never lost silently (what the build refused or before_send left
        out was counted already).
        """
        built: list[Event] | None = None
        try:
            # A refusal rides the queue only to be counted off the app's thread; an
            # identify() is a user upsert, counted in users_sent, not an event.
            self._ledger.enqueued(events)
            built = self._pace.in_steps(self._build, items)
            return prepare(
                built, self._settings, self._ledger, self._pace.in_steps, self._bytes.measured
            )
        except Exception:  # noqa: BLE001 - the last resort, see above
            self._ledger.error("worker", "vf-otel could not prepare a batch", exc_info=True)
            error = UndeliveredError("internal error while preparing a batch")
            lost = events if built is None else len(built)
            self._ledger.drop("internal_error", (), error, count=lost)
            return []

    def _send(
        self,
        requests: list[Request],
        deadline: float | None = None,
        done: Callable[[bool], None] | None = None,
        made: list[Job] | None = None,
    ) -> None:
        """Dispatch one batch's requests: the one way into dispatch, queue and exporters alike.

        ``deadline`` bounds every request of the batch (an exporter's wait); without
        it each request gets ``export_timeout`` from when it is dispatched. ``done``
        is called once per request, when it is settled or parked; ``made`` gets every
        job of the batch (for a receipt of their outcomes).
        """
        due = self._clock() + self._settings.export_timeout if deadline is None else deadline
        for job in self._chain(requests, deadline, done, made):
            self._jobs.dispatch(job, due)

    def _chain(
        self,
        requests: list[Request],
        deadline: float | None,
        done: Callable[[bool], None] | None,
        made: list[Job] | None = None,
    ) -> list[Job]:
        """The jobs to dispatch at once for a batch's requests, each tracked in its batch.

        Its user upserts go side by side; its events once every upsert has an outcome
        (the API buffers an event of an unknown user, but its traits come first). With
        no upsert, every request at once; with one upsert and one events request, the
        events chained after it on the same sender.
        """
        if not requests:
            return []
        seq = self._batches.next()
        jobs = [Job(request, seq, done=done) for request in requests]
        if made is not None:
            made.extend(jobs)
        upserts = [job for job in jobs if job.request.path == USERS_PATH]
        events = [job for job in jobs if job.request.path != USERS_PATH]
        if not upserts or not events:
            return jobs  # nothing waits for anything: side by side
        for job in events:
            self._batches.opened(job.seq)  # open now: the batch is not settled meanwhile
            # Counted in flight while they wait, so stats() never loses sight of them.
            self._ledger.move_request(job.request, None, "in_flight")
            if deadline is not None:
                job.deadline = deadline  # dispatched with it once released (_dispatch_ready)
        if len(upserts) == 1 and len(events) == 1:
            upserts[0].then = events  # no worker turn between them
            return upserts
        group = Upserts(len(upserts), events, self._jobs.release)
        for job in upserts:
            job.after = group.one_done
        return upserts

    def _dispatch_ready(self) -> None:
        """Dispatch the events whose batch's upserts all have their outcome."""
        jobs = self._jobs.take_ready()
        if jobs:
            deadline = self._clock() + self._settings.export_timeout
            for job in jobs:
                # An exporter's batch keeps the deadline its caller waits for (_chain).
                due = job.deadline or deadline
                self._jobs.dispatch(job, due, source="in_flight", tracked=True)

    def _replay(self) -> bool:
        """Dispatch parked jobs, as many as senders are free; True if it could try."""
        if not self._circuit.ready():
            return False
        self._replay_now = False
        # Half-open, at first, or after a failure: one at a time (the probe, a slow start).
        busy = self._jobs.senders.busy
        free = self._jobs.concurrency - busy
        if free <= 0:
            return False
        deadline = self._clock() + self._settings.export_timeout
        jobs = self._parked.take(free)  # still tracked: a parked job stays open for flush()
        for job in jobs:
            self._jobs.dispatch(job, deadline, source="parked", tracked=True)
        if not jobs and busy == 0:
            for job in self._parked.claim(free):
                self._jobs.dispatch(job, deadline)
        return True

    def _hopeless(self, waiter: Waiter) -> bool:
        """Nothing is in flight, and the circuit opens only after the flush's deadline or
        a request failed while stopping with a spool (the rest goes there at once)."""
        if self._jobs.senders.busy:
            return False
        if self._attempts.gave_up:
            return True
        return self._clock() + self._circuit.seconds_until_ready() > waiter.deadline

    def _warn_refusals(self) -> None:
        for reason, count in self._queue.refusals().items():
            new = count - self._warned[reason]
            if new > 0:
                self._warned[reason] = count
                self._ledger.warn_refused(reason, new)


# Jobs on their way: handed to a sender, run there, and settled or parked.
#
# A job is dispatched to one of the :class:`Senders` unless the circuit keeps
# requests back, or every sender is busy while the queue fills past half: then it
# is parked at once (to the spool when there is one) so the worker keeps draining.
# On its sender the job runs the attempt loop; its outcome is settled here, in one
# place: delivered or refused (its spool row goes), or parked for a later attempt.
#
# A batch's user upserts go out side by side, like events (as many at once as
# senders run); its events wait until every one of them has an outcome
# (:class:`Upserts`), then are handed back to the worker to dispatch.

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
        # A sender's end wakes the worker once its slot is free again: a wake-up from
        # ``_settle`` alone comes while the slot is still taken, and a worker that found
        # every sender busy then would sleep until the next replay or flush deadline.
        self.senders: Senders[Job] = Senders(self._run, freed=self._wake.set)
        # Events whose batch's upserts all have their outcome: the worker dispatches them.
        self._ready: deque[Job] = deque()
        parked.on_evicted = self._evicted

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
        self, job: Job, deadline: float, *, source: State | None = None, tracked: bool = False
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

    def park(self, job: Job, *, source: State | None = None, narrowed: bool = False) -> None:
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


# A few daemon threads that run requests, so one hung request does not stop the rest.
#
# Not a ``concurrent.futures`` pool: its threads are joined at interpreter exit,
# and a request the server never answers must not hold the process open. These
# are daemon threads, started as needed up to ``size``; a slot is taken before a
# job is handed over and given back when it ends, so at most ``size`` requests
# are out at once.

_logger = logging.getLogger("vf_otel")
#: Requests in flight at once, per handler or exporter.
MAX_CONCURRENT_REQUESTS: Final = 4


class Senders(Generic[T]):
    """Runs ``run(job)`` on up to ``size`` daemon threads; ``freed()`` after each job's
    slot is free again."""

    def __init__(
        self,
        run: Callable[[T], None],
        size: int = MAX_CONCURRENT_REQUESTS,
        *,
        freed: Callable[[], None] = lambda: None,
    ) -> None:
        self._run = run
        self._on_freed = freed
        self._size = size
        self._slots = threads.Semaphore(self._size)
        self._jobs: threads.SimpleQueue[T | None] = threads.SimpleQueue()
        self._lock = threads.Lock()
        self._threads: list[threads.Thread] = []
        self._idle = 0
        self._busy = 0
        # Set when a job ends: a submit held back by ``limit`` waits on it, not in a poll.
        self._freed = threads.Event()

    @property
    def busy(self) -> int:
        """Jobs running now."""
        return self._busy

    def submit(self, job: T, timeout: float, *, limit: int | None = None) -> bool:
        """Hand ``job`` to a free thread, waiting up to ``timeout`` for one; False if none.

        With ``limit``, only while fewer than ``limit`` jobs are running. RuntimeError
        when a thread was needed and none could be started (nothing is changed then).
        """
        if not self._slots.acquire(timeout=max(0.0, timeout)):
            return False
        with self._lock:
            if limit is not None and self._busy >= limit:
                self._slots.release()
                # Cleared under the lock that a job's end sets it under: no wake-up lost.
                self._freed.clear()
                busy = True
            else:
                busy = False
        if busy:
            self._freed.wait(max(0.0, timeout))  # a slot is free but the limit says wait
            return False
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._size:
                thread = threads.Thread(self._loop, "VibefollowSender")
                try:
                    thread.start()
                except RuntimeError:  # the interpreter is exiting, or no thread can be made
                    self._slots.release()
                    raise
                self._threads.append(thread)
                self._idle += 1
            self._busy += 1
            self._idle -= 1
        self._jobs.put(job)
        return True

    def stop(self, timeout: float) -> None:
        """Let every thread end once its current job is done; wait up to ``timeout`` for them.

        A thread still in a request (the server hangs) is left to finish alone.
        """
        with self._lock:
            started = list(self._threads)
        for _ in started:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for thread in started:
            if not thread.is_current():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        threads.mark_delivery_thread()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._run(job)
            except Exception:
                _logger.exception("vf-otel: a delivery job failed")
            finally:
                with self._lock:
                    self._busy -= 1
                    self._idle += 1
                    self._freed.set()
                self._slots.release()
                self._on_freed()


# What ``flush()`` waits for: batches numbered as the worker takes them, and who waits.
#
# The worker gives each batch it takes (and each exporter call) a number; every job
# of a batch counts as open until it is settled — delivered, refused for good,
# dropped, or spooled (the spool is then waited for on its own). A flush asked
# before a take waits for every batch up to the number the take ended with: the
# events queued before the flush are in those batches.


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
