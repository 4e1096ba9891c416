"""The worker: one thread that turns the queue into requests and sends them through senders.

Each turn of its loop, in order (posthog's consumer reads the same way):

1. take what is due from the queue (a full batch, the interval passed, a flush
   or shutdown asked), build the Events, prepare requests, dispatch them;
2. when the circuit lets requests through, dispatch what is parked (memory,
   then the spool's rows this process may claim);
3. answer the flushes whose batches are all settled, or that cannot finish in time;
4. sleep until the next of: a full batch, the interval, the circuit's next
   permit, a sender finishing, a flush, shutdown.

Requests run on :class:`Senders` threads, a few at once, never on this thread: a
hung request delays only itself. When every sender is busy and the queue is
filling, or the circuit is open, a request is parked at once (to the spool
when there is one) instead of waiting, so the queue keeps draining.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

from .._compat import suppressed_instrumentation
from .._config import Settings
from .._errors import UndeliveredError
from .._event.model import Event
from .._event.validate import IDENTIFY, Rejection
from .accounting import Ledger
from .attempt import Attempts
from .parked import Job, Parked
from .policy import CircuitBreaker
from .queue import REFUSALS, EventQueue
from .requests import PAUSE_EVERY, prepare
from .senders import MAX_CONCURRENT_REQUESTS, Senders, mark_delivery_thread
from .wire import EVENTS_PATH, Request

__all__ = ["Worker"]

_logger = logging.getLogger("vf_otel")
T = TypeVar("T")
#: How long dispatch waits for a free sender before checking the queue again (seconds).
SLOT_POLL: Final = 0.05
#: Parked requests are tried again at most this often, whatever flush_interval says.
MIN_REPLAY_INTERVAL: Final = 0.1
#: How long the worker pauses every PAUSE_EVERY events of a batch (see _pause).
PAUSE_SECONDS: Final = 0.0


class _Flush:
    """One caller of flush(): the batches it waits for, and its answer."""

    __slots__ = ("answer", "deadline", "done", "target")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.target: int | None = None  # set by the worker once the queue was taken
        self.done = threading.Event()
        self.answer = False

    def resolve(self, answer: bool) -> None:
        self.answer = answer
        self.done.set()


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
        wake: threading.Event,
        stop: threading.Event,
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
        self._when_stopped = when_stopped  # e.g. close the HTTP client
        self._clock = clock
        self._senders: Senders[Job] = Senders(self._run)
        self._interval = settings.flush_interval
        self._replay_every = max(MIN_REPLAY_INTERVAL, settings.flush_interval)
        self._reset()

    def _reset(self) -> None:
        # Re-entrant: a SIGTERM hook may flush() while the main thread is inside flush().
        self._lock = threading.RLock()
        self._open: Counter[int] = Counter()  # batch seq -> jobs in flight or parked in memory
        self._seq = 0
        self._flushes: list[_Flush] = []
        self._warned = dict.fromkeys(REFUSALS, 0)
        self._replay_now = True
        self._take_now = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (again, in a forked child)."""
        self._thread = threading.Thread(target=self._loop, name="VibefollowWorker", daemon=True)
        self._thread.start()

    def after_fork(self) -> None:
        """In a forked child: no thread, no senders, nothing in flight."""
        self._senders.after_fork()
        self._reset()

    def replay_soon(self) -> None:
        """The circuit changed: try what is parked at the next turn."""
        self._replay_now = True
        self._wake.set()

    # -- the app's side -------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait until every batch queued before now is settled; False at ``timeout``."""
        waiter = _Flush(self._clock() + timeout)
        with self._lock:
            self._flushes.append(waiter)
            # Even if this caller stops waiting at once: send what is queued, try what is
            # parked, and look at the spool again (rows other processes freed meanwhile).
            self._take_now = self._replay_now = True
            self._parked.spool_dirty = self._parked.spool is not None
        self._queue.wake()
        answered = waiter.done.wait(max(0.0, timeout))
        with self._lock:
            if waiter in self._flushes:
                self._flushes.remove(waiter)
        return answered and waiter.answer

    def deliver(self, events: Sequence[Event], timeout: float) -> bool:
        """Send ``events`` now from the caller's thread; True once all were accepted."""
        wanted = sum(event.name != IDENTIFY for event in events)  # identify(): an upsert only
        self._ledger.enqueued(wanted)
        seq = self._next_seq()
        requests = prepare(events, self._settings, self._ledger)
        jobs = [Job(r, seq) for r in requests]
        # An event dropped while its request was built (too large, no base URL) is not sent.
        kept = sum(len(r.events) for r in requests if r.path == EVENTS_PATH)
        deadline = self._clock() + timeout
        results: list[bool] = [kept == wanted]
        finished = threading.Semaphore(0)

        def done(sent: bool) -> None:
            results.append(sent)
            finished.release()

        for job in jobs:
            job.done = done
            self._dispatch(job, deadline)
        for _ in jobs:
            if not finished.acquire(timeout=max(0.0, deadline - self._clock())):
                return False
        return all(results)

    def join(self, timeout: float) -> None:
        """Wait for the thread to end (after stop is set)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, timeout))
        self._senders.stop(timeout=0.5)

    @property
    def in_flight_requests(self) -> int:
        """Requests being sent now."""
        return self._senders.busy

    # -- the loop -------------------------------------------------------------

    def _loop(self) -> None:
        mark_delivery_thread()
        next_batch = self._clock() + self._interval
        next_replay = self._clock()
        while True:
            self._wake.clear()
            stopping = self._stop.is_set()
            try:
                self._warn_refusals()
                now = self._clock()
                flushing = stopping or self._take_now
                self._take_now = False
                if flushing or now >= next_batch or len(self._queue) >= self._settings.batch_size:
                    self._take_queue(everything=flushing or now >= next_batch)
                    next_batch = now + self._interval
                if now >= next_replay and self._parked.spool is not None:
                    self._parked.spool_dirty = True  # rows freed by others, or by a lease ending
                due = self._replay_now or self._flushes or now >= next_replay
                if not stopping and due and self._replay():
                    next_replay = now + self._replay_every
                self._answer_flushes()
            except Exception:  # noqa: BLE001 - the thread must outlive one bad turn
                self._ledger.error("worker", "vf-otel delivery worker failed", exc_info=True)
            if stopping and len(self._queue) == 0:
                self._park_everything()
                return
            self._wake.wait(self._sleep_for(next_batch, next_replay))

    def _sleep_for(self, next_batch: float, next_replay: float) -> float:
        now = self._clock()
        waits = [self._interval if len(self._queue) == 0 else next_batch - now]
        if len(self._parked) or self._parked.spool_dirty:
            ready = self._circuit.seconds_until_ready()
            waits.append(max(ready if ready != float("inf") else 1.0, next_replay - now))
        if self._flushes:
            waits.append(min(f.deadline for f in self._flushes) - now)
        return max(0.001, min(waits))

    def _take_queue(self, *, everything: bool) -> None:
        # Only flushes asked before the take began: their events are in the queue now,
        # so the take below covers them. A later one waits for the next turn.
        with self._lock:
            asked = [f for f in self._flushes if f.target is None]
        size = self._settings.batch_size
        while len(self._queue) >= (1 if everything else size):
            items = self._queue.take(size)
            # Counted in flight from here, so stats() never loses sight of them while
            # they are built (a producer pacing itself on queued + backlog relies on it).
            self._ledger.move(len(items), None, "in_flight")
            # A refusal rides the queue only to be counted off the app's thread; an
            # identify() is a user upsert, counted in users_sent, not an event.
            self._ledger.enqueued(sum(_is_event(item) for item in items))
            try:
                events = self._build_politely(items)
                job = self._chain(prepare(events, self._settings, self._ledger, self._pause))
                if job is not None:
                    self._dispatch(job, self._clock() + self._settings.export_timeout)
            finally:
                self._ledger.move(len(items), "in_flight", None)
        with self._lock:
            for waiter in asked:
                waiter.target = self._seq

    def _build_politely(self, items: list[Any]) -> list[Event]:
        """The batch's Events, built PAUSE_EVERY items at a time with a pause after each."""
        events: list[Event] = []
        for start in range(0, len(items), PAUSE_EVERY):
            events += self._build(items[start : start + PAUSE_EVERY])
            self._pause()
        return events

    def _pause(self) -> None:
        """Let the app's threads run, unless someone waits for the worker or the queue fills.

        A thread waiting for the GIL gets it only when the holder lets go: at the
        latest after the switch interval (5 ms), a long time on a request path. A
        batch takes a few ms to build and encode, so the worker lets go every
        PAUSE_EVERY events (a sleep releases the GIL even when it does not wait).
        Not while a flush() or shutdown waits for the batch: handing the GIL back
        and forth costs time they would wait; nor when the queue is half full: then
        the worker takes its share of the GIL, so that the queue drains.
        """
        if self._flushes or self._stop.is_set():
            return
        if len(self._queue) * 2 <= self._settings.max_queue_size:
            time.sleep(PAUSE_SECONDS)

    def _chain(self, requests: list[Request]) -> Job | None:
        """One job for a batch's requests, sent in order (upserts first), tracked each."""
        if not requests:
            return None
        seq = self._next_seq()
        first, *rest = (Job(request, seq) for request in requests)
        first.then = rest
        for job in rest:
            self._track(job)
        return first

    def _replay(self) -> bool:
        """Dispatch parked jobs, as many as senders are free; True if it could try."""
        if not self._circuit.ready():
            return False
        self._replay_now = False
        # Half-open or after a failure: one at a time (the probe, then a slow start).
        limit = 1 if self._circuit.failing else MAX_CONCURRENT_REQUESTS
        free = limit - self._senders.busy
        if free <= 0:
            return False
        deadline = self._clock() + self._settings.export_timeout
        jobs = self._parked.take(free)  # still tracked: a parked job stays open for flush()
        for job in jobs:
            self._dispatch(job, deadline, source="parked", tracked=True)
        if not jobs and self._senders.busy == 0:
            for job in self._parked.claim(free):
                self._dispatch(job, deadline)
        return True

    # -- dispatching and settling --------------------------------------------

    def _next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def _track(self, job: Job) -> None:
        with self._lock:
            self._open[job.seq] += 1

    def _dispatch(
        self, job: Job, deadline: float, *, source: str | None = None, tracked: bool = False
    ) -> None:
        """Hand ``job`` to a sender, or park it (circuit closed to it, senders all busy)."""
        if not tracked:
            self._track(job)
        job.deadline = deadline
        self._ledger.move(job.weight, source, "in_flight")
        while True:
            if self._stop.is_set() or not self._circuit.ready():
                break
            # After a failure, one request at a time until one succeeds (a slow start):
            # a struggling API is not hit by every sender at once.
            limit = 1 if self._circuit.failing else MAX_CONCURRENT_REQUESTS
            if self._senders.submit(job, SLOT_POLL, limit=limit):
                return
            if len(self._queue) * 2 > self._settings.max_queue_size or self._clock() >= deadline:
                break  # the queue is filling while every sender is busy: park, keep draining
        self._park(job, source="in_flight")
        for current in job.then:
            self._park(current)
        job.then = []

    def _run(self, job: Job) -> None:
        """On a sender thread: the job, then the jobs chained after it, in order."""
        for current in [job, *job.then]:
            if current is not job:
                current.deadline = job.deadline
                self._ledger.move(current.weight, None, "in_flight")
            self._run_one(current)
        job.then = []
        if self._stop.is_set() and self._senders.busy <= 1:
            self._when_stopped()  # the last request out at shutdown has its answer

    def _run_one(self, job: Job) -> None:
        with suppressed_instrumentation():
            try:
                outcome, request = self._attempts.run(job.request, job.deadline)
            except Exception:  # noqa: BLE001 - counted and reported, never raised
                self._ledger.error("internal", "vf-otel delivery failed", exc_info=True)
                error = UndeliveredError("internal error in delivery")
                self._ledger.drop("internal_error", job.request.events, error)
                outcome, request = "refused", job.request
        narrowed = request is not job.request
        weight = job.weight
        job.request = request
        if outcome == "parked":
            self._ledger.move(weight - job.weight, "in_flight", None)  # dead-lettered meanwhile
            self._park(job, source="in_flight", narrowed=narrowed)
        else:
            self._ledger.move(weight, "in_flight", None)
            self._parked.done(job)
            self._settle(job, sent=outcome == "sent")

    def _park(self, job: Job, *, source: str | None = None, narrowed: bool = False) -> None:
        stopping = self._stop.is_set()
        where = self._parked.park(job, source=source, narrowed=narrowed, stopping=stopping)
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

    def _settle(self, job: Job, *, sent: bool) -> None:
        with self._lock:
            self._open[job.seq] -= 1
            if self._open[job.seq] <= 0:
                del self._open[job.seq]
        if job.done is not None:
            job.done(sent)
        self._wake.set()

    def _park_everything(self) -> None:
        """Stopping: what memory holds goes to the spool, or is dropped (counted)."""
        for job in self._parked.take():
            self._park(job, source="parked")

    # -- flushes --------------------------------------------------------------

    def _answer_flushes(self) -> None:
        with self._lock:
            waiting = [f for f in self._flushes if f.target is not None]
            oldest = min(self._open, default=None)
        if not waiting:
            return
        claimable: int | None = None
        for waiter in waiting:
            target = waiter.target or 0
            if oldest is None or oldest > target:
                if claimable is None:
                    claimable = self._parked.claimable()
                if claimable == 0:
                    self._resolve(waiter, True)
                    continue
            if self._hopeless(waiter):
                self._resolve(waiter, False)

    def _resolve(self, waiter: _Flush, answer: bool) -> None:
        with self._lock:
            if waiter in self._flushes:
                self._flushes.remove(waiter)
        waiter.resolve(answer)

    def _hopeless(self, waiter: _Flush) -> bool:
        """Nothing is in flight and the circuit opens only after the flush's deadline."""
        if self._senders.busy:
            return False
        return self._clock() + self._circuit.seconds_until_ready() > waiter.deadline

    def _warn_refusals(self) -> None:
        for reason, count in self._queue.refusals().items():
            new = count - self._warned[reason]
            if new > 0:
                self._warned[reason] = count
                self._ledger.warn_refused(reason, new)


def _is_event(item: object) -> bool:
    """Whether a queued item stands for an event (not a refusal, not an identify())."""
    if isinstance(item, tuple):
        return bool(item[0] != IDENTIFY)
    return not isinstance(item, Rejection)
