"""Client-side checks that keep a bad event out of every batch.

Nothing a caller passes makes :func:`make_event` raise: every user-supplied
object is looked at through guarded checks, and a value that misbehaves is
refused with a reason like any other bad value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, cast

from .coerce import KeyCollisions, coerce_mapping, type_name, utf8_text
from .model import Event
from .redact import DEFAULT_REDACTOR, Redactor

__all__ = [
    "CANONICAL_EVENTS",
    "CANONICAL_NAMES",
    "IDENTIFY",
    "SAME_AS_IDENTIFY",
    "Rejection",
    "email_problem",
    "is_identify",
    "make_event",
    "missing_required",
]

#: The nine canonical lifecycle events and the properties each one requires
#: (vibefollow-api.md §6). Other names are custom events with no requirements.
CANONICAL_EVENTS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "user_signed_up": (),
        "trial_started": (),
        "feature_used": ("feature",),
        "onboarding_step": ("step",),
        "subscription_changed": ("to",),
        "subscription_cancelled": (),
        "payment_failed": (),
        "trial_expiring": ("daysLeft",),
        "user_invited": ("invitedEmail",),
    }
)

#: The name of a user upsert with no event (``vf_otel.identify()``), as posthog names it:
#: such an "event" becomes only a ``POST /users``. Reserved: not sent as an event.
IDENTIFY: Final = "$identify"
#: ``IDENTIFY.__eq__``: True for that text, False or NotImplemented for anything else.
#: Unlike ``==`` it never runs the other object's ``__eq__`` (a logged name may be any
#: object, even a str subclass whose ``__eq__`` raises); for ``map(...).count(True)``.
SAME_AS_IDENTIFY: Final = IDENTIFY.__eq__


def is_identify(name: object) -> bool:
    """Whether ``name`` is the identify() marker; never runs ``name``'s own methods."""
    return SAME_AS_IDENTIFY(name) is True


