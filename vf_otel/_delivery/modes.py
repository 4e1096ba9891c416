"""Delivery off (``enabled=False``) and debug output (``debug=True``), for CI and local runs.

Off (posthog's ``disabled``, Segment's ``send=False``): what the app hands over is
counted in ``stats().disabled`` and dropped without a word. It is not a loss — no
warning, no ``on_error``, not in ``dropped`` — and nothing needs a key: no thread
starts, no spool opens, no request is made.

Debug: each event is shown as it is queued, on the ``vf_otel.debug`` logger at INFO,
as the JSON that would be sent (validated, coerced and redacted by the same code the
worker runs; ``before_send`` runs later, on the worker). That logger is set to INFO
(unless the app set a level on it), and when no handler of the app would print its
records (an app with no logging set up) they go to stderr instead, so
``VIBEFOLLOW_DEBUG=true python app.py`` shows them either way.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Final, TypeVar

from .._event.model import Event
from .._event.pending import build_pending
from .._event.validate import Rejection, is_identify

__all__ = ["DEBUG_LOGGER", "Discard", "enable_debug_output", "show", "shown"]

#: Where debug output goes, at INFO.
DEBUG_LOGGER: Final = "vf_otel.debug"
_log = logging.getLogger(DEBUG_LOGGER)
T = TypeVar("T")


class Discard:
    """Where items go while delivery is off: counted, shown with ``debug``, never sent."""

    __slots__ = ("_debug", "count")

    def __init__(self, *, debug: bool) -> None:
        self._debug = debug
        # Lock-free, like EventQueue's refusal counts: this runs on the app's thread.
        self.count = 0

    def put(self, item: object) -> bool:
        """Count ``item`` (an Event, a log call's tags or a Rejection); always True."""
        self.count += 1
        if self._debug:
            show(item, "not sent (delivery is disabled)")
        return True


def shown(put: Callable[[T], bool]) -> Callable[[T], bool]:
    """``put`` that also shows each item (``debug=True``)."""

    def put_and_show(item: T) -> bool:
        queued = put(item)
        show(item, "queued" if queued else "not queued (refused, counted in stats().dropped)")
        return queued

    return put_and_show


def show(item: object, what: str) -> None:
    """Log ``item`` as it would be sent (or why it is refused) on ``vf_otel.debug``."""
    try:
        built = build_pending(item) if isinstance(item, tuple) else item
        if isinstance(built, Rejection):
            _log.info("vf-otel debug: refused (%s): %s", built.reason, built.message)
        elif isinstance(built, Event) and is_identify(built.name):
            _log.info("vf-otel debug: %s user upsert %s", what, _json(built.user_upsert()))
        elif isinstance(built, Event):
            body = built.to_wire()
            if built.traits:
                body["traits"] = dict(built.traits)  # sent as a user upsert first
            _log.info("vf-otel debug: %s event %s", what, _json(body))
    except Exception:  # noqa: BLE001 - debug output must never fail a log call
        _log.debug("vf-otel debug: could not show an event", exc_info=True)


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def enable_debug_output() -> None:
    """Make ``vf_otel.debug`` records visible (see the module's docstring); once per process."""
    if _log.level == logging.NOTSET:
        _log.setLevel(logging.INFO)
    if not any(isinstance(handler, _Printer) for handler in _log.handlers):
        _log.addHandler(_Printer())


class _Printer(logging.Handler):
    """Writes a record to stderr when no handler of the app would show it."""

    def handle(self, record: logging.LogRecord) -> bool:
        """Print only for an app with no handler of its own on the record's way up."""
        if _app_shows(record):
            return False
        return bool(super().handle(record))

    def emit(self, record: logging.LogRecord) -> None:
        """One line on the current ``sys.stderr`` (looked up now: tests and apps swap it)."""
        try:
            sys.stderr.write(record.getMessage() + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - as logging.StreamHandler: report, never raise
            self.handleError(record)


def _app_shows(record: logging.LogRecord) -> bool:
    """Whether a handler that is not vf-otel's takes ``record`` on its way up."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        for handler in logger.handlers:
            if record.levelno >= handler.level and not _is_vf_otels(handler):
                return True
        logger = logger.parent if logger.propagate else None
    return False


def _is_vf_otels(handler: logging.Handler) -> bool:
    # The Vibefollow handler (which ignores vf_otel.* records), configure()'s stand-in
    # for Python's last resort (WARNING and above only) and this printer.
    # (What vf_otel exports names "vf_otel" as its module; the rest a submodule.)
    return any(cls.__module__.partition(".")[0] == "vf_otel" for cls in type(handler).__mro__)
