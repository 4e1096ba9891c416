"""The in-memory retry backlog: requests parked for a later attempt, bounded by weight."""

from __future__ import annotations

import threading
from collections import deque

from .wire import Request

__all__ = ["Backlog"]


class Backlog:
    """A FIFO of parked requests holding at most ``limit`` events; the oldest are evicted."""

    __slots__ = ("_items", "_limit", "_lock", "_weight")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._items: deque[Request] = deque()
        self._weight = 0

    def __len__(self) -> int:
        """Events (or user upserts) held."""
        return self._weight

    def add(self, request: Request) -> list[Request]:
        """Park ``request``; return the oldest requests evicted to stay within the limit."""
        with self._lock:
            self._items.append(request)
            self._weight += request.weight
            evicted = []
            # The newest request always stays, even when it alone is over the limit.
            while self._weight > self._limit and len(self._items) > 1:
                oldest = self._items.popleft()
                self._weight -= oldest.weight
                evicted.append(oldest)
        return evicted

    def take(self) -> list[Request]:
        """Remove and return everything, oldest first."""
        with self._lock:
            taken = list(self._items)
            self._items.clear()
            self._weight = 0
        return taken
