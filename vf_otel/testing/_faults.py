"""Scripted faults: what the test server does instead of (or before) answering normally.

The ``*_fault`` functions check the arguments of ``VibefollowServer.fail_next()`` and
its siblings and build the fault they script.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from vf_otel.testing._records import FaultKind

API_PREFIX: Final = "/api/v1"
ROUTES: Final = frozenset({"/api/v1/events", "/api/v1/events/batch", "/api/v1/users"})

# A scripted delay must never hold a test (or stop()) hostage for long.
MAX_DELAY_SECONDS: Final = 30.0
# The real API always sends Retry-After with a 429 (vibefollow-api.md §5).
DEFAULT_RETRY_AFTER: Final = "1"

# Statuses whose answers carry no body (RFC 9110 §15.3.5, §15.4.5).
_NO_BODY_STATUSES: Final = frozenset({204, 304})
_REDIRECT_BODY: Final = b"<html><body><h1>Moved</h1></body></html>"

# Default error code per status when fail_next() is not given one; 5xx is handled by range.
_DEFAULT_CODES: Final[dict[int, str]] = {
    401: "auth_required",
    403: "forbidden",
    429: "rate_limited",
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted fault, consumed by the first request whose path matches.

    ``respond`` and ``redirect`` faults answer with exactly ``status``, ``body``,
    ``content_type`` and ``headers``; with ``process`` the request is processed
    first (recorded, its key stored), as if a proxy replaced the API's answer.
    """

    kind: FaultKind
    path: str | None = None
    status: int = 0
    code: str = ""
    retry_after: str | None = None
    seconds: float = 0.0
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    process: bool = False

    def matches(self, path: str) -> bool:
        """Whether this fault applies to a request for ``path``."""
        return self.path is None or self.path == path


def default_code(status: int) -> str:
    """The error code the real API uses for ``status``, as far as the contract says."""
    if 500 <= status <= 599:
        return "server_error"
    return _DEFAULT_CODES.get(status, "error")


def normalise_route(path: str | None) -> str | None:
    """Accept ``/events`` or ``/api/v1/events``; reject paths no request could ever match."""
    if path is None:
        return None
    full = path if path.startswith(API_PREFIX + "/") else API_PREFIX + path
    if full not in ROUTES:
        raise ValueError(f"unknown route {path!r}; expected one of {sorted(ROUTES)}")
    return full


def status_fault(
    status: int, *, retry_after: str | None, code: str | None, path: str | None
) -> Fault:
    """``fail_next()``'s fault: an error status with the API's envelope, unprocessed."""
    if not 400 <= status <= 599:
        raise ValueError(f"status must be an HTTP error status (400..599), got {status}")
    if retry_after is None and status == 429:
        retry_after = DEFAULT_RETRY_AFTER
    _check_header_value("retry_after", retry_after)
    return Fault("status", normalise_route(path), status, code or default_code(status), retry_after)


def respond_fault(
    status: int,
    body: bytes | str,
    *,
    content_type: str | None,
    headers: Mapping[str, str] | None,
    path: str | None,
    process: bool,
) -> Fault:
    """``respond_next()``'s fault: exactly this answer (a 3xx is a ``redirect`` fault)."""
    if not 200 <= status <= 599:
        raise ValueError(f"status must be a final HTTP status (200..599), got {status}")
    data = body.encode() if isinstance(body, str) else bytes(body)
    if data and status in _NO_BODY_STATUSES:
        raise ValueError(f"a {status} answer cannot have a body")
    pairs = tuple((headers or {}).items())
    for name, value in pairs:
        _check_header_value(name, value)
    _check_header_value("content_type", content_type)
    kind: FaultKind = "redirect" if 300 <= status <= 399 else "respond"
    return Fault(
        kind,
        normalise_route(path),
        status,
        body=data,
        content_type=content_type,
        headers=pairs,
        process=process,
    )


def redirect_fault(location: str, *, status: int, path: str | None) -> Fault:
    """``redirect_next()``'s fault: a 3xx to ``location`` with a small HTML body."""
    if not 300 <= status <= 399:
        raise ValueError(f"status must be a redirect (300..399), got {status}")
    _check_header_value("location", location)
    return respond_fault(
        status,
        _REDIRECT_BODY,
        content_type="text/html",
        headers={"Location": location},
        path=path,
        process=False,
    )


def delay_fault(seconds: float, *, path: str | None) -> Fault:
    """``delay_next()``'s fault: hold the request, then process it."""
    if not 0 <= seconds <= MAX_DELAY_SECONDS:
        raise ValueError(f"seconds must be in 0..{MAX_DELAY_SECONDS:g}, got {seconds}")
    return Fault("delay", normalise_route(path), seconds=seconds)


def _check_header_value(name: str, value: str | None) -> None:
    """A header value must be one line: anything else would let a test forge headers."""
    if value is not None and ("\r" in value or "\n" in value):
        raise ValueError(f"{name} must be a single header line")


def check_count(count: int) -> None:
    """Reject counts that would script nothing, which is always a test bug."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")


class FaultQueue:
    """FIFO of pending faults. Not thread-safe: the server calls it under its own lock."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: deque[Fault] = deque()

    def add(self, fault: Fault, count: int) -> None:
        """Queue ``count`` copies of ``fault`` behind the ones already pending."""
        check_count(count)
        self._pending.extend([fault] * count)

    def take(self, path: str) -> Fault | None:
        """Remove and return the oldest fault matching ``path``, if any."""
        for index, fault in enumerate(self._pending):
            if fault.matches(path):
                del self._pending[index]
                return fault
        return None

    def clear(self) -> None:
        """Forget every pending fault."""
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._pending)
