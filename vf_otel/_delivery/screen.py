"""Between building and sending: the worker's build of queued items, and ``before_send``.

Both count what they leave out on the pipeline's ledger: a refused log call by
its reason, values lost to keys that became one string, an event the app's
``before_send`` left out (``filtered``, the app's choice) or failed on
(``before_send_failed``, a loss, reported to ``on_error``: it raised, or returned
something other than None or an Event whose fields have the types Event declares).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from .._errors import UndeliveredError
from .._event.build import build_batch
from .._event.model import Event
from .._event.values import KeyCollisions
from ..typing import BeforeSend
from .ledger import Ledger

__all__ = ["Screen", "build_counted"]


def build_counted(items: Sequence[object], ledger: Ledger) -> list[Event]:
    """The Events for queued items, in order; every refusal and key collision is counted."""
    collisions = KeyCollisions()  # values lost to keys that became the same string
    events, refused = build_batch(items, collisions)
    for rejection in refused:
        if rejection.cause is not None:  # a failure no check foresaw: a bug to report as one
            ledger.error("build", "vf-otel could not build an event", exc_info=rejection.cause)
            error = UndeliveredError(f"could not build an event: {rejection.message}")
            ledger.drop("internal_error", (), error, count=1)
        else:
            ledger.reject(rejection.reason, rejection.field, rejection.message)  # type: ignore[arg-type]
    ledger.keys_collided(collisions)
    return events


class Screen:
    """The app's ``before_send``: what it keeps, as it rewrote it; everything without one."""

    __slots__ = ("_before_send", "_ledger")

    def __init__(self, before_send: BeforeSend | None, ledger: Ledger) -> None:
        self._before_send = before_send
        self._ledger = ledger

    def __call__(self, events: Sequence[Event]) -> list[Event]:
        before_send = self._before_send
        if before_send is None:
            return list(events)
        ledger = self._ledger
        kept: list[Event] = []
        left_out = 0
        for event in events:
            try:
                result: object = before_send(event)
            except Exception as exc:  # noqa: BLE001 - the app's hook drops one event, never more
                ledger.error("before_send", "before_send raised", exc_info=True)
                error = UndeliveredError(f"before_send raised {type(exc).__name__}")
                ledger.drop("before_send_failed", [event], error)
                continue
            if result is None:
                left_out += 1
            elif not isinstance(result, Event):
                error = UndeliveredError(
                    f"before_send returned {type(result).__name__}, not an Event or None"
                )
                ledger.drop("before_send_failed", [event], error)
            elif (problem := _malformed(result)) is not None:
                # Not checked again later: a user id that is a list would fail the batch.
                error = UndeliveredError(f"before_send returned an Event whose {problem}")
                ledger.drop("before_send_failed", [event], error)
            else:
                kept.append(result)
        if left_out:
            ledger.filtered(left_out)
        return kept


def _malformed(event: Event) -> str | None:
    """What makes an Event the app rewrote unfit to send (its field types), or None.

    Event does not check its fields (a dataclass), so ``replace(event, user_id=[1])``
    is an Event; read here as plain objects, as the app may have set them.
    """
    for field in ("name", "user_id", "event_id"):
        if not isinstance(getattr(event, field), str):
            return f"{field} is not a str"
    properties: object = event.properties
    traits: object = event.traits
    occurred_at: object = event.occurred_at
    if not isinstance(properties, Mapping):
        return "properties are not a mapping"
    if traits is not None and not isinstance(traits, Mapping):
        return "traits are neither a mapping nor None"
    if not isinstance(occurred_at, datetime):
        return "occurred_at is not a datetime"
    return None
