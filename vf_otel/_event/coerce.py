"""Turn arbitrary Python values into strict-JSON values.

Runs on the application thread when an event is built, so the common case
(a flat dict of str/int/float/bool/None) takes a fast path; everything else
is converted, never rejected, so a request body is always valid strict JSON.

Nothing a key or value does can make coercion raise: one whose conversion
raises (its ``__str__``, ``items()``, iteration or comparison) becomes
``"<unprintable TypeName>"``, and an int too long for Python to print (it would
raise when the body is encoded, losing the whole batch) becomes ``"<int: N bits>"``.

Every key becomes a string, so two keys of one mapping can become the same one
(``1`` and ``"1"``, an Enum and its value, two long keys cut to the same text, two
objects that print alike): the last value wins, as when a dict is built from pairs,
and each value so lost is counted in the caller's :class:`KeyCollisions`.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MAX_DEPTH",
    "MAX_STRING_LENGTH",
    "KeyCollisions",
    "coerce_mapping",
    "coerce_value",
    "is_plain",
    "plain_copy",
    "type_name",
    "utf8_text",
]

MAX_DEPTH: Final = 10
# Longer strings are cut: one runaway value must not make a whole event too large.
MAX_STRING_LENGTH: Final = 16_384
_TRUNCATION_MARK: Final = "…[truncated]"
_CYCLE_MARK: Final = "<cycle>"
# Python refuses to print an int with more digits than sys.get_int_max_str_digits(),
# which is 0 (no limit) or at least 640; an int of at most 2,000 bits has at most 603.
_ALWAYS_PRINTABLE_BITS: Final = 2_000
# |n| < 2**2000 is bit_length() <= 2000, without the method call.
_PRINTABLE_LIMIT: Final = 1 << _ALWAYS_PRINTABLE_BITS
# Tuples, not ``a | b`` unions: a union is built anew at every isinstance call.
_DATES: Final = (dt.date, dt.time)
_BYTES: Final = (bytes, bytearray, memoryview)
_CONTAINERS: Final = (Mapping, list, tuple, set, frozenset)
_SETS: Final = (set, frozenset)


@dataclass(slots=True)
class KeyCollisions:
    """Values coercion left out because two keys of one mapping became the same string.

    Filled in by :func:`coerce_mapping` (``count`` and the first such ``key``'s text)
    and by ``make_event`` (the first such ``event``'s name), for one count and one
    warning per batch. Mutable on purpose: the caller passes one in to be filled.
    """

    count: int = 0
    key: str | None = None
    event: str | None = None

    def add(self, key: str, count: int = 1, event: str | None = None) -> None:
        """``count`` more values lost; ``key`` (in ``event``) is kept if it is the first."""
        if self.key is None:
            self.key, self.event = key, event
        self.count += count


class _Walk:
    """One coercion's state: the containers open on the way down (a cycle comes back to
    one of them) and where to count key collisions (nowhere when None)."""

    __slots__ = ("active", "collisions")

    def __init__(self, collisions: KeyCollisions | None) -> None:
        self.active: set[int] = set()
        self.collisions = collisions


def coerce_mapping(
    value: Mapping[Any, Any], collisions: KeyCollisions | None = None
) -> dict[str, Any]:
    """A new dict with string keys and strict-JSON values; the input is not touched.

    Only reading ``value`` itself can raise (its ``items()``, the caller's to
    report); every key and value inside it is converted. Where two keys, at any
    depth, become the same string the last value wins; each value lost is counted
    in ``collisions``. (A dict :func:`is_plain` accepts has distinct str keys that
    stay as they are, so it cannot collide.)
    """
    plain = plain_copy(value)
    if plain is not None:
        return plain
    return _coerce_dict(value, 1, _Walk(collisions))


def plain_copy(value: object) -> dict[str, Any] | None:
    """A copy of ``value`` when there is nothing to coerce in it (:func:`is_plain`), else None."""
    return value.copy() if type(value) is dict and is_plain(value) else None


def is_plain(value: dict[Any, Any]) -> bool:
    """Whether coercion would leave this dict exactly as it is.

    That is str keys and str/int/float/bool/None values, every one already what
    coercion would make of it: text that is short and encodable (keys are clipped
    like values), ints short enough to print, finite floats. The common log call's
    properties, checked without a function call per item. Only an exact dict is
    ever asked (a subclass's items() may not show what dict() would copy).
    """
    for key, item in value.items():
        if type(key) is not str or len(key) > MAX_STRING_LENGTH:
            return False
        if not (key.isascii() or _encodable(key)):
            return False
        kind = type(item)
        if kind is str:
            if len(item) > MAX_STRING_LENGTH or not (item.isascii() or _encodable(item)):
                return False
        elif kind is int:
            if not -_PRINTABLE_LIMIT < item < _PRINTABLE_LIMIT:
                return False
        elif not (kind is bool or item is None or (kind is float and math.isfinite(item))):
            return False
    return True


def coerce_value(value: Any) -> Any:
    """One value as strict JSON (see the module docstring for the rules)."""
    return _coerce(value, 0, _Walk(None))


def type_name(value: object) -> str:
    """The name of ``value``'s type, for messages and placeholders; never raises."""
    try:
        # str.__str__: a metaclass may make __name__ anything, or make it raise.
        return str.__str__(type(value).__name__)
    except Exception:  # noqa: BLE001 - see above
        return "object"


def _coerce(value: Any, depth: int, walk: _Walk) -> Any:
    try:
        return _convert(value, depth, walk)
    except Exception:  # noqa: BLE001 - user objects may raise anything, from anywhere
        return _unprintable(value)


def _convert(value: Any, depth: int, walk: _Walk) -> Any:
    # str.__str__, int.__int__, float.__float__: the value itself, whatever a
    # subclass's own methods say (or raise).
    if isinstance(value, str):
        return _clip(utf8_text(str.__str__(value)))
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, enum.Enum):
        return _coerce(value.value, depth, walk)
    if isinstance(value, int):
        return _int(int.__int__(value))
    if isinstance(value, float):
        number = float.__float__(value)
        return number if math.isfinite(number) else None
    if isinstance(value, dt.datetime) and value.utcoffset() is not None:
        # An aware time goes as UTC with "Z", like occurred_at: one form for the API.
        utc = value.astimezone(dt.UTC).replace(tzinfo=None)
        return utc.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, _DATES):  # naive datetimes (zone unknown: as written), dates, times
        return _clip(utf8_text(str.__str__(value.isoformat())))
    if isinstance(value, _BYTES):
        return _clip(bytes(value).decode("utf-8", errors="replace"))
    if isinstance(value, _CONTAINERS):
        return _coerce_container(value, depth + 1, walk)
    return _text(value)


