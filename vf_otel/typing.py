"""Types for the hooks users pass to vf-otel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._errors import VibefollowError
    from ._event import Event

__all__ = ["ErrorCallback"]


class ErrorCallback(Protocol):
    """``on_error(exc, events)``: called for every event that will never be
    delivered — dead-lettered by the server, rejected by the client-side checks
    (``events`` is then empty: no Event could be built), or dropped at shutdown.
    It runs on the delivery thread (on the logging thread only for a record with no
    user), must not block, and what it raises is logged and ignored.
    """

    def __call__(self, exc: VibefollowError, events: Sequence[Event], /) -> None: ...
