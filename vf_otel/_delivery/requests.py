"""Events to requests: encode each once, refuse what cannot go (counted), then chunk."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Final

from .._config import Settings
from .._errors import UndeliveredError, ValidationError
from .._event.model import Event
from .._event.validate import SAME_AS_IDENTIFY, email_problem, is_identify
from .ledger import Ledger
from .wire import MAX_EVENT_BYTES, Request, encode_event, event_requests, user_requests

__all__ = ["NO_BASE_URL_TEXT", "prepare"]

#: ``Pace.in_steps``: ``encode`` over the events a few at a time, pausing in between.
InSteps = Callable[
    [Callable[[list[Event]], list[tuple[Event, bytes]]], list[Event]],
    list[tuple[Event, bytes]],
]

_TRAITS: Final = operator.attrgetter("traits")
_NAME: Final = operator.attrgetter("name")

#: Why nothing is sent when VIBEFOLLOW_BASE_URL was invalid (the value is never quoted).
NO_BASE_URL_TEXT: Final = (
    "VIBEFOLLOW_BASE_URL is invalid: nothing is sent until it is fixed "
    "(run `vf-otel doctor` for the reason)"
)


def prepare(
    events: Sequence[Event],
    settings: Settings,
    ledger: Ledger,
    in_steps: InSteps | None = None,
    measured: Callable[[int, int], None] | None = None,
) -> list[Request]:
    """User upserts first, then batches; an unencodable or oversized event is dropped alone.

    ``in_steps`` (the worker's ``Pace.in_steps``) encodes a few events at a time, letting
    the app's threads run in between; without it, all at once. ``measured(events, bytes)``
    is told the JSON size of the events encoded (oversized ones too), a chunk at a time.
    """
    if not settings.has_base_url:
        # An invalid VIBEFOLLOW_BASE_URL: no host is the right one, so nothing goes out.
        ledger.drop("invalid_base_url", events, UndeliveredError(NO_BASE_URL_TEXT))
        return []

    def encode(chunk: list[Event]) -> list[tuple[Event, bytes]]:
        encoded: list[tuple[Event, bytes]] = []
        size = 0
        for event in chunk:
            try:
                data = encode_event(event)
            except Exception as exc:  # noqa: BLE001 - one bad event must not sink the batch
                error = ValidationError(
                    f"not serialisable as JSON: {exc}", status=0, field="properties"
                )
                ledger.drop("unserializable", [event], error)
                continue
            size += len(data)
            if len(data) > MAX_EVENT_BYTES:
                error = ValidationError(
                    f"event is {len(data)} bytes as JSON, over {MAX_EVENT_BYTES}",
                    status=0,
                    field="properties",
                )
                ledger.drop("event_too_large", [event], error)
                continue
            encoded.append((event, data))
        if measured is not None:
            measured(len(chunk), size)
        return encoded

    pairs = encode(list(events)) if in_steps is None else in_steps(encode, list(events))
    kept = [event for event, _ in pairs]
    bodies = [data for _, data in pairs]
    # Passes in C over the batch: most carry no traits and no identify().
    # (``is not``: a traits mapping's own __eq__ is never run.)
    has_traits = any(map(operator.is_not, map(_TRAITS, kept), itertools.repeat(None)))
    requests = _upserts(kept, ledger) if has_traits else []
    if True in map(SAME_AS_IDENTIFY, map(_NAME, kept)):
        # An identify() is only its user upsert: it never goes out as an event.
        pairs = [pair for pair in zip(kept, bodies, strict=True) if not is_identify(pair[0].name)]
        kept, bodies = [event for event, _ in pairs], [data for _, data in pairs]
    requests += event_requests(kept, bodies, settings.batch_size)
    return requests


def _upserts(events: Sequence[Event], ledger: Ledger) -> list[Request]:
    """One merged upsert per user; a user whose traits cannot be encoded loses only theirs."""
    by_user: dict[str, list[Event]] = {}
    for event in events:
        if event.traits is not None:
            by_user.setdefault(event.user_id, []).append(event)
    requests: list[Request] = []
    for user_events in by_user.values():
        merged: dict[str, object] = {}
        for event in user_events:
            merged.update(event.traits or {})
        problem = email_problem(merged)
        if problem is not None:
            # The API would refuse the upsert: it alone is lost; the events still go.
            ledger.upsert_failed(ValidationError(problem, status=0, field="traits.email"))
            continue
        try:
            requests.extend(user_requests(user_events))
        except Exception as exc:  # noqa: BLE001 - one user's traits must not sink the batch
            error = ValidationError(
                f"traits not serialisable as JSON: {exc}", status=0, field="traits"
            )
            ledger.upsert_failed(error)
    return requests