def _int(number: int) -> int | str:
    """``number``, or a short description if its decimal form is too long to send."""
    bits = number.bit_length()
    if bits <= _ALWAYS_PRINTABLE_BITS or abs(number) < _power_of_ten(_max_int_digits()):
        return number
    # Never str(number): past the limit that raises. Nor a float: 640 digits or
    # more is far beyond the largest float (about 1.8e308).
    return f"<{'negative ' if number < 0 else ''}int: {bits} bits>"


def _max_int_digits() -> int:
    # Read each time: the app may change the limit. Without one (0), an int is
    # still held to the length a string may have.
    limit = sys.get_int_max_str_digits()
    return min(limit, MAX_STRING_LENGTH) if limit else MAX_STRING_LENGTH


@functools.lru_cache(maxsize=4)
def _power_of_ten(exponent: int) -> int:
    return int(10**exponent)  # int(): mypy types int ** int as Any


def _coerce_container(value: Any, depth: int, walk: _Walk) -> Any:
    active = walk.active
    if id(value) in active:
        return _CYCLE_MARK
    if depth > MAX_DEPTH:
        return _text(value)
    active.add(id(value))
    try:
        if isinstance(value, Mapping):
            return _coerce_dict(value, depth, walk)
        items = _ordered(value) if isinstance(value, _SETS) else value
        return [_coerce(item, depth, walk) for item in items]
    finally:
        active.discard(id(value))


def _coerce_dict(value: Mapping[Any, Any], depth: int, walk: _Walk) -> dict[str, Any]:
    walk.active.add(id(value))
    try:
        result: dict[str, Any] = {}
        lost, first = 0, ""
        for k, v in value.items():
            key = _key(k)
            # Two keys that became one: the last value wins (as in a dict display),
            # in the first key's place; the value it replaces is lost.
            if key in result:
                if not lost:
                    first = key
                lost += 1
            result[key] = _coerce(v, depth, walk)
    finally:
        walk.active.discard(id(value))
    # Counted once the whole mapping is read: one whose items() raises part-way
    # becomes "<unprintable T>" (or refused, at the top), losing no value to a collision.
    if lost and walk.collisions is not None:
        walk.collisions.add(first, lost)
    return result


def _ordered(items: set[Any] | frozenset[Any]) -> list[Any]:
    # Sorted when possible so the same set always serialises the same way: a
    # retried request must carry a byte-identical body.
    try:
        return sorted(items)
    except Exception:  # noqa: BLE001 - TypeError for mixed types; a user __lt__ may raise anything
        return sorted(items, key=_sort_key)


def _sort_key(item: object) -> str:
    try:
        return str.__str__(repr(item))
    except Exception:  # noqa: BLE001 - a user __repr__, or an int too long to print
        return _unprintable(item)


def _key(key: object) -> str:
    try:
        if isinstance(key, str):
            return _clip(utf8_text(str.__str__(key)))
        if isinstance(key, enum.Enum):
            return _key(key.value)
        if isinstance(key, int):
            number = _int(int.__int__(key))
            if isinstance(number, str):
                return number
        return _text(key)
    except Exception:  # noqa: BLE001 - user objects may raise anything, from anywhere
        return _unprintable(key)


def _text(value: object) -> str:
    """``str(value)``, clipped; an object whose ``__str__`` fails still yields text."""
    try:
        # str.__str__: __str__ may return a str subclass with methods of its own.
        text = str.__str__(str(value))
    except Exception:  # noqa: BLE001 - user objects may raise anything from __str__
        return _unprintable(value)
    return _clip(utf8_text(text))


def _unprintable(value: object) -> str:
    return _clip(utf8_text(f"<unprintable {type_name(value)}>"))


def utf8_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD, so it can be sent as UTF-8."""
    if text.isascii() or _encodable(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _encodable(text: str) -> bool:
    # Lone surrogates are legal in a Python str and nowhere else.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clip(text: str) -> str:
    if len(text) <= MAX_STRING_LENGTH:
        return text
    return text[: MAX_STRING_LENGTH - len(_TRUNCATION_MARK)] + _TRUNCATION_MARK
