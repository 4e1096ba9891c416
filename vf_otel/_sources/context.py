"""The current user: a contextvar, and the OTel baggage entry ``vf.user`` when propagated."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Final

from opentelemetry import baggage
from opentelemetry import context as otel_context

__all__ = ["BAGGAGE_KEY", "current_user", "user", "user_in"]

BAGGAGE_KEY: Final = "vf.user"
_logger = logging.getLogger("vf_otel")
#: ``_UNSET`` outside every ``user()`` block; ``None`` inside ``user(None)`` (anonymous:
#: no baggage user either).
_UNSET: Final = ""
_current: ContextVar[str | None] = ContextVar("vf_otel_user", default=_UNSET)


@contextlib.contextmanager
def user(user_id: str | int | None, *, propagate: bool = False) -> Iterator[str | None]:
    """Make ``user_id`` the user of every event emitted inside the block.

    Sets a contextvar, read for log records, spans, ``@track`` and ``event()``. It
    stays in this process: instrumented HTTP clients send OpenTelemetry baggage in the
    W3C ``baggage`` header of every outgoing request, third-party APIs included, so the
    user id goes into baggage only with ``propagate=True`` (the baggage entry
    ``vf.user``, for downstream services of your own). A ``vf.user`` baggage entry set
    upstream is honoured either way, when no ``user()`` block is in effect.
    ``None`` means "no user" — handy for anonymous requests; any other non-string is
    warned about and treated as ``None``. Works across ``await`` and in threads started
    with a copied context.
    """
    value = _normalise(user_id)
    token = _current.set(value)
    otel_token = None
    if propagate:
        ctx = otel_context.get_current()
        ctx = (
            baggage.set_baggage(BAGGAGE_KEY, value, ctx)
            if value
            else baggage.remove_baggage(BAGGAGE_KEY, ctx)
        )
        otel_token = otel_context.attach(ctx)
    try:
        yield value
    finally:
        if otel_token is not None:
            otel_context.detach(otel_token)
        _current.reset(token)


def current_user() -> str | None:
    """The user set by the innermost [`user()`][vf_otel.user] block, else baggage ``vf.user``,
    else None.
    """
    return user_in(None)


def user_in(ctx: otel_context.Context | None) -> str | None:
    """The ``user()`` block's user, else the baggage entry ``vf.user`` of ``ctx`` (default:
    the current context), else None. A ``user(None)`` block means none: no baggage then."""
    value = _current.get()
    if value != _UNSET:
        return value  # a user, or None in an anonymous block
    found = baggage.get_baggage(BAGGAGE_KEY, ctx)
    return found if isinstance(found, str) and found else None


def _normalise(user_id: object) -> str | None:
    if user_id is None:
        return None
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        return str(user_id)
    if isinstance(user_id, str) and user_id.strip():
        return user_id
    _logger.warning("vf_otel.user() needs a non-empty str or int, got %s", type(user_id).__name__)
    return None
