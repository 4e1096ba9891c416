"""Scripted faults: what the test server does instead of (or before) answering normally."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from vf_otel.testing._records import FaultKind

API_PREFIX: Final = "/api/v1"
ROUTES: Final = frozenset({"/api/v1/events", "/api/v1/events/batch", "/api/v1/users"})

# A scripted delay must never hold a test (or stop()) hostage for long.
MAX_DELAY_SECONDS: Final = 30.0
# The real API always sends Retry-After with a 429 (vibefollow-api.md §5).
DEFAULT_RETRY_AFTER: Final = "1"

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
