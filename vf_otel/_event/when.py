"""When an event happened: an explicit time (backfills, delayed events) read into UTC.

``occurred_at=`` on :func:`vf_otel.event`, the ``vf_occurred_at`` tag and the
``vf.occurred_at`` span attribute accept the same forms: an aware datetime (any
offset), a naive datetime (local time, as ``datetime.astimezone`` reads it),
epoch seconds (int or float), or an ISO-8601 string (``Z`` or an offset; without
one, local time). A time more than :data:`MAX_AHEAD` in the future is refused:
a clock that far off, or a unit mix-up (milliseconds for seconds), would put the
event where no follow-up could ever use it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = ["MAX_AHEAD", "explicit_time"]

#: How far ahead of now an explicit time may be (clock skew between machines).
MAX_AHEAD: Final = timedelta(days=1)
#: Epoch seconds this large are years past 5000: milliseconds passed for seconds.
_MILLISECONDS_FROM: Final = 1e11


def explicit_time(value: object, now: datetime | None = None) -> datetime | str:
    """``value`` as an aware UTC datetime, or a message saying why it cannot be one."""
    moment = _parse(value)
    if isinstance(moment, str):
        return moment
    now = now or datetime.now(UTC)
    if moment - now > MAX_AHEAD:
        return f"occurred_at is more than {MAX_AHEAD.days} day ahead of now ({moment:%Y-%m-%d})"
    return moment


def _parse(value: object) -> datetime | str:
    try:
        if type(value) is datetime or isinstance(value, datetime):
            return value.astimezone(UTC)
        if isinstance(value, bool):
            return "occurred_at must be a datetime, epoch seconds or an ISO-8601 string"
        if isinstance(value, int | float):
            if not math.isfinite(value):
                return "occurred_at must be a finite number of epoch seconds"
            if abs(value) >= _MILLISECONDS_FROM:
                return f"occurred_at {value!r} looks like milliseconds: pass epoch seconds"
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            text = value.strip()
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError, OSError, TypeError):
        return f"occurred_at {_quoted(value)} is not a time that can be sent"
    return "occurred_at must be a datetime, epoch seconds or an ISO-8601 string"


def _quoted(value: object) -> str:
    try:
        return repr(value)[:60]
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not escape
        return f"<{type(value).__name__}>"
