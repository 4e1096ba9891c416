"""Requests as they go on the wire: bodies, chunks, idempotency keys, error envelopes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .._event.model import Event, idempotency_key

__all__ = [
    "EVENTS_PATH",
    "MAX_EVENT_BYTES",
    "MAX_REQUEST_BYTES",
    "USERS_PATH",
    "ErrorDetail",
    "Request",
    "encode_event",
    "error_detail",
    "event_requests",
    "failed_event_index",
    "user_requests",
]

EVENTS_PATH: Final = "/events/batch"
USERS_PATH: Final = "/users"
#: An event whose JSON is larger than this is dropped (reason ``event_too_large``).
MAX_EVENT_BYTES: Final = 64 * 1024
#: Requests are split so that no body exceeds this, whatever the batch size.
MAX_REQUEST_BYTES: Final = 1024 * 1024
_INDEXED_FIELD: Final = re.compile(r"^events\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class Request:
    """One POST, fixed once built: a retry sends the same key and the same bytes."""

    path: str
    key: str
    body: bytes
    events: tuple[Event, ...]

    @property
    def weight(self) -> int:
        """How much room it takes in the backlog: its events, or 1 for a user upsert."""
        return len(self.events) if self.path == EVENTS_PATH else 1


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """The first entry of an error envelope ``{"errors": [{code, message, field?}]}``."""

    code: str | None
    message: str
    field: str | None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode()


def encode_event(event: Event) -> bytes:
    """The event's wire JSON (raises ValueError/TypeError if it is not strict JSON)."""
    return _dumps(event.to_wire())


def event_requests(encoded: Sequence[tuple[Event, bytes]], batch_size: int) -> Iterator[Request]:
    """``/events/batch`` requests of at most ``batch_size`` events and MAX_REQUEST_BYTES."""
    chunk: list[tuple[Event, bytes]] = []
    size = 0
    for event, data in encoded:
        if chunk and (len(chunk) >= batch_size or size + len(data) + 16 > MAX_REQUEST_BYTES):
            yield events_request([e for e, _ in chunk], [d for _, d in chunk])
            chunk, size = [], 0
        chunk.append((event, data))
        size += len(data) + 1
    if chunk:
        yield events_request([e for e, _ in chunk], [d for _, d in chunk])


def events_request(events: Sequence[Event], encoded: Sequence[bytes]) -> Request:
    """One batch request; its key is derived from exactly these event ids."""
    body = b'{"events":[' + b",".join(encoded) + b"]}"
    key = idempotency_key(EVENTS_PATH, (e.event_id for e in events))
    return Request(EVENTS_PATH, key, body, tuple(events))


def user_requests(events: Sequence[Event]) -> list[Request]:
    """One ``/users`` upsert per user whose events carry traits, later traits winning."""
    merged: dict[str, tuple[dict[str, Any], list[Event]]] = {}
    for event in events:
        if event.traits is None:
            continue
        traits, sources = merged.setdefault(event.user_id, ({}, []))
        traits.update(event.traits)
        sources.append(event)
    requests = []
    for sources_traits, sources in merged.values():
        first = sources[0]
        upsert = Event(first.name, first.user_id, {}, first.occurred_at, "", sources_traits)
        key = idempotency_key(USERS_PATH, (e.event_id for e in sources))
        requests.append(Request(USERS_PATH, key, _dumps(upsert.user_upsert()), tuple(sources)))
    return requests


def error_detail(payload: bytes) -> ErrorDetail:
    """Parse an error envelope, tolerating anything the server (or a proxy) sends."""
    try:
        data = json.loads(payload)
        first = data["errors"][0]
        code, message, field = first.get("code"), first.get("message"), first.get("field")
    # RecursionError: json.loads gives up on deeply nested junk (a proxy's, or a hostile body).
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError):
        return ErrorDetail(None, payload[:200].decode("utf-8", "replace"), None)
    return ErrorDetail(
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else "",
        field if isinstance(field, str) else None,
    )


def failed_event_index(field: str | None, count: int) -> int | None:
    """The event a 422 names (``events[3].name`` -> 3), if it is one of ``count``."""
    match = _INDEXED_FIELD.match(field or "")
    if match is None:
        return None
    index = int(match.group(1))
    return index if index < count else None
