"""Client-side checks that keep a bad event out of every batch (design §4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from .coerce import coerce_mapping, utf8_text
from .model import Event, new_event_id
from .redact import DEFAULT_REDACTOR, Redactor

__all__ = ["CANONICAL_EVENTS", "PendingEvent", "Rejection", "build_pending", "make_event"]

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


#: What a log call leaves in the queue: (name, user, properties, traits, created
#: [, redactor]). A bare tuple because the logging thread must spend as little as
#: possible: validation, coercion, redaction, the event id and the timestamp are
#: all done on the delivery worker by :func:`build_pending`. Without a sixth item
#: the default redaction applies.
PendingEvent = (
    tuple[object, object, object, object, float]
    | tuple[object, object, object, object, float, Redactor]
)


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
    """
    user = _user_id(user_id)
    if user is None:
        return _reject_user(user_id)
    if not isinstance(name, str) or not name.strip():
        return Rejection(
            "invalid_name", "name", f"event name must be a non-empty str, got {name!r:.80}"
        )
    props = _mapping(properties)
    if props is None:
        return Rejection("invalid_properties", "properties", _not_mapping("properties", properties))
    upsert = _mapping(traits) if traits is not None else None
    if traits is not None and upsert is None:
        return Rejection("invalid_traits", "traits", _not_mapping("traits", traits))
    if upsert is not None and not _plausible_email(upsert.get("email")):
        # It would go top-level in the upsert, where the API refuses anything else.
        return Rejection(
            "invalid_traits", "traits.email", "traits email must look like name@domain"
        )
    missing = [key for key in CANONICAL_EVENTS.get(name, ()) if props.get(key) is None]
    if missing:
        return Rejection(
            "missing_required_property",
            f"properties.{missing[0]}",
            f"{name!r} requires the propert{'y' if len(missing) == 1 else 'ies'} "
            + ", ".join(repr(key) for key in missing),
        )
    if redactor is not None and redactor.enabled:
        props = redactor.properties(props)
        upsert = redactor.traits(upsert)
    return Event(utf8_text(name), utf8_text(user), props, occurred_at, event_id, upsert)


def build_pending(pending: PendingEvent) -> Event | Rejection:
    """Turn a queued log call into an Event (on the worker), or say why not."""
    name, user_id, properties, traits, created, *redactor = pending
    return make_event(
        name=name,
        user_id=user_id,
        properties=properties,
        traits=traits,
        occurred_at=datetime.fromtimestamp(created, UTC),
        event_id=new_event_id(),
        redactor=redactor[0] if redactor else DEFAULT_REDACTOR,
    )


def _user_id(value: object) -> str | None:
    # Integer primary keys are common enough to accept as they would print.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def _reject_user(value: object) -> Rejection:
    if value is None:
        return Rejection(
            "missing_user", "external_user_id", "no user: set vf_user or vf_otel.user()"
        )
    return Rejection(
        "invalid_user",
        "external_user_id",
        f"user id must be a non-empty str or int, got {type(value).__name__}",
    )


def _mapping(value: object) -> dict[str, Any] | None:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return coerce_mapping(value)
    return None


def _plausible_email(value: object) -> bool:
    # What the API checks for the top-level email; only a non-empty str goes there.
    if not isinstance(value, str) or not value:
        return True
    local, at, domain = value.partition("@")
    return bool(at and local and domain) and "@" not in domain


def _not_mapping(what: str, value: object) -> str:
    return f"{what} must be a mapping, got {type(value).__name__}"
