"""What an HTTP answer means for delivery: an error class, and what to do about it.

Every text a server (or a proxy in between) wrote goes through ``wire.scrub``
before it becomes part of an error: a server that echoes the request's headers
would otherwise put the API key into ``on_error`` and the warnings.
"""

from __future__ import annotations

import re
import time
from typing import Final

import httpx

from .._errors import (
    AuthError,
    NetworkError,
    RateLimitError,
    ServerError,
    ValidationError,
    VibefollowError,
)
from .policy import parse_retry_after
from .wire import error_details, snippet

__all__ = [
    "NOT_THE_API",
    "REDIRECT",
    "RETRYABLE_STATUSES",
    "describe",
    "error_for",
    "foreign_answer",
    "isolatable",
    "redirected",
    "retryable",
    "too_large",
]

#: The code of the error for a 2xx that is not the API's JSON envelope.
NOT_THE_API: Final = "not_the_api"
#: The code of the error for a 3xx (the base URL is wrong).
REDIRECT: Final = "redirect"
#: The statuses tried again later, besides every 5xx: a lost answer or foreign 2xx (0), a
#: proxy's or load balancer's Request Timeout (408), a rate limit (429). The
#: Idempotency-Key makes a retry safe whatever the server did with the first try.
RETRYABLE_STATUSES: Final = frozenset({0, 408, 429})
#: A 400 about the body's size, as proxies and gateways word it.
_ABOUT_SIZE: Final = re.compile(
    r"too[\s_-]*(large|big|long)|exceed|\bsize\b|size[\s_-]*limit|max(imum)?[\s_-]*body",
    re.IGNORECASE,
)
_TITLE: Final = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_TITLE_SCAN: Final = 64 * 1024


def retryable(error: VibefollowError) -> bool:
    """Network errors and foreign answers (status 0), 408, 429 and every 5xx: try again later."""
    return error.status in RETRYABLE_STATUSES or error.status >= 500


def too_large(error: VibefollowError) -> bool:
    """413, or a 400 about size: the body is over some limit, so smaller requests may pass."""
    if error.status == 413:
        return True
    return error.status == 400 and bool(_ABOUT_SIZE.search(f"{error.code or ''} {error.message}"))


def redirected(error: VibefollowError) -> bool:
    """A 3xx: the base URL is not the API's (never followed: the key would go along)."""
    return 300 <= error.status < 400


def isolatable(error: VibefollowError) -> bool:
    """A 422 about the batch's events (not an Idempotency-Key reuse): find the bad ones."""
    return error.status == 422 and error.code != "idempotency_key_reuse"


def error_for(
    response: httpx.Response, secret: str | None = None, body: bytes | None = None
) -> VibefollowError:
    """The error a non-2xx answer stands for, with its code, fields and Retry-After.

    ``body`` is what was read of the answer (its start), else ``response.content``.
    """
    details = error_details(response.content if body is None else body, secret)
    first = details[0]
    status, code = response.status_code, first.code
    more = len(details) - 1
    message = (
        f"HTTP {status}"
        + (f" {code}" if code else "")
        + (f": {first.message}" if first.message else "")
        + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")
    )
    if 300 <= status < 400:
        location = _one_line(response.headers.get("Location", ""), secret)
        return VibefollowError(
            f"HTTP {status} redirect to {location or '(no Location header)'}",
            status=status,
            code=REDIRECT,
        )
    if status in (401, 403):
        return AuthError(message, status=status, code=code)
    if status in (409, 422):
        fields = tuple(detail.field for detail in details if detail.field is not None)
        return ValidationError(message, status=status, code=code, fields=fields)
    if status == 429:
        after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        return RateLimitError(message, code=code, retry_after=after)
    if status >= 500:
        after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        return ServerError(message, status=status, code=code, retry_after=after)
    return VibefollowError(message, status=status, code=code)


def foreign_answer(
    response: httpx.Response, secret: str | None = None, body: bytes | None = None
) -> NetworkError:
    """A 2xx that is not the API's JSON envelope (a captive portal, a proxy): not delivered.

    Status 0, like a lost answer: nobody knows what reached the API, and a retry
    with the same Idempotency-Key is safe.
    """
    content = response.content if body is None else body
    kind = _one_line(response.headers.get("Content-Type", "") or "no Content-Type", secret)
    title = _TITLE.search(content[:_TITLE_SCAN])
    text = snippet(title.group(1) if title else content, secret)
    return NetworkError(
        f"HTTP {response.status_code} that is not the Vibefollow API's answer ({kind})"
        + (f": {text}" if text else ""),
        code=NOT_THE_API,
    )


def describe(error: VibefollowError) -> str:
    """The error's message, naming the refused field when there is one."""
    field = getattr(error, "field", None)
    return f"{error}" + (f" (field {field})" if field else "")


def _one_line(text: str, secret: str | None) -> str:
    return snippet(text.encode("utf-8", "replace"), secret)
