"""The request checks of the Vibefollow contract (vibefollow-api.md §1-§4), as pure functions.

Each check returns an ``ApiError`` describing the first problem, or ``None``.
"""

from __future__ import annotations

import hmac
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

VALIDATION_FAILED: Final = "validation_failed"
#: The largest request body served unless told otherwise (the HTTP layer's own bound).
DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
#: The largest event (its compact JSON) accepted unless told otherwise: vf-otel's own limit.
DEFAULT_MAX_EVENT_BYTES: Final = 64 * 1024

# Exactly millisecond precision and a literal Z: the wire format the client promises to send.
_OCCURRED_AT: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"
)
_OCCURRED_AT_PARSE: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
# Canonical 8-4-4-4-12 form only: uuid.UUID() also takes braces, URNs and bare hex, which a
# strict server may refuse, so a test double accepting them would hide a client bug.
_UUID: Final = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


@dataclass(frozen=True, slots=True)
class ApiError:
    """An error as the API reports it: a status and the entries of the error envelope.

    The first entry is this error's ``code``, ``message`` and ``field``; ``others``
    are further entries (a batch with several invalid events gets one per event).
    """

    status: int
    code: str
    message: str
    field: str | None = None
    others: tuple[ApiError, ...] = ()

    def envelope(self) -> dict[str, Any]:
        """The JSON body ``{"errors": [{"code", "message", "field"?}, ...]}``."""
        return {"errors": [error.entry() for error in (self, *self.others)]}

    def entry(self) -> dict[str, Any]:
        """This error's own entry of the envelope."""
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            entry["field"] = self.field
        return entry


def _invalid(field: str | None, message: str) -> ApiError:
    return ApiError(422, VALIDATION_FAILED, message, field)


def check_auth(header: str | None, api_key: str) -> ApiError | None:
    """``Authorization: Bearer <key>`` with exactly the server's key."""
    scheme, _, token = (header or "").partition(" ")
    # compare_digest: a test double should not teach timing-unsafe habits by example.
    if scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), api_key.encode()):
        return None
    return ApiError(401, "auth_required", "missing, malformed or invalid API key")


def check_content_type(header: str | None) -> ApiError | None:
    """``application/json``, parameters such as ``charset=utf-8`` allowed."""
    media_type = (header or "").split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        return None
    return ApiError(415, "unsupported_media_type", "Content-Type must be application/json")


def check_idempotency_key(header: str | None) -> ApiError | None:
    """A present ``Idempotency-Key``: a version-4 UUID in canonical form (§4)."""
    if header is None or not header.strip():
        return ApiError(400, "idempotency_key_required", "Idempotency-Key header is required")
    if _UUID.fullmatch(header.strip()) is None:
        return ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be a UUID")
    key = uuid.UUID(header.strip())
    if key.version != 4 or key.variant != uuid.RFC_4122:
        return ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be a version-4 UUID")
    return None


def normalise_idempotency_key(header: str) -> str:
    """The key as stored: case and surrounding space must not make two keys differ."""
    return str(uuid.UUID(header.strip()))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # "1e999" is valid JSON syntax but has no finite value
        raise ValueError(f"number {text} is out of range")
    return value


def parse_json(body: bytes) -> tuple[Any, ApiError | None]:
    """Strict UTF-8 JSON: no BOM, NaN, Infinity or out-of-range numbers."""
    try:
        text = body.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, ApiError(400, "invalid_json", "request body is not valid UTF-8 JSON")
    return value, None


