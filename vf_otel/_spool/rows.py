"""How a spooled request is stored: one SQLite row, its events as JSON beside the body.

Also reading rows back into requests, and choosing the rows the size cap evicts.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, Final

from .._delivery.wire import EVENTS_PATH, Request
from .._event.model import Event

__all__ = [
    "DELETE",
    "ROW_OVERHEAD",
    "decoded",
    "event_weight",
    "make_room",
    "row_events",
    "row_values",
]

_logger = logging.getLogger("vf_otel.spool")

#: Per-row bytes counted on top of the body and the events (ids, key, bookkeeping).
ROW_OVERHEAD: Final = 128
DELETE: Final = "DELETE FROM vf_requests WHERE id = ?"
_TOTAL_SIZE: Final = "SELECT COALESCE(SUM(size), 0) FROM vf_requests"
_SIZES: Final = "SELECT id, size, owner, lease_until FROM vf_requests ORDER BY id"
_ROW: Final = "SELECT id, path, key, body, events FROM vf_requests WHERE id = ?"


def row_values(request: Request) -> tuple[str, str, bytes, str, int, int]:
    events = json.dumps([_event_json(e) for e in request.events], separators=(",", ":"))
    size = len(request.body) + len(events) + len(request.key) + ROW_OVERHEAD
    return request.path, request.key, request.body, events, request.weight, size


def _event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.event_id,
        "name": event.name,
        "user": event.user_id,
        "properties": dict(event.properties),
        "at": event.occurred_at.isoformat(),
        "traits": None if event.traits is None else dict(event.traits),
    }


def row_events(text: str) -> tuple[Event, ...]:
    return tuple(
        Event(
            item["name"],
            item["user"],
            item["properties"],
            datetime.fromisoformat(item["at"]),
            item["id"],
            item["traits"],
        )
        for item in json.loads(text)
    )


def event_weight(requests: Sequence[Request]) -> int:
    """Events in ``requests``, not counting user upserts (what ``spooled`` counts)."""
    return sum(len(r.events) for r in requests if r.path == EVENTS_PATH)


def decoded(conn: sqlite3.Connection, rows: list[Any]) -> list[tuple[Request, int]]:
    """``(id, path, key, body, events)`` rows as requests with their row ids."""
    requests = []
    for row_id, path, key, body, events in rows:
        try:
            requests.append((Request(path, key, bytes(body), row_events(events)), row_id))
        except (ValueError, TypeError, KeyError, AttributeError):
            # Unreadable (a foreign writer?): delete it so it cannot block the rest.
            _logger.exception("vf-otel spool: dropping unreadable row %s", row_id)
            conn.execute(DELETE, (row_id,))
    return requests


def make_room(
    conn: sqlite3.Connection, excess: int, now: float, gone: Callable[[], Collection[int]]
) -> list[Any] | None:
    """The oldest rows to evict so that new rows ``excess`` bytes over the cap fit.

    ``excess`` is the new rows' size minus the cap. The new rows are not in the table
    yet, so they are never chosen. A row a running process is sending now (leased, its
    holder not among the ``gone()`` pids) is spared: it is about to go. None when the
    other rows are too few: then nothing is to be evicted, nor stored.
    """
    (total,) = conn.execute(_TOTAL_SIZE).fetchone()
    excess += total
    if excess <= 0:
        return []
    ended = gone()
    chosen: list[int] = []
    for row_id, size, owner, lease_until in conn.execute(_SIZES).fetchall():
        if excess <= 0:
            break
        if lease_until > now and owner not in ended:
            continue
        chosen.append(row_id)
        excess -= size
    if excess > 0:
        return None
    return [conn.execute(_ROW, (row_id,)).fetchone() for row_id in chosen]
