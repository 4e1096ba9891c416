"""Turn arbitrary Python values into strict-JSON values (design §4).

Runs on the application thread when an event is built, so the common case
(a flat mapping of str/int/float/bool/None) takes a fast path; everything else
is converted, never rejected, so a request body is always valid strict JSON.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["MAX_DEPTH", "MAX_STRING_LENGTH", "coerce_mapping", "coerce_value", "utf8_text"]

MAX_DEPTH: Final = 10
# Longer strings are cut: one runaway value must not make a whole event too large.
MAX_STRING_LENGTH: Final = 16_384
_TRUNCATION_MARK: Final = "…[truncated]"
_CYCLE_MARK: Final = "<cycle>"
_SCALARS: Final = (str, int, bool, type(None))


def coerce_mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    """A new dict with string keys and strict-JSON values; the input is not touched."""
    # Keys are clipped like values, so a long key must leave the fast path too.
    if all(type(k) is str and _is_plain(k) and _is_plain(v) for k, v in value.items()):
        return dict(value)
    return _coerce_dict(value, 1, set())


def coerce_value(value: Any) -> Any:
    """One value as strict JSON (see the module docstring for the rules)."""
    return _coerce(value, 0, set())


def _is_plain(value: object) -> bool:
    if type(value) is str:
        return len(value) <= MAX_STRING_LENGTH and (value.isascii() or _encodable(value))
    if type(value) is float:
        return math.isfinite(value)
    return type(value) in _SCALARS


def _coerce(value: Any, depth: int, active: set[int]) -> Any:
    if isinstance(value, str):
        return _clip(utf8_text(str.__str__(value)))
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, enum.Enum):
        return _coerce(value.value, depth, active)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return _clip(bytes(value).decode("utf-8", errors="replace"))
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return _coerce_container(value, depth + 1, active)
    return _text(value)


def _coerce_container(value: Any, depth: int, active: set[int]) -> Any:
    if id(value) in active:
        return _CYCLE_MARK
    if depth > MAX_DEPTH:
        return _text(value)
    active.add(id(value))
    try:
        if isinstance(value, Mapping):
            return _coerce_dict(value, depth, active)
        items = _ordered(value) if isinstance(value, set | frozenset) else value
        return [_coerce(item, depth, active) for item in items]
    finally:
        active.discard(id(value))


def _coerce_dict(value: Mapping[Any, Any], depth: int, active: set[int]) -> dict[str, Any]:
    active.add(id(value))
    try:
        return {_key(k): _coerce(v, depth, active) for k, v in value.items()}
    finally:
        active.discard(id(value))


def _ordered(items: set[Any] | frozenset[Any]) -> list[Any]:
    # Sorted when possible so the same set always serialises the same way: a
    # retried request must carry a byte-identical body.
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=repr)


def _key(key: object) -> str:
    if isinstance(key, str):
        return _clip(utf8_text(str.__str__(key)))
    if isinstance(key, enum.Enum):
        return _key(key.value)
    return _text(key)


def _text(value: object) -> str:
    """``str(value)``, clipped; an object whose ``__str__`` fails still yields text."""
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - user objects may raise anything from __str__
        text = f"<unprintable {type(value).__name__}>"
    return _clip(utf8_text(text))


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
