"""When to send and when to wait: backoff, Retry-After and the circuit breaker, on a hand clock."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from vf_otel._delivery.policy import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    COOLDOWN_BASE,
    COOLDOWN_CAP,
    FAILURE_THRESHOLD,
    RETRY_AFTER_CAP,
    CircuitBreaker,
    Permit,
    RetryPolicy,
    parse_retry_after,
)

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC).timestamp()


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Extreme(random.Random):
    """A random source that always picks one end of the range."""

    def __init__(self, *, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def seeded(seed: int = 1234) -> random.Random:
    """A reproducible random source for jitter."""
    return random.Random(seed)  # noqa: S311 - jitter, not security


class Changes:
    """An ``on_change`` callback that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


# -- RetryPolicy ------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 5, 6, 10, 40, 10_000])
def test_delay_within_full_jitter_bounds(attempt: int) -> None:
    """Without Retry-After each delay is in [0, min(cap, base * 2**attempt)], spread over it."""
    policy = RetryPolicy(max_retries=8)
    rng = seeded(attempt)
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempt, 64))
    delays = [policy.delay(attempt, rng, None) for _ in range(500)]
    assert all(0.0 <= d <= ceiling for d in delays)
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
    """A Retry-After longer than the backoff is waited in full, whatever the jitter."""
    policy = RetryPolicy(max_retries=8)
    rng = seeded(attempt)
    assert all(policy.delay(attempt, rng, 45.0) == 45.0 for _ in range(100))


def test_retry_after_shorter_than_backoff_keeps_backoff() -> None:
    """A short Retry-After does not shorten a longer jittered backoff."""
    policy = RetryPolicy(max_retries=8)
    assert policy.delay(10, Extreme(high=True), 1.0) == BACKOFF_CAP
    assert policy.delay(10, Extreme(high=False), 1.0) == 1.0


@pytest.mark.parametrize("retry_after", [RETRY_AFTER_CAP + 1, 1e12, math.inf])
def test_retry_after_capped(retry_after: float) -> None:
    """A Retry-After beyond RETRY_AFTER_CAP is honoured only up to the cap."""
    policy = RetryPolicy(max_retries=8)
    assert policy.delay(0, seeded(), retry_after) == RETRY_AFTER_CAP


# -- parse_retry_after -----------------------------------------------------------------


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
    assert parse_retry_after("Mon, 23 Nov 2026 10:02:00 GMT", NOW) == pytest.approx(120.0)


def test_parse_retry_after_http_date_in_past_is_zero() -> None:
    """A date already past means retry now."""
    assert parse_retry_after("Mon, 23 Nov 2026 09:00:00 GMT", NOW) == 0.0


@pytest.mark.parametrize(
    "header", [None, "", "   ", "soon", "Tomorrow at noon", "1e", "0x10", "nan", "NaN", "-nan"]
)
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


@pytest.mark.parametrize("header", ["86401", "1000000000", "inf", "1e400"])
def test_parse_retry_after_huge_seconds_capped(header: str) -> None:
    """A wait longer than RETRY_AFTER_CAP (infinite included) parses as the cap."""
    assert parse_retry_after(header, NOW) == RETRY_AFTER_CAP


def test_parse_retry_after_far_future_date_capped() -> None:
    """An HTTP date years away parses as RETRY_AFTER_CAP."""
    later = datetime.fromtimestamp(NOW, UTC) + timedelta(days=3 * 365)
    assert parse_retry_after(format_datetime(later, usegmt=True), NOW) == RETRY_AFTER_CAP


# -- CircuitBreaker -------------------------------------------------------------------


def fail(circuit: CircuitBreaker, times: int, retry_after: float | None = None) -> bool:
    """``times`` attempts that each take a permit and fail; whether the last opened it."""
    opened = False
    for _ in range(times):
        permit = circuit.acquire()
        assert permit is not None
        opened = permit.failed(retry_after)
    return opened


def state(circuit: CircuitBreaker) -> str:
    """The circuit's state, read afresh (a call, so type checkers do not pin it)."""
    return circuit.state


def take(circuit: CircuitBreaker) -> Permit:
    """A permit the test expects to get."""
    permit = circuit.acquire()
    assert permit is not None
    return permit


