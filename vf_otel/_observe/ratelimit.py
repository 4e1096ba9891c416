"""Warnings that say once per reason per interval what went wrong, then how often."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

__all__ = ["WARNING_INTERVAL", "RateLimitedLog"]

WARNING_INTERVAL: Final = 60.0


class RateLimitedLog:
    """Log at most once per reason per ``interval`` seconds; count what was held back."""

    __slots__ = ("_clock", "_interval", "_lock", "_logger", "_state")

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = WARNING_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        # reason -> (time of the last message, messages held back since)
        self._state: dict[str, tuple[float, int]] = {}

    def log(
        self,
        level: int,
        reason: str,
        msg: str,
        *args: object,
        exc_info: bool | BaseException = False,
    ) -> bool:
        """Log ``msg % args`` unless this reason was logged within the interval."""
        now = self._clock()
        with self._lock:
            last, held = self._state.get(reason, (None, 0))
            if last is not None and now - last < self._interval:
                self._state[reason] = (last, held + 1)
                return False
            self._state[reason] = (now, 0)
        if held:
            msg += " (%d more like this since the last message)"
            args = (*args, held)
        self._logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def warning(self, reason: str, msg: str, *args: object) -> bool:
        """``log`` at WARNING."""
        return self.log(logging.WARNING, reason, msg, *args)

    def error(self, reason: str, msg: str, *args: object) -> bool:
        """``log`` at ERROR."""
        return self.log(logging.ERROR, reason, msg, *args)
