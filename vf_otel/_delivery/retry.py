"""When to try a request again: capped exponential backoff, full jitter, Retry-After."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final

__all__ = ["RETRYABLE_STATUSES", "RetryPolicy", "parse_retry_after"]

RETRYABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE: Final = 0.5
BACKOFF_CAP: Final = 30.0
# A server asking for a longer wait is honoured only up to this; the export
# deadline still applies, and what it cuts short goes to the backlog.
RETRY_AFTER_CAP: Final = 120.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff for attempt ``n`` (0-based) is uniform in [0, min(cap, base * 2**n)]."""

    max_retries: int
    base: float = BACKOFF_BASE
    cap: float = BACKOFF_CAP
    retry_after_cap: float = RETRY_AFTER_CAP

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt + 1``; Retry-After is a floor."""
        backoff = rng.uniform(0.0, min(self.cap, self.base * 2.0 ** min(attempt, 32)))
        if retry_after is None:
            return backoff
        return max(backoff, min(retry_after, self.retry_after_cap))


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - now_epoch
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)
