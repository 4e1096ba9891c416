"""Errors vf-otel reports about delivery.

None of these is ever raised into the application: delivery runs on a worker
thread and hands them to ``on_error(exc, events)`` and to the ``vf_otel``
logger. They mirror the official SDK's classes so code that knows one knows both.

    VibefollowError            status, code, message
    ├── AuthError              401 / 403: the key is missing, wrong or revoked
    ├── ValidationError        422 / 409 (and client-side checks): .field, .fields
    ├── RateLimitError         429: .retry_after (seconds, or None)
    ├── ServerError            5xx, after the retry budget is spent
    ├── NetworkError           status 0: DNS, refused, reset, timeout; a 2xx not the API's
    └── UndeliveredError       status 0: the deadline or shutdown came first (__cause__:
                               the last error the API gave), or no valid base URL
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "NetworkError",
    "RateLimitError",
    "ServerError",
    "UndeliveredError",
    "ValidationError",
    "VibefollowError",
]


class VibefollowError(Exception):
    """Base class: an HTTP status (0 when there was no response), a code and a message."""

    def __init__(self, message: str, *, status: int = 0, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status}, code={self.code!r})"


class AuthError(VibefollowError):
    """The API key was refused (401) or not allowed for this project (403)."""


class ValidationError(VibefollowError):
    """The event was invalid; ``field`` names the offending field when known.

    ``fields`` holds every field the server named (a batch's answer may name several
    events); ``field`` is the first of them.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 422,
        code: str | None = None,
        field: str | None = None,
        fields: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.fields = fields or ((field,) if field is not None else ())
        self.field = field if field is not None else next(iter(self.fields), None)


class RateLimitError(VibefollowError):
    """429 after the retry budget: ``retry_after`` is the server's wait in seconds."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 429,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class ServerError(VibefollowError):
    """A 5xx answer; ``retry_after`` when the server sent Retry-After (often with 503)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 500,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class NetworkError(VibefollowError):
    """No answer from the API: connection refused or reset, DNS failure, TLS error, timeout,
    or a 2xx that is not the API's answer (code ``not_the_api``: a captive portal, a proxy)."""


class UndeliveredError(VibefollowError):
    """Events given up on without a final answer: shutdown deadline or a full backlog."""
