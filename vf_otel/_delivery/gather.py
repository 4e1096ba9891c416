"""When the worker sends a partial batch: at once after a quiet spell, later when busy.

A quiet app wants its events delivered in milliseconds (a ``user_signed_up`` is a
welcome email); a busy one wants batches of hundreds, so that the API's rate limits
are not spent on tiny requests. As a TCP stack does (Nagle), the worker sends what
is queued at once when nothing of its own is in flight, and lets events gather into
the next batch while a request is out. On loopback a request is out for a few
milliseconds, so that alone would send one request per event at 100 events/s: the
worker also waits, after each partial batch, a *gather window* that grows with the
recent event rate, ``rate * WINDOW_PER_RATE`` seconds (71 ms at 100 events/s,
7 ms at 10 events/s, a full batch before the window ends at 1,000 events/s). The
first event after a quiet spell longer than the window goes out at once. A queue
that holds a full batch when the window ends sends full batches only: the rest
waits for the next window, so a busy app never sends a full batch and a crumb.

``flush_interval`` stays the upper bound: nothing waits longer, whatever the
window says. While the API fails (the circuit is open, or the last attempt
failed) nothing is sent early: batches fill up to ``batch_size`` or the interval,
as they did before, and what is parked is a few large requests, not many small.

The rate is counted on the worker: the events taken in the last ``RATE_SPAN``
seconds, or in the last two gaps between takes when those are longer (a busy app's
full batches half a second apart are counted over a second, not as a burst of 500
and then nothing): the app's threads do nothing more
than before. They wake the worker for the first event only when it would send it
at once (``EventQueue.wake_early``); otherwise once per batch, as before.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

__all__ = ["RATE_SPAN", "WINDOW_PER_RATE", "Gather"]

#: The gather window is the recent rate (events/s) times this (seconds per event/s):
#: 1/1400 gives 71 ms at 100 events/s (at most 14 requests/s, half a window's wait
#: on average), 714 ms at 1,000 events/s (a batch of 500 fills first: 2 requests/s).
WINDOW_PER_RATE: Final = 1 / 1400
#: The recent rate counts the events taken in the last this many seconds: short, so
#: that a rising rate widens the window within a few batches.
RATE_SPAN: Final = 0.25


class Gather:
    """The recent event rate, and when the worker may send a partial batch."""

    __slots__ = ("_gap", "_interval", "_last_take", "_taken", "_takes", "enabled")

    def __init__(self, interval: float, *, enabled: bool) -> None:
        self._interval = interval
        #: False (``adaptive_batching=False``): partial batches wait for the interval.
        self.enabled = enabled
        self._takes: deque[tuple[float, int]] = deque()  # (when, events) in RATE_SPAN
        self._taken = 0  # their events
        self._last_take = -math.inf
        self._gap = 0.0  # between the last two takes

    def rate(self, now: float) -> float:
        """Events taken per second lately (see the module docstring)."""
        span = max(RATE_SPAN, 2 * self._gap)
        takes = self._takes
        while takes and takes[0][0] <= now - span:
            self._taken -= takes.popleft()[1]
        return self._taken / span

    def window(self, now: float) -> float:
        """How long after a take the next partial batch waits (at most the interval)."""
        return min(self._interval, self.rate(now) * WINDOW_PER_RATE)

    def took(self, count: int, now: float) -> None:
        """The worker took ``count`` events from the queue at ``now``."""
        if self._last_take > -math.inf:
            self._gap = now - self._last_take
        self._takes.append((now, count))
        self._taken += count
        self._last_take = now

    def opens_at(self, now: float) -> float:
        """When a partial batch may go (``now`` or earlier: at once); inf when disabled."""
        if not self.enabled:
            return math.inf
        return self._last_take + self.window(now)

    def after_fork(self) -> None:
        """In a forked child: the parent's rate is not the child's."""
        self._takes = deque()
        self._taken = 0
        self._last_take = -math.inf
        self._gap = 0.0
