"""The Event value every source builds, and when it happened (an explicit time read into UTC)."""

from __future__ import annotations

import functools
import hashlib
import math
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

__all__ = [
    "MAX_AHEAD",
    "DropReason",
    "Event",
    "explicit_time",
    "idempotency_key",
    "new_event_id",
    "new_event_ids",
    "plain_event",
    "wire_time",
]


#: Why an event was never delivered (``stats().dropped`` keys).
DropReason = Literal[
    # refused on the app's thread, before it was queued
    "queue_full",
    "shutdown",
    "no_api_key",
    # refused by the client-side checks (build.py)
    "missing_user",
    "invalid_user",
    "invalid_name",
    "invalid_properties",
    "invalid_traits",
    "missing_required_property",
    "invalid_occurred_at",
    # left out by the app's before_send: it returned None, or it raised
    "filtered",
    "before_send_failed",
    # refused while preparing a request
    "unserializable",
    "event_too_large",
    "invalid_base_url",
    # lost while waiting for a later attempt
    "backlog_full",
    "spool_evicted",
    # in a spool this process can no longer send from (its file deleted, or it broke)
    "spool_lost",
    # a bug in vf-otel (or a value nothing could handle): counted, reported, never raised
    "internal_error",
]


# The Event value every source (log records, spans) is translated into.

# Separates the parts hashed into an idempotency key; cannot occur in an event id.
_KEY_SEPARATOR: Final = "\x1f"
_ID_BYTES: Final = 16
# Years are always four digits, as isoformat() writes them (strftime's %Y does not
# zero-pad years before 1000 with glibc).
_WIRE_SECOND: Final = "%04d-%02d-%02dT%02d:%02d:%02d."
# ".000Z" to ".999Z" without formatting: wire_time runs once per event.
_WIRE_MILLIS: Final = tuple(f"{millis:03d}Z" for millis in range(1000))
# The last time written and its text (see wire_time).
_last_wire: tuple[object, str] = (None, "")


@dataclass(frozen=True, slots=True)
class Event:
    """One product event for one user, ready to be batched.

    ``properties`` and ``traits`` are already coerced to JSON-ready values;
    ``occurred_at`` is timezone-aware UTC; ``event_id`` is stable across retries
    and restarts, and the idempotency key of every request is derived from it.
    """

    name: str
    user_id: str
    properties: Mapping[str, Any]
    occurred_at: datetime
    event_id: str
    traits: Mapping[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        """The object sent in an ``/events/batch`` request: these keys and no others."""
        return {
            "external_user_id": self.user_id,
            "name": self.name,
            "properties": dict(self.properties),
            "occurred_at": wire_time(self.occurred_at),
        }

    def user_upsert(self) -> dict[str, Any]:
        """The ``/users`` body for this event's traits, with ``email`` moved to the top level."""
        traits = dict(self.traits or {})
        body: dict[str, Any] = {"external_user_id": self.user_id}
        email = traits.get("email")
        if isinstance(email, str) and email:
            # The API takes email at the top level; anything else stays a plain trait.
            body["email"] = traits.pop("email")
        if traits:
            body["traits"] = traits
        return body


# What sets each of Event's slots, in field order, for plain_event().
_SET_SLOTS: Final = tuple(Event.__dict__[field.name].__set__ for field in fields(Event))


def plain_event(
    name: str, user_id: str, properties: Mapping[str, Any], occurred_at: datetime, event_id: str
) -> Event:
    """``Event(name, user_id, properties, occurred_at, event_id)``, made in half the time.

    The frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``;
    this sets the slots directly, as the worker does once per log call. Event's
    ``__init__`` checks nothing, so the result is the same Event.
    """
    event: Event = object.__new__(Event)
    set_name, set_user, set_properties, set_time, set_id, set_traits = _SET_SLOTS
    set_name(event, name)
    set_user(event, user_id)
    set_properties(event, properties)
    set_time(event, occurred_at)
    set_id(event, event_id)
    set_traits(event, None)
    return event


def wire_time(moment: datetime) -> str:
    """ISO-8601 UTC with exactly three fraction digits (cut, not rounded) and ``Z``.

    What ``isoformat(timespec="milliseconds")`` writes, put together from parts: this
    runs once per event on the delivery worker, and the general method costs 3x more.
    """
    global _last_wire  # noqa: PLW0603 - a one-entry cache, replaced whole (thread-safe)
    last = _last_wire
    if last[0] is moment:  # events logged in one millisecond share their time object
        return last[1]
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    second = _wire_second((utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second))
    text = second + _WIRE_MILLIS[utc.microsecond // 1000]
    _last_wire = (moment, text)
    return text


@functools.lru_cache(maxsize=16)
def _wire_second(fields: tuple[int, int, int, int, int, int]) -> str:
    # Events logged together share their second: written once, not once per event.
    return _WIRE_SECOND % fields


def new_event_id() -> str:
    """A random id for an event with no natural identity (a log record).

    ``os.urandom`` rather than the ``random`` module: an app that seeds ``random``
    must not make two processes mint the same ids, hence the same idempotency keys.
    """
    return os.urandom(_ID_BYTES).hex()


def new_event_ids(count: int) -> list[str]:
    """``count`` ids as :func:`new_event_id` makes them, from one ``os.urandom`` call
    (split in C: a space every ``_ID_BYTES`` bytes of the hex, then ``str.split``)."""
    if count <= 0:
        return []
    return os.urandom(_ID_BYTES * count).hex(" ", _ID_BYTES).split(" ")


def idempotency_key(scope: str, event_ids: Iterable[str]) -> str:
    """A version-4-shaped UUID derived from the ids a request carries.

    The same ids in the same order always give the same key, so a retried
    request (in this process or after a restart) is deduplicated by the server,
    while any other set of events gets a different key.
    """
    # scope, then separator + id for each id: the bytes earlier versions hashed one
    # update per part, so their keys still match (a spooled request is deduplicated).
    ids = list(event_ids)
    text = scope + _KEY_SEPARATOR + _KEY_SEPARATOR.join(ids) if ids else scope
    digest = hashlib.sha256(text.encode())
    return str(uuid.UUID(bytes=digest.digest()[:16], version=4))


# When an event happened: an explicit time (backfills, delayed events) read into UTC.
#
# ``occurred_at=`` on :func:`vf_otel.event`, the ``vf_occurred_at`` tag and the
# ``vf.occurred_at`` span attribute accept the same forms: an aware datetime (any
# offset), a naive datetime (local time, as ``datetime.astimezone`` reads it),
# epoch seconds (int or float), or an ISO-8601 string (``Z`` or an offset; without
# one, local time). A time more than :data:`MAX_AHEAD` in the future is refused:
# a clock that far off, or a unit mix-up (milliseconds for seconds), would put the
# event where no follow-up could ever use it.

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
