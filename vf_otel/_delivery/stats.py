"""The vocabulary of delivery: each state an event can be in, and why one is lost.

The vocabulary, used alike in code, ``stats()``, metrics and the docs:

    queued       in the handler's queue, not yet taken by the worker
    in flight    in a request being attempted now (or waiting between its retries)
    parked       waiting in memory for a later attempt (circuit open, key refused, ...)
    spooled      written to the durable spool for a later attempt (this or another process)
    delivered    accepted by the API                        -> ``sent``
    dead-lettered  refused by the API for good              -> ``dead_lettered``
    dropped      never delivered, for a ``DropReason``     -> ``dropped[reason]``

Every event that is enqueued ends as exactly one of delivered, dead-lettered or
dropped, or is still queued, in flight, parked or spooled. ``Stats`` is a snapshot
of those counts and ``REFUSAL_TEXT`` words the refusals on the app's thread; the
``Ledger`` (``ledger.py``) is the only thing that changes the counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, get_args

__all__ = ["DROP_REASONS", "REFUSAL_TEXT", "DropReason", "Stats"]

#: Why an event was never delivered (``stats().dropped`` keys).
DropReason = Literal[
    # refused on the app's thread, before it was queued
    "queue_full",
    "shutdown",
    "no_api_key",
    # refused by the client-side checks (vf_otel._event.build)
    "missing_user",
    "invalid_user",
    "invalid_name",
    "invalid_properties",
    "invalid_traits",
    "missing_required_property",
    "invalid_occurred_at",
    # left out by the app's before_send: it returned None, or it raised
    "filtered",
    "before_send_failed",
    # refused while preparing a request
    "unserializable",
    "event_too_large",
    "invalid_base_url",
    # lost while waiting for a later attempt
    "backlog_full",
    "spool_evicted",
    # in a spool this process can no longer send from (its file deleted, or it broke)
    "spool_lost",
    # a bug in vf-otel (or a value nothing could handle): counted, reported, never raised
    "internal_error",
]
DROP_REASONS: Final[frozenset[str]] = frozenset(get_args(DropReason))

#: The refusals on the app's thread, in words (any other reason is worded by its name).
REFUSAL_TEXT: Final[Mapping[str, str]] = {
    "queue_full": "the queue is full (raise max_queue_size or check delivery)",
    "shutdown": "the handler or exporter is closed",
    "no_api_key": "VIBEFOLLOW_API_KEY is not set",
}


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of one handler's or exporter's counts.

    Every ``enqueued`` event ends up ``sent``, ``dead_lettered`` (the server
    refused it for good) or ``dropped`` (never delivered, by reason), or is
    still ``queued``, ``in_flight``, ``parked`` in memory, or spooled.
    ``dropped`` also counts events refused before they were enqueued.
    ``retried`` counts HTTP retries; ``spooled`` counts events written to the
    spool (cumulative); ``backlog`` is ``in_flight + parked``.
    ``disabled`` counts what was handed over while delivery is off (``enabled=False``):
    not enqueued, not sent, and no loss (never in ``dropped``, never reported).
    ``key_collisions`` counts property and trait values left out because two keys of
    one mapping became the same string (``1`` and ``"1"``; the last value wins): their
    events are still delivered, so it is warned about but is no drop.
    A user upsert is no event: ``users_in_flight`` and ``users_parked`` count the ones
    on their way (in a request, or waiting in memory), ``users_sent`` and
    ``users_failed`` how they ended.
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
    in_flight: int = 0
    parked: int = 0
    users_failed: int = 0
    disabled: int = 0
    key_collisions: int = 0
    users_in_flight: int = 0
    users_parked: int = 0

    @property
    def dropped_total(self) -> int:
        """All drops, whatever the reason."""
        return sum(self.dropped.values())
