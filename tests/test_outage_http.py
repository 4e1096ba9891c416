"""Outages over real HTTP: bounded memory, no busy loop, Retry-After, recovery exactly once."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

import vf_otel
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory

OUTAGE_WINDOW = 2.0


def log_for(
    seconds: float, log: logging.Logger, prefix: str, *, per_tick: int = 2, pad: int = 0
) -> int:
    """Log tagged events every 10 ms for ``seconds`` (bounded); return how many.

    ``pad``: each carries that many random bytes (as hex), which do not compress.
    """
    count, until = 0, time.monotonic() + seconds
    while time.monotonic() < until:
        for _ in range(per_tick):
            extra = {"vf_event": f"{prefix}_{count}", "vf_user": "u"}
            if pad:
                extra["vf_properties"] = {"pad": os.urandom(pad).hex()}
            log.warning("%s_%d", prefix, count, extra=extra)
            count += 1
        time.sleep(0.01)
    return count


@pytest.mark.slow
def test_long_outage_keeps_memory_bounded_and_does_not_spin(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """Failing API: few requests over the window, bounded queue+backlog, every drop counted."""
    # 4 KiB of backlog: two or three parked requests of 10 such events (1+ KiB each).
    # On the real clock: the circuit's real cool-down is what keeps the requests few.
    handler = make_handler(
        flush_interval=0.05,
        max_retries=0,
        max_queue_size=50,
        batch_size=10,
        max_backlog_bytes=4096,
        shutdown_timeout=0.5,  # close() gives up soon: the outage goes on
    )
    log = logging.getLogger("app.outage.spin")
    log.addHandler(handler)
    vibefollow_server.fail_next(503, count=100_000)
    peak, logged, until = 0, 0, time.monotonic() + OUTAGE_WINDOW
    while time.monotonic() < until:
        logged += log_for(0.1, log, "e", pad=100)
        stats = handler.stats()
        peak = max(peak, stats.queued + stats.backlog)
    log.removeHandler(handler)
    # Threshold (5) failures open the circuit; then one probe at ~1 s: far from one per export.
    assert len(vibefollow_server.requests) <= 8
    assert peak <= 100  # queue (50) + backlog (4 KiB: at most 50), never more
    handler.close()
    stats = handler.stats()
    assert stats.sent == 0
    assert logged == stats.dropped_total
    assert {"queue_full", "backlog_full", "shutdown"} >= set(stats.dropped)


@pytest.mark.slow
def test_429_storm_respects_retry_after_across_exports(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """With every answer a 429 + Retry-After: 1, requests are at least a second apart."""
    # On the real clock: what is counted is requests per real second. close() gives up soon.
    handler = make_handler(flush_interval=0.05, max_retries=3, shutdown_timeout=0.5)
    log = logging.getLogger("app.outage.429")
    log.addHandler(handler)
    vibefollow_server.fail_next(429, retry_after="1", count=100_000)
    log_for(1.6, log, "e")
    log.removeHandler(handler)
    # Retry-After is a floor for every request, not only for one request's retries.
    assert 1 <= len(vibefollow_server.requests) <= 2
    handler.close()


@pytest.mark.usefixtures("fast_clock")  # backoff and cool-down not waited out
@pytest.mark.parametrize("spool", [False, True], ids=["memory", "spool"])
def test_endpoint_down_then_back_on_the_same_port_delivers_everything_once(
    make_handler: HandlerFactory, tmp_path: Path, spool: bool
) -> None:
    """Server stopped, events logged, a new server on the same port: all delivered, once."""
    before = VibefollowServer().start()
    port = int(before.base_url.rsplit(":", 1)[1])
    options = {"spool_path": tmp_path / "spool.db"} if spool else {}
    handler = make_handler(
        base_url=before.base_url, api_key=before.api_key, flush_interval=0.1, **options
    )
    log = logging.getLogger(f"app.outage.port.{spool}")
    log.addHandler(handler)
    log.warning("before", extra={"vf_user": "usr_1"})
    assert handler.flush(timeout=5)  # its answer too, or a retry would land on `after`
    before.stop()
    down, until = 0, time.monotonic() + 10.0
    # Log until the outage has made delivery park something (bounded), at least 1 s.
    while time.monotonic() < until:
        down += log_for(0.25, log, f"during_{down}", per_tick=1)
        stats = handler.stats()
        # backlog also counts a batch still being tried; the spool only what was parked.
        if down >= 25 and (stats.spooled if spool else stats.backlog):
            break
    after = VibefollowServer(before.api_key, port=port).start()
    try:
        assert after.wait_for_events(down, timeout=30)
        assert handler.flush(timeout=10)
        names = [e["name"] for e in after.events]
        assert len(names) == len(set(names)) == down
        assert all(name.startswith("during_") for name in names)
        assert [e["name"] for e in before.events] == ["before"]
        stats = handler.stats()
        assert (stats.sent, stats.dropped_total) == (down + 1, 0)
        assert (stats.spooled > 0) is spool
    finally:
        log.removeHandler(handler)
        handler.close()
        after.stop()


@pytest.mark.slow
def test_a_flush_after_an_outage_sends_when_the_circuit_allows_not_at_the_next_replay(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """The outage opened the circuit (1 s cool-down) and the next scheduled replay is
    flush_interval (60 s) away: a flush once the API is back sends what is parked as soon
    as the circuit lets it, delivers all of it exactly once and answers True."""
    handler = make_handler(max_retries=0, batch_size=10)
    log = logging.getLogger("app.outage.replay")
    log.propagate = False
    log.addHandler(handler)
    # Five failed attempts open the circuit (FAILURE_THRESHOLD); then the API is back.
    vibefollow_server.fail_next(503, count=5)
    for i in range(25):
        log.warning("e", extra={"vf_event": f"e_{i}", "vf_user": "u"})
    assert handler.flush(timeout=0.5) is False  # parked: the circuit opened meanwhile
    assert vibefollow_server.wait_for_requests(5)
    assert vibefollow_server.pending_faults == 0  # the outage is over
    try:
        assert handler.flush(timeout=15) is True
        names = [e["name"] for e in vibefollow_server.events]
        assert sorted(names) == sorted(f"e_{i}" for i in range(25))
        stats = handler.stats()
        assert (stats.sent, stats.dropped_total, stats.backlog) == (25, 0, 0)
    finally:
        log.removeHandler(handler)


def test_stats_has_a_spooled_counter() -> None:
    """Stats gained ``spooled`` with a default, so older constructions still work."""
    assert vf_otel.Stats().spooled == 0
    assert vf_otel.Stats(enqueued=1).spooled == 0
