"""How delivery accounts for what it could not send: counters, warnings, ``on_error``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .._errors import VibefollowError
from .._event.model import Event
from .._observe.ratelimit import RateLimitedLog
from ..typing import ErrorCallback
from .answers import describe
from .stats import Counters
from .wire import USERS_PATH, Request

__all__ = ["Outcomes"]


class Outcomes:
    """Counts every outcome once, warns at most once a minute per reason, tells on_error."""

    __slots__ = ("_counters", "_log", "_on_error")

    def __init__(
        self, counters: Counters, log: RateLimitedLog, on_error: ErrorCallback | None
    ) -> None:
        self._counters = counters
        self._log = log
        self._on_error = on_error

    def sent(self, request: Request) -> None:
        """The API accepted ``request``."""
        if request.path == USERS_PATH:
            self._counters.add("users_sent")
        else:
            self._counters.add("sent", len(request.events))

    def dead_letter(self, request: Request, error: VibefollowError) -> None:
        """The API refused ``request`` for good."""
        if request.path == USERS_PATH:
            self._counters.add("users_failed")
            self._log.warning(
                "user-" + str(error.status), "Vibefollow refused a user upsert: %s", error
            )
            return
        self.dead_letter_events(list(request.events), error)

    def dead_letter_events(self, events: list[Event], error: VibefollowError) -> None:
        """The API refused these events for good."""
        self._counters.add("dead_lettered", len(events))
        self._log.warning(
            f"dead-{error.status}-{error.code}",
            "Vibefollow refused %d event(s) for good: %s",
            len(events),
            describe(error),
        )
        self.report(error, events)

    def drop(self, reason: str, events: list[Event], error: VibefollowError) -> None:
        """These events will never be delivered, for ``reason``."""
        self._counters.drop(reason, len(events))
        self._log.warning(reason, "dropped %d event(s) (%s): %s", len(events), reason, error)
        self.report(error, events)

    def drop_requests(
        self, reason: str, requests: Sequence[Request], error: VibefollowError
    ) -> None:
        """Drop the events of ``requests`` (a user upsert's events are counted with their batch)."""
        for request in requests:
            if request.path != USERS_PATH:
                self.drop(reason, list(request.events), error)

    def report(self, error: VibefollowError, events: Sequence[Event]) -> None:
        """Tell ``on_error`` about events that will never be delivered; never raises."""
        if self._on_error is None:
            return
        try:
            self._on_error(error, events)
        except Exception:  # noqa: BLE001 - a user callback must not stop delivery
            self._log.log(logging.ERROR, "on_error", "on_error callback raised", exc_info=True)
