"""``vf_otel.structlog_processor``: structlog events with ``vf_*`` keys become Vibefollow events.

structlog's usual set-up ends its processor chain with a renderer
(``JSONRenderer``, ``ConsoleRenderer``, or ``ProcessorFormatter.wrap_for_formatter``):
what reaches logging, if anything does, is a string or a dict in ``record.msg``, with
no ``extra=`` keys for ``VibefollowHandler`` to read. Placed before the renderer,
this processor reads the tags from the event dict itself, takes them out of it (so
they are not sent twice, e.g. by ``render_to_log_kwargs``) and hands a tagged record
straight to the Vibefollow handlers a record of that logger would reach: the one
``vf_otel.configure`` puts on the root logger, or one added by hand. Nothing else
sees that record, so the console shows structlog's own line only. Needs nothing from
structlog (a processor is a plain callable) and never raises into the log call.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import MutableMapping
from typing import Any, Final

from .handler import VibefollowHandler
from .track import TRACK_LOGGER

__all__ = ["TAG_KEYS", "structlog_processor"]

_logger = logging.getLogger("vf_otel")
#: The event dict keys the processor reads (and takes out): the tagging contract.
TAG_KEYS: Final = ("vf_user", "vf_event", "vf_properties", "vf_traits", "vf_occurred_at")
#: A structlog method name → the level of the record handed to the handlers.
_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def structlog_processor(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: an event dict with ``vf_user`` or ``vf_event`` becomes an event.

    Put it after ``merge_contextvars`` (so context-bound keys count) and before the
    renderer. The event name is ``vf_event``, else structlog's ``event`` (the message);
    ``vf_properties``, ``vf_traits`` and ``vf_occurred_at`` as for a tagged record. The
    ``vf_*`` keys are taken out of the event dict; everything else goes on unchanged.
    An event dict with neither tag is returned as it is, at the cost of two lookups.
    """
    if "vf_user" not in event_dict and "vf_event" not in event_dict:
        return event_dict
    tags = {key: event_dict.pop(key) for key in TAG_KEYS if key in event_dict}
    try:
        # A stdlib logger (structlog.stdlib.LoggerFactory): its handlers and its parents'.
        # Any other (structlog's PrintLogger...): as for @track, from "vibefollow.track".
        name = logger.name if isinstance(logger, logging.Logger) else TRACK_LOGGER
        level = _LEVELS.get(method_name, logging.INFO)
        record = logging.makeLogRecord(
            {"name": name, "levelno": level, "levelname": logging.getLevelName(level)}
        )
        record.msg, record.args = event_dict.get("event", ""), ()
        record.__dict__.update(tags)
        if not _hand_to_handlers(record):
            _warn_no_handler(name)
    except Exception:  # never raise into the app's log call
        _logger.debug("vf_otel.structlog_processor could not hand over an event", exc_info=True)
    return event_dict


def _hand_to_handlers(record: logging.LogRecord) -> bool:
    """Give ``record`` to the Vibefollow handlers on its logger's way up; False if none."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    if logger is None or logger.disabled or not logger.filter(record):
        return True  # switched off on purpose, as logging would: nothing to warn about
    found = False
    while logger is not None:
        for handler in logger.handlers:
            if isinstance(handler, VibefollowHandler):
                found = True
                if record.levelno >= handler.level:
                    handler.handle(record)
        logger = logger.parent if logger.propagate else None
    return found


def _warn_no_handler(name: str) -> None:
    # warnings shows each place once: once per process here, with no state of ours.
    warnings.warn(
        "vf_otel.structlog_processor: no VibefollowHandler on the logger "
        f"{name!r} or its parents, so tagged structlog events are not sent; call "
        "vf_otel.configure() or add a VibefollowHandler to the root logger",
        RuntimeWarning,
        stacklevel=1,
    )
