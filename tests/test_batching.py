"""Adaptive batching: a quiet app's event goes at once, a busy app's events gather.

Over real HTTP to the local server; the gather window itself with a hand-set clock.
Latency and request-rate figures belong to benchmarks/latency.py, not here: these
tests assert what happens (an event sent without waiting for ``flush_interval``,
events gathered while a request is out), never how fast.
"""

from __future__ import annotations

import logging
import math

import pytest

from vf_otel._delivery.policy import WINDOW_PER_RATE, Gather
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory

#: Far longer than any wait below: an event that arrives was not sent by the timer.
LONG_INTERVAL = 30.0
#: The bounded wait for an event sent at once (well below LONG_INTERVAL).
ARRIVES_WITHIN = 10.0
#: How long a test watches for a request that must not go (one sent at once takes ms).
QUIET_SPELL = 0.5


def test_a_lone_event_goes_out_without_waiting_for_the_interval(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """With flush_interval 30 s, one event logged is delivered with no flush() and no timer."""
    handler = make_handler(flush_interval=LONG_INTERVAL)
    app_logger.addHandler(handler)
    app_logger.info("first", extra={"vf_user": "usr_1"})
    assert vibefollow_server.wait_for_events(1, timeout=ARRIVES_WITHIN)
    # Quiet again, then one more: it goes at once too.
    assert handler.stats().queued == 0
    app_logger.info("second", extra={"vf_user": "usr_1"})
    assert vibefollow_server.wait_for_events(2, timeout=ARRIVES_WITHIN)
    assert [e["name"] for e in vibefollow_server.events] == ["first", "second"]
    assert len(vibefollow_server.requests) == 2


def test_events_logged_while_a_request_is_out_gather_into_the_next_batch(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """While the first request waits for its answer, 50 events logged meanwhile go as one."""
    handler = make_handler(flush_interval=LONG_INTERVAL)
    app_logger.addHandler(handler)
    vibefollow_server.delay_next(0.5)  # the first request's answer comes half a second later
    app_logger.info("first", extra={"vf_user": "usr_1"})
    assert vibefollow_server.wait_for_requests(1, timeout=ARRIVES_WITHIN)
    for i in range(50):
        app_logger.info("later_%d", i, extra={"vf_user": "usr_1"})
    assert vibefollow_server.wait_for_events(51, timeout=ARRIVES_WITHIN)
    sizes = [len(request.json["events"]) for request in vibefollow_server.requests]
    assert sizes == [1, 50]


def test_a_burst_goes_in_full_batches_not_a_request_per_event(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """2,000 events logged at once go in a handful of requests, most of them full."""
    handler = make_handler(flush_interval=LONG_INTERVAL)
    app_logger.addHandler(handler)
    for i in range(2_000):
        app_logger.info("burst_%d", i, extra={"vf_user": "usr_1"})
    assert handler.flush(timeout=30)
    assert len(vibefollow_server.events) == 2_000
    # A lone first event, the ones logged while it was out, then batches of 500.
    assert len(vibefollow_server.requests) <= 10


def test_without_adaptive_batching_a_partial_batch_waits_for_the_interval(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """adaptive_batching=False: a lone event waits for the timer (or a flush), as before."""
    handler = make_handler(flush_interval=LONG_INTERVAL, adaptive_batching=False)
    app_logger.addHandler(handler)
    app_logger.info("waits", extra={"vf_user": "usr_1"})
    assert not vibefollow_server.wait_for_events(1, timeout=QUIET_SPELL)
    assert handler.stats().queued == 1
    assert handler.flush(timeout=10)
    assert [e["name"] for e in vibefollow_server.events] == ["waits"]


def test_while_the_api_fails_nothing_is_sent_early(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """After a failed request, a lone event waits for the interval, a flush or a full batch."""
    handler = make_handler(flush_interval=LONG_INTERVAL, max_retries=0)
    app_logger.addHandler(handler)
    vibefollow_server.fail_next(503)
    app_logger.info("fails", extra={"vf_user": "usr_1"})
    assert vibefollow_server.wait_for_requests(1, timeout=ARRIVES_WITHIN)
    app_logger.info("held", extra={"vf_user": "usr_1"})
    assert not vibefollow_server.wait_for_requests(2, timeout=QUIET_SPELL)
    assert handler.flush(timeout=15)
    assert sorted(e["name"] for e in vibefollow_server.events) == ["fails", "held"]


# -- the gather window, with a hand-set clock -----------------------------------------


def test_gather_opens_at_once_when_quiet() -> None:
    """Before any take, and a quiet spell after one, a partial batch may go at once."""
    gather = Gather(5.0, enabled=True)
    assert gather.opens_at(100.0) <= 100.0
    gather.took(1, 100.0)
    assert gather.opens_at(101.0) <= 101.0


def test_gather_window_grows_with_the_rate() -> None:
    """At ~100 events/s the window is ~100 * WINDOW_PER_RATE; at ~1,000/s ten times that."""
    slow, fast = Gather(5.0, enabled=True), Gather(5.0, enabled=True)
    for step in range(200):
        now = step * 0.05
        slow.took(5, now)  # 100 events/s
        fast.took(50, now)  # 1,000 events/s
    now = 199 * 0.05 + 0.025  # halfway to the next take
    assert slow.rate(now) == pytest.approx(100, rel=0.1)
    assert slow.window(now) == pytest.approx(100 * WINDOW_PER_RATE, rel=0.1)
    assert fast.window(now) == pytest.approx(10 * slow.window(now), rel=0.01)


def test_gather_window_never_passes_the_interval() -> None:
    """However fast the app logs, a partial batch waits at most flush_interval."""
    gather = Gather(0.5, enabled=True)
    gather.took(1_000_000, 10.0)
    assert gather.window(10.0) == 0.5
    assert gather.opens_at(10.0) == 10.5


def test_gather_rate_fades_after_a_burst() -> None:
    """A burst's rate is forgotten within seconds: the next quiet event goes at once."""
    gather = Gather(5.0, enabled=True)
    gather.took(10_000, 0.0)
    assert gather.window(0.0) == 5.0
    assert gather.opens_at(3.0) <= 3.0


def test_gather_disabled_never_opens_early() -> None:
    """adaptive_batching=False: partial batches are left to the interval."""
    gather = Gather(5.0, enabled=False)
    assert gather.opens_at(0.0) == math.inf


def test_gather_after_fork_forgets_the_parent_rate() -> None:
    """A forked child starts quiet: its first event goes at once."""
    gather = Gather(5.0, enabled=True)
    gather.took(10_000, 0.0)
    gather.after_fork()
    assert gather.rate(0.0) == 0.0
    assert gather.opens_at(0.0) <= 0.0
