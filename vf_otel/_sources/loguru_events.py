"""loguru's records as Vibefollow events: the tags of its ``extra``, for the handler and a sink.

loguru keeps what ``logger.bind(...)``, a log call's keywords and ``extra=`` give it
in one dict, ``record["extra"]`` (``extra=`` itself arrives as the key ``"extra"``
in it). Handed a stdlib handler (``logger.add(VibefollowHandler())``), loguru builds
a ``LogRecord`` whose ``extra`` attribute is that dict and whose ``msg`` is the line
already formatted with the sink's format (by default with the time, level and
place); ``VibefollowHandler.handle`` looks here only for a record with neither tag
as an attribute. ``loguru_sink`` skips the ``LogRecord``: a plain callable sink
reading loguru's record itself. Needs nothing from loguru (a sink is a callable).

The event name, unless ``vf_event`` is given, is loguru's ``record["message"]``: the
message after ``message.format(*args, **kwargs)`` and before the sink's format
(loguru keeps no unformatted template). Through the handler it is read from the
``raw_record`` local of loguru's ``StandardSink.write`` (loguru 0.7), the caller,
and the tags are set on the record it built for this handler alone; where that is
not found, on a copy, named by the record's ``msg`` as loguru formatted it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # handler.py imports this module: the class is imported where it is used
    from .handler import VibefollowHandler

__all__ = ["TAG_KEYS", "loguru_record", "loguru_sink", "loguru_tags"]

_logger = logging.getLogger("vf_otel")
#: The ``extra`` keys read: the tagging contract (docs/logging.md).
TAG_KEYS: Final = ("vf_user", "vf_event", "vf_properties", "vf_traits", "vf_occurred_at")
#: How many frames up from ``loguru_record`` loguru's ``StandardSink.write`` may be.
_FRAMES_UP: Final = 6
_STANDARD_SINK_MODULE: Final = "loguru._simple_sinks"


def loguru_tags(extra: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``vf_*`` tags of loguru's ``extra`` (``extra=``'s own dict last, so it wins);
    None when there is neither ``vf_user`` nor ``vf_event``."""
    nested = extra.get("extra")
    tags = {key: extra[key] for key in TAG_KEYS if key in extra}
    if isinstance(nested, Mapping):
        tags.update((key, nested[key]) for key in TAG_KEYS if key in nested)
    if "vf_user" not in tags and "vf_event" not in tags:
        return None
    return tags


def loguru_record(record: logging.LogRecord) -> logging.LogRecord | None:
    """``record`` with the tags of its loguru ``extra`` as attributes and loguru's
    message as ``msg``; None when it carries no tags. Never raises."""
    try:
        extra = record.__dict__.get("extra")
        if not isinstance(extra, Mapping):
            return None
        tags = loguru_tags(extra)
        if tags is None:
            return None
        message = _loguru_message(sys._getframe(1), record)
        if message is None:
            # Not the record loguru built for this handler alone (a filter's, or a
            # stdlib extra= named "extra"): others may see it, so a shallow copy.
            tagged = logging.LogRecord.__new__(type(record))
            tagged.__dict__.update(record.__dict__)
        else:
            tagged = record
            tagged.msg, tagged.args = message, ()
        tagged.__dict__.update(tags)
    except Exception:  # never raise into the app's log call
        _logger.debug("vf-otel could not read a loguru record's tags", exc_info=True)
        return None
    return tagged


def _loguru_message(frame: FrameType | None, record: logging.LogRecord) -> str | None:
    """loguru's ``record["message"]`` when ``record`` is the one loguru's
    ``StandardSink.write`` (up the stack) built and is handing over; else None."""
    for _ in range(_FRAMES_UP):
        if frame is None:
            return None
        code = frame.f_code
        if code.co_name == "write" and frame.f_globals.get("__name__") == _STANDARD_SINK_MODULE:
            local = frame.f_locals
            if local.get("record") is not record:
                return None
            raw = local.get("raw_record")
            message = raw.get("message") if isinstance(raw, Mapping) else None
            return message if isinstance(message, str) else None
        frame = frame.f_back
    return None


def loguru_sink(handler: VibefollowHandler | None = None) -> Callable[[Any], None]:
    """A loguru sink that sends tagged messages through ``handler``.

    ``logger.add(vf_otel.loguru_sink())``: without ``handler``, the
    ``VibefollowHandler`` on the root logger (the one ``vf_otel.configure()``
    installs); none there is a ``ValueError``. Tags as for
    ``logger.add(VibefollowHandler())`` (``bind``, keywords, ``extra=``); the event
    name is ``vf_event``, else loguru's message. Faster than adding the handler itself: no
    ``LogRecord`` is built (unless the handler has filters, which apply as usual, or
    is a subclass overriding ``emit``). The handler's level applies. Never raises
    into the log call.
    """
    from .handler import VibefollowHandler  # noqa: PLC0415 - handler.py imports this module

    if handler is None:
        found = [h for h in logging.getLogger().handlers if isinstance(h, VibefollowHandler)]
        if not found:
            raise ValueError(
                "vf_otel.loguru_sink(): no VibefollowHandler on the root logger; call "
                "vf_otel.configure() first or pass a handler"
            )
        handler = found[0]
    elif not isinstance(handler, VibefollowHandler):
        raise ValueError("vf_otel.loguru_sink(handler): handler must be a VibefollowHandler")
    return _Sink(handler)


class _Sink:
    """The callable ``loguru_sink`` returns; its repr names the handler."""

    __slots__ = ("_handler",)

    def __init__(self, handler: VibefollowHandler) -> None:
        self._handler = handler

    def __repr__(self) -> str:
        return f"<vf_otel.loguru_sink {self._handler!r}>"

    def __call__(self, message: Any) -> None:
        record = message.record
        extra = record["extra"]
        if "vf_user" not in extra and "vf_event" not in extra and "extra" not in extra:
            return  # the common untagged message: three lookups
        try:
            tags = loguru_tags(extra)
            handler = self._handler
            if tags is None or record["level"].no < handler.level:
                return
            name = record["name"]
            fields = {
                "name": "loguru" if name is None else name,
                "msg": record["message"],
                "args": (),
                "levelno": record["level"].no,
                "levelname": record["level"].name,
                "created": record["time"].timestamp(),
                **tags,
            }
            if handler.filters or handler._emit_overridden:
                # Filters and a subclass's emit() may read any attribute: a full record.
                handler.handle(logging.makeLogRecord(fields))
                return
            # Only what the handler reads (name, msg, created, the tags): what makes
            # this sink faster than the handler behind loguru's StandardSink.
            stand_in = logging.LogRecord.__new__(logging.LogRecord)
            stand_in.__dict__.update(fields)
            handler._queue_record(stand_in, stand_in.__dict__)
        except Exception:  # never raise into the app's log call
            _logger.debug("vf_otel.loguru_sink could not hand over an event", exc_info=True)
