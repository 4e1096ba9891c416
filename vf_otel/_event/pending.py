"""Queued log calls into Events, on the delivery worker.

A log call leaves only its raw tags in the queue (see :data:`PendingEvent`): the
logging thread spends as little as it can. The worker builds them a batch at a
time here: the common call in a few steps (:func:`build_batch`), anything else
through the checks of :func:`~vf_otel._event.validate.make_event`.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .coerce import KeyCollisions, is_plain, type_name
from .model import Event, new_event_id, new_event_ids, plain_event
from .redact import DEFAULT_REDACTOR, Redactor
from .validate import (
    CANONICAL_NAMES,
    IDENTIFY,
    SAME_AS_IDENTIFY,
    Rejection,
    is_identify,
    make_event,
    missing_required,
)
from .when import explicit_time

__all__ = [
    "Backdated",
    "PendingEvent",
    "build_batch",
    "build_pending",
    "count_events",
    "record_time",
]

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
    Event is the one make_event builds (a property test holds the two to it). The
    properties dict is used as it is, not copied again: it is the queue's own (see
    PendingEvent). Anything else goes through :func:`build_pending`.
    """
    events: list[Event] = []
    refused: list[Rejection] = []
    keep = events.append
    ids = new_event_ids(len(items)) if event_ids is None else event_ids
    # Records logged together share their millisecond: its datetime is made once.
    last_millis: int | None = None
    last_time = _EPOCH
    for item, event_id in zip(items, ids, strict=True):
        if type(item) is not tuple:
            (refused if isinstance(item, Rejection) else events).append(item)  # type: ignore[arg-type]
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
                    and name != IDENTIFY
                    and name.isascii()
                    and user.isascii()
                    and name.strip()
                    and user.strip()
                    and (props is None or (type(props) is dict and is_plain(props)))
                    and (name not in CANONICAL_NAMES or not _missing(name, props))
                ):
                    if props is None:
                        props = {}
                    elif redactor is not None and redactor.enabled:
                        props = redactor.flat_properties(props)  # is_plain: nothing nested
                    whole = math.floor(created)  # as _millis() (inlined: once per event)
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
        (refused if isinstance(built, Rejection) else events).append(built)  # type: ignore[arg-type]
    return events, refused


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
