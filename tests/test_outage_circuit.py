"""The circuit breaker on a hand clock, and delivery's use of it over MockTransport."""

from __future__ import annotations

import httpx
import pytest

from vf_otel._config import resolve_settings
from vf_otel._delivery.circuit import CircuitBreaker
from vf_otel._delivery.delivery import Delivery
from vf_otel._delivery.stats import Counters
from vf_otel._event.model import Event

from .test_delivery_unit import WHEN, Clock, NoJitter

API_KEY = "sk_live_UNITtest0123456789abcdefghijklmnop"


def breaker(clock: Clock, **options: float) -> CircuitBreaker:
    """A breaker with threshold 3 and cool-downs 10 s doubling to 40 s, on ``clock``."""
    return CircuitBreaker(threshold=3, cooldown=10.0, cooldown_cap=40.0, clock=clock, **options)


def test_opens_after_threshold_consecutive_failures() -> None:
    """Two failures keep it closed; the third opens it and nothing is allowed."""
    clock = Clock()
    circuit = breaker(clock)
    assert not circuit.record_failure()
    assert not circuit.record_failure()
    assert circuit.allow()
    assert circuit.record_failure()
    assert circuit.state == "open"
    assert not circuit.allow()
    assert circuit.seconds_until_allowed() == 10.0


def test_success_resets_the_failure_count() -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    circuit = breaker(Clock())
    circuit.record_failure()
    circuit.record_failure()
    circuit.record_success()
    circuit.record_failure()
    circuit.record_failure()
    assert circuit.state == "closed"


def test_half_open_lets_exactly_one_probe_through() -> None:
    """After the cool-down one attempt is allowed; others wait for its outcome."""
    clock = Clock()
    circuit = breaker(clock)
    for _ in range(3):
        circuit.record_failure()
    clock.now += 10.0
    assert circuit.state == "half_open"
    assert circuit.allow()
    assert not circuit.allow()
    circuit.record_success()
    assert circuit.state == "closed"
    assert circuit.allow()
    assert circuit.allow()


def test_failed_probe_reopens_with_a_growing_capped_cooldown() -> None:
    """Each failed probe doubles the cool-down (10, 20, 40, 40 s) and reopens."""
    clock = Clock()
    circuit = breaker(clock)
    for _ in range(3):
        circuit.record_failure()
    waits = []
    for _ in range(4):
        waits.append(circuit.seconds_until_allowed())
        clock.now += waits[-1]
        assert circuit.allow()
        assert circuit.record_failure()
    assert waits == [10.0, 20.0, 40.0, 40.0]
    clock.now += 40.0
    assert circuit.allow()
    circuit.record_success()
    for _ in range(3):
        circuit.record_failure()
    assert circuit.seconds_until_allowed() == 10.0  # success reset the cool-down


def test_retry_after_holds_every_attempt_until_it_passes() -> None:
    """A Retry-After (capped at 120 s) blocks all attempts even while closed."""
    clock = Clock()
    circuit = breaker(clock)
    assert not circuit.record_failure(retry_after=5.0)
    assert circuit.state == "closed"
    assert not circuit.allow()
    clock.now += 5.0
    assert circuit.allow()
    circuit.record_failure(retry_after=10_000.0)
    assert circuit.seconds_until_allowed() == 120.0


def test_stuck_probe_does_not_block_forever() -> None:
    """A probe that never reports back stops blocking after the probe timeout."""
    clock = Clock()
    circuit = breaker(clock)
    for _ in range(3):
        circuit.record_failure()
    clock.now += 10.0
    assert circuit.allow()
    clock.now += 61.0
    assert circuit.allow()


# -- delivery with the circuit ----------------------------------------------------


class Counting:
    """A MockTransport handler failing with 503 until told otherwise; counts requests."""

    def __init__(self) -> None:
        self.status = 503
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.status >= 300:
            return httpx.Response(self.status, json={"errors": [{"code": "x", "message": "x"}]})
        return httpx.Response(202, json={"data": {"accepted": True}})


def events(count: int, start: int = 0) -> list[Event]:
    """Distinct events ``e<start>``..."""
    return [Event("used", "usr_1", {}, WHEN, f"e{i}") for i in range(start, start + count)]


@pytest.fixture
def rig() -> tuple[Delivery, Counting, Clock]:
    """A Delivery with a 3-failure breaker (cool-down 10 s) on a hand clock."""
    clock = Clock()
    server = Counting()
    settings = resolve_settings(
        environ={}, api_key=API_KEY, base_url="http://127.0.0.1:9", max_retries=8
    )
    delivery = Delivery(
        settings,
        Counters(),
        transport=httpx.MockTransport(server),
        clock=clock,
        rng=NoJitter(),
        circuit=lambda: breaker(clock),
    )
    return delivery, server, clock


def test_open_circuit_parks_exports_without_sending(rig: tuple[Delivery, Counting, Clock]) -> None:
    """Once open, exports park at once: no request, however many exports come."""
    delivery, server, _ = rig
    assert not delivery.export(events(1))
    assert server.requests == 3  # the threshold, not max_retries + 1
    for i in range(50):
        assert not delivery.export(events(1, start=i + 1))
    assert server.requests == 3
    assert delivery.backlog_size == 51
    delivery.close()


def test_probe_success_closes_and_delivery_resumes_by_itself(
    rig: tuple[Delivery, Counting, Clock],
) -> None:
    """After the cool-down retry_parked sends one probe; on success everything goes out."""
    delivery, server, clock = rig
    delivery.export(events(3))
    assert delivery.retry_parked(5.0) is False  # still open: nothing sent
    assert server.requests == 3
    server.status = 202
    clock.now += 10.0
    assert delivery.next_retry_in(1.0) == 1.0
    assert delivery.retry_parked(5.0) is True
    assert server.requests == 4
    assert delivery.backlog_size == 0
    assert delivery.circuit.state == "closed"
    delivery.close()


def test_failed_probe_sends_one_request_then_waits_longer(
    rig: tuple[Delivery, Counting, Clock],
) -> None:
    """A failed probe is a single request; the next one waits twice as long."""
    delivery, server, clock = rig
    delivery.export(events(3))
    clock.now += 10.0
    assert delivery.retry_parked(5.0) is False
    assert server.requests == 4
    assert delivery.next_retry_in(1.0) == 20.0
    delivery.close()
