"""What the test server remembers about each request, with the API key kept out of sight."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

FaultKind = Literal["status", "reset", "delay", "lose_response", "respond", "redirect"]

# Short tokens are not a real key, but showing their tail would reveal most of them.
_MIN_TOKEN_CHARS_TO_SHOW_TAIL: Final = 12
_VISIBLE_TAIL_CHARS: Final = 4
_REDACTED: Final = "<redacted>"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request that reached the test server, as it arrived and as it was answered.

    ``headers`` has lower-case names and the ``authorization`` value redacted, so a
    recorded request can be printed in a failing test without leaking the API key.
    ``status`` is ``None`` when the server reset the connection instead of answering.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None
    json: Any
    idempotency_key: str | None
    replayed: bool
    fault: FaultKind | None


def redact_authorization(value: str) -> str:
    """Return ``value`` with the bearer token reduced to ``sk_…`` plus its last 4 characters."""
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return _REDACTED
    if len(token) < _MIN_TOKEN_CHARS_TO_SHOW_TAIL:
        return "Bearer sk_…"
    return "Bearer sk_…" + token[-_VISIBLE_TAIL_CHARS:]


def normalise_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case header names and join repeated headers with ``", "`` (RFC 9110 §5.3)."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    """Copy ``headers`` with the ``authorization`` value redacted."""
    redacted = dict(headers)
    if "authorization" in redacted:
        redacted["authorization"] = redact_authorization(redacted["authorization"])
    return redacted
