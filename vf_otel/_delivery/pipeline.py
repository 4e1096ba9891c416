"""The delivery of one handler or exporter: queue, worker, senders, parked requests, counts.

    app thread ──submit──► EventQueue ──► Worker ──build, prepare──► Senders ──► Attempts ──► API
    exporter ──deliver──────────────────────────────────────────────┘    │ parked
                                                   Parked (memory / spool) ◄┘

The handler submits log calls to the queue; the exporters, whose SDK processor
already buffers, deliver each batch straight away and learn whether it landed.
Everything after that is shared: one attempt loop, one circuit, one ledger.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Final

import httpx

from .._config import Settings
from .._event.model import Event
from .._event.pending import PendingEvent
from .._event.validate import Rejection
from .._spool.store import Spool
from ..typing import BeforeSend, ErrorCallback
from . import threads
from .attempt import Attempts
from .client import Client
from .ledger import Ledger
from .modes import Discard, enable_debug_output, show, shown
from .parked import LEASE_MARGIN, Parked
from .policy import CircuitBreaker
from .queue import EventQueue
from .screen import Screen, build_counted
from .senders import on_delivery_thread
from .serverless import watch_lambda
from .stats import Stats
from .stopping import exiting, say_late_at_exit, warn_undelivered
from .uwsgi import watch_uwsgi
from .worker import Receipt, Worker

__all__ = ["Item", "Pipeline", "live_pipelines"]

_logger = logging.getLogger("vf_otel")
#: What the queue holds: a built Event, a log call's tags, or a refusal to count.
Item = Event | PendingEvent | Rejection
#: How long shutdown waits for the worker to park what is left (it sends nothing).
_JOIN_LIMIT: Final = 2.0
#: Every pipeline that delivers, weakly: for hooks that act on them all (uWSGI's
#: post-fork, the Lambda runtime's result call), which no single handler owns.
_LIVE: Final[weakref.WeakSet[Pipeline]] = weakref.WeakSet()
#: The part of a stop's time kept for parking what is left (at most a tenth of it).
_STOP_RESERVE: Final = 0.5
#: The least shutdown waits for the worker to end, even with no time left (shutdown(0)).
_JOIN_FLOOR: Final = 0.05


class Pipeline:
    """Accepts events on any thread and delivers them from its own threads."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_error: ErrorCallback | None = None,
        before_send: BeforeSend | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        reopenable: bool = False,
    ) -> None:
        self.settings = settings
        self._transport = transport
        self._clock = clock
        self.ledger = Ledger(on_error)
        self._screen = Screen(before_send, self.ledger)  # the app's before_send, counted
        # Delivery off (enabled=False): items are only counted; no thread, spool or request.
        self._discard = None if settings.enabled else Discard(debug=settings.debug)
        if settings.debug:
            enable_debug_output()
        self._spool: Spool | None = None
        if settings.spool_path is not None and self._discard is None:
            lease = settings.export_timeout + settings.timeout + LEASE_MARGIN
            self._spool = Spool(settings.spool_path, settings.spool_max_bytes, lease=lease)
            self._spool.open()  # a bad path is reported now, not at the first outage
        self._closed = False
        self._said_late_at_exit = False
        self._failures_seen = 0
        # At exit, logging.shutdown() calls flush() then close(): one deadline for both.
        self._exit_by: float | None = None
        # Held by shutdown() and reopen(), so the two never interleave.
        self._lifecycle = threads.Lock()
        self._build_parts()
        if reopenable:
            self.queue.reopen = self.reopen
        #: What the app's thread calls to hand over an item: the queue's own ``put``
        #: (the handler binds it once), unless delivery is off or debug shows each item.
        self.put: Callable[[Item], bool] = self.queue.put
        if self._discard is not None:
            self.put = self._discard.put
            return  # nothing to run: no worker, no fork hook
        if settings.debug:
            self.put = shown(self.queue.put)
        self._worker.start()
        _LIVE.add(self)
        if hasattr(os, "register_at_fork"):
            ref = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: _call(ref))
        watch_uwsgi()  # uWSGI forks in C: Python's at-fork hooks above may never run
        watch_lambda()  # Lambda freezes the sandbox once the result is posted

    def _build_parts(
        self,
        queue: EventQueue[Item] | None = None,
        *,
        reopening: bool = False,
        keep_queued: bool = False,
    ) -> None:
        settings = self.settings
        self._pid = os.getpid()  # whose threads these parts are (see adopt_fork)
        self._wake = threads.Event()
        self._stop = threads.Event()
        if queue is None:
            queue = EventQueue(settings.max_queue_size, settings.batch_size, self._wake.set)
        elif reopening:
            # The same queue object, its items and counts: a handler holds its bound put().
            queue.rewire(self._wake.set)
        else:
            # The same queue object (emptied): a handler holds its bound put().
            queue.after_fork(self._wake.set, keep_items=keep_queued)
        self.queue: EventQueue[Item] = queue
        self._client = Client(settings, self._transport)
        self.circuit = CircuitBreaker(clock=self._clock, on_change=self._circuit_changed)
        self.parked = Parked(settings.max_queue_size, self.ledger, self._spool)
        attempts = self._attempts = Attempts(
            settings, self._client, self.circuit, self.ledger, stop=self._stop, clock=self._clock
        )
        self._worker = Worker(
            settings,
            queue=self.queue,
            build=self._build,
            parked=self.parked,
            circuit=self.circuit,
            attempts=attempts,
            ledger=self.ledger,
            wake=self._wake,
            stop=self._stop,
            when_stopped=self._client.close,
            clock=self._clock,
        )

    def _circuit_changed(self) -> None:
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.replay_soon()

    def _after_fork(self) -> None:
        self._restart_in_child(keep_queued=False)

    def _restart_in_child(self, *, keep_queued: bool) -> None:
        # The child delivers only its own events: the parent's queue, parked
        # requests, threads, HTTP client and counts stay with the parent.
        self.ledger.after_fork()
        self.parked.after_fork()
        self._lifecycle = threads.Lock()
        self._build_parts(self.queue, keep_queued=keep_queued)
        self.queue.closed = self._closed
        if not self._closed:
            self._worker.start()

    def adopt_fork(self, *, late: bool = False) -> None:
        """Start again in a child forked without Python's at-fork hooks (uWSGI forks in C).

        The one fork check (a PID compare), made where it is cheap: uWSGI's post-fork
        hook, ``flush()`` and ``shutdown()``; never on the app's per-record path.
        ``late`` (from flush or shutdown): the child may have queued its own records
        since the fork, mixed with the parent's copy; all are kept and sent (the
        parent's copy may then arrive twice) rather than the child's lost.
        """
        if self._pid != os.getpid() and self._discard is None:
            self._restart_in_child(keep_queued=late)

    # -- app thread -----------------------------------------------------------

    def submit(self, item: Item) -> bool:
        """Queue an event (or a log call's tags); False, counted, when refused. Never blocks."""
        return self.put(item)

    def refuse(self, reason: str) -> None:
        """Count an event refused before it was queued (``no_api_key``); lock-free."""
        self.queue.refuse(reason)

    def deliver(self, events: Sequence[Event], timeout: float | None = None) -> bool:
        """Send ``events`` now and wait (exporters); True if all were accepted in time."""
        return self.deliver_counted(events, timeout).all_sent

    def deliver_counted(self, events: Sequence[Event], timeout: float | None = None) -> Receipt:
        """Send ``events`` now and wait; what became of them (the relay answers from it)."""
        if self._discard is not None:
            for event in events:
                self._discard.put(event)
            return Receipt()
        if self._closed:
            self.ledger.drop("shutdown", events)
            return Receipt(unsettled=len(events))
        if self.settings.debug:
            for event in events:
                show(event, "delivering")
        wait = self.settings.export_timeout if timeout is None else timeout
        failures = self.ledger.failures
        screened = self._screen(events)
        # Left out by before_send is the app's choice; raising in it is a loss.
        lost = 0 if self.ledger.failures == failures else len(events) - len(screened)
        if not screened:
            return Receipt(refused=lost)
        receipt = self._worker.deliver_counted(screened, wait)
        return dataclasses.replace(receipt, refused=receipt.refused + lost) if lost else receipt

    # -- the worker's half of a log call --------------------------------------

    def _build(self, items: list[Item]) -> list[Event]:
        """The Events for queued items, as before_send leaves them; the rest is counted."""
        return self._screen(build_counted(items, self.ledger))

    # -- control --------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver what is queued so far; True if it all landed by ``timeout`` and nothing
        queued since the previous flush was dropped or dead-lettered."""
        if self._discard is not None:
            return True  # delivery is off: nothing waits
        self.adopt_fork(late=True)
        if self._closed or on_delivery_thread():
            # From on_error (a delivery thread) waiting would only wait for itself; this
            # answers without moving the mark the app's own next flush() compares with.
            return (
                self.ledger.waiting == 0
                and len(self.queue) == 0
                and (self._failures() == self._failures_seen)
            )
        wait = self.settings.shutdown_timeout if timeout is None else timeout
        if exiting():
            wait = min(wait, self._exit_budget())
        settled = self._worker.flush(wait)
        failures = self._failures()
        clean = failures == self._failures_seen
        self._failures_seen = failures
        return settled and clean

    def _failures(self) -> int:
        return self.ledger.failures + sum(self.queue.refusals().values())

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver within ``timeout``, then stop: what is left is spooled or dropped (counted).

        A reopenable pipeline (the logging handler's) starts again at its next item.
        """
        if self._discard is not None:
            return True  # delivery is off: nothing runs, nothing waits
        self.adopt_fork(late=True)  # else it would wait for a thread the fork left behind
        wait = self.settings.shutdown_timeout if timeout is None else timeout
        if exiting():
            wait = min(wait, self._exit_budget())
        # Not while another thread's item reopens it (that takes no time to wait for).
        if not self._lifecycle.acquire(timeout=max(0.0, wait)):
            return False
        try:
            return self._shutdown(wait)
        finally:
            self._lifecycle.release()

    def reopen(self) -> bool:
        """Deliver again after ``shutdown``: FileHandler's convention, for the handler.

        The same settings, queue, spool and counts (``stats()`` goes on counting);
        a new worker, senders and HTTP client. Called from ``put`` on the closed
        queue, on the app's thread: it never waits. False (the item is refused,
        counted as ``shutdown``) while another thread shuts down or reopens, when
        no thread can start, and once the interpreter runs its exit hooks: nothing
        would drain a new worker then (``logging.shutdown()`` has run or is about to).
        """
        if exiting():
            if not self._said_late_at_exit:
                self._said_late_at_exit = True
                say_late_at_exit()
            return False
        if not self._lifecycle.acquire(blocking=False):
            return False
        try:
            if self._closed:
                self._build_parts(self.queue, reopening=True)
                self._worker.start()
                self._closed = False
                self.queue.closed = False
        except Exception:  # never raise into the app's log call
            _logger.debug("vf-otel could not start delivering again", exc_info=True)
            return False
        finally:
            self._lifecycle.release()
        return True

    def _exit_budget(self) -> float:
        """What is left of ``shutdown_timeout`` for the stop at exit, counted from its
        first flush or close: exit costs at most ``shutdown_timeout``."""
        if self._exit_by is None:
            self._exit_by = self._clock() + self.settings.shutdown_timeout
            self._stopping_soon()
        return max(0.0, self._exit_by - self._clock())

    def _stopping_soon(self) -> None:
        """With a usable spool, a request that fails from now on is spooled at once."""
        if self._spool is not None and self._spool.usable:
            self._attempts.hasty = True

    def _shutdown(self, wait: float) -> bool:
        if self._closed:
            return True
        deadline = self._clock() + wait
        self._stopping_soon()
        # Part of the time is kept for parking what is left: the stop never overruns.
        sending = max(0.0, wait - min(_STOP_RESERVE, wait / 10))
        delivered = self.flush(sending) if not on_delivery_thread() else False
        self._closed = True
        self.queue.closed = True
        dropped_before = self.ledger.dropped("shutdown")
        self._stop.set()
        self._worker.hurry()
        self._wake.set()
        self._worker.join(min(_JOIN_LIMIT, max(_JOIN_FLOOR, deadline - self._clock())))
        # Requests still out go to the spool (or are reported), before it closes.
        self.parked.hand_over_in_flight()
        stats = self.stats()
        dropped = self.ledger.dropped("shutdown") - dropped_before
        # The client closes now, or when the last request still out has its answer.
        if stats.in_flight == 0:
            self._client.close()
        self.parked.close()
        warn_undelivered(dropped, stats.in_flight, self._spool)
        return delivered and dropped == 0 and stats.in_flight == 0

    def stats(self) -> Stats:
        """The counts now."""
        stats = self.ledger.snapshot(queued=len(self.queue), refused=self.queue.refusals())
        if self._discard is not None:
            return dataclasses.replace(stats, disabled=self._discard.count)
        return stats


def live_pipelines() -> list[Pipeline]:
    """Every pipeline that delivers (not those with delivery off), in no order."""
    return list(_LIVE)


def _call(ref: weakref.WeakMethod[Callable[[], None]]) -> None:
    method = ref()
    if method is not None:
        method()
