"""A circuit breaker: during an outage, stop sending instead of retrying in a loop.

After ``threshold`` consecutive failed attempts (network error, 5xx, 429) the
circuit opens: delivery parks (or spools) requests at once without sending.
After a cool-down it half-opens and lets exactly one probe request through;
success closes it, failure reopens it with a longer cool-down (doubling, capped).
A ``Retry-After`` from the server also holds every request back until it passes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final, Literal

__all__ = ["COOLDOWN_BASE", "COOLDOWN_CAP", "FAILURE_THRESHOLD", "CircuitBreaker"]

#: Consecutive failed attempts that open the circuit.
FAILURE_THRESHOLD: Final = 5
#: The first cool-down (seconds); each failed probe doubles it, up to COOLDOWN_CAP.
COOLDOWN_BASE: Final = 1.0
COOLDOWN_CAP: Final = 30.0
#: A Retry-After longer than this is honoured only up to it.
HOLD_CAP: Final = 120.0
#: A probe that never reported back (it crashed) stops blocking others after this.
PROBE_TIMEOUT: Final = 60.0

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Thread-safe; every method is O(1) and never blocks on I/O."""

    __slots__ = (
        "_base",
        "_cap",
        "_clock",
        "_cooldown",
        "_failures",
        "_hold_until",
        "_lock",
        "_open_until",
        "_probe_started",
        "_state",
        "_threshold",
    )

    def __init__(
        self,
        *,
        threshold: int = FAILURE_THRESHOLD,
        cooldown: float = COOLDOWN_BASE,
        cooldown_cap: float = COOLDOWN_CAP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._base = cooldown
        self._cap = max(cooldown, cooldown_cap)
        self._clock = clock
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._cooldown = cooldown
        self._open_until = 0.0
        self._hold_until = 0.0
        self._probe_started: float | None = None

    @property
    def state(self) -> State:
        """``closed`` (sending), ``open`` (parking everything) or ``half_open`` (probing)."""
        with self._lock:
            if self._state == "open" and self._clock() >= self._open_until:
                return "half_open"
            return self._state

    def allow(self) -> bool:
        """Whether an attempt may be sent now; in half-open state, only the one probe."""
        now = self._clock()
        with self._lock:
            if now < self._hold_until:
                return False
            if self._state == "closed":
                return True
            if self._state == "open":
                if now < self._open_until:
                    return False
                self._state = "half_open"
            probing = self._probe_started is not None and now - self._probe_started < PROBE_TIMEOUT
            if probing:
                return False
            self._probe_started = now
            return True

    def seconds_until_allowed(self) -> float:
        """How long until :meth:`allow` may say yes (0 when it would now)."""
        now = self._clock()
        with self._lock:
            until = self._hold_until
            if self._state == "open":
                until = max(until, self._open_until)
            return max(0.0, until - now)

    def record_success(self) -> None:
        """The server answered (any answer but network error, 5xx or 429): close."""
        with self._lock:
            self._state = "closed"
            self._failures = 0
            self._cooldown = self._base
            self._probe_started = None

    def record_failure(self, retry_after: float | None = None) -> bool:
        """Count a failed attempt; True when the circuit is (now) open."""
        now = self._clock()
        with self._lock:
            if retry_after is not None:
                self._hold_until = max(self._hold_until, now + min(retry_after, HOLD_CAP))
            self._failures += 1
            if self._state == "half_open":
                # The probe failed: back off further before the next one.
                self._cooldown = min(self._cap, self._cooldown * 2)
                self._open(now)
            elif self._state == "closed" and self._failures >= self._threshold:
                self._open(now)
            return self._state == "open"

    def _open(self, now: float) -> None:
        self._state = "open"
        self._open_until = now + self._cooldown
        self._probe_started = None
