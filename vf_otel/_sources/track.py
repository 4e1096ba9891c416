"""Events from app code via logging: ``@track``, ``event()``, ``identify()``, structlog's."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import warnings
from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime
from typing import Any, Final, TypeVar

import wrapt

from .._event.build import IDENTIFY
from .context import current_user
from .handler import VibefollowHandler

__all__ = [
    "TAG_KEYS",
    "TRACK_LOGGER",
    "event",
    "hand_over",
    "identify",
    "reaches_event_handler",
    "structlog_processor",
    "track",
]


# ``@vf_otel.track(...)``: an event each time a function returns successfully.
#
# Where the event goes: ``track`` emits a tagged log record on the logger
# ``vibefollow.track`` (``TRACK_LOGGER``), exactly what an app would write by
# hand. Whatever is installed picks it up — the ``VibefollowHandler`` that
# ``vf_otel.configure`` puts on the root logger, one added by hand, or the
# OTel log pipeline with ``VibefollowLogExporter`` — with no registry of
# handlers (no mutable module state) and one delivery path. Not a ``vf_otel.*``
# logger: the handler ignores those so the library can never feed itself.
#
# The record bypasses the logger's *level* (the root logger's default WARNING
# would otherwise eat every event: a product event is not a diagnostic with a
# severity), but not ``disabled`` loggers, filters or handler levels.

TRACK_LOGGER: Final = "vibefollow.track"
#: A product event is no diagnostic: logged past the logger's level, at INFO.
_LEVEL: Final = logging.INFO
F = TypeVar("F", bound=Callable[..., Any])
UserArg = str | int | Callable[..., object] | None
PropertiesArg = Mapping[str, Any] | Callable[..., Mapping[str, Any]] | None

_logger = logging.getLogger("vf_otel")


def track(name: str, *, user: UserArg = None, properties: PropertiesArg = None) -> Callable[[F], F]:
    """Emit the event ``name`` after each successful return of the decorated function.

    Works on functions, methods and ``async def`` functions (the event follows
    the awaited result); nothing is emitted when the call raises. ``user`` and
    ``properties`` are values, or callables that receive the call's arguments
    (``self``/``cls`` included for methods). ``user`` defaults to
    [`vf_otel.current_user()`][vf_otel.current_user]. Signature and docstring are preserved, and a
    failing ``user``/``properties`` callable is logged, never raised.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("track() needs a non-empty event name")
    if properties is not None and not callable(properties) and not isinstance(properties, Mapping):
        raise ValueError("properties must be a mapping or a callable")
    emit = functools.partial(_emit, name, user, properties)

    def decorate(func: F) -> F:
        # Decided once, on the function itself: wrapt may hand the wrapper a
        # partial (``Class.method(obj)``) that no longer looks like a coroutine function.
        is_async = inspect.iscoroutinefunction(getattr(func, "__func__", func))

        @wrapt.decorator
        def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
            call_args = _call_args(wrapped, instance, args)
            if is_async:
                return _awaiting(wrapped(*args, **kwargs), emit, call_args, kwargs)
            result = wrapped(*args, **kwargs)
            emit(call_args, kwargs)
            return result

        return wrapper(func)  # type: ignore[return-value]

    return decorate