def test_opens_after_threshold_consecutive_failures() -> None:
    """FAILURE_THRESHOLD - 1 failures keep it closed; the next opens it and nothing is allowed."""
    clock = Clock()
    circuit = CircuitBreaker(clock=clock)
    assert FAILURE_THRESHOLD == 5
    assert not fail(circuit, FAILURE_THRESHOLD - 1)
    assert state(circuit) == "closed"
    assert circuit.ready()
    assert fail(circuit, 1)
    assert state(circuit) == "open"
    assert circuit.acquire() is None
    assert not circuit.ready()
    assert circuit.seconds_until_ready() == COOLDOWN_BASE


def test_success_resets_the_failure_count() -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    circuit = CircuitBreaker(clock=Clock())
    fail(circuit, FAILURE_THRESHOLD - 1)
    take(circuit).succeeded()
    assert not fail(circuit, FAILURE_THRESHOLD - 1)
    assert state(circuit) == "closed"


def test_half_open_lets_exactly_one_probe_through() -> None:
    """After the cool-down one permit is given; others wait for its outcome, then all may go."""
    clock = Clock()
    circuit = CircuitBreaker(clock=clock)
    fail(circuit, FAILURE_THRESHOLD)
    clock.now += COOLDOWN_BASE
    assert state(circuit) == "half_open"
    assert circuit.ready()
    probe = take(circuit)
    assert circuit.acquire() is None
    assert not circuit.ready()
    assert circuit.seconds_until_ready() == math.inf
    probe.succeeded()
    assert state(circuit) == "closed"
    take(circuit)
    take(circuit)


def test_failed_probe_reopens_with_a_doubling_capped_cooldown() -> None:
    """Each failed probe doubles the cool-down (1, 2, 4 ... up to 30 s) and reopens."""
    clock = Clock()
    circuit = CircuitBreaker(clock=clock)
    fail(circuit, FAILURE_THRESHOLD)
    waits = []
    for _ in range(8):
        waits.append(circuit.seconds_until_ready())
        clock.now += waits[-1]
        assert fail(circuit, 1)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, COOLDOWN_CAP, COOLDOWN_CAP, COOLDOWN_CAP]


def test_success_resets_the_cooldown() -> None:
    """After a successful probe the next opening waits the base cool-down again."""
    clock = Clock()
    circuit = CircuitBreaker(clock=clock)
    fail(circuit, FAILURE_THRESHOLD)
    for _ in range(3):
        clock.now += circuit.seconds_until_ready()
        fail(circuit, 1)
    assert circuit.seconds_until_ready() == 8.0
    clock.now += 8.0
    take(circuit).succeeded()
    fail(circuit, FAILURE_THRESHOLD)
    assert circuit.seconds_until_ready() == COOLDOWN_BASE


def test_custom_threshold_and_cooldowns() -> None:
    """The constructor's threshold, cool-down and cap replace the defaults."""
    clock = Clock()
    circuit = CircuitBreaker(threshold=2, cooldown=10.0, cooldown_cap=25.0, clock=clock)
    assert fail(circuit, 2)
    waits = []
    for _ in range(3):
        waits.append(circuit.seconds_until_ready())
        clock.now += waits[-1]
        fail(circuit, 1)
    assert waits == [10.0, 20.0, 25.0]


def test_retry_after_on_a_failure_holds_every_request_while_closed() -> None:
    """A failure with Retry-After holds every permit until it passes, the circuit still closed."""
    clock = Clock()
    circuit = CircuitBreaker(clock=clock)
    assert not fail(circuit, 1, retry_after=5.0)
    assert state(circuit) == "closed"
    assert circuit.acquire() is None
    assert circuit.seconds_until_ready() == 5.0
    clock.now += 4.9
    assert circuit.acquire() is None
    clock.now += 0.1
    assert circuit.acquire() is not None


def test_retry_after_hold_is_capped() -> None:
    """A failure's Retry-After holds at most RETRY_AFTER_CAP seconds."""
    circuit = CircuitBreaker(clock=Clock())
    fail(circuit, 1, retry_after=1e12)
    assert circuit.seconds_until_ready() == RETRY_AFTER_CAP


