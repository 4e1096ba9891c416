"""``@vf_otel.track(...)``: an event each time a function returns successfully.

Where the event goes: ``track`` emits a tagged log record on the logger
``vibefollow.track`` (``TRACK_LOGGER``), exactly what an app would write by
hand. Whatever is installed picks it up — the ``VibefollowHandler`` that
``vf_otel.configure`` puts on the root logger, one added by hand, or the
OTel log pipeline with ``VibefollowLogExporter`` — with no registry of
handlers (no mutable module state) and one delivery path. Not a ``vf_otel.*``
logger: the handler ignores those so the library can never feed itself.

The record bypasses the logger's *level* (the root logger's default WARNING
would otherwise eat every event: a product event is not a diagnostic with a
severity), but not ``disabled`` loggers, filters or handler levels.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import wrapt

from .context import current_user
from .handler import VibefollowHandler

__all__ = ["TRACK_LOGGER", "hand_over", "reaches_event_handler", "track"]

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