def _call_args(wrapped: Any, instance: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The positional arguments the underlying function receives, ``self``/``cls`` included."""
    if inspect.ismethod(wrapped):  # bound method or classmethod
        return (wrapped.__self__, *args)
    if instance is not None:
        # ``Class.method(obj, ...)``: wrapt passes obj as instance and binds a partial.
        return (instance, *args)
    return args  # a function or staticmethod (wrapt passes no instance)


async def _awaiting(
    call: Any, emit: Callable[[tuple[Any, ...], dict[str, Any]], None], args: Any, kwargs: Any
) -> Any:
    result = await call
    emit(args, kwargs)
    return result


def _emit(
    name: str,
    user: UserArg,
    properties: PropertiesArg,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    try:
        user_id = user(*args, **kwargs) if callable(user) else user
        props = properties(*args, **kwargs) if callable(properties) else properties
        extra: dict[str, Any] = {"vf_event": name, "vf_properties": props}
        found = current_user() if user_id is None else user_id
        if found is not None:
            # Left out when unknown, so the handler counts the drop as missing_user.
            extra["vf_user"] = found
    except Exception:
        _logger.warning("vf_otel.track(%r) could not build its event", name, exc_info=True)
        return
    hand_over("track", name, extra)


def hand_over(caller: str, what: str, extra: dict[str, Any]) -> None:
    """Log ``what`` with the tags ``extra`` on ``TRACK_LOGGER``, past its level; say once
    (a ``RuntimeWarning``) when no handler there can send it. Never raises."""
    try:
        logger = logging.getLogger(TRACK_LOGGER)
        if logger.disabled:
            return  # switched off on purpose, as logging would: nothing to say
        record = logger.makeRecord(TRACK_LOGGER, _LEVEL, "", 0, what, (), None, extra=extra)
        logger.handle(record)
        heard = reaches_event_handler(logger)
    except Exception:
        _logger.warning("vf_otel.%s could not emit its record", caller, exc_info=True)
        return
    if not heard:
        # warnings shows each place once: once per caller and process, with no state of
        # ours. The app's warning filters decide; turned into errors, it is not raised here.
        with contextlib.suppress(Warning):
            warnings.warn(
                f"vf_otel.{caller}: no VibefollowHandler (nor an OpenTelemetry LoggingHandler) "
                f"on the logger {TRACK_LOGGER!r} or its parents, so its events are not sent; "
                "call vf_otel.configure() or add a VibefollowHandler to the root logger",
                RuntimeWarning,
                stacklevel=1,
            )


def reaches_event_handler(logger: logging.Logger) -> bool:
    """Whether a record of ``logger`` meets a handler that can send it: a
    ``VibefollowHandler``, or the OTel log pipeline's ``LoggingHandler``."""
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            kind = type(handler)
            if isinstance(handler, VibefollowHandler) or (
                kind.__name__ == "LoggingHandler" and kind.__module__.startswith("opentelemetry")
            ):
                return True
        current = current.parent if current.propagate else None
    return False


# ``vf_otel.event()`` and ``vf_otel.identify()``: events and user upserts from plain code.
#
# For scripts, jobs and backfills with no logger at hand. Neither is a second
# delivery path: like ``@track`` each emits a tagged record on the logger
# ``vibefollow.track``, which whatever is installed picks up — the
# ``VibefollowHandler`` of ``vf_otel.configure``, one added by hand, or
# the OTel log pipeline — and which then goes through the same validation,
# redaction, queue, delivery and counters as any tagged record. With no handler
# installed they send nothing and say so once (a ``RuntimeWarning``, as
# ``structlog_processor`` does). They never raise.

#: What an explicit time may be: an aware (or naive, local) datetime, epoch seconds,
#: or an ISO-8601 string.
When = datetime | float | int | str


def event(
    name: str,
    *,
    user: str | int | None = None,
    properties: Mapping[str, Any] | None = None,
    occurred_at: When | None = None,
) -> None:
    """Emit the event ``name`` for ``user`` (default: the context's, ``vf_otel.user()``).

    ``occurred_at`` backdates it (a datetime, epoch seconds or an ISO-8601 string; sent
    as UTC with ``Z``); by default it is now. A time more than a day ahead is refused
    (counted as ``invalid_occurred_at``). With no user at all, the event is dropped and
    counted as ``missing_user``, as for a tagged record.
    """
    extra: dict[str, Any] = {"vf_event": name, "vf_properties": properties}
    found = current_user() if user is None else user
    if found is not None:
        extra["vf_user"] = found  # left out when unknown: counted as missing_user
    if occurred_at is not None:
        extra["vf_occurred_at"] = occurred_at
    _hand_over_call(name, extra)


def identify(user: str | int, traits: Mapping[str, Any]) -> None:
    """Upsert ``user`` (``POST /api/v1/users``) with ``traits``, without an event.

    ``email`` goes top-level, as with ``vf_traits``; later traits for the same user in
    one batch win. An invalid ``email`` drops the upsert, counted as ``invalid_traits``.
    """
    _hand_over_call(IDENTIFY, {"vf_event": IDENTIFY, "vf_user": user, "vf_traits": traits})


def _hand_over_call(what: str, extra: dict[str, Any]) -> None:
    hand_over("event" if what != IDENTIFY else "identify", what, extra)


# ``vf_otel.structlog_processor``: structlog events with ``vf_*`` keys become Vibefollow events.
#
# structlog's usual set-up ends its processor chain with a renderer
# (``JSONRenderer``, ``ConsoleRenderer``, or ``ProcessorFormatter.wrap_for_formatter``):
# what reaches logging, if anything does, is a string or a dict in ``record.msg``, with
# no ``extra=`` keys for ``VibefollowHandler`` to read. Placed before the renderer,
# this processor reads the tags from the event dict itself, takes them out of it (so
# they are not sent twice, e.g. by ``render_to_log_kwargs``) and hands a tagged record
# straight to the Vibefollow handlers a record of that logger would reach: the one
# ``vf_otel.configure`` puts on the root logger, or one added by hand. Nothing else
# sees that record, so the console shows structlog's own line only. Needs nothing from
# structlog (a processor is a plain callable) and never raises into the log call.

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
