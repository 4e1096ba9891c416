"""Between building and sending: the worker's build of queued items, and ``before_send``.

Both count what they leave out on the pipeline's ledger: a refused log call by
its reason, values lost to keys that became one string, an event the app's
``before_send`` left out (``filtered``, the app's choice) or failed on
(``before_send_failed``, a loss, reported to ``on_error``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import UndeliveredError
from .._event.coerce import KeyCollisions
from .._event.model import Event
from .._event.pending import build_batch
from ..typing import BeforeSend
from .ledger import Ledger

__all__ = ["Screen", "build_counted"]


def build_counted(items: Sequence[object], ledger: Ledger) -> list[Event]:
    """The Events for queued items, in order; every refusal and key collision is counted."""
    collisions = KeyCollisions()  # values lost to keys that became the same string
    events, refused = build_batch(items, collisions)
    for rejection in refused:
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
            elif isinstance(result, Event):
                kept.append(result)
            else:
                error = UndeliveredError(
                    f"before_send returned {type(result).__name__}, not an Event or None"
                )
                ledger.drop("before_send_failed", [event], error)
        if left_out:
            ledger.filtered(left_out)
        return kept
