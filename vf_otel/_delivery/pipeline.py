"""The one way into delivery: ``Pipeline`` (on) or ``DisabledPipeline`` (off); debug output."""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import sys
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Final, TypeVar

import httpx

from .._config import Settings, resolve_settings
from .._event.build import PendingEvent, Rejection, build_pending, is_identify
from .._event.model import Event
from .._event.values import KeyCollisions, redactor_for
from .._observe import register_metrics
from .._spool.store import Spool
from ..typing import BeforeSend, ErrorCallback, Options
from . import threads
from .attempt import Attempts
from .client import Client
from .dispatch import Receipt, Worker
from .ledger import Ledger, Stats
from .parked import LEASE_MARGIN, Parked
from .policy import CircuitBreaker, Timing
from .queue import EventQueue
from .runtime import watch_lambda, watch_uwsgi
from .threads import on_delivery_thread
from .wire import Screen, build_counted

__all__ = [
    "DEBUG_LOGGER",
    "Delivery",
    "DisabledPipeline",
    "Item",
    "Pipeline",
    "enable_debug_output",
    "exiting",
    "live_pipelines",
    "open_pipeline",
    "options_settings",
    "pipeline_for",
    "say_late_at_exit",
    "show",
    "shown",
    "warn_undelivered",
]


# The one way into delivery, for the handler, the exporters, the relay and the CLI.
#
#     app thread ──put──► EventQueue ──► Worker ──build, prepare──► Senders ──► Attempts ──► API
#     exporter, relay ──deliver────────────────────────────────────┘    │ parked
#                                                 Parked (memory / spool) ◄┘
#
# The handler puts log calls on the queue; the exporters and the relay, whose
# batches are already made, deliver each one straight away and learn what became of
# it. Everything after that is shared: one attempt loop, one circuit, one ledger.
#
# Which pipeline is chosen once, when it is built (``open_pipeline``): a ``Pipeline``
# that delivers, or with delivery off (``enabled=False``) a ``DisabledPipeline`` with
# the same methods that only counts. Nothing after that asks whether delivery is on.

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


def options_settings(options: Options) -> Settings:
    """The settings ``options`` resolve to (the hooks and the transport are no settings)."""
    settings_options: dict[str, Any] = dict(options)
    for hook in ("on_error", "before_send", "transport"):
        settings_options.pop(hook, None)
    return resolve_settings(**settings_options)


def pipeline_for(options: Options, *, source_kind: str) -> Delivery:
    """The pipeline of one handler (``source_kind="handler"``), exporter or relay, built
    from its options; its counts reported as OTel metrics under ``source_kind``.

    The handler's pipeline opens again at its next record after ``shutdown()`` (as
    ``FileHandler`` does); the exporters' and the relay's follow OTel's contract:
    shut down is final.
    """
    on_error = options.get("on_error")
    before_send = options.get("before_send")
    if on_error is not None and not callable(on_error):
        raise ValueError("on_error must be callable")
    if before_send is not None and not callable(before_send):
        raise ValueError("before_send must be callable")
    pipeline = open_pipeline(
        options_settings(options),
        on_error=on_error,
        before_send=before_send,
        transport=options.get("transport"),
        reopenable=source_kind == "handler",
    )
    if not pipeline.has_key:
        _logger.warning("VIBEFOLLOW_API_KEY is not set: vf-otel will count and drop events")
    try:
        register_metrics(pipeline, source_kind=source_kind)
    except BaseException:
        pipeline.shutdown(0)  # no worker thread left behind by a failed constructor
        raise
    return pipeline


def open_pipeline(
    settings: Settings,
    *,
    on_error: ErrorCallback | None = None,
    before_send: BeforeSend | None = None,
    transport: httpx.BaseTransport | None = None,
    reopenable: bool = False,
) -> Delivery:
    """The pipeline for ``settings``: a ``Pipeline`` that delivers, or, with delivery off
    (``enabled=False``), a ``DisabledPipeline`` that only counts. The one place that asks."""
    if not settings.enabled:
        return DisabledPipeline(settings, on_error=on_error)
    return Pipeline(
        settings,
        on_error=on_error,
        before_send=before_send,
        transport=transport,
        reopenable=reopenable,
    )


