"""``VibefollowHandler``: tagged stdlib log records into events, and loguru's way into it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, Final

from typing_extensions import Unpack

from .._delivery.ledger import Stats
from .._delivery.pipeline import pipeline_for
from .._event.build import Backdated, PendingEvent, Rejection
from ..typing import Options
from .context import current_user
from .sigterm import release_sigterm_hook, watch_sigterm

__all__ = [
    "TAG_KEYS",
    "VibefollowHandler",
    "handler_delivers",
    "loguru_record",
    "loguru_sink",
    "loguru_tags",
]


# ``VibefollowHandler``: a stdlib logging handler that turns tagged records into events.

_logger = logging.getLogger("vf_otel")
#: Records from these loggers (and their children) are never events: the
#: library's own and its HTTP stack's, so the handler can never feed itself.
IGNORED_LOGGERS: Final = ("vf_otel", "httpx", "httpcore", "opentelemetry")
#: Logger names seen not to be ignored: one set lookup per tagged record instead of
#: matching the prefixes again. ``str`` only, at most ``_EVENT_LOGGERS_LIMIT`` of them.
_EVENT_LOGGERS: Final[set[str]] = set()
_EVENT_LOGGERS_LIMIT: Final = 4096
_NO_USER: Final = Rejection(
    "missing_user", "external_user_id", "no user: set vf_user or use vf_otel.user()"
)
_INTERNAL_ERROR: Final = Rejection(
    "internal_error", "record", "unexpected error reading the record's tags"
)


class VibefollowHandler(logging.Handler):
    """Send log records tagged with ``vf_user`` / ``vf_event`` to Vibefollow.

    ``logger.info("signup", extra={"vf_user": "usr_42"})`` becomes the event
    ``signup`` for user ``usr_42``. Untagged records are ignored at almost no
    cost. On the logging thread the handler only checks the tags, resolves the
    context user and queues a snapshot of them; a worker thread builds the
    Events (validation, JSON coercion), batches and delivers. It never raises
    into the application and never blocks it, except in
    [`flush()`][vf_otel.VibefollowHandler.flush] and
    [`close()`][vf_otel.VibefollowHandler.close], which wait at most
    ``shutdown_timeout`` seconds.

    Built on the main thread, it also sees that SIGTERM delivers what is queued
    before the signal acts (option ``handle_sigterm``, on by default; see
    [`flush_on_sigterm()`][vf_otel.flush_on_sigterm]).

    Every option may be omitted: the ``VIBEFOLLOW_*`` environment variable of
    the same name applies, then the default (see [configuration](configuration.md)).
    """

    def __init__(self, level: int | str = logging.NOTSET, **options: Unpack[Options]) -> None:
        if options.get("rules") is not None:
            # Asked for, they would do nothing here: refused rather than ignored.
            raise ValueError(
                "rules apply to spans and OTel log records (the exporters); "
                "VibefollowHandler reads vf_* tags only"
            )
        # The options first: logging.Handler.__init__ registers the handler for
        # logging.shutdown() at exit, which must never find one half-built.
        pipeline = pipeline_for(options, source_kind="handler")
        try:
            super().__init__(level)
        except BaseException:
            pipeline.shutdown()  # a bad level: stop the pipeline just started
            raise
        self._pipeline = pipeline
        # Bound once: emit() queues with one call, not through Pipeline.submit. The
        # pipeline keeps this queue object across a fork, so the method stays valid.
        # It is the queue's own put(), unless delivery is off or debug is on (pipeline.py).
        self._put = pipeline.put
        self._has_key = pipeline.has_key
        # handle() queues without the call to emit(), unless a subclass overrides it.
        self._emit_overridden = type(self).emit is not VibefollowHandler.emit
        self._redactor = pipeline.redactor
        if pipeline.delivers and pipeline.settings.handle_sigterm:
            # SIGTERM's default action skips atexit, and servers (uvicorn) re-raise it
            # after their graceful shutdown: the queue would be lost (sigterm.py).
            watch_sigterm(self)

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {self._pipeline.settings.base_url} ({level})>"

    def handle(self, record: logging.LogRecord) -> bool:
        """Decide before any lock: untagged or library records return at once.

        ``emit`` is thread-safe, so the handler lock is never taken: a flush
        waiting for delivery can never deadlock with a record logged meanwhile.
        """
        attrs = record.__dict__
        if "vf_user" not in attrs and "vf_event" not in attrs:
            # The common untagged record returns after these two checks. A filter may
            # add the tags (stdlib order: filters first), loguru puts them in ``extra``.
            if not self.filters and "extra" not in attrs:
                return False
            return self._handle_late_tags(record)
        if self.filters:
            return self._handle_late_tags(record)
        # _queue_record's body, inlined: the tagged record saves a call.
        try:
            ours = record.name not in _EVENT_LOGGERS and _is_ignored(record.name)
        except Exception:  # noqa: BLE001 - a record factory's unhashable or odd name
            ours = False
        if ours:
            return False
        if self._emit_overridden:
            self.emit(record)  # a subclass's emit() decides
        else:
            self._queue_call(record, attrs)
        return True

    def _handle_late_tags(self, record: logging.LogRecord) -> bool:
        """A record whose tags may come from the handler's filters or loguru's ``extra``."""
        if self.filters:  # filter() costs a call even with no filters: skip it then
            # Since Python 3.12 a filter may return a replacement record.
            result: object = self.filter(record)
            if not result:
                return False
            if isinstance(result, logging.LogRecord):
                record = result
        attrs = record.__dict__
        if "vf_user" not in attrs and "vf_event" not in attrs:
            tagged = loguru_record(record)
            if tagged is None:
                return False
            record, attrs = tagged, tagged.__dict__
        return self._queue_record(record, attrs)

    def _queue_record(self, record: logging.LogRecord, attrs: dict[str, Any]) -> bool:
        """Queue a tagged record, unless it is one of the library's own."""
        try:
            ours = record.name not in _EVENT_LOGGERS and _is_ignored(record.name)
        except Exception:  # noqa: BLE001 - a record factory's unhashable or odd name
            ours = False
        if ours:
            return False
        if self._emit_overridden:
            self.emit(record)  # a subclass's emit() decides
        else:
            self._queue_call(record, attrs)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Build the event and queue it. Never raises."""
        self._queue_call(record, record.__dict__)

    def _queue_call(self, record: logging.LogRecord, attrs: dict[str, Any]) -> None:
        # Only what must happen now: read the tags, resolve the context user
        # (the context is gone later), snapshot the mappings (the caller may
        # reuse them). Validation, coercion, id and timestamp: on the worker.
        # Inlined on purpose (no helper call for the common record): this runs on
        # the request path.
        try:
            user = attrs.get("vf_user")
            if user is None or not self._has_key:
                user = self._context_user()
                if user is None:
                    return
            properties = attrs.get("vf_properties")
            # A shallow copy, so a dict the caller mutates after logging is sent as
            # it was; anything else is validated (and refused if not a mapping) later.
            if type(properties) is dict:
                properties = properties.copy()
            if "vf_event" in attrs or "vf_traits" in attrs or "vf_occurred_at" in attrs:
                call = self._tagged_call(record, attrs, user, properties)
            else:  # the common record: a message, a user, maybe properties
                call = (record.msg, user, properties, None, record.created, self._redactor)
            self._put(call)  # full, closed, off or debug: counted (or reopened) there
        except Exception:
            self._pipeline.submit(_INTERNAL_ERROR)  # counted and reported by the worker
            _logger.debug("vf-otel could not build an event", exc_info=True)

    def _tagged_call(
        self, record: logging.LogRecord, attrs: dict[str, Any], user: object, properties: object
    ) -> PendingEvent:
        """The queued call of a record with ``vf_event``, ``vf_traits`` or ``vf_occurred_at``."""
        name = attrs.get("vf_event")
        traits = attrs.get("vf_traits")
        when = attrs.get("vf_occurred_at")
        return (
            record.msg if name is None else name,
            user,
            properties,
            traits.copy() if type(traits) is dict else traits,
            record.created if when is None else Backdated(when),
            self._redactor,
        )

    def _context_user(self) -> str | None:
        """The user for a record without ``vf_user``; None (counted) when it must be dropped."""
        if not self._has_key:
            self._pipeline.refuse("no_api_key")
            return None
        user = current_user()
        if user is None:
            self._pipeline.submit(_NO_USER)  # counted, warned and reported by the worker
        return user

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Deliver everything queued; True if it all landed within ``timeout`` seconds.

        Called by ``dictConfig`` / ``fileConfig`` (which hold logging's lock, one the
        delivery threads' HTTP logging may need) it does not wait and returns False:
        delivery goes on in the background.
        """
        if reconfiguring_logging():
            return False
        if timeout is None and called_by_logging_shutdown(self):
            # Its close() follows at once: the two share one shutdown_timeout.
            self._pipeline.stop_begins()
        return self._pipeline.flush(timeout)

    def close(self) -> None:
        """Drain (up to ``shutdown_timeout``) and stop the worker.

        Called by ``logging.shutdown()`` (at exit, or by the app), which calls
        ``flush()`` first: the two share one ``shutdown_timeout``, counted from the flush.

        As with ``FileHandler``, a closed handler that gets a tagged record starts
        delivering again: same settings, and ``stats()`` goes on counting (not once
        the interpreter runs its exit hooks: then it is refused, counted). Closed by
        ``dictConfig`` / ``fileConfig`` (they close every handler, even one they
        leave attached, and forget it for ``logging.shutdown()`` at exit) it does
        not stop: it cannot wait for delivery there. What is queued goes on being
        delivered, and the handler drains at interpreter exit on its own.
        """
        try:
            if reconfiguring_logging():
                self._pipeline.drain_at_exit()
            else:
                self._pipeline.shutdown()
                release_sigterm_hook(self)
        finally:
            super().close()

    def stats(self) -> Stats:
        """Counters: enqueued, sent, retried, dead-lettered, dropped by reason, queued."""
        return self._pipeline.stats()


