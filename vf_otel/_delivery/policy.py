"""When to send and when to wait: retry backoff, ``Retry-After``, the circuit breaker.

Retry: capped exponential backoff with full jitter; a server's ``Retry-After``
(seconds or an HTTP date) is a floor, honoured in full (events wait parked).

Circuit: after ``threshold`` consecutive failed attempts (network error, 5xx,
408, 429, an answer that is not the API's) it opens and nothing is sent. After a
cool-down it lets exactly one probe through; success closes it, failure reopens
it with a longer cool-down (doubling, capped). Every attempt holds a
``Permit`` and settles it exactly once — sent, failed or abandoned — so a
probe that never went out (a flush with no time left) cannot block the next one.
A *hold* (``Retry-After``, a refused API key) stops every request until it ends.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final, Literal

from . import threads

__all__ = [
    "COOLDOWN_BASE",
    "COOLDOWN_CAP",
    "FAILURE_THRESHOLD",
    "RETRY_AFTER_CAP",
    "CircuitBreaker",
    "Permit",
    "RetryPolicy",
    "parse_retry_after",
]

BACKOFF_BASE: Final = 0.5
BACKOFF_CAP: Final = 30.0
#: A Retry-After longer than a day is taken as a day (a broken header, not a plan).
RETRY_AFTER_CAP: Final = 86_400.0
#: Consecutive failed attempts that open the circuit.
FAILURE_THRESHOLD: Final = 5
#: The first cool-down (seconds); each failed probe doubles it, up to COOLDOWN_CAP.
COOLDOWN_BASE: Final = 1.0
COOLDOWN_CAP: Final = 30.0

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff for attempt ``n`` (0-based) is uniform in [0, min(cap, base * 2**n)]."""

    max_retries: int
    base: float = BACKOFF_BASE
    cap: float = BACKOFF_CAP

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt + 1``; Retry-After is a floor."""
        backoff = rng.uniform(0.0, min(self.cap, self.base * 2.0 ** min(attempt, 32)))
        if retry_after is None:
            return backoff
        return max(backoff, min(retry_after, RETRY_AFTER_CAP))


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - now_epoch
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), RETRY_AFTER_CAP)


class Permit:
    """Leave to send one attempt; settle it with exactly one of its three methods."""

    __slots__ = ("_circuit", "_probe", "_settled")

    def __init__(self, circuit: CircuitBreaker, *, probe: bool) -> None:
        self._circuit = circuit
        self._probe = probe
        self._settled = False

    def succeeded(self) -> None:
        """The server answered as the API does (any status but 5xx/408/429): close."""
        if self._settle():
            self._circuit._succeeded()

    def failed(self, retry_after: float | None = None) -> bool:
        """Network error, 5xx, 408, 429 or a foreign answer; True if the circuit is now open."""
        if self._settle():
            return self._circuit._failed(retry_after, probe=self._probe)
        return self._circuit.state == "open"

    def abandon(self) -> None:
        """The attempt never went out: give the probe slot back."""
        if self._settle() and self._probe:
            self._circuit._probe_abandoned()

    def _settle(self) -> bool:
        first, self._settled = not self._settled, True
        return first


class CircuitBreaker:
    """Thread-safe; every method is O(1) and never blocks on I/O."""

    def __init__(
        self,
        *,
        threshold: int = FAILURE_THRESHOLD,
        cooldown: float = COOLDOWN_BASE,
        cooldown_cap: float = COOLDOWN_CAP,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._threshold = threshold
        self._base = cooldown
        self._cap = max(cooldown, cooldown_cap)
        self._clock = clock
        self._on_change = on_change
        self._lock = threads.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._cooldown = cooldown
        self._open_until = 0.0
        self._hold_until = 0.0
        self._probing = False
        self._proven = False  # no answer from the API yet

    @property
    def state(self) -> State:
        """``closed`` (sending), ``open`` (nothing goes out) or ``half_open`` (probing)."""
        with self._lock:
            if self._state == "open" and self._clock() >= self._open_until:
                return "half_open"
            return self._state

    def acquire(self) -> Permit | None:
        """A permit to send one attempt now, or None (held, open, or a probe is out)."""
        now = self._clock()
        with self._lock:
            if now < self._hold_until:
                return None
            if self._state == "closed":
                return Permit(self, probe=False)
            if self._state == "open" and now < self._open_until:
                return None
            self._state = "half_open"
            if self._probing:
                return None
            self._probing = True
            return Permit(self, probe=True)

    def ready(self) -> bool:
        """Whether ``acquire`` would give a permit now (without taking it)."""
        return self.seconds_until_ready() == 0.0

    def seconds_until_ready(self) -> float:
        """How long until ``acquire`` may say yes (0 now; inf while a probe is out)."""
        now = self._clock()
        with self._lock:
            until = self._hold_until
            if self._state == "open":
                until = max(until, self._open_until)
            elif self._state == "half_open" and self._probing:
                return math.inf
            return max(0.0, until - now)

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed (or a hold is on): send one request at a time."""
        with self._lock:
            return (
                self._failures > 0 or self._state != "closed" or (self._clock() < self._hold_until)
            )

    @property
    def cautious(self) -> bool:
        """Whether requests should go one at a time: until the API first answered as the
        API does (a slow start: a hung or rate-limiting API is met by one request, not
        by every sender at once), and again whenever :attr:`failing`."""
        with self._lock:
            proven = self._proven
        return not proven or self.failing

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (a Retry-After, or a refused key), whatever the state."""
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + seconds)

    def release_hold(self) -> None:
        """End a hold early (the key was fixed, a test moved on)."""
        with self._lock:
            self._hold_until = 0.0
        self._on_change()

    def _succeeded(self) -> None:
        with self._lock:
            changed = self._state != "closed" or not self._proven
            self._proven = True
            self._state = "closed"
            self._failures = 0
            self._cooldown = self._base
            self._probing = False
        if changed:
            self._on_change()

    def _failed(self, retry_after: float | None, *, probe: bool) -> bool:
        now = self._clock()
        with self._lock:
            if retry_after is not None:
                self._hold_until = max(self._hold_until, now + min(retry_after, RETRY_AFTER_CAP))
            self._failures += 1
            if probe:
                # The probe failed: back off further before the next one.
                self._probing = False
                self._cooldown = min(self._cap, self._cooldown * 2)
                self._open(now)
            elif self._state == "closed" and self._failures >= self._threshold:
                self._open(now)
            return self._state == "open"

    def _probe_abandoned(self) -> None:
        with self._lock:
            self._probing = False
        self._on_change()

    def _open(self, now: float) -> None:
        self._state = "open"
        self._open_until = now + self._cooldown