def _non_empty_string(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _is_object(value: object) -> bool:
    return isinstance(value, dict)


def _is_occurred_at(value: object) -> bool:
    if not isinstance(value, str) or _OCCURRED_AT.fullmatch(value) is None:
        return False
    try:
        datetime.strptime(value, _OCCURRED_AT_PARSE)
    except ValueError:  # well-formed but impossible, e.g. month 13
        return False
    return True


def _is_email(value: object) -> bool:
    if not isinstance(value, str) or value.count("@") != 1:
        return False
    local, _, domain = value.partition("@")
    return bool(local) and bool(domain)


#: The canonical lifecycle events and the properties each requires (vibefollow-api.md §6).
#: Kept apart from the client's own table on purpose: a shared table would hide its bugs.
CANONICAL_REQUIRED: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "feature_used": ("feature",),
        "onboarding_step": ("step",),
        "subscription_changed": ("to",),
        "trial_expiring": ("daysLeft",),
        "user_invited": ("invitedEmail",),
    }
)


@dataclass(frozen=True, slots=True)
class _FieldRule:
    """One field of a request object: whether it must be present and what it must look like."""

    name: str
    required: bool
    valid: Callable[[object], bool]
    message: str


_EVENT_RULES: Final = (
    _FieldRule(
        "external_user_id", True, _non_empty_string, "external_user_id must be at least 1 character"
    ),
    _FieldRule("name", True, _non_empty_string, "name must be at least 1 character"),
    _FieldRule("properties", False, _is_object, "properties must be an object"),
    _FieldRule(
        "occurred_at", False, _is_occurred_at, "occurred_at must look like 2024-01-15T10:00:00.000Z"
    ),
)
_USER_RULES: Final = (
    _FieldRule(
        "external_user_id", True, _non_empty_string, "external_user_id must be at least 1 character"
    ),
    _FieldRule("email", False, _is_email, "Invalid email"),
    _FieldRule("traits", False, _is_object, "traits must be an object"),
)


def _check_object(value: object, rules: tuple[_FieldRule, ...], prefix: str) -> ApiError | None:
    """Unknown keys first, then each rule in order; the first problem wins."""
    if not isinstance(value, dict):
        return _invalid(prefix.rstrip(".") or None, "must be a JSON object")
    allowed = {rule.name for rule in rules}
    unknown = [key for key in value if key not in allowed]
    if unknown:
        return _invalid(prefix + unknown[0], "unknown field")
    for rule in rules:
        if rule.name not in value:
            if rule.required:
                return _invalid(prefix + rule.name, "required")
        elif not rule.valid(value[rule.name]):
            return _invalid(prefix + rule.name, rule.message)
    return None


def check_event(event: object, prefix: str = "") -> ApiError | None:
    """One event object; ``prefix`` (e.g. ``"events[3]."``) goes in front of field names.

    A canonical lifecycle event must carry its required properties (§6).
    """
    error = _check_object(event, _EVENT_RULES, prefix)
    if error is not None or not isinstance(event, dict):
        return error
    properties = event.get("properties") or {}
    for name in CANONICAL_REQUIRED.get(event["name"], ()):
        if properties.get(name) is None:
            return _invalid(f"{prefix}properties.{name}", "required")
    return None


def check_event_size(event: object, prefix: str, limit: int) -> ApiError | None:
    """An event whose compact JSON is over ``limit`` bytes is refused (422 naming it)."""
    size = len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode())
    if size <= limit:
        return None
    field = prefix.rstrip(".") or None
    return ApiError(422, "event_too_large", f"event is {size} bytes, over {limit}", field)


def check_user(user: object) -> ApiError | None:
    """One user upsert body."""
    return _check_object(user, _USER_RULES, "")


def check_batch_envelope(body: object, max_batch_size: int) -> ApiError | None:
    """``{"events": [...]}`` with 1..``max_batch_size`` items and no other key."""
    if not isinstance(body, dict) or "events" not in body:
        return _invalid("events", "required")
    extra = sorted(key for key in body if key != "events")
    if extra:
        return _invalid("events", f"unexpected top-level field {extra[0]!r}")
    events = body["events"]
    if not isinstance(events, list):
        return _invalid("events", "events must be an array")
    if not 1 <= len(events) <= max_batch_size:
        return _invalid("events", f"events must hold 1 to {max_batch_size} items")
    return None