def handler_delivers(handler: VibefollowHandler) -> bool:
    """Whether ``handler`` delivers (with delivery off it only counts: nothing to drain)."""
    return handler._pipeline.delivers


def reconfiguring_logging() -> bool:
    """Whether this thread holds logging's module lock: ``dictConfig`` / ``fileConfig``
    replacing handlers (``logging.shutdown()`` at exit does not hold it).

    Private stdlib names (``logging._lock``, ``RLock._is_owned``), stable since 3.2;
    without them: False, and close() drains as before.
    """
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    return bool(is_owned()) if callable(is_owned) else False


def called_by_logging_shutdown(handler: logging.Handler) -> bool:
    """Whether ``handler``'s method calling this was called by ``logging.shutdown()`` (at
    exit, or called by the app), which runs ``flush()`` and then ``close()``.

    Told by the calling frames (``sys._getframe``, as in CPython and PyPy): past the
    handler's own ``flush`` / ``close`` (a subclass's override calling ``super()``), a
    function named ``shutdown`` of the ``logging`` module. Without frames: False, and
    flush() and close() each wait up to ``shutdown_timeout`` as when called directly.
    """
    try:
        frame: FrameType | None = sys._getframe(2)  # 0: here, 1: flush(), 2: its caller
    except (AttributeError, ValueError):
        return False
    while (
        frame is not None
        and frame.f_code.co_name in ("flush", "close")
        and frame.f_locals.get("self") is handler
    ):
        frame = frame.f_back
    return (
        frame is not None
        and frame.f_code.co_name == "shutdown"
        and frame.f_globals is vars(logging)
    )


