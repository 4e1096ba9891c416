"""What ``configure()`` does for an app that has not configured logging: keep it as it was.

Python prints WARNING and above to stderr (``logging.lastResort``) only while no handler
at all is found for a record, and the root logger's default level, WARNING, stops INFO
records before any handler. The Vibefollow handler on the root logger would end the
first and suffer from the second. So, for an unconfigured app, ``configure()`` lowers
the root logger to INFO (tagged ``log.info(...)`` calls become events) and adds
``LastResort``, which prints what Python would have printed: WARNING and above,
for records no other handler takes. An app that configures logging later is left to
its own handlers.
"""

from __future__ import annotations

import logging
from typing import Final

from .handler import VibefollowHandler

__all__ = ["LastResort", "UnconfiguredRoot", "is_configured", "warn_if_filtered"]

_logger = logging.getLogger("vf_otel")
#: The level tagged records need to reach the handler.
EVENT_LEVEL: Final = logging.INFO


class LastResort(logging.Handler):
    """Pass a WARNING+ record to ``logging.lastResort`` when no handler of the app takes it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def handle(self, record: logging.LogRecord) -> bool:
        """Print as Python would with no handler at all: only when no other handler is found."""
        resort = logging.lastResort
        if resort is None or record.levelno < resort.level or _app_handles(record.name):
            return False
        resort.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Unused: ``handle`` decides and prints."""


def _app_handles(name: str) -> bool:
    """Whether a logger on the record's way up has a handler that is not vf-otel's."""
    logger: logging.Logger | None = logging.getLogger(name)
    while logger is not None:
        if any(not isinstance(h, VibefollowHandler | LastResort) for h in logger.handlers):
            return True
        logger = logger.parent if logger.propagate else None
    return False


def is_configured(root: logging.Logger) -> bool:
    """Whether the app configured logging: a handler of its own on the root logger."""
    return any(not isinstance(h, VibefollowHandler | LastResort) for h in root.handlers)


class UnconfiguredRoot:
    """The changes made to the root logger of an unconfigured app; ``undo`` reverts them."""

    def __init__(self, root: logging.Logger) -> None:
        self._root = root
        self._level = root.level
        self._lowered = root.getEffectiveLevel() > EVENT_LEVEL
        self.last_resort = LastResort()
        if self._lowered:
            root.setLevel(EVENT_LEVEL)
        root.addHandler(self.last_resort)

    def undo(self) -> None:
        """Remove the stand-in, and the level if nobody changed it since."""
        self._root.removeHandler(self.last_resort)
        if self._lowered and self._root.level == EVENT_LEVEL:
            self._root.setLevel(self._level)


def warn_if_filtered(target: logging.Logger) -> None:
    """Say once that INFO records never reach the handler on ``target``, when they do not."""
    level = target.getEffectiveLevel()
    if level > EVENT_LEVEL:
        _logger.warning(
            "vf-otel: logger %r is at level %s, so tagged INFO records "
            "(log.info(..., extra={'vf_user': ...})) never reach the Vibefollow handler; "
            "set the level of the loggers you tag to INFO, or log events at %s",
            target.name,
            logging.getLevelName(level),
            logging.getLevelName(level),
        )
