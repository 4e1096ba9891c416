"""The Event value every source (log records, spans) is translated into."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["Event", "idempotency_key", "new_event_id", "wire_time"]

# Separates the parts hashed into an idempotency key; cannot occur in an event id.
_KEY_SEPARATOR: Final = b"\x1f"


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
        """The object sent in an ``/events/batch`` request (design §2: no other keys)."""
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


def wire_time(moment: datetime) -> str:
    """ISO-8601 UTC with exactly three fraction digits and ``Z``."""
    # isoformat, not strftime: glibc's %Y does not zero-pad years before 1000.
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


def new_event_id() -> str:
    """A random id for an event with no natural identity (a log record).

    ``os.urandom`` rather than the ``random`` module: an app that seeds ``random``
    must not make two processes mint the same ids, hence the same idempotency keys.
    """
    return os.urandom(16).hex()


def idempotency_key(scope: str, event_ids: Iterable[str]) -> str:
    """A version-4-shaped UUID derived from the ids a request carries.

    The same ids in the same order always give the same key, so a retried
    request (in this process or after a restart) is deduplicated by the server,
    while any other set of events gets a different key.
    """
    digest = hashlib.sha256(scope.encode())
    for event_id in event_ids:
        digest.update(_KEY_SEPARATOR)
        digest.update(event_id.encode())
    return str(uuid.UUID(bytes=digest.digest()[:16], version=4))