def _is_ignored(name: object) -> bool:
    """Whether records of logger ``name`` are never events; a name that may send is
    remembered in ``_EVENT_LOGGERS``, so the next record of it is let through at once."""
    if type(name) is not str:
        return False  # a record factory's odd name: not one of ours, not remembered
    if is_library_logger(name):
        return True
    if len(_EVENT_LOGGERS) >= _EVENT_LOGGERS_LIMIT:
        _EVENT_LOGGERS.clear()  # names made up at run time: start over, never grow for ever
    _EVENT_LOGGERS.add(name)
    return False


def is_library_logger(name: str) -> bool:
    """Whether ``name`` is one of ``IGNORED_LOGGERS`` or a child of one."""
    return any(name == root or name.startswith(root + ".") for root in IGNORED_LOGGERS)


# loguru's records as Vibefollow events: the tags of its ``extra``, for the handler and a sink.
#
# loguru keeps what ``logger.bind(...)``, a log call's keywords and ``extra=`` give it
# in one dict, ``record["extra"]`` (``extra=`` itself arrives as the key ``"extra"``
# in it). Handed a stdlib handler (``logger.add(VibefollowHandler())``), loguru builds
# a ``LogRecord`` whose ``extra`` attribute is that dict and whose ``msg`` is the line
# already formatted with the sink's format (by default with the time, level and
# place); ``VibefollowHandler.handle`` looks here only for a record with neither tag
# as an attribute. ``loguru_sink`` skips the ``LogRecord``: a plain callable sink
# reading loguru's record itself. Needs nothing from loguru (a sink is a callable).
#
# The event name, unless ``vf_event`` is given, is loguru's ``record["message"]``: the
# message after ``message.format(*args, **kwargs)`` and before the sink's format
# (loguru keeps no unformatted template). Through the handler it is read from the
# ``raw_record`` local of loguru's ``StandardSink.write`` (loguru 0.7), the caller,
# and the tags are set on the record it built for this handler alone; where that is
# not found, on a copy, named by the record's ``msg`` as loguru formatted it.

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
