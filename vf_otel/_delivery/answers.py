"""What an HTTP answer means for delivery: an error class, and whether to try again."""

from __future__ import annotations

import time

import httpx

from .._errors import AuthError, RateLimitError, ServerError, ValidationError, VibefollowError
from .policy import parse_retry_after
from .wire import error_detail

__all__ = ["describe", "error_for", "retryable"]


def retryable(error: VibefollowError) -> bool:
    """Network errors (status 0), 429 and every 5xx: the server may take it later."""
    return error.status in {0, 429} or error.status >= 500


def error_for(response: httpx.Response) -> VibefollowError:
    """The error a non-2xx answer stands for, with its code, field and Retry-After."""
    detail = error_detail(response.content)
    status, code = response.status_code, detail.code
    message = (
        f"HTTP {status}"
        + (f" {code}" if code else "")
        + (f": {detail.message}" if detail.message else "")
    )
    if status in (401, 403):
        return AuthError(message, status=status, code=code)
    if status in (409, 422):
        return ValidationError(message, status=status, code=code, field=detail.field)
    if status == 429:
        after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        return RateLimitError(message, code=code, retry_after=after)
    if status >= 500:
        after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        return ServerError(message, status=status, code=code, retry_after=after)
    return VibefollowError(message, status=status, code=code)


def describe(error: VibefollowError) -> str:
    """The error's message, naming the refused field when there is one."""
    field = getattr(error, "field", None)
    return f"{error}" + (f" (field {field})" if field else "")
