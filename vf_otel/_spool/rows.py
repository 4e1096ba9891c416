"""How a spooled request is stored: one SQLite row, its events as JSON beside the body."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from .._delivery.wire import EVENTS_PATH, Request
from .._event.model import Event

__all__ = ["ROW_OVERHEAD", "event_weight", "row_events", "row_values"]

#: Per-row bytes counted on top of the body and the events (ids, key, bookkeeping).
ROW_OVERHEAD: Final = 128


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
