"""One buffer + one delivery + one set of counters: what a handler or exporter owns."""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Callable
from typing import Final

import httpx

from .._compat import EventBuffer
from .._config import Settings
from .._errors import UndeliveredError, ValidationError
from .._event.model import Event
from .._event.validate import PendingEvent, Rejection, build_pending
from .._observe.ratelimit import RateLimitedLog
from ..typing import ErrorCallback
from .delivery import Delivery
from .replay import Replayer
from .stats import Counters, Stats

__all__ = ["Pipeline"]

_logger = logging.getLogger("vf_otel")
#: A close() this soon after a failed flush() does not retry again (seconds).
_FLUSH_THEN_CLOSE: Final = 1.0
#: The replayer wakes at least this far apart, whatever flush_interval says (seconds).
_MIN_REPLAY_INTERVAL: Final = 0.1


class Pipeline:
    """Accepts Events on any thread and delivers them from a worker thread."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_error: ErrorCallback | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._counters = Counters()
        self._log = RateLimitedLog(_logger)
        self._delivery = Delivery(settings, self._counters, on_error=on_error, transport=transport)
        self._buffer: EventBuffer[Event | PendingEvent] = EventBuffer(
            self._export,
            max_queue_size=settings.max_queue_size,
            batch_size=settings.batch_size,
            schedule_delay=settings.flush_interval,
        )
        self._replayer = Replayer(self._replay, self._next_replay_in)
        self._replayer.start()
        self._closed = False
        # When a flush just gave up, close() should not wait all over again:
        # logging.shutdown() calls flush() then close() back to back.
        self._flush_gave_up_at: float | None = None
        if hasattr(os, "register_at_fork"):
            ref = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: _call(ref))

    def _after_fork(self) -> None:
        # The child delivers only its own events: the parent's queue (cleared by
        # the SDK processor), backlog, HTTP client and counts stay with the parent.
        self._counters.reset()
        self._delivery.after_fork()
        self._buffer.after_fork()
        if not self._closed:
            self._replayer.start()

    def _replay(self) -> None:
        """The replayer's round: what waits in the backlog or the spool, within a deadline."""
        self._delivery.retry_parked(self.settings.export_timeout)

    def _next_replay_in(self) -> float:
        interval = max(_MIN_REPLAY_INTERVAL, self.settings.flush_interval)
        return self._delivery.next_retry_in(interval)

    def _export(self, batch: list[Event | PendingEvent]) -> None:
        """The worker's half of a log call: build the Events, then deliver them."""
        with self._delivery.holding(len(batch)):
            self._deliver(batch)

    def _deliver(self, batch: list[Event | PendingEvent]) -> None:
        self._delivery.export(self._built_events(batch))

    def _built_events(self, items: list[Event | PendingEvent]) -> list[Event]:
        """The Events for queued items; rejections and failures are counted, not returned."""
        events: list[Event] = []
        for item in items:
            built = self._build(item)
            if isinstance(built, Rejection):
                self.reject(built)
            elif built is None:
                self._counters.drop("internal_error")
            else:
                events.append(built)
        return events

    def _build(self, item: Event | PendingEvent) -> Event | Rejection | None:
        """The Event (or Rejection) for a queued item; None, logged, if building it failed."""
        if isinstance(item, Event):
            return item
        try:
            return build_pending(item)
        except Exception:  # noqa: BLE001 - one odd record must not sink the batch
            self._log.log(logging.ERROR, "build", "vf-otel could not build an event", exc_info=True)
            return None

    # -- app thread -----------------------------------------------------------

    def submit(self, event: Event | PendingEvent) -> bool:
        """Queue an event, or a log call's tags to build one from on the worker.

        A refusal (queue full, closed) is counted and warned about, never raised.
        """
        problem = self._buffer.put(event)
        if problem is None:
            self._counters.add("enqueued")
            return True
        self._counters.drop(problem)
        self._log.warning(problem, "vf-otel dropped an event: %s", _DROP_TEXT[problem])
        return False

    def reject(self, rejection: Rejection) -> None:
        """Count an event the client-side checks refused, warn, and tell on_error."""
        self._counters.drop(rejection.reason)
        self._log.warning(rejection.reason, "vf-otel dropped an event: %s", rejection.message)
        error = ValidationError(
            rejection.message, status=0, code=rejection.reason, field=rejection.field
        )
        self._delivery.report(error, ())

    def drop(self, reason: str, message: str) -> None:
        """Count an event refused before it was built (e.g. no API key)."""
        self._counters.drop(reason)
        self._log.warning(reason, "vf-otel dropped an event: %s", message)

    # -- control --------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything queued so far; True if all of it landed by ``timeout``."""
        if self._closed:
            return self._delivery.waiting == 0 and len(self._buffer) == 0
        deadline = time.monotonic() + (
            self.settings.shutdown_timeout if timeout is None else timeout
        )
        with self._delivery.cap_deadline(deadline):
            drained = self._buffer.drain(deadline)
            if drained:
                self._delivery.retry_parked(deadline - time.monotonic())
        delivered = drained and self._delivery.waiting == 0
        self._flush_gave_up_at = None if delivered else time.monotonic()
        return delivered

    def shutdown(self, timeout: float | None = None) -> bool:
        """Drain within ``timeout``, stop the worker, report what was not delivered."""
        if self._closed:
            return True
        self._closed = True
        if timeout is None:
            timeout = self.settings.shutdown_timeout
            gave_up = self._flush_gave_up_at
            if gave_up is not None and time.monotonic() - gave_up < _FLUSH_THEN_CLOSE:
                timeout = 0.0
        deadline = time.monotonic() + timeout
        with self._delivery.cap_deadline(deadline):
            self._replayer.stop(deadline - time.monotonic())
            left = self._buffer.shutdown(deadline - time.monotonic())
            if self._delivery.backlog_size and time.monotonic() < deadline:
                self._delivery.export((), timeout=deadline - time.monotonic())
        undelivered = self._delivery.waiting + len(left)
        if left and self._delivery.spool is not None:
            self._spool_leftovers(left)
        elif left:
            self._counters.drop("shutdown", len(left))
            lost = [e for e in map(self._build, left) if isinstance(e, Event)]
            self._delivery.report(UndeliveredError("not delivered before shutdown"), lost)
        self._delivery.close()
        if undelivered:
            spool = self._delivery.spool
            where = f"; they wait in the spool {spool.path}" if spool and spool.usable else ""
            _logger.warning(
                "vf-otel shut down with %d event(s) not delivered%s", undelivered, where
            )
        return undelivered == 0

    def _spool_leftovers(self, left: list[Event | PendingEvent]) -> None:
        """Build what the queue still held and park it (in the spool) for the next start."""
        self._delivery.park_events(self._built_events(left))

    def stats(self) -> Stats:
        """The counters now, with the current queue and backlog lengths."""
        return self._counters.snapshot(
            queued=len(self._buffer), backlog=self._delivery.backlog_size
        )


_DROP_TEXT = {
    "queue_full": "the queue is full (raise max_queue_size or check delivery)",
    "shutdown": "the handler is closed",
}


def _call(ref: weakref.WeakMethod[Callable[[], None]]) -> None:
    method = ref()
    if method is not None:
        method()