def test_hold_stops_every_request_in_any_state() -> None:
    """hold() refuses permits until it ends, even when the circuit would let a probe through."""
    clock = Clock()
    circuit = CircuitBreaker(clock=clock)
    circuit.hold(60.0)
    assert state(circuit) == "closed"
    assert circuit.acquire() is None
    assert circuit.failing
    fail_later = CircuitBreaker(clock=clock)
    fail(fail_later, FAILURE_THRESHOLD)
    fail_later.hold(60.0)
    clock.now += COOLDOWN_BASE
    assert fail_later.acquire() is None
    assert fail_later.seconds_until_ready() == 60.0 - COOLDOWN_BASE
    clock.now += 60.0
    assert circuit.acquire() is not None
    assert fail_later.acquire() is not None


def test_holds_do_not_shorten_each_other() -> None:
    """A shorter hold never ends a longer one early."""
    clock = Clock()
    circuit = CircuitBreaker(clock=clock)
    circuit.hold(60.0)
    circuit.hold(5.0)
    assert circuit.seconds_until_ready() == 60.0


def test_abandoned_probe_gives_the_slot_back() -> None:
    """A probe that never went out is abandoned: the next acquire gets the probe (not burned)."""
    clock = Clock()
    changes = Changes()
    circuit = CircuitBreaker(clock=clock, on_change=changes)
    fail(circuit, FAILURE_THRESHOLD)
    clock.now += COOLDOWN_BASE
    take(circuit).abandon()
    assert changes.calls == 1
    assert state(circuit) == "half_open"
    assert circuit.ready()
    probe = take(circuit)
    assert circuit.acquire() is None
    probe.succeeded()
    assert state(circuit) == "closed"


def test_abandoned_permit_counts_no_failure() -> None:
    """Abandoning a closed-state permit leaves the circuit healthy: no failure counted."""
    circuit = CircuitBreaker(clock=Clock())
    fail(circuit, FAILURE_THRESHOLD - 1)
    take(circuit).succeeded()
    for _ in range(FAILURE_THRESHOLD * 2):
        take(circuit).abandon()
    assert state(circuit) == "closed"
    assert not circuit.failing


def test_a_permit_settles_only_once() -> None:
    """Settling a permit again changes nothing: a late success after its failure is ignored."""
    circuit = CircuitBreaker(clock=Clock())
    fail(circuit, FAILURE_THRESHOLD - 1)
    permit = take(circuit)
    assert permit.failed()
    assert state(circuit) == "open"
    permit.succeeded()
    permit.abandon()
    assert state(circuit) == "open"
    assert permit.failed()  # reports the state, counts nothing more


def test_failed_again_does_not_count_twice() -> None:
    """Calling failed() twice on one permit is one failure, not two."""
    circuit = CircuitBreaker(clock=Clock())
    fail(circuit, FAILURE_THRESHOLD - 2)
    permit = take(circuit)
    permit.failed()
    assert not permit.failed()
    assert state(circuit) == "closed"


def test_failing_tracks_the_last_attempt() -> None:
    """failing is False when healthy, True after one failure, False again after a success."""
    circuit = CircuitBreaker(clock=Clock())
    seen = [circuit.failing]
    fail(circuit, 1)
    seen.append(circuit.failing)
    assert state(circuit) == "closed"
    take(circuit).succeeded()
    seen.append(circuit.failing)
    assert seen == [False, True, False]


def test_cautious_until_the_api_first_answers_and_after_a_failure() -> None:
    """One request at a time before the first success (a slow start) and after a failure."""
    circuit = CircuitBreaker(clock=Clock())
    seen = [circuit.cautious]
    take(circuit).succeeded()
    seen.append(circuit.cautious)
    fail(circuit, 1)
    seen.append(circuit.cautious)
    take(circuit).succeeded()
    seen.append(circuit.cautious)
    assert seen == [True, False, True, False]


def test_on_change_called_when_the_circuit_closes() -> None:
    """A successful probe reports the change, and so does the first success (the slow
    start ends); another success while closed does not."""
    clock = Clock()
    changes = Changes()
    circuit = CircuitBreaker(clock=clock, on_change=changes)
    take(circuit).succeeded()
    assert changes.calls == 1
    take(circuit).succeeded()
    assert changes.calls == 1
    fail(circuit, FAILURE_THRESHOLD)
    clock.now += COOLDOWN_BASE
    take(circuit).succeeded()
    assert changes.calls == 2