#: The names alone, for the common event's one membership test.
CANONICAL_NAMES: Final = frozenset(CANONICAL_EVENTS)
_USER_FIELD: Final = "external_user_id"
# A bad value is quoted in a message only this far.
_QUOTE_LENGTH: Final = 80


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was not built: a counter reason, a field and a readable message.

    ``cause``: for ``internal_error``, the exception no check foresaw (its traceback
    is logged where the rejection is counted).
    """

    reason: str
    field: str
    message: str
    cause: BaseException | None = dataclasses.field(default=None, compare=False, repr=False)


def make_event(
    *,
    name: object,
    user_id: object,
    properties: object,
    traits: object,
    occurred_at: datetime,
    event_id: str,
    redactor: Redactor | None = DEFAULT_REDACTOR,
    collisions: KeyCollisions | None = None,
) -> Event | Rejection:
    """Validate, coerce and redact raw tag values into an Event, or say why not.

    ``redactor=None`` leaves secret-looking keys alone (the caller redacts later).
    Property and trait values lost because two keys became the same string (the
    last value wins) are added to ``collisions``, with this event's name, when the
    Event is built (not when it is refused). Never raises: an ``occurred_at`` that
    is not a usable time becomes now, and a failure no check foresaw is the
    Rejection ``internal_error``.
    """
    try:
        return _build(
            name=name,
            user_id=user_id,
            properties=properties,
            traits=traits,
            occurred_at=occurred_at,
            event_id=event_id,
            redactor=redactor,
            collisions=collisions,
        )
    except Exception as exc:  # noqa: BLE001 - last resort; every known hazard is checked
        return Rejection(
            "internal_error",
            "event",
            f"unexpected {type_name(exc)} while building the event",
            cause=exc,
        )


def _build(
    *,
    name: object,
    user_id: object,
    properties: object,
    traits: object,
    occurred_at: datetime,
    event_id: str,
    redactor: Redactor | None,
    collisions: KeyCollisions | None = None,
) -> Event | Rejection:
    user = _user_id(user_id)
    if isinstance(user, Rejection):
        return user
    event_name = _name(name)
    if isinstance(event_name, Rejection):
        return event_name
    # This event's own, added to the caller's only once the Event is built.
    lost = None if collisions is None else KeyCollisions()
    props = _mapping(properties, "properties", lost)
    if isinstance(props, Rejection):
        return props
    upsert = None if traits is None else _mapping(traits, "traits", lost)
    if isinstance(upsert, Rejection):
        return upsert
    # An email the API would refuse costs only the upsert (checked in requests.prepare),
    # never the event.
    problem = missing_required(event_name, props)
    if problem is not None:
        return problem
    if redactor is not None and redactor.enabled:
        props = redactor.properties(props)
        upsert = redactor.traits(upsert)
    event = Event(event_name, user, props, _utc(occurred_at), event_id, upsert)
    if collisions is not None and lost is not None and lost.count:
        collisions.add(lost.key or "", lost.count, event_name)
    return event


def _user_id(value: object) -> str | Rejection:
    if value is None:
        return Rejection("missing_user", _USER_FIELD, "no user: set vf_user or vf_otel.user()")
    # type(), not isinstance(): isinstance consults value.__class__, which may raise.
    kind = type(value)
    text = None
    if issubclass(kind, str):
        text = str.__str__(cast("str", value))  # the text itself, whatever a subclass does
    elif issubclass(kind, int) and kind is not bool:
        # Integer primary keys are common enough to accept as they would print.
        try:
            text = str.__str__(str(value))
        except Exception:  # noqa: BLE001 - too many digits to print, or a subclass's __str__
            return Rejection(
                "invalid_user", _USER_FIELD, "user id is an int that cannot be printed"
            )
    if text is None or not text.strip():
        return Rejection(
            "invalid_user",
            _USER_FIELD,
            "user id must be a non-empty str or int, got an empty or blank str"
            if text is not None
            else f"user id must be a non-empty str or int, got {type_name(value)}",
        )
    return utf8_text(text)


def _name(value: object) -> str | Rejection:
    if issubclass(type(value), str):
        text = str.__str__(cast("str", value))
        if text.strip():
            return utf8_text(text)
    return Rejection(
        "invalid_name", "name", f"event name must be a non-empty str, got {_quote(value)}"
    )


def _mapping(
    value: object, what: str, collisions: KeyCollisions | None = None
) -> dict[str, Any] | Rejection:
    """``value`` coerced (``{}`` for None), or invalid_<what> if it is not a readable mapping.

    Values lost because two keys became the same string are counted in ``collisions``.
    """
    if value is None:
        return {}
    try:
        # type(), not isinstance(): isinstance consults value.__class__, which may raise.
        if issubclass(type(value), Mapping):
            return coerce_mapping(cast("Mapping[Any, Any]", value), collisions)
    except Exception as exc:  # noqa: BLE001 - its items() may raise anything
        problem = f"{what} could not be read ({type_name(exc)} from {type_name(value)})"
        return Rejection(f"invalid_{what}", what, problem)
    return Rejection(f"invalid_{what}", what, f"{what} must be a mapping, got {type_name(value)}")


def email_problem(traits: Mapping[str, Any] | None) -> str | None:
    """Why the API would refuse these traits' email in an upsert (None when it would not)."""
    email = None if traits is None else traits.get("email")
    # What the API checks for the top-level email; only a non-empty str goes there.
    if not isinstance(email, str) or not email:
        return None
    local, at, domain = email.partition("@")
    if at and local and domain and "@" not in domain:
        return None
    # It would go top-level in the upsert, where the API refuses anything else.
    return "traits email must look like name@domain"


def missing_required(name: str, props: Mapping[str, Any]) -> Rejection | None:
    missing = [key for key in CANONICAL_EVENTS.get(name, ()) if props.get(key) is None]
    if not missing:
        return None
    return Rejection(
        "missing_required_property",
        f"properties.{missing[0]}",
        f"{name!r} requires the propert{'y' if len(missing) == 1 else 'ies'} "
        + ", ".join(repr(key) for key in missing),
    )


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC, so the wire time can always be written; now if it cannot be."""
    try:
        return moment.astimezone(UTC)
    except Exception:  # noqa: BLE001 - out of range once converted, or not a datetime at all
        return datetime.now(UTC)


def _quote(value: object) -> str:
    """A short repr of a bad value for a message; its type's name if even repr fails."""
    try:
        return str.__str__(repr(value))[:_QUOTE_LENGTH]
    except Exception:  # noqa: BLE001 - a user __repr__, or an int too long to print
        return f"<unprintable {type_name(value)}>"
