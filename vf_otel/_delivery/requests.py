"""Events to requests: encode each once, refuse what cannot go (counted), then chunk."""

from __future__ import annotations

from collections.abc import Sequence

from .._config import Settings
from .._errors import ValidationError
from .._event.model import Event
from .accounting import Ledger
from .wire import MAX_EVENT_BYTES, Request, encode_event, event_requests, user_requests

__all__ = ["prepare"]


def prepare(events: Sequence[Event], settings: Settings, ledger: Ledger) -> list[Request]:
    """User upserts first, then batches; an unencodable or oversized event is dropped alone."""
    encoded: list[tuple[Event, bytes]] = []
    for event in events:
        try:
            data = encode_event(event)
        except Exception as exc:  # noqa: BLE001 - one bad event must not sink the batch
            error = ValidationError(
                f"not serialisable as JSON: {exc}", status=0, field="properties"
            )
            ledger.drop("unserializable", [event], error)
            continue
        if len(data) > MAX_EVENT_BYTES:
            error = ValidationError(
                f"event is {len(data)} bytes as JSON, over {MAX_EVENT_BYTES}",
                status=0,
                field="properties",
            )
            ledger.drop("event_too_large", [event], error)
            continue
        encoded.append((event, data))
    kept = [event for event, _ in encoded]
    return _upserts(kept, ledger) + list(event_requests(encoded, settings.batch_size))


def _upserts(events: Sequence[Event], ledger: Ledger) -> list[Request]:
    """One merged upsert per user; a user whose traits cannot be encoded loses only theirs."""
    by_user: dict[str, list[Event]] = {}
    for event in events:
        if event.traits is not None:
            by_user.setdefault(event.user_id, []).append(event)
    requests: list[Request] = []
    for user_events in by_user.values():
        try:
            requests.extend(user_requests(user_events))
        except Exception as exc:  # noqa: BLE001 - one user's traits must not sink the batch
            error = ValidationError(
                f"traits not serialisable as JSON: {exc}", status=0, field="traits"
            )
            ledger.upsert_failed(error)
    return requests
