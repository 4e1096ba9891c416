"""Delivery counters: every event is counted once as sent, dead-lettered or dropped."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["Counters", "Stats"]


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of one pipeline's counters.

    ``enqueued`` events end up ``sent``, ``dead_lettered`` (the server refused
    them for good), ``dropped`` (never delivered, by reason) or are still
    ``queued`` / in the in-memory retry ``backlog`` / in the durable spool.
    ``retried`` counts HTTP retries; ``dropped`` also counts events refused
    before they were enqueued; ``spooled`` counts events written to the spool.
    """

    enqueued: int = 0
    sent: int = 0
    retried: int = 0
    dead_lettered: int = 0
    users_sent: int = 0
    dropped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    queued: int = 0
    backlog: int = 0
    spooled: int = 0

    @property
    def dropped_total(self) -> int:
        """All drops, whatever the reason."""
        return sum(self.dropped.values())


class Counters:
    """Thread-safe counters shared by the app thread and the delivery worker."""

    __slots__ = ("_dropped", "_lock", "_values")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()

    def add(self, name: str, count: int = 1) -> None:
        """Add to one of enqueued, sent, retried, dead_lettered, users_sent, spooled."""
        with self._lock:
            self._values[name] += count

    def drop(self, reason: str, count: int = 1) -> None:
        """Count events that will never be delivered, by reason."""
        with self._lock:
            self._dropped[reason] += count

    def reset(self) -> None:
        """Start from zero (a forked child counts only its own events)."""
        self._lock = threading.Lock()
        self._values = Counter()
        self._dropped = Counter()

    def snapshot(self, *, queued: int = 0, backlog: int = 0) -> Stats:
        """An immutable copy of the counters."""
        with self._lock:
            values = dict(self._values)
            dropped = dict(self._dropped)
        return Stats(
            enqueued=values.get("enqueued", 0),
            sent=values.get("sent", 0),
            retried=values.get("retried", 0),
            dead_lettered=values.get("dead_lettered", 0),
            users_sent=values.get("users_sent", 0),
            dropped=MappingProxyType(dropped),
            queued=queued,
            backlog=backlog,
            spooled=values.get("spooled", 0),
        )
