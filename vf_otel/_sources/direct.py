"""``vf_otel.event()`` and ``vf_otel.identify()``: events and user upserts from plain code.

For scripts, jobs and backfills with no logger at hand. Neither is a second
delivery path: like ``@track`` each emits a tagged record on the logger
``vibefollow.track``, which whatever is installed picks up — the
``VibefollowHandler`` of ``vf_otel.configure``, one added by hand, or
the OTel log pipeline — and which then goes through the same validation,
redaction, queue, delivery and counters as any tagged record. With no handler
installed they send nothing and say so once (a ``RuntimeWarning``, as
``structlog_processor`` does). They never raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .._event.validate import IDENTIFY
from .context import current_user
from .track import hand_over

__all__ = ["event", "identify"]

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
    _emit(name, extra)


def identify(user: str | int, traits: Mapping[str, Any]) -> None:
    """Upsert ``user`` (``POST /api/v1/users``) with ``traits``, without an event.

    ``email`` goes top-level, as with ``vf_traits``; later traits for the same user in
    one batch win. An invalid ``email`` drops the upsert, counted as ``invalid_traits``.
    """
    _emit(IDENTIFY, {"vf_event": IDENTIFY, "vf_user": user, "vf_traits": traits})


def _emit(what: str, extra: dict[str, Any]) -> None:
    hand_over("event" if what != IDENTIFY else "identify", what, extra)
