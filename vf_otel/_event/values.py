"""Property and trait values made safe to send: coerced to strict JSON, secrets redacted."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import itertools
import math
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

from .model import Event

__all__ = [
    "DEFAULT_SECRET_KEYS",
    "MAX_DEPTH",
    "MAX_STRING_LENGTH",
    "REDACTED",
    "KeyCollisions",
    "Redactor",
    "coerce_mapping",
    "coerce_value",
    "is_plain",
    "key_words",
    "plain_copy",
    "type_name",
    "utf8_text",
]


# Turn arbitrary Python values into strict-JSON values.
#
# Runs for every event built (on the delivery worker for log calls, in the exporter
# for spans), so the common case (a flat dict of str/int/float/bool/None) takes a
# fast path; everything else is converted, never rejected, so a request body is
# always valid strict JSON.
#
# Nothing a key or value does can make coercion raise: one whose conversion
# raises (its ``__str__``, ``items()``, iteration or comparison) becomes
# ``"<unprintable TypeName>"``, and an int too long for Python to print (it would
# raise when the body is encoded, losing the whole batch) becomes ``"<int: N bits>"``.
#
# Every key becomes a string, so two keys of one mapping can become the same one
# (``1`` and ``"1"``, an Enum and its value, two long keys cut to the same text, two
# objects that print alike): the last value wins, as when a dict is built from pairs,
# and each value so lost is counted in the caller's :class:`KeyCollisions`.

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
        if type(key) is not str:
            return False
        if key not in _PLAIN_KEYS and not _plain_key(key):
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


#: Keys :func:`is_plain` took before (exact str only: a subclass equal to one is
#: checked by its type first). Properties repeat a few names: each is checked once.
_PLAIN_KEYS: Final[set[str]] = set()
#: Past this many, names made up at run time: the set starts over, never grows for ever.
_PLAIN_KEYS_LIMIT: Final = 4096
#: Only names this short are remembered (a long key, text more than a name, is checked
#: every time): the set holds at most a few hundred KiB, whatever the keys.
_REMEMBERED_KEY_LENGTH: Final = 64


def _plain_key(key: str) -> bool:
    """Whether coercion leaves the str ``key`` as it is (short, encodable); a short one
    is remembered."""
    if len(key) > MAX_STRING_LENGTH or not (key.isascii() or _encodable(key)):
        return False
    if len(key) <= _REMEMBERED_KEY_LENGTH:
        if len(_PLAIN_KEYS) >= _PLAIN_KEYS_LIMIT:
            _PLAIN_KEYS.clear()
        _PLAIN_KEYS.add(key)
    return True


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


# Replace the values of property and trait keys that look secret (on by default).
#
# A key matches a pattern when the pattern's words appear, in order and next to
# each other, among the key's words: ``userPassword``, ``db-password`` and
# ``password_hash`` all match ``password``; ``x-api-key`` and ``apiKey`` match
# ``api_key``. Broad words (``token``, ``session``, ``auth``, ``card``) are secret
# only as the whole key or as the last word of a compound that names a credential
# (``csrf_token``), so ordinary product data (``session_count``, ``auth_provider``,
# ``card_brand``) arrives as written. Runs on the delivery worker
# (logs) or the SDK export thread (spans), after coercion, so every value is
# already plain JSON.

REDACTED: Final = "[redacted]"
#: Patterns that mark a secret wherever their words stand in a key (``db_password``,
#: ``x-api-key``, ``stripeClientSecret``); ``redact_keys`` adds to them.
DEFAULT_SECRET_KEYS: Final = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "api_key",
    "apikey",
    "access_token",
    "refresh_token",
    "bearer_token",
    "id_token",
    "auth_token",
    "session_token",
    "session_id",
    "session_key",
    "session_secret",
    "authorization",
    "credentials",
    "cookie",
    "card_number",
    "cc_number",
    "credit_card_number",
    "cvv",
    "cvc",
    "ssn",
    "social_security_number",
    "private_key",
    "jwt",
)
#: Broad words that are secret only as the whole key (``token``, ``auth``), so
#: ``session_count``, ``auth_provider``, ``card_brand`` and ``tokens_used`` stay as sent.
WHOLE_KEY_SECRETS: Final = frozenset(
    {"session", "auth", "card", "token", "pwd", "pin", "bearer", "otp", "mfa_code"}
)
#: A key whose last word is one of these is a credential of some service
#: (``csrf_token``, ``github_token``, ``stripe_secret``): an unambiguous compound.
SECRET_LAST_WORDS: Final = frozenset({"token", "secret", "password", "passwd", "apikey"})
# A product sends the same few keys again and again: deciding once per key keeps
# the default cost to one dict lookup. Bounded, since keys may be unbounded too.
_CACHE_SIZE: Final = 4096
_SPLIT: Final = re.compile(r"[^0-9a-zA-Z]+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
#: The one traits key that is never redacted: the API takes it as the user's email.
EMAIL_KEY: Final = "email"
# A tuple, not ``dict | list``: that union is built anew at every isinstance call.
_NESTED: Final = (dict, list)
_T = TypeVar("_T")


def key_words(key: str) -> tuple[str, ...]:
    """The lower-case words of a key: ``"X-Api-Key"``, ``"xAPIKey"`` → ``("x", "api", "key")``."""
    return tuple(word.lower() for word in _SPLIT.split(key) if word)


# Whole-key secrets as a key's words run together ("mfa_code" and "mfaCode" alike).
_WHOLE_KEYS: Final = frozenset("".join(key_words(word)) for word in WHOLE_KEY_SECRETS)


class Redactor:
    """Decides which keys are secret and replaces their values, recursively."""

    __slots__ = ("_clean", "_is_secret", "_patterns", "enabled")

    def __init__(self, extra_keys: Iterable[str] = (), *, enabled: bool = True) -> None:
        self.enabled = enabled
        words = (key_words(p) for p in (*DEFAULT_SECRET_KEYS, *extra_keys))
        # Matched on the words run together, so "apikey" also matches "api_key".
        self._patterns: tuple[str, ...] = tuple(sorted({"".join(w) for w in words if w}))
        self._is_secret = functools.lru_cache(maxsize=_CACHE_SIZE)(self._decide)
        # Keys found not secret: a flat mapping of them is checked in one C-level
        # test. Bounded like the decisions; past that size keys are decided as before.
        self._clean: set[str] = set()

    def __repr__(self) -> str:
        return f"<Redactor {'on' if self.enabled else 'off'} {len(self._patterns)} patterns>"

    def _decide(self, key: str) -> bool:
        words = key_words(key)
        if not words:
            return False
        if "".join(words) in _WHOLE_KEYS or words[-1] in SECRET_LAST_WORDS:
            return True
        for start in range(len(words)):
            joined = ""
            for word in words[start:]:
                joined += word
                if joined in self._patterns:
                    return True
        return False

    def properties(self, value: dict[str, Any]) -> dict[str, Any]:
        """``value`` with secret values replaced; the same object when nothing matched."""
        if not self.enabled or not value:
            return value
        return self._mapping(value, keep=None)

    def flat_properties(self, value: dict[str, Any]) -> dict[str, Any]:
        """:meth:`properties` of a dict with no dict or list among its values.

        The common log call's: its keys, met before, are looked up all at once.
        """
        if not self.enabled or value.keys() <= self._clean:
            return value
        if any(map(self._is_secret, value)):
            return self._mapping(value, keep=None)
        if len(self._clean) < _CACHE_SIZE:
            self._clean.update(value)
        return value

    def traits(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """As :meth:`properties`, but the top-level ``email`` always stays."""
        if not self.enabled or not value:
            return value
        return self._mapping(value, keep=EMAIL_KEY)

    def event(self, item: _T) -> _T:
        """An Event with its properties and traits redacted; anything else as it is."""
        if not self.enabled or not isinstance(item, Event):
            return item
        props, traits = item.properties, item.traits
        new_props = self._mapping(props, keep=None) if isinstance(props, dict) else props
        new_traits = self.traits(traits) if isinstance(traits, dict) else traits
        if new_props is props and new_traits is traits:
            return item
        return cast(_T, dataclasses.replace(item, properties=new_props, traits=new_traits))

    def _mapping(self, value: dict[str, Any], keep: str | None) -> dict[str, Any]:
        # Most mappings hold no secret key and nothing nested: found out in two passes
        # that run in C, not in a loop of Python calls (once per event on the worker).
        if not any(map(self._is_secret, value)) and not any(
            map(isinstance, value.values(), itertools.repeat(_NESTED))
        ):
            return value
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            if key != keep and self._is_secret(key):
                new: Any = REDACTED
            elif isinstance(item, _NESTED):
                new = self._any(item)
            else:
                continue
            if new is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = new
        return value if changed is None else changed

    def _any(self, item: Any) -> Any:
        # Coerced values nest at most MAX_DEPTH deep and hold no cycles.
        if isinstance(item, dict):
            return self._mapping(item, keep=None)
        if isinstance(item, list):
            new = [self._any(x) if isinstance(x, _NESTED) else x for x in item]
            return item if all(a is b for a, b in zip(new, item, strict=True)) else new
        return item


#: What an Event is built with when nothing else is said: the default patterns, on.
DEFAULT_REDACTOR: Final = Redactor()


def redactor_for(settings: Any) -> Redactor:
    """The Redactor for resolved settings (``redact`` and ``redact_keys``, if present)."""
    enabled = bool(getattr(settings, "redact", True))
    extra: tuple[str, ...] = tuple(getattr(settings, "redact_keys", ()) or ())
    if enabled and not extra:
        return DEFAULT_REDACTOR
    return Redactor(extra, enabled=enabled)
