"""Client-side checks that keep a bad event out of every batch (design §4).

Nothing a caller passes makes :func:`make_event` raise: every user-supplied
object is looked at through guarded checks, and a value that misbehaves is
refused with a reason like any other bad value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, cast

from .coerce import coerce_mapping, is_plain, type_name, utf8_text
from .model import Event, new_event_id, plain_event
from .redact import DEFAULT_REDACTOR, Redactor
from .when import explicit_time

__all__ = [
    "CANONICAL_EVENTS",
    "IDENTIFY",
    "Backdated",
    "PendingEvent",
    "Rejection",
    "build_pending",
    "email_problem",
    "make_event",
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

# The names alone, for the common event's one membership test.
_CANONICAL_NAMES: Final = frozenset(CANONICAL_EVENTS)
_USER_FIELD: Final = "external_user_id"
# A bad value is quoted in a message only this far.
_QUOTE_LENGTH: Final = 80


#: What a log call leaves in the queue: (name, user, properties, traits, created
#: [, redactor]); ``created`` is the record's float time, or its ``vf_occurred_at``
#: as :class:`Backdated`. A bare tuple because the logging thread must spend as little
#: as possible: validation, coercion, redaction, the event id and the timestamp are
#: all done on the delivery worker by :func:`build_pending`. Without a sixth item
#: the default redaction applies. A dict in it is the queue's own (the handler
#: queues a copy of the caller's), so the worker may keep it as the Event's.
PendingEvent = (
    tuple[object, object, object, object, object]
    | tuple[object, object, object, object, object, Redactor]
)


@dataclass(frozen=True, slots=True)
class Backdated:
    """An explicit time for a log call's event (``vf_occurred_at``), read on the worker."""

    value: object


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was not built: a counter reason, a field and a readable message."""

    reason: str
    field: str
    message: str


def make_event(
    *,
    name: object,
    user_id: object,
    properties: object,
    traits: object,
    occurred_at: datetime,
    event_id: str,
    redactor: Redactor | None = DEFAULT_REDACTOR,
) -> Event | Rejection:
    """Validate, coerce and redact raw tag values into an Event, or say why not.

    ``redactor=None`` leaves secret-looking keys alone (the caller redacts later).
    Never raises: an ``occurred_at`` that is not a usable time becomes now, and
    a failure no check foresaw is the Rejection ``internal_error``.
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
        )
    except Exception as exc:  # noqa: BLE001 - last resort; every known hazard is checked
        return Rejection(
            "internal_error", "event", f"unexpected {type_name(exc)} while building the event"
        )


def build_pending(pending: PendingEvent, event_id: str | None = None) -> Event | Rejection:
    """Turn a queued log call into an Event (on the worker), or say why not.

    ``event_id`` is the new event's id when the caller drew ids in bulk; else one is made.
    """
    # Not ``*rest``: that builds a list for every event.
    if len(pending) == 6:
        name, user_id, properties, traits, created, redactor = pending
    else:
        name, user_id, properties, traits, created = pending
        redactor = DEFAULT_REDACTOR
    if isinstance(created, Backdated):  # vf_occurred_at: a datetime, epoch seconds or ISO
        explicit = explicit_time(created.value)
        if isinstance(explicit, str):
            return Rejection("invalid_occurred_at", "occurred_at", explicit)
        occurred_at = explicit
    else:  # the log record's own time
        occurred_at = _from_timestamp(created)  # type: ignore[arg-type]
    if name == IDENTIFY and not isinstance(traits, Mapping):
        return Rejection("invalid_traits", "traits", "identify() needs a mapping of traits")
    if event_id is None:
        event_id = new_event_id()
    # The common log call, checked in a few steps (the Event is the one make_event makes):
    # exact str name and user, no traits, a time already what _utc() would make it.
    if type(name) is str and type(user_id) is str and traits is None:
        try:
            props = _plain_properties(name, user_id, properties, redactor)
        except Exception:  # noqa: BLE001 - a redactor's failure: make_event reports it
            props = None
        if props is not None and occurred_at.tzinfo is UTC:
            return plain_event(name, user_id, props, occurred_at, event_id)
    return make_event(
        name=name,
        user_id=user_id,
        properties=properties,
        traits=traits,
        occurred_at=occurred_at,
        event_id=event_id,
        redactor=redactor,
    )


def _plain_properties(
    name: str, user_id: str, properties: object, redactor: Redactor | None
) -> dict[str, Any] | None:
    """The common log call's properties, redacted, found without the general checks.

    None when the call needs those checks. Only an exact str name and user (ASCII,
    not blank), and properties that are None or an exact dict :func:`is_plain`
    accepts: for these every check of :func:`_build` passes and coercion is a copy,
    so with them (no traits, a UTC time) the Event is the one it would build. A
    canonical event must also have its required properties. Anything else (None)
    takes the general path, which says what is wrong. The properties dict is used
    as it is, not copied again: it is the queue's own (see PendingEvent).
    """
    if not (name.isascii() and user_id.isascii() and name.strip() and user_id.strip()):
        return None
    if properties is None:
        props: dict[str, Any] = {}
    elif type(properties) is dict and is_plain(properties):
        props = properties
    else:
        return None
    if name in _CANONICAL_NAMES and _missing_required(name, props) is not None:
        return None
    if redactor is not None and redactor.enabled:
        return redactor.flat_properties(props)  # is_plain: nothing nested in it
    return props


def _build(
    *,
    name: object,
    user_id: object,
    properties: object,
    traits: object,
    occurred_at: datetime,
    event_id: str,
    redactor: Redactor | None,
) -> Event | Rejection:
    user = _user_id(user_id)
    if isinstance(user, Rejection):
        return user
    event_name = _name(name)
    if isinstance(event_name, Rejection):
        return event_name
    props = _mapping(properties, "properties")
    if isinstance(props, Rejection):
        return props
    upsert = None if traits is None else _mapping(traits, "traits")
    if isinstance(upsert, Rejection):
        return upsert
    # An email the API would refuse costs only the upsert (checked in requests.prepare),
    # never the event.
    problem = _missing_required(event_name, props)
    if problem is not None:
        return problem
    if redactor is not None and redactor.enabled:
        props = redactor.properties(props)
        upsert = redactor.traits(upsert)
    return Event(event_name, user, props, _utc(occurred_at), event_id, upsert)


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
            f"user id must be a non-empty str or int, got {type_name(value)}",
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


def _mapping(value: object, what: str) -> dict[str, Any] | Rejection:
    """``value`` coerced (``{}`` for None), or invalid_<what> if it is not a readable mapping."""
    if value is None:
        return {}
    try:
        # type(), not isinstance(): isinstance consults value.__class__, which may raise.
        if issubclass(type(value), Mapping):
            return coerce_mapping(cast("Mapping[Any, Any]", value))
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


def _missing_required(name: str, props: Mapping[str, Any]) -> Rejection | None:
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


def _from_timestamp(created: float) -> datetime:
    """A log record's ``created`` as UTC; now if it is no usable time (NaN, huge, not a number)."""
    try:
        return datetime.fromtimestamp(created, UTC)
    except Exception:  # noqa: BLE001 - a record's attributes can be set to anything
        return datetime.now(UTC)


def _quote(value: object) -> str:
    """A short repr of a bad value for a message; its type's name if even repr fails."""
    try:
        return str.__str__(repr(value))[:_QUOTE_LENGTH]
    except Exception:  # noqa: BLE001 - a user __repr__, or an int too long to print
        return f"<unprintable {type_name(value)}>"