class Delivery(ABC):
    """What a handler, an exporter, the relay or the CLI hands events to (``flush`` and
    ``shutdown`` never raise). Built by ``open_pipeline``: ``Pipeline`` or ``DisabledPipeline``."""

    #: Whether it delivers at all: threads, requests, something to drain at SIGTERM.
    delivers: ClassVar[bool]
    #: Whether events may go on: an API key is set (or delivery is off, when nothing
    #: needs one); without, each is dropped and counted as ``no_api_key``.
    has_key: bool
    #: What the app's thread calls to hand over an item (the handler binds it once).
    put: Callable[[Item], bool]

    def __init__(
        self, settings: Settings, *, on_error: ErrorCallback | None, reopenable: bool = False
    ) -> None:
        self.settings = settings
        self.ledger = Ledger(on_error)
        #: The redaction of secret-looking keys these settings ask for.
        self.redactor = redactor_for(settings)
        if settings.debug:
            enable_debug_output()
        self._reopenable = reopenable
        self._shut_down = False
        self._shutting = threads.Lock()
        self._drains_at_exit = False

    def submit(self, item: Item) -> bool:
        """Queue an event (or a log call's tags); False, counted, when refused. Never blocks."""
        return self.put(item)

    @abstractmethod
    def refuse(self, reason: str) -> None:
        """Count an event refused before it was handed over (``no_api_key``); lock-free."""

    @abstractmethod
    def deliver(
        self,
        results: Iterable[Event | Rejection],
        collisions: KeyCollisions | None = None,
        timeout: float | None = None,
    ) -> Receipt:
        """Deliver the events now and wait up to ``timeout`` (``export_timeout``), count
        the rejections; what became of them, rejections in ``refused``.

        ``collisions``: values translation lost to keys that became one string (counted).
        """

    def lost(self, count: int) -> None:
        """Count ``count`` events lost to an error of vf-otel's own (``internal_error``)."""
        self.ledger.drop("internal_error", (), count=count)

    def seconds_until_ready(self) -> float:
        """How long until a request may go out (0 now): the relay's ``Retry-After``."""
        return 0.0

    @abstractmethod
    def flush(self, timeout: float | None = None) -> bool:
        """Deliver what is queued so far; True if it all landed by ``timeout``
        (``shutdown_timeout``) and nothing queued since the previous flush was lost."""

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver within ``timeout`` (``shutdown_timeout``), then stop: what is left is
        spooled or dropped (counted). Never raises.

        A reopenable pipeline (the handler's) starts again at its next item; any other
        stops once, and later calls return True at once.
        """
        with self._shutting:
            if self._shut_down and not self._reopenable:
                return True
            self._shut_down = True
        try:
            return self._stop_within(timeout)
        except Exception:
            _logger.debug("vf-otel shutdown failed", exc_info=True)
            return False

    @property
    def is_shut_down(self) -> bool:
        """Whether ``shutdown`` was called (final for all but the handler's pipeline)."""
        return self._shut_down

    def drain_at_exit(self) -> None:
        """Shut down at interpreter exit (registered once).

        For a handler that ``dictConfig`` closed and removed from the list
        ``logging.shutdown()`` drains at exit, while it may still be attached.
        """
        with self._shutting:
            if self._drains_at_exit:
                return
            self._drains_at_exit = True
        atexit.register(self.shutdown)

    @abstractmethod
    def stop_begins(self) -> None:
        """A stop begins: ``logging.shutdown()`` runs ``flush()``, then ``close()``."""

    @abstractmethod
    def stats(self) -> Stats:
        """The counts now."""

    @abstractmethod
    def _stop_within(self, timeout: float | None) -> bool:
        """``shutdown``'s work, once it is this call's to do."""


class Pipeline(Delivery):
    """Accepts events on any thread and delivers them from its own threads."""

    delivers = True

    def __init__(
        self,
        settings: Settings,
        *,
        on_error: ErrorCallback | None = None,
        before_send: BeforeSend | None = None,
        transport: httpx.BaseTransport | None = None,
        timing: Timing | None = None,
        reopenable: bool = False,
    ) -> None:
        super().__init__(settings, on_error=on_error, reopenable=reopenable)
        self.has_key = settings.api_key is not None
        self._transport = transport
        # The one source of time and pause lengths for everything built below (Timing).
        self.timing = timing or Timing()
        self._clock = self.timing.now
        self._screen = Screen(before_send, self.ledger)  # the app's before_send, counted
        self._spool: Spool | None = None
        if settings.spool_path is not None:
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
        # The queue's own put(), unless debug shows each item.
        self.put = shown(self.queue.put) if settings.debug else self.queue.put
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
        timing = self.timing
        self.circuit = CircuitBreaker(
            cooldown=timing.cooldown,
            cooldown_cap=timing.cooldown_cap,
            clock=timing.now,
            on_change=self._circuit_changed,
        )
        self.parked = Parked(
            settings.max_backlog_bytes, self.ledger, self._spool, settings.priority_events
        )
        attempts = self._attempts = Attempts(
            settings, self._client, self.circuit, self.ledger, stop=self._stop, timing=timing
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
        self._shutting = threads.Lock()
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
        if self._pid != os.getpid():
            self._restart_in_child(keep_queued=late)

    # -- the ways in -----------------------------------------------------------

    def refuse(self, reason: str) -> None:
        """Count an event refused before it was queued (``no_api_key``); lock-free."""
        self.queue.refuse(reason)

    def deliver(
        self,
        results: Iterable[Event | Rejection],
        collisions: KeyCollisions | None = None,
        timeout: float | None = None,
    ) -> Receipt:
        """Redact and send the events, count the rejections (and without a key the events)."""
        ledger = self.ledger
        if collisions is not None:
            ledger.keys_collided(collisions)
        events: list[Event] = []
        refused = 0
        for result in results:
            if isinstance(result, Rejection):
                ledger.reject(result.reason, result.field, result.message)
                refused += 1
            elif not self.has_key:
                ledger.drop("no_api_key", [result])
                refused += 1
            else:
                events.append(self.redactor.event(result))
        receipt = self._deliver_events(events, timeout) if events else Receipt()
        return dataclasses.replace(receipt, refused=receipt.refused + refused)

    def _deliver_events(self, events: Sequence[Event], timeout: float | None) -> Receipt:
        """Send built, redacted ``events`` now and wait; what became of them."""
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
        receipt = self._worker.deliver(screened, wait)
        return dataclasses.replace(receipt, refused=receipt.refused + lost) if lost else receipt

    def seconds_until_ready(self) -> float:
        """How long until the circuit lets a request out (0 now; inf while a probe is out)."""
        return self.circuit.seconds_until_ready()

    # -- the worker's half of a log call --------------------------------------

    def _build(self, items: list[Item]) -> list[Event]:
        """The Events for queued items, as before_send leaves them; the rest is counted."""
        return self._screen(build_counted(items, self.ledger))

    # -- control --------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver what is queued so far; True if it all landed by ``timeout`` and nothing
        queued since the previous flush was dropped or dead-lettered. Never raises."""
        try:
            return self._flush(timeout)
        except Exception:
            _logger.debug("vf-otel flush failed", exc_info=True)
            return False

    def _flush(self, timeout: float | None) -> bool:
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
        if exiting() or self._exit_by is not None:
            wait = min(wait, self._exit_budget())
        settled = self._worker.flush(wait)
        failures = self._failures()
        clean = failures == self._failures_seen
        self._failures_seen = failures
        return settled and clean

    def _failures(self) -> int:
        return self.ledger.failures + sum(self.queue.refusals().values())

    def _stop_within(self, timeout: float | None) -> bool:
        self.adopt_fork(late=True)  # else it would wait for a thread the fork left behind
        wait = self.settings.shutdown_timeout if timeout is None else timeout
        if exiting() or self._exit_by is not None:
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
                self._exit_by = None  # the stop logging.shutdown() began is over
                self.queue.closed = False
        except Exception:  # never raise into the app's log call
            _logger.debug("vf-otel could not start delivering again", exc_info=True)
            return False
        finally:
            self._lifecycle.release()
        return True

    def stop_begins(self) -> None:
        """A stop begins: ``logging.shutdown()``, at exit or called by the app, runs
        ``flush()`` then ``close()``. The two share one ``shutdown_timeout`` from now (the
        exit's rule), and a request that fails from now on is spooled at once."""
        if self._exit_by is None:
            self._exit_by = self._clock() + self.settings.shutdown_timeout
        self._stopping_soon()

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
        return self.ledger.snapshot(queued=len(self.queue), refused=self.queue.refusals())


def live_pipelines() -> list[Pipeline]:
    """Every pipeline that delivers (not those with delivery off), in no order."""
    return list(_LIVE)


def _call(ref: weakref.WeakMethod[Callable[[], None]]) -> None:
    method = ref()
    if method is not None:
        method()


# Delivery off (``enabled=False``) and debug output (``debug=True``), for CI and local runs.
#
# Off (posthog's ``disabled``, Segment's ``send=False``): ``DisabledPipeline`` counts
# what the app hands over in ``stats().disabled`` and drops it without a word. It is
# not a loss — no warning, no ``on_error``, not in ``dropped`` — and nothing needs a
# key: no thread starts, no spool opens, no request is made.
#
# Debug: each event is shown as it is queued, on the ``vf_otel.debug`` logger at INFO,
# as the JSON that would be sent (validated, coerced and redacted by the same code the
# worker runs; ``before_send`` runs later, on the worker). That logger is set to INFO
# (unless the app set a level on it), and when no handler of the app would print its
# records (an app with no logging set up) they go to stderr instead, so
# ``VIBEFOLLOW_DEBUG=true python app.py`` shows them either way.

#: Where debug output goes, at INFO.
DEBUG_LOGGER: Final = "vf_otel.debug"
_log = logging.getLogger(DEBUG_LOGGER)
T = TypeVar("T")


class DisabledPipeline(Delivery):
    """Delivery off: what is handed over is counted (``stats().disabled``), shown with
    ``debug``, never sent; ``flush`` and ``shutdown`` answer True at once."""

    delivers = False
    has_key = True  # nothing is sent, so nothing needs a key (or warns about one)

    def __init__(self, settings: Settings, *, on_error: ErrorCallback | None = None) -> None:
        super().__init__(settings, on_error=on_error)
        # Lock-free, like EventQueue's refusal counts: this runs on the app's thread.
        self._count = 0
        self.put = self._count_and_show if settings.debug else self._count_only

    def _count_only(self, item: Item) -> bool:
        self._count += 1
        return True

    def _count_and_show(self, item: Item) -> bool:
        self._count += 1
        show(item, "not sent (delivery is disabled)")
        return True

    def refuse(self, reason: str) -> None:
        """Counted as handed over while delivery is off, like every other item."""
        self._count += 1

    def deliver(
        self,
        results: Iterable[Event | Rejection],
        collisions: KeyCollisions | None = None,
        timeout: float | None = None,
    ) -> Receipt:
        """Count each event (redacted, for ``debug``) and rejection; nothing is sent."""
        for result in results:
            self.put(self.redactor.event(result) if isinstance(result, Event) else result)
        return Receipt()

    def flush(self, timeout: float | None = None) -> bool:
        """True: nothing waits."""
        return True

    def stop_begins(self) -> None:
        """Nothing runs: nothing to bound."""

    def _stop_within(self, timeout: float | None) -> bool:
        return True  # nothing runs, nothing waits

    def stats(self) -> Stats:
        """The counts now: what was handed over is in ``disabled``."""
        stats = self.ledger.snapshot(queued=0, refused={})
        return dataclasses.replace(stats, disabled=self._count)


def shown(put: Callable[[T], bool]) -> Callable[[T], bool]:
    """``put`` that also shows each item (``debug=True``)."""

    def put_and_show(item: T) -> bool:
        queued = put(item)
        show(item, "queued" if queued else "not queued (refused, counted in stats().dropped)")
        return queued

    return put_and_show


def show(item: object, what: str) -> None:
    """Log ``item`` as it would be sent (or why it is refused) on ``vf_otel.debug``."""
    try:
        built = build_pending(item) if isinstance(item, tuple) else item
        if isinstance(built, Rejection):
            _log.info("vf-otel debug: refused (%s): %s", built.reason, built.message)
        elif isinstance(built, Event) and is_identify(built.name):
            _log.info("vf-otel debug: %s user upsert %s", what, _json(built.user_upsert()))
        elif isinstance(built, Event):
            body = built.to_wire()
            if built.traits:
                body["traits"] = dict(built.traits)  # sent as a user upsert first
            _log.info("vf-otel debug: %s event %s", what, _json(body))
    except Exception:  # noqa: BLE001 - debug output must never fail a log call
        _log.debug("vf-otel debug: could not show an event", exc_info=True)


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def enable_debug_output() -> None:
    """Make ``vf_otel.debug`` records visible (see the module's docstring); once per process."""
    if _log.level == logging.NOTSET:
        _log.setLevel(logging.INFO)
    if not any(isinstance(handler, _Printer) for handler in _log.handlers):
        _log.addHandler(_Printer())


class _Printer(logging.Handler):
    """Writes a record to stderr when no handler of the app would show it."""

    def handle(self, record: logging.LogRecord) -> bool:
        """Print only for an app with no handler of its own on the record's way up."""
        if _app_shows(record):
            return False
        return bool(super().handle(record))

    def emit(self, record: logging.LogRecord) -> None:
        """One line on the current ``sys.stderr`` (looked up now: tests and apps swap it)."""
        try:
            sys.stderr.write(record.getMessage() + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - as logging.StreamHandler: report, never raise
            self.handleError(record)


def _app_shows(record: logging.LogRecord) -> bool:
    """Whether a handler that is not vf-otel's takes ``record`` on its way up."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        for handler in logger.handlers:
            if record.levelno >= handler.level and not _is_vf_otels(handler):
                return True
        logger = logger.parent if logger.propagate else None
    return False


def _is_vf_otels(handler: logging.Handler) -> bool:
    # The Vibefollow handler (which ignores vf_otel.* records), configure()'s stand-in
    # for Python's last resort (WARNING and above only) and this printer.
    # (What vf_otel exports names "vf_otel" as its module; the rest a submodule.)
    return any(cls.__module__.partition(".")[0] == "vf_otel" for cls in type(handler).__mro__)


# What a stopping pipeline says, and whether the interpreter is exiting.
#
# At shutdown: what was dropped, what is still in flight (its outcome unknown), what
# waits in the spool. At exit: that records logged after ``logging.shutdown()`` are
# not sent (a closed pipeline is not reopened then: nothing would drain it).

# Set when the interpreter starts its exit hooks. atexit runs the last registered
# first, and logging registered logging.shutdown() when it was imported, before this
# module: so this is set before the handlers are closed at exit. From then on a
# closed pipeline stays closed: a record logged then (by a daemon thread) is refused
# and counted, not queued behind a worker the interpreter stops mid-way.
_EXITING: Final = threads.Event()
atexit.register(_EXITING.set)


def exiting() -> bool:
    """Whether the interpreter is running its exit hooks."""
    return _EXITING.is_set()


def say_late_at_exit() -> None:
    """Say on stderr that records logged at exit, after shutdown, are not sent.

    Not through logging: it has shut down, and this runs on an app's log call.
    """
    try:
        print(
            "vf-otel: events logged after logging.shutdown() at exit are not sent "
            "(counted in stats().dropped['shutdown'])",
            file=sys.stderr,
        )
    except Exception:  # noqa: BLE001 - stderr closed or broken: nothing else to do
        return


def warn_undelivered(dropped: int, in_flight: int, spool: Spool | None) -> None:
    """One warning at shutdown: what was dropped, what is in flight, what the spool keeps."""
    parts = []
    if dropped:
        parts.append(f"{dropped} event(s) not delivered (dropped; reported to on_error)")
    if in_flight:
        parts.append(f"{in_flight} event(s) still in flight, outcome unknown")
    if spool is not None and spool.usable and spool.pending():
        parts.append(f"events wait in the spool {spool.path} for the next start")
    if dropped or in_flight:
        _logger.warning("vf-otel shut down with %s", "; ".join(parts))
