"""Events to requests: encode each once, refuse what cannot go, then chunk."""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import ValidationError
from .._event.model import Event
from .outcomes import Outcomes
from .wire import MAX_EVENT_BYTES, Request, encode_event, event_requests, user_requests

__all__ = ["prepare"]


def prepare(events: Sequence[Event], batch_size: int, outcomes: Outcomes) -> list[Request]:
    """User upserts first, then batches; an unencodable or oversized event is dropped alone."""
    encoded: list[tuple[Event, bytes]] = []
    for event in events:
        try:
            data = encode_event(event)
        except Exception as exc:  # noqa: BLE001 - one bad event must not sink the batch
            error = ValidationError(f"not serialisable as JSON: {exc}", field="properties")
            outcomes.drop("unserializable", [event], error)
            continue
        if len(data) > MAX_EVENT_BYTES:
            error = ValidationError(
                f"event is {len(data)} bytes as JSON, over {MAX_EVENT_BYTES}", field="properties"
            )
            outcomes.drop("event_too_large", [event], error)
            continue
        encoded.append((event, data))
    kept = [event for event, _ in encoded]
    return user_requests(kept) + list(event_requests(encoded, batch_size))
