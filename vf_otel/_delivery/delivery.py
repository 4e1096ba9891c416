"""Send Events to Vibefollow: one request at a time, retried, never raising.

Outcomes per request: sent; dead-lettered (the server refused it for good,
``on_error`` is told); or *parked* when the deadline, the retry budget, an open
circuit or an auth failure stops it. A parked request goes to the durable spool
when one is configured (else, or when the spool is unusable, to a bounded
in-memory backlog) and is tried again later with the same key and body: first
thing at the next export, and from the pipeline's replayer. Nothing leaves
without being counted.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Final

import httpx

from .._compat import suppressed_instrumentation
from .._config import Settings
from .._errors import AuthError, UndeliveredError, VibefollowError
from .._event.model import Event
from .._observe.ratelimit import RateLimitedLog
from .._spool.store import Spool
from ..typing import ErrorCallback
from .answers import retryable
from .batching import prepare
from .circuit import CircuitBreaker
from .client import Client
from .outcomes import Outcomes
from .parking import Item, Parking
from .retry import RetryPolicy
from .stats import Counters
from .wire import EVENTS_PATH, Request, encode_event, events_request, failed_event_index

__all__ = ["Delivery"]

_logger = logging.getLogger("vf_otel.delivery")
#: After a 401/403, how long to hold events before probing the key again.
AUTH_PAUSE: Final = 60.0
#: Rounds of one retry_parked() call: each claims up to CLAIM_LIMIT spooled requests.
MAX_REPLAY_ROUNDS: Final = 100


class _Parked(Exception):  # noqa: N818 - a control-flow signal, not an error
    """A request could not be finished now; it belongs in the spool or the backlog."""


class Delivery:
    """Delivers batches of Events; thread-safe; ``export`` never raises."""

    def __init__(
        self,
        settings: Settings,
        counters: Counters,
        *,
        on_error: ErrorCallback | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        circuit: Callable[[], CircuitBreaker] | None = None,
    ) -> None:
        self._settings = settings
        self._counters = counters
        self._client = Client(settings, transport)
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._policy = RetryPolicy(settings.max_retries)
        self._log = RateLimitedLog(_logger)
        self._outcomes = Outcomes(counters, self._log, on_error)
        self._new_circuit = circuit or (lambda: CircuitBreaker(clock=clock))
        self._parking = Parking(settings, counters, self._outcomes)
        self._reset_state()

    def _reset_state(self) -> None:
        self._cond = threading.Condition()
        self._replaying = threading.Lock()
        self.circuit = self._new_circuit()
        self._caps: dict[object, float] = {}
        self._stopped = False
        self._auth_paused_until = 0.0

    def after_fork(self) -> None:
        """In a forked child: forget the parent's client, backlog and spool connection."""
        self._reset_state()
        self._client.after_fork()
        self._parking.after_fork()

    # -- public ---------------------------------------------------------------

    def export(self, events: Sequence[Event], timeout: float | None = None) -> bool:
        """Deliver what is parked and then ``events``; True when none of it is left waiting.

        Never raises: a failure is contained to the event or request it concerns,
        which is counted (``unserializable`` / ``internal_error``), never lost silently.
        """
        deadline = self._clock() + (self._settings.export_timeout if timeout is None else timeout)
        with suppressed_instrumentation():
            _, held = self._round(self._prepare(events), deadline)
        return not held and len(self._parking.backlog) == 0

    @contextlib.contextmanager
    def holding(self, count: int) -> Iterator[None]:
        """Count ``count`` events taken from the queue as waiting until delivery is done
        with them, so queue + backlog in stats() never hides a batch being handled."""
        self._parking.hold(count)
        try:
            yield
        finally:
            self._parking.settle(count)

    def retry_parked(self, timeout: float) -> bool:
        """Send what waits in the backlog and the spool until done or ``timeout``; True if done."""
        deadline = self._clock() + timeout
        # One replay at a time: a flush waits for the replayer's round to end rather
        # than returning while that round still holds (leased) rows in flight.
        if not self._replaying.acquire(timeout=max(0.0, timeout)):
            return False
        try:
            return self._replay_rounds(deadline)
        finally:
            self._replaying.release()

    def _replay_rounds(self, deadline: float) -> bool:
        with suppressed_instrumentation():
            for _ in range(MAX_REPLAY_ROUNDS):
                if not self._may_send():
                    return self.waiting == 0  # paused: what waits keeps waiting
                took, held = self._round([], deadline)
                if not took:
                    return True
                if held or self._clock() >= deadline:
                    return False
        return False

    def _round(self, fresh: list[Request], deadline: float) -> tuple[bool, bool]:
        """Send what is parked, then ``fresh``: (anything was parked?, anything parked again?)."""
        parked, weight = self._take_parked()
        try:
            return bool(parked), self._send_all(parked + [(r, None) for r in fresh], deadline)
        finally:
            self._parking.settle(weight)

    def next_retry_in(self, interval: float) -> float:
        """How long the replayer should wait: ``interval``, or until the circuit allows."""
        paused = max(0.0, self._auth_paused_until - self._clock())
        return max(interval, paused, self.circuit.seconds_until_allowed())

    def park_events(self, events: Sequence[Event]) -> None:
        """Park ``events`` without trying them (the queue's leftovers at shutdown)."""
        for request in self._prepare(events):
            self._parking.park(request, None, narrowed=False, stopped=self._stopped)

    @property
    def spool(self) -> Spool | None:
        """The durable spool, when one is configured."""
        return self._parking.spool

    @property
    def backlog_size(self) -> int:
        """Events parked in memory for a later attempt (or being retried now)."""
        return self._parking.in_memory

    @property
    def waiting(self) -> int:
        """Events parked for a later attempt: in memory, plus every process's in the spool."""
        return self._parking.waiting

    @contextlib.contextmanager
    def cap_deadline(self, deadline: float) -> Iterator[None]:
        """Make every delivery in progress or started meanwhile finish by ``deadline``."""
        token = object()  # identity, not id(): a freed object's id is reused at once
        with self._cond:
            self._caps[token] = deadline
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._caps.pop(token, None)

    def close(self) -> None:
        """Stop for good: spool what is still parked (or count it as dropped), close the client."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._parking.close()
        self._client.close()

    def report(self, error: VibefollowError, events: Sequence[Event]) -> None:
        """Tell ``on_error`` about events that will never be delivered; never raises."""
        self._outcomes.report(error, events)

    # -- preparing ------------------------------------------------------------

    def _prepare(self, events: Sequence[Event]) -> list[Request]:
        return prepare(events, self._settings.batch_size, self._outcomes)

    def _take_parked(self) -> tuple[list[Item], int]:
        """The backlog and a claim on the spool (unless sending is paused anyway)."""
        if self._stopped or not self._may_send():
            return [], 0
        return self._parking.take()

    def _may_send(self) -> bool:
        return self._clock() >= self._auth_paused_until and (
            self.circuit.seconds_until_allowed() == 0
        )

    # -- sending --------------------------------------------------------------

    def _send_all(self, pending: list[Item], deadline: float) -> bool:
        """Send in order; True if something was parked (held for later) on the way."""
        for index, (request, row) in enumerate(pending):
            try:
                self._send(request, deadline)
            except _Parked as parked:
                # The endpoint is down, the key refused or time is up: the rest
                # would fare no better now, so all of it waits. _send may have
                # narrowed the request (poison events removed): what is left waits.
                current = parked.args[0] if parked.args else request
                held = self._park(current, row, narrowed=current is not request)
                for later, later_row in pending[index + 1 :]:
                    held = self._park(later, later_row, narrowed=False) or held
                return held
            except Exception:  # noqa: BLE001 - the exporter contract: never raise
                self._log.log(logging.ERROR, "internal", "vf-otel delivery failed", exc_info=True)
                error = UndeliveredError("internal error in delivery")
                self._outcomes.drop("internal_error", list(request.events), error)
            self._parking.done(row)
        return False

    def _send(self, request: Request, deadline: float) -> None:
        while True:
            try:
                error = self._attempts(request, deadline)
            except _Parked:
                raise _Parked(request) from None
            if error is None:
                self._outcomes.sent(request)
                return
            index = failed_event_index(getattr(error, "field", None), len(request.events))
            if request.path != EVENTS_PATH or index is None or len(request.events) == 1:
                self._outcomes.dead_letter(request, error)
                return
            # One poison event: dead-letter it alone, send the rest as a new request.
            self._outcomes.dead_letter_events([request.events[index]], error)
            rest = [e for i, e in enumerate(request.events) if i != index]
            request = events_request(rest, [encode_event(e) for e in rest])

    def _attempts(self, request: Request, deadline: float) -> VibefollowError | None:
        """None once sent; the final error if refused for good; raises _Parked otherwise."""
        if self._stopped or self._clock() < self._auth_paused_until:
            raise _Parked
        attempt = 0
        while True:
            if not self.circuit.allow():
                raise _Parked  # open: no request at all until the cool-down ends
            error = self._post(request, deadline)
            if error is None or not retryable(error):
                self.circuit.record_success()  # the server answered: it is up
            if error is None:
                return None
            if isinstance(error, AuthError):
                self._pause_for_auth(error)
                raise _Parked
            if not retryable(error):
                return error
            retry_after = getattr(error, "retry_after", None)
            if self.circuit.record_failure(retry_after):
                self._log.warning(
                    "circuit", "Vibefollow unreachable (%s); sending paused, events kept", error
                )
                raise _Parked
            delay = self._policy.delay(attempt, self._rng, retry_after)
            if attempt >= self._settings.max_retries or not self._wait(delay, deadline):
                self._log.warning(
                    "retry", "Vibefollow unreachable (%s); events kept for a later attempt", error
                )
                raise _Parked
            attempt += 1
            self._counters.add("retried")

    def _post(self, request: Request, deadline: float) -> VibefollowError | None:
        remaining = self._effective_deadline(deadline) - self._clock()
        if remaining <= 0:
            raise _Parked  # out of time before sending: not the server's failure
        return self._client.post(request, min(self._settings.timeout, remaining))

    # -- waiting and deadlines ------------------------------------------------

    def _effective_deadline(self, deadline: float) -> float:
        with self._cond:
            return min([deadline, *self._caps.values()])

    def _wait(self, delay: float, deadline: float) -> bool:
        """Sleep ``delay`` unless that would pass the deadline or close() comes first."""
        wake_at = self._clock() + delay
        with self._cond:
            while not self._stopped:
                limit = min([deadline, *self._caps.values()])
                if wake_at > limit:
                    return False
                remaining = wake_at - self._clock()
                if remaining <= 0:
                    return True
                self._cond.wait(remaining)
            return False

    def _pause_for_auth(self, error: AuthError) -> None:
        self._auth_paused_until = self._clock() + AUTH_PAUSE
        self._log.error(
            "auth",
            "Vibefollow refused the API key (%s %s): check VIBEFOLLOW_API_KEY. Sending is "
            "paused; up to %d events are held and retried every %.0f s",
            error.status,
            error.code or "",
            self._settings.max_queue_size,
            AUTH_PAUSE,
        )

    def _park(self, request: Request, row: int | None, *, narrowed: bool) -> bool:
        return self._parking.park(request, row, narrowed=narrowed, stopped=self._stopped)
