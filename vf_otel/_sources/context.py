"""The current user: a contextvar plus the OTel baggage entry ``vf.user``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Final

from opentelemetry import baggage
from opentelemetry import context as otel_context

__all__ = ["BAGGAGE_KEY", "current_user", "user"]

BAGGAGE_KEY: Final = "vf.user"
_logger = logging.getLogger("vf_otel")
_current: ContextVar[str | None] = ContextVar("vf_otel_user", default=None)


@contextlib.contextmanager
def user(user_id: str | int | None) -> Iterator[str | None]:
    """Make ``user_id`` the user of every event emitted inside the block.

    Sets a contextvar (read by the logging handler) and the OTel baggage entry
    ``vf.user`` (read for spans, and propagated to downstream services by the
    W3C ``baggage`` header). ``None`` means "no user" — handy for anonymous
    requests; any other non-string is warned about and treated as ``None``.
    Works across ``await`` and in threads started with a copied context.
    """
    value = _normalise(user_id)
    token = _current.set(value)
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
        otel_context.detach(otel_token)
        _current.reset(token)


def current_user() -> str | None:
    """The user set by the innermost [`user()`][vf_otel.user] block, else baggage ``vf.user``,
    else None.
    """
    value = _current.get()
    if value is not None:
        return value
    found = baggage.get_baggage(BAGGAGE_KEY)
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
