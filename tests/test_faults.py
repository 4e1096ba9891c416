"""Fault injection over real HTTP: 10,000 events through a seeded storm arrive exactly once.

The local server answers with a seeded mix of 5xx, 429 + Retry-After, connection
resets, lost responses, responses slower than the client timeout and an endpoint
failing for a stretch (long enough to open the circuit breaker). Retries reuse
the same Idempotency-Key and body, so every event must be recorded exactly once,
with no request the contract refuses and the queue within its bound throughout.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import vf_otel
from vf_otel.testing import VibefollowServer

#: Backoff, cool-down and a retry's Retry-After wait skipped on the fast clock (the storm,
#: not the waits, is what is tried here); the client timeout and slow responses keep real
#: time.
pytestmark = pytest.mark.usefixtures("fast_clock")

SEED = 20_251_123
ROUNDS = 20
PER_ROUND = 500  # 10,000 log events in all
SPANS = 300
MAX_QUEUE = 5_000
CLIENT_TIMEOUT = 0.3
# Every wait in this module is bounded by one of these (seconds).
PACE_LIMIT = 20.0
DRAIN_LIMIT = 30.0
MAX_REQUESTS = 400

Fault = Callable[[VibefollowServer, random.Random], None]


def _server_error(server: VibefollowServer, rng: random.Random) -> None:
    server.fail_next(rng.choice([500, 502, 503, 504]))


def _rate_limited(server: VibefollowServer, rng: random.Random) -> None:
    server.fail_next(429, retry_after=rng.choice(["0", "1"]))


def _reset(server: VibefollowServer, rng: random.Random) -> None:
    server.reset_next()


def _lost_response(server: VibefollowServer, rng: random.Random) -> None:
    server.lose_response_next()


def _slow(server: VibefollowServer, rng: random.Random) -> None:
    # Processed after the client gave up: the retry must be deduplicated, not doubled.
    server.delay_next(CLIENT_TIMEOUT * 2)


def _outage(server: VibefollowServer, rng: random.Random) -> None:
    # Five failures in a row open the circuit breaker for a short cool-down.
    server.fail_next(503, count=5, path="/events/batch")


FAULTS: tuple[Fault, ...] = (_server_error, _rate_limited, _reset, _lost_response, _slow, _outage)


def _wait_until(predicate: Callable[[], bool], limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def _waiting(handler: vf_otel.VibefollowHandler) -> int:
    stats = handler.stats()
    return stats.queued + stats.backlog


def _drain(flush: Callable[[float], bool]) -> bool:
    """Flush until everything landed; a paused (circuit-open) delivery needs a few tries."""
    deadline = time.monotonic() + DRAIN_LIMIT
    while time.monotonic() < deadline:
        if flush(min(5.0, deadline - time.monotonic())):
            return True
        time.sleep(0.2)
    return False


def _options(server: VibefollowServer) -> dict[str, object]:
    return {
        "api_key": server.api_key,
        "base_url": server.base_url,
        "batch_size": 500,
        "flush_interval": 0.05,
        "max_queue_size": MAX_QUEUE,
        "timeout": CLIENT_TIMEOUT,
        "export_timeout": 10.0,
        "max_retries": 6,
        "shutdown_timeout": 5.0,
    }


def test_ten_thousand_log_events_survive_a_fault_storm_exactly_once(
    server: VibefollowServer, app_logger: logging.Logger
) -> None:
    """Every seq arrives once; no refused request; the queue never passes its bound."""
    server.clear()
    rng = random.Random(SEED)  # noqa: S311 - a seeded fault schedule
    handler = vf_otel.VibefollowHandler(**_options(server))  # type: ignore[arg-type]
    app_logger.addHandler(handler)
    high_water = 0
    try:
        for round_no in range(ROUNDS):
            # One fault group every other round, once the last one was met: a storm the
            # circuit breaker rides out rather than a permanent outage.
            if round_no % 2 == 0:
                assert _wait_until(lambda: server.pending_faults == 0, PACE_LIMIT)
                FAULTS[rng.randrange(len(FAULTS))](server, rng)
            # Paced like a busy app whose queue must stay bounded: no drops allowed here.
            assert _wait_until(lambda: _waiting(handler) <= MAX_QUEUE - PER_ROUND, PACE_LIMIT), (
                round_no,
                handler.stats(),
            )
            for offset in range(PER_ROUND):
                seq = round_no * PER_ROUND + offset
                extra = {"vf_user": f"usr_{seq % 97}", "vf_properties": {"seq": seq}}
                app_logger.info("storm", extra=extra)
            stats = handler.stats()
            high_water = max(high_water, stats.queued + stats.backlog)
        assert _drain(handler.flush), handler.stats()
        stats = handler.stats()
        # flush() said everything landed: the counters and the server must agree.
        assert stats.sent == ROUNDS * PER_ROUND, (stats, len(server.events))
    finally:
        handler.close()
    seen = Counter(event["properties"]["seq"] for event in server.events)
    assert set(seen) == set(range(ROUNDS * PER_ROUND))
    assert max(seen.values()) == 1
    assert server.rejected == 0
    assert server.pending_faults == 0  # every scripted fault was really met
    assert (stats.sent, stats.dead_lettered, stats.dropped_total) == (ROUNDS * PER_ROUND, 0, 0)
    assert stats.retried > 0
    assert high_water <= 2 * MAX_QUEUE  # queue + backlog, each bounded by max_queue_size
    assert len(server.requests) <= MAX_REQUESTS


def test_span_events_survive_faults_exactly_once(server: VibefollowServer) -> None:
    """Spans exported through the same storm land once each (stable ids, replayed keys)."""
    server.clear()
    rng = random.Random(SEED + 1)  # noqa: S311 - a seeded fault schedule
    options = _options(server) | {"batch_size": 50}
    exporter = vf_otel.VibefollowSpanExporter(**options)  # type: ignore[arg-type]
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("faults")
    try:
        for seq in range(SPANS):
            if seq % 50 == 0:
                FAULTS[rng.randrange(len(FAULTS) - 1)](server, rng)
            attrs = {"vf.user": f"usr_{seq % 7}", "vf.properties.seq": seq}
            with tracer.start_as_current_span("checkout", attributes=attrs):
                pass
        assert _drain(lambda timeout: exporter.force_flush(int(timeout * 1000)))
        stats = exporter.stats()
        assert stats.sent == SPANS, (stats, len(server.events))
    finally:
        exporter.shutdown()
    seen = Counter(event["properties"]["seq"] for event in server.events)
    assert seen == Counter(range(SPANS))
    assert server.rejected == 0
    assert (stats.sent, stats.dropped_total) == (SPANS, 0)
