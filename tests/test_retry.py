"""Retry timing: capped exponential backoff, full jitter, Retry-After (design §5)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from vf_otel._delivery.retry import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    RETRY_AFTER_CAP,
    RETRYABLE_STATUSES,
    RetryPolicy,
    parse_retry_after,
)

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC).timestamp()


def seeded(seed: int = 1234) -> random.Random:
    """A reproducible random source for jitter."""
    return random.Random(seed)  # noqa: S311 - jitter, not security


class Extreme(random.Random):
    """A random source that always picks one end of the range."""

    def __init__(self, *, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def test_retryable_statuses() -> None:
    """429 and the transient 5xx statuses are retried; nothing else is."""
    assert frozenset({429, 500, 502, 503, 504}) == RETRYABLE_STATUSES


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 5, 6, 10, 40, 10_000])
def test_delay_within_full_jitter_bounds(attempt: int) -> None:
    """Without Retry-After each delay is in [0, min(cap, base * 2**attempt)]."""
    policy = RetryPolicy(max_retries=8)
    rng = seeded(attempt)
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempt, 64))
    delays = [policy.delay(attempt, rng, None) for _ in range(500)]
    assert all(0.0 <= d <= ceiling for d in delays)
    # Full jitter: the draws spread over the whole range, not just near the top.
    assert min(delays) < ceiling * 0.1
    assert max(delays) > ceiling * 0.9


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(0, 0.5), (1, 1.0), (2, 2.0), (5, 16.0), (6, 30.0), (50, 30.0)],
)
def test_delay_ceiling_doubles_then_caps(attempt: int, ceiling: float) -> None:
    """The top of the jitter range doubles per attempt and stops at the cap."""
    policy = RetryPolicy(max_retries=8)
    assert policy.delay(attempt, Extreme(high=True), None) == ceiling
    assert policy.delay(attempt, Extreme(high=False), None) == 0.0


def test_delay_is_reproducible_with_same_seed() -> None:
    """The same seed gives the same sequence of delays."""
    policy = RetryPolicy(max_retries=8)
    first, second = seeded(7), seeded(7)
    assert [policy.delay(n, first, None) for n in range(8)] == [
        policy.delay(n, second, None) for n in range(8)
    ]


def test_custom_base_and_cap() -> None:
    """A policy's own base and cap bound its delays."""
    policy = RetryPolicy(max_retries=3, base=0.01, cap=0.05)
    assert policy.delay(0, Extreme(high=True), None) == 0.01
    assert policy.delay(10, Extreme(high=True), None) == 0.05


@pytest.mark.parametrize("attempt", [0, 3, 8])
def test_retry_after_is_a_floor(attempt: int) -> None:
    """A Retry-After longer than the backoff is waited in full."""
    policy = RetryPolicy(max_retries=8)
    rng = seeded(attempt)
    assert all(policy.delay(attempt, rng, 45.0) == 45.0 for _ in range(100))


def test_retry_after_shorter_than_backoff_keeps_backoff() -> None:
    """A short Retry-After does not shorten a longer jittered backoff."""
    policy = RetryPolicy(max_retries=8)
    assert policy.delay(10, Extreme(high=True), 1.0) == BACKOFF_CAP
    assert policy.delay(10, Extreme(high=False), 1.0) == 1.0


@pytest.mark.parametrize("retry_after", [RETRY_AFTER_CAP + 1, 86_400.0, float("inf")])
def test_retry_after_capped(retry_after: float) -> None:
    """A Retry-After beyond the cap is honoured only up to RETRY_AFTER_CAP."""
    policy = RetryPolicy(max_retries=8)
    assert policy.delay(0, seeded(), retry_after) == RETRY_AFTER_CAP


def test_retry_after_cap_configurable() -> None:
    """A policy's retry_after_cap bounds what the server may ask for."""
    policy = RetryPolicy(max_retries=1, retry_after_cap=2.0)
    assert policy.delay(0, Extreme(high=False), 100.0) == 2.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("0", 0.0), ("7", 7.0), (" 12 ", 12.0), ("1.5", 1.5), ("3600", 3600.0)],
)
def test_parse_retry_after_seconds(header: str, seconds: float) -> None:
    """Delta-seconds are read as seconds."""
    assert parse_retry_after(header, NOW) == seconds


def test_parse_retry_after_http_date_in_future() -> None:
    """An HTTP date is turned into seconds from the given now."""
    header = format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True)
    assert header.endswith("GMT")
    assert parse_retry_after(header, NOW) == pytest.approx(90.0)


def test_parse_retry_after_literal_http_date() -> None:
    """A literal IMF-fixdate is read relative to now."""
    header = "Mon, 23 Nov 2026 10:02:00 GMT"
    assert parse_retry_after(header, NOW) == pytest.approx(120.0)


def test_parse_retry_after_http_date_in_past_is_zero() -> None:
    """A date already past means retry now."""
    assert parse_retry_after("Mon, 23 Nov 2026 09:00:00 GMT", NOW) == 0.0


@pytest.mark.parametrize("header", [None, "", "soon", "Tomorrow at noon", "nan", "NaN", "1e"])
def test_parse_retry_after_garbage_is_none(header: str | None) -> None:
    """An absent, unparsable or NaN header gives None (no floor)."""
    assert parse_retry_after(header, NOW) is None


@pytest.mark.parametrize("header", ["-5", "-0.5", "-inf"])
def test_parse_retry_after_negative_is_zero(header: str) -> None:
    """A negative wait means retry now."""
    assert parse_retry_after(header, NOW) == 0.0


def test_parse_retry_after_naive_date_is_none() -> None:
    """A date with no usable zone (-0000) is not trusted."""
    assert parse_retry_after("Mon, 23 Nov 2026 10:02:00 -0000", NOW) is None


@pytest.mark.parametrize("header", ["inf", "1e400"])
def test_parse_retry_after_infinite_still_capped_by_policy(header: str) -> None:
    """An infinite Retry-After parses, and the policy still caps the wait."""
    parsed = parse_retry_after(header, NOW)
    assert parsed is not None
    assert RetryPolicy(max_retries=1).delay(0, seeded(), parsed) == RETRY_AFTER_CAP
