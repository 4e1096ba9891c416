"""The attempt loop: send one request until it is delivered, refused for good, or must wait.

One loop with a deadline, as the OTLP exporter has, returning an outcome rather
than raising: ``sent``, ``refused`` (dead-lettered, counted and reported), or
``parked`` (the circuit is open, the key was refused, the URL redirects, the
retry budget or the deadline ran out, or delivery is stopping). A parked request
keeps its key and body; the caller puts it where parked requests wait.

Nothing good is thrown away for a bad neighbour. A batch the API (or a proxy)
finds too large (413, or a 400 about size) is split in halves, each with its own
key, until the pieces fit. A 422 dead-letters every event its errors name and
goes on with the rest as a new request; when it names none, the batch is
bisected the same way. Only an event that still fails alone is dead-lettered.

A pooled keep-alive connection the server dropped while it sat idle (closed or
reset as it is reused, before any answer) is no failure of the API: the request
goes again at once, once, on a new connection, as the OTLP exporter does; counted
in ``retried`` (the server saw it twice), with no backoff and nothing for the circuit.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from typing import Final, Literal

from .._config import Settings
from .._errors import AuthError, ValidationError, VibefollowError
from . import threads
from .client import STALE_CONNECTION, Client, isolatable, redirected, retryable, too_large
from .ledger import Ledger
from .policy import AUTH_PAUSE, WRONG_URL_PAUSE, CircuitBreaker, Permit, RetryPolicy, Timing
from .wire import (
    EVENTS_PATH,
    NO_BASE_URL_TEXT,
    Request,
    encode_event,
    events_request,
    failed_event_indexes,
    split_request,
)

__all__ = ["AUTH_PAUSE", "WRONG_URL_PAUSE", "Attempts", "Outcome"]


Outcome = Literal["sent", "refused", "parked"]
#: Less of the deadline than this left (or than ``timeout``, when that is shorter), a
#: retry is not started: it could only time out, and that time-out would replace the
#: error that tells why delivery failed (a refused connection, a 503) with one that tells
#: nothing about the API. Shorter than any round trip to the real API. A first attempt
#: goes with any time left: a deadline shorter than this (``export_timeout=0.04``) is
#: the app's choice, and must not mean that nothing is ever sent.
MIN_ATTEMPT: Final = 0.05
#: What one piece's loop ends with: an outcome, or the pieces to send in its place.
_PieceResult = Outcome | tuple[Request, ...]


class Attempts:
    """Runs the attempt loop for one request at a time per calling thread; thread-safe."""

    def __init__(
        self,
        settings: Settings,
        client: Client,
        circuit: CircuitBreaker,
        ledger: Ledger,
        *,
        stop: threads.Event,
        timing: Timing | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._circuit = circuit
        self._ledger = ledger
        self._stop = stop
        self._timing = timing = timing or Timing()
        self._clock = timing.now
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        # Returns True when interrupted (delivery is stopping): the wait is cut short.
        self._sleep = sleep or functools.partial(timing.retry_wait, stop)
        self._shortest = min(settings.timeout, MIN_ATTEMPT)
        self._policy = RetryPolicy(settings.max_retries, timing.backoff_base, timing.backoff_cap)
        #: Stopping with a usable spool: a failed request is spooled at once, not retried
        #: (the spool delivers it at the next start; exit takes no longer than it must).
        self.hasty = False
        #: Whether a request failed while hasty: the API is unreachable for this stop.
        self.gave_up = False

    def run(self, request: Request, deadline: float) -> tuple[Outcome, Request]:
        """Attempt ``request`` until an outcome; the request returned may be narrowed.

        ``sent`` when something was delivered (the request returned is the last piece
        sent), ``refused`` when everything was dead-lettered, ``parked`` with what is
        left to send: one request holding every event not yet delivered or refused.
        """
        if not self._settings.has_base_url:
            self._no_base_url()
            return "parked", request
        pending: list[Request] = [request]  # the pieces still to send, in order
        outcome: Outcome = "refused"
        last = request
        while pending:
            piece = pending.pop(0)
            result = self._send(piece, deadline)
            if isinstance(result, tuple):
                pending[:0] = result  # split or narrowed: these go next, in order
            elif result == "parked":
                return "parked", _rest(piece, pending)
            elif result == "sent":
                outcome, last = "sent", piece
        return outcome, last

    def _send(self, request: Request, deadline: float) -> _PieceResult:
        """The retry loop of one piece."""
        attempt = 0
        while True:
            permit = None if self._stop.is_set() else self._circuit.acquire()
            if permit is None:
                return "parked"  # stopping, open, held, or another probe is out
            remaining = deadline - self._clock()
            if remaining <= 0 or (attempt and remaining < self._shortest):
                permit.abandon()  # out of time before sending: not the server's failure
                return "parked"
            if attempt:
                self._ledger.retried()  # counted as it goes out, not when it was planned
            try:
                error = self._client.post(request, min(self._settings.timeout, remaining))
                if error is not None and error.code == STALE_CONNECTION:
                    error = self._resend(request, deadline, error)
            except BaseException:
                permit.abandon()
                raise
            if error is None:
                permit.succeeded()
                self._ledger.sent(request)
                return "sent"
            if not retryable(error):
                permit.succeeded()  # the server answered: it is up
                return self._refused(request, error)
            if not self._wait_to_retry(permit, error, attempt, deadline):
                return "parked"
            attempt += 1

    def _resend(
        self, request: Request, deadline: float, stale: VibefollowError
    ) -> VibefollowError | None:
        """Send again at once after a stale pooled connection (module docstring): the one
        that failed left the pool, so this goes on a new one (or another still open)."""
        remaining = deadline - self._clock()
        if remaining < self._shortest:
            return stale  # no time left: a failed attempt like any other
        self._ledger.retried()
        return self._client.post(request, min(self._settings.timeout, remaining))

    def _wait_to_retry(
        self, permit: Permit, error: VibefollowError, attempt: int, deadline: float
    ) -> bool:
        """Record the failure and wait the backoff; False when the request must park instead."""
        self._ledger.last_error = error
        retry_after = getattr(error, "retry_after", None)
        if self.hasty:
            permit.failed(retry_after)
            self.gave_up = True
            return False
        if permit.failed(retry_after):
            self._ledger.warn("circuit", "Vibefollow unreachable (%s); events kept", error)
            return False
        delay = self._policy.delay(attempt, self._rng, retry_after)
        if attempt >= self._settings.max_retries or self._clock() + delay > deadline:
            self._ledger.warn("retry", "Vibefollow unreachable (%s); events kept", error)
            return False
        return not self._sleep(delay)

    def _refused(self, request: Request, error: VibefollowError) -> _PieceResult:
        """A final answer that is not a delivery: hold, split, isolate, or dead-letter."""
        if isinstance(error, AuthError):
            self._refused_key(error)
            return "parked"
        if redirected(error):
            self._redirected(error)
            return "parked"
        divisible = request.path == EVENTS_PATH and len(request.events) > 1
        if divisible and too_large(error):
            return split_request(request)  # halves with their own keys, until they fit
        if divisible and isolatable(error):
            return self._isolate(request, error)
        self._ledger.dead_letter(request, error)
        return "refused"

    def _isolate(self, request: Request, error: VibefollowError) -> tuple[Request, ...]:
        """Dead-letter every event the 422 names; the rest as a new request. Names none: bisect."""
        fields = error.fields if isinstance(error, ValidationError) else ()
        named = failed_event_indexes(fields, len(request.events))
        if not named:
            return split_request(request)  # which events failed is unknown: halve
        self._ledger.dead_letter_events([request.events[i] for i in named], error)
        rest = [e for i, e in enumerate(request.events) if i not in set(named)]
        return (events_request(rest, [encode_event(e) for e in rest]),) if rest else ()

    def _refused_key(self, error: AuthError) -> None:
        self._ledger.last_error = error
        self._circuit.hold(self._timing.auth_pause)
        self._ledger.error(
            "auth",
            "Vibefollow refused the API key (%s %s): check VIBEFOLLOW_API_KEY. Sending is "
            "paused; events are held and tried again every %.0f s",
            error.status,
            error.code or "",
            self._timing.auth_pause,
        )

    def _redirected(self, error: VibefollowError) -> None:
        # Never followed (the client does not): the key would go to wherever it points.
        self._ledger.last_error = error
        self._circuit.hold(self._timing.wrong_url_pause)
        self._ledger.error(
            "redirect",
            "Vibefollow's URL %s answered %s: check VIBEFOLLOW_BASE_URL (or base_url). "
            "Redirects are not followed (the API key would go along); sending is paused, "
            "events are held and tried again every %.0f s",
            self._settings.api_url,
            error,
            self._timing.wrong_url_pause,
        )

    def _no_base_url(self) -> None:
        # Reached only by requests parked earlier (the spool's): new events are dropped
        # when prepared. Give them back, and hold so they are not claimed again at once.
        self._ledger.last_error = VibefollowError(NO_BASE_URL_TEXT, code="invalid_base_url")
        self._circuit.hold(self._timing.wrong_url_pause)
        self._ledger.error("base_url", "%s", NO_BASE_URL_TEXT)


def _rest(piece: Request, pending: Sequence[Request]) -> Request:
    """What is left when a piece must wait: that piece, or it and the pieces after it as one."""
    if not pending:
        return piece  # its key and body kept: a retry of it is recognised
    events = [event for part in (piece, *pending) for event in part.events]
    return events_request(events, [encode_event(e) for e in events])
