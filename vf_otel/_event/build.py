"""Building Events: the client-side checks (``make_event``), and queued log calls in batches."""

from __future__ import annotations

import dataclasses
import itertools
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, Literal, cast

from .model import DropReason, Event, explicit_time, new_event_id, new_event_ids, plain_event
from .values import (
    DEFAULT_REDACTOR,
    KeyCollisions,
    Redactor,
    coerce_mapping,
    is_plain,
    type_name,
    utf8_text,
)

__all__ = [
    "CANONICAL_EVENTS",
    "CANONICAL_NAMES",
    "IDENTIFY",
    "SAME_AS_IDENTIFY",
    "Backdated",
    "PendingEvent",
    "Rejection",
    "build_batch",
    "build_pending",
    "count_events",
    "email_problem",
    "is_identify",
    "make_event",
    "missing_required",
    "record_time",
]


# Client-side checks that keep a bad event out of every batch.
#
# Nothing a caller passes makes :func:`make_event` raise: every user-supplied
# object is looked at through guarded checks, and a value that misbehaves is
# refused with a reason like any other bad value.

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
#: The drop reason of a mapping that is not one.
_INVALID: Final[Mapping[str, DropReason]] = {
    "properties": "invalid_properties",
    "traits": "invalid_traits",
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was not built: a counter reason, a field and a readable message.

    ``cause``: for ``internal_error``, the exception no check foresaw (its traceback
    is logged where the rejection is counted).
    """

    reason: DropReason
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
    value: object,
    what: Literal["properties", "traits"],
    collisions: KeyCollisions | None = None,
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
        return Rejection(_INVALID[what], what, problem)
    return Rejection(_INVALID[what], what, f"{what} must be a mapping, got {type_name(value)}")


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


# Queued log calls into Events, on the delivery worker.
#
# A log call leaves only its raw tags in the queue (see :data:`PendingEvent`): the
# logging thread spends as little as it can. The worker builds them a batch at a
# time here: the common call in a few steps (:func:`build_batch`), anything else
# through the checks of :func:`~vf_otel._event.build.make_event`.

# A queued log call's length when it carries its handler's redactor (see PendingEvent).
_WITH_REDACTOR: Final = 6
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Epoch seconds of 10000-01-01: a record's time from then on is no datetime (general path).
_YEAR_10000: Final = 253402300800.0
_FIRST: Final = operator.itemgetter(0)

#: What a log call leaves in the queue: (name, user, properties, traits, created
#: [, redactor]); ``created`` is the record's float time, or its ``vf_occurred_at``
#: as :class:`Backdated`. A bare tuple because the logging thread must spend as little
#: as possible: validation, coercion, redaction, the event id and the timestamp are
#: all done on the delivery worker by :func:`build_batch`. Without a sixth item
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


def build_batch(
    items: Sequence[object],
    collisions: KeyCollisions | None = None,
    event_ids: Sequence[str] | None = None,
) -> tuple[list[Event], list[Rejection]]:
    """The worker's half of queued log calls: their Events in order, and what was refused.

    A log call (a :data:`PendingEvent`) becomes an Event or a Rejection; an Event or
    a Rejection that was queued as it is passes through. Values lost to keys that
    became one string are added to ``collisions``. ``event_ids``: one per item
    (else drawn at once). Never raises: an item no check foresaw failing is refused
    as ``internal_error``.

    The common log call is built here in a few steps, without a call per check:
    an exact str name and user (ASCII, not blank, not an identify()), no traits, the
    record's own float time, and properties that are None or an exact dict
    :func:`is_plain` accepts (a canonical event's with its required ones). For it
    every check of :func:`make_event` passes and coercion would be a copy, so the
    Event is the one make_event builds (``tests/test_properties_hypothesis.py::
    test_build_batch_builds_what_make_event_builds`` holds the two to it; what it buys:
    ``benchmarks/fast_paths.py``, build rows). The properties dict is used as it is, not
    copied again: it is the queue's own (see PendingEvent). Anything else goes through
    :func:`build_pending`.
    """
    events: list[Event] = []
    refused: list[Rejection] = []
    keep = events.append
    ids = new_event_ids(len(items)) if event_ids is None else event_ids
    # Records logged together share their millisecond: its datetime is made once.
    last_millis: int | None = None
    last_time = _EPOCH
    # A batch's calls mostly repeat a few names and users: each is checked once.
    names: set[str] = set()
    users: set[str] = set()
    for item, event_id in zip(items, ids, strict=True):
        if type(item) is not tuple:
            if isinstance(item, Rejection):
                refused.append(item)
            else:
                keep(cast("Event", item))
            continue
        try:
            if len(item) == _WITH_REDACTOR:
                name, user, props, traits, created, redactor = item
                if (
                    traits is None
                    and type(name) is str
                    and type(user) is str
                    and type(created) is float
                    and 0.0 <= created < _YEAR_10000  # not NaN, inf, before 1970 or too late
                    and (name in names or _plain_name(name, names))
                    and (user in users or _plain_text(user, users))
                    and (props is None or (type(props) is dict and is_plain(props)))
                    and (name not in CANONICAL_NAMES or not _missing(name, props))
                ):
                    if props is None:
                        props = {}
                    elif redactor is not None and redactor.enabled:
                        props = redactor.flat_properties(props)  # is_plain: nothing nested
                    # As _millis() (inlined: once per event); int() is floor() at >= 0.
                    whole = int(created)
                    millis = whole * 1000 + int((created - whole) * 1000)
                    if millis != last_millis:
                        last_time, last_millis = _from_millis(millis), millis
                    keep(plain_event(name, user, props, last_time, event_id))
                    continue
            built = build_pending(item, event_id, collisions)
        except Exception as exc:  # noqa: BLE001 - one odd item must not sink the batch
            built = Rejection(
                "internal_error",
                "event",
                f"unexpected {type_name(exc)} while building the event",
                cause=exc,
            )
        if isinstance(built, Rejection):
            refused.append(built)
        else:
            keep(built)
    return events, refused


def _plain_name(name: str, seen: set[str]) -> bool:
    """Whether build_batch's fast path takes ``name`` (ASCII, not blank, no identify());
    added to ``seen`` when it is."""
    return name != IDENTIFY and _plain_text(name, seen)  # an exact str: != gives a bool


def _plain_text(text: str, seen: set[str]) -> bool:
    """Whether ``text`` is ASCII and not blank; added to ``seen`` when it is."""
    if text.isascii() and text.strip():
        seen.add(text)
        return True
    return False


def _missing(name: str, props: dict[str, Any] | None) -> bool:
    """Whether a canonical event lacks a property it requires."""
    return missing_required(name, props or {}) is not None


def build_pending(
    pending: PendingEvent, event_id: str | None = None, collisions: KeyCollisions | None = None
) -> Event | Rejection:
    """Turn one queued log call into an Event, or say why not (see :func:`build_batch`).

    ``event_id`` is the new event's id when the caller drew ids in bulk; else one is made.
    Values lost because two keys became the same string are added to ``collisions``.
    """
    # Not ``*rest``: that builds a list for every event.
    if len(pending) == _WITH_REDACTOR:
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
        occurred_at = record_time(created)  # type: ignore[arg-type]
    if is_identify(name) and not isinstance(traits, Mapping):
        return Rejection("invalid_traits", "traits", "identify() needs a mapping of traits")
    return make_event(
        name=name,
        user_id=user_id,
        properties=properties,
        traits=traits,
        occurred_at=occurred_at,
        event_id=new_event_id() if event_id is None else event_id,
        redactor=redactor,
        collisions=collisions,
    )


def record_time(created: float) -> datetime:
    """A log record's ``created`` as UTC, to the millisecond; now if it is no usable time.

    Milliseconds are what is sent (see ``wire_time``) and what logging's own ``msecs``
    shows, so the Event says what the API will keep. NaN, a huge or a non-number
    ``created`` (a record's attributes can be set to anything) give the current time.
    """
    try:
        return _from_millis(_millis(created))
    except Exception:  # noqa: BLE001 - see above
        return datetime.now(UTC)


def _millis(created: float) -> int:
    """Milliseconds since the epoch, as logging counts a record's ``msecs``: the whole
    seconds, then the fraction's milliseconds (not ``created * 1000``, which rounds
    ``.6`` held as ``.59999…`` up to ``.600`` where logging shows ``599``)."""
    whole = math.floor(created)
    return whole * 1000 + int((created - whole) * 1000)


def _from_millis(millis: int) -> datetime:
    """The UTC time ``millis`` milliseconds after the epoch (OverflowError past year 9999)."""
    return _EPOCH + timedelta(milliseconds=millis)


def count_events(items: Sequence[Any]) -> int:
    """How many queued items stand for an event (not a refusal, not an identify()).

    Passes in C for the common batch, log calls only (tuples); never runs a logged
    name's own methods (see ``SAME_AS_IDENTIFY``).
    """
    if all(map(isinstance, items, itertools.repeat(tuple))):
        return len(items) - list(map(SAME_AS_IDENTIFY, map(_FIRST, items))).count(True)
    return sum(map(_is_event, items))


def _is_event(item: object) -> bool:
    if isinstance(item, tuple):
        return not is_identify(item[0])
    return not isinstance(item, Rejection)
