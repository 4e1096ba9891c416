"""Replace the values of property and trait keys that look secret (on by default).

A key matches a pattern when the pattern's words appear, in order and next to
each other, among the key's words: ``userPassword``, ``db-password`` and
``password_hash`` all match ``password``; ``x-api-key`` and ``apiKey`` match
``api_key``. Broad words (``token``, ``session``, ``auth``, ``card``) are secret
only as the whole key or as the last word of a compound that names a credential
(``csrf_token``), so ordinary product data (``session_count``, ``auth_provider``,
``card_brand``) arrives as written. Runs on the delivery worker
(logs) or the SDK export thread (spans), after coercion, so every value is
already plain JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from collections.abc import Iterable
from typing import Any, Final, TypeVar, cast

from .model import Event

__all__ = ["DEFAULT_SECRET_KEYS", "REDACTED", "Redactor", "key_words"]

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

    def is_secret(self, key: str) -> bool:
        """Whether values under ``key`` are replaced."""
        return self.enabled and bool(self._is_secret(key))

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
