"""The attempt loop: send one request until it is delivered, refused for good, or must wait.

One loop with a deadline, as the OTLP exporter has, returning an outcome rather
than raising: ``sent``, ``refused`` (dead-lettered, counted and reported), or
``parked`` (the circuit is open, the key was refused, the retry budget or the
deadline ran out, or delivery is stopping). A parked request keeps its key and
body; the caller puts it where parked requests wait. A 422 that names one event
dead-letters that event alone and goes on with the rest as a new request.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Final, Literal

from .._config import Settings
from .._errors import AuthError, VibefollowError
from .accounting import Ledger
from .answers import retryable
from .client import Client
from .policy import CircuitBreaker, Permit, RetryPolicy
from .wire import EVENTS_PATH, Request, encode_event, events_request, failed_event_index

__all__ = ["AUTH_PAUSE", "Attempts", "Outcome"]

#: After a 401/403, how long to hold every request before trying the key again.
AUTH_PAUSE: Final = 60.0

Outcome = Literal["sent", "refused", "parked"]


class Attempts:
    """Runs the attempt loop for one request at a time per calling thread; thread-safe."""

    def __init__(
        self,
        settings: Settings,
        client: Client,
        circuit: CircuitBreaker,
        ledger: Ledger,
        *,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._circuit = circuit
        self._ledger = ledger
        self._stop = stop
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        # Returns True when interrupted (delivery is stopping): the wait is cut short.
        self._sleep = sleep or stop.wait
        self._policy = RetryPolicy(settings.max_retries)

    def run(self, request: Request, deadline: float) -> tuple[Outcome, Request]:
        """Attempt ``request`` until an outcome; the request returned may be narrowed."""
        attempt = 0
        while True:
            permit = None if self._stop.is_set() else self._circuit.acquire()
            if permit is None:
                return "parked", request  # stopping, open, held, or another probe is out
            remaining = deadline - self._clock()
            if remaining <= 0:
                permit.abandon()  # out of time before sending: not the server's failure
                return "parked", request
            if attempt:
                self._ledger.retried()  # counted as it goes out, not when it was planned
            try:
                error = self._client.post(request, min(self._settings.timeout, remaining))
            except BaseException:
                permit.abandon()
                raise
            if error is None:
                permit.succeeded()
                self._ledger.sent(request)
                return "sent", request
            if not retryable(error):
                permit.succeeded()  # the API answered: it is up
                narrowed = self._refused(request, error)
                if narrowed is None:
                    return ("parked" if isinstance(error, AuthError) else "refused"), request
                request, attempt = narrowed, 0
                continue
            if not self._wait_to_retry(permit, error, attempt, deadline):
                return "parked", request
            attempt += 1

    def _refused(self, request: Request, error: VibefollowError) -> Request | None:
        """A final answer: hold on a refused key, else dead-letter what it names.

        The rest of a narrowed request comes back to be sent; None when nothing is left.
        """
        if isinstance(error, AuthError):
            self._refused_key(error)
            return None
        return self._isolate(request, error)

    def _wait_to_retry(
        self, permit: Permit, error: VibefollowError, attempt: int, deadline: float
    ) -> bool:
        """Record the failure and wait the backoff; False when the request must park instead."""
        self._ledger.last_error = error
        retry_after = getattr(error, "retry_after", None)
        if permit.failed(retry_after):
            self._ledger.warn("circuit", "Vibefollow unreachable (%s); events kept", error)
            return False
        delay = self._policy.delay(attempt, self._rng, retry_after)
        if attempt >= self._settings.max_retries or self._clock() + delay > deadline:
            self._ledger.warn("retry", "Vibefollow unreachable (%s); events kept", error)
            return False
        return not self._sleep(delay)

    def _isolate(self, request: Request, error: VibefollowError) -> Request | None:
        """Dead-letter what ``error`` names; the rest as a new request, or None if nothing is."""
        index = failed_event_index(getattr(error, "field", None), len(request.events))
        if request.path != EVENTS_PATH or index is None or len(request.events) == 1:
            self._ledger.dead_letter(request, error)
            return None
        self._ledger.dead_letter_events([request.events[index]], error)
        rest = [e for i, e in enumerate(request.events) if i != index]
        return events_request(rest, [encode_event(e) for e in rest])

    def _refused_key(self, error: AuthError) -> None:
        self._ledger.last_error = error
        self._circuit.hold(AUTH_PAUSE)
        self._ledger.error(
            "auth",
            "Vibefollow refused the API key (%s %s): check VIBEFOLLOW_API_KEY. Sending is "
            "paused; events are held and tried again every %.0f s",
            error.status,
            error.code or "",
            AUTH_PAUSE,
        )
