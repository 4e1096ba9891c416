"""The parked backlog in memory: compressed, bounded in bytes, priority evicted last;
and the queue's byte bound.

Packing and eviction order on their own, then outages over real HTTP (503s, refused
connections) with default-shaped settings and a small byte bound to compress time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from vf_otel._delivery.ledger import Ledger
from vf_otel._delivery.parked import Job, Parked, pack, unpack
from vf_otel._delivery.queue import EventQueue, QueueBytes
from vf_otel._delivery.wire import (
    EVENTS_PATH,
    USERS_PATH,
    Request,
    encode_event,
    events_request,
    user_requests,
)
from vf_otel._event.model import Event
from vf_otel._event.values import MAX_STRING_LENGTH
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory

WHEN = datetime(2026, 12, 6, 3, 4, 5, 678901, tzinfo=UTC)
PRIORITY = "signed_up"


def event(index: int, name: str = "feature_used", **traits: Any) -> Event:
    """Event ``e<index>`` named ``name``, with random (incompressible) padding."""
    properties = {"i": index, "pad": os.urandom(40).hex(), "é": ["ü", 1.5, None, True]}
    return Event(name, f"usr_{index % 3}", properties, WHEN, f"e{index}", traits or None)


def batch(*events: Event) -> Request:
    """An /events/batch request for ``events``."""
    return events_request(events, [encode_event(e) for e in events])


def ids_of(request: Request) -> list[str]:
    """The event ids a request carries."""
    return [e.event_id for e in request.events]


def stats(ledger: Ledger) -> Any:
    """The ledger's counts with nothing queued or refused."""
    return ledger.snapshot(queued=0, refused={})


# -- packing ----------------------------------------------------------------------------


def test_packed_events_request_unpacks_to_the_same_request() -> None:
    """Path, key, body bytes and events (ids, exact times, traits) survive packing."""
    request = batch(event(1), event(2, plan="pro"), event(3, PRIORITY))
    packed = pack(Job(request, seq=7), {PRIORITY})
    job = unpack(packed)
    assert job.request == request
    assert job.request.body == request.body  # sent again byte for byte, plain JSON
    assert job.seq == 7
    assert (packed.weight, packed.priority) == (3, 1)


def test_packed_user_upsert_unpacks_to_the_same_request() -> None:
    """A user upsert's merged body and its source events survive packing; it is priority."""
    (upsert,) = user_requests([event(1, plan="pro"), event(4, email="a@example.com")])
    packed = pack(Job(upsert), ())
    assert unpack(packed).request == upsert
    assert (packed.weight, packed.priority) == (1, 1)


def test_packed_requests_are_compressed() -> None:
    """A batch of 500 typical events parks in a fraction of its JSON."""
    events = [
        Event("checkout_completed", f"usr_{i % 50}", {"plan": "pro", "n": i}, WHEN, f"{i:032x}")
        for i in range(500)
    ]
    request = batch(*events)
    assert pack(Job(request), ()).size * 4 < len(request.body)


# -- the byte bound and what goes first --------------------------------------------------


def room_for(*requests: Request) -> int:
    """The bytes ``requests`` take parked (compressed)."""
    return sum(pack(Job(request), {PRIORITY}).size for request in requests)


def test_full_backlog_evicts_plain_events_first() -> None:
    """Over the bound, the oldest plain batch goes before an older upsert or priority batch."""
    reported: list[Event] = []
    ledger = Ledger(lambda error, events: reported.extend(events))
    (upsert,) = user_requests([event(0, plan="pro")])
    first_priority = batch(event(1, PRIORITY), event(2, PRIORITY))
    plain = [batch(event(i)) for i in range(3, 7)]
    parked = Parked(room_for(upsert, first_priority, *plain[2:]), ledger, None, {PRIORITY})
    for request in (upsert, first_priority, *plain):
        parked.park(Job(request))
    assert [e.event_id for e in reported] == ["e3", "e4"]
    assert dict(stats(ledger).dropped) == {"backlog_full": 2}
    kept = parked.take()
    assert [job.request.path for job in kept] == [USERS_PATH, EVENTS_PATH, EVENTS_PATH, EVENTS_PATH]
    assert [ids_of(job.request) for job in kept[1:]] == [["e1", "e2"], ["e5"], ["e6"]]
    assert stats(ledger).users_failed == 0


def test_a_batch_with_priority_events_loses_its_other_events_first() -> None:
    """The oldest batch with plain events gives them up and keeps its priority ones, as a
    new request of its own, before any newer plain batch goes."""
    reported: list[Event] = []
    ledger = Ledger(lambda error, events: reported.extend(events))
    one, two, three, four = event(1), event(2, PRIORITY), event(3), event(4, PRIORITY)
    mixed = batch(one, two, three, four)
    newer, newest = batch(*(event(i) for i in range(5, 9))), batch(event(9))
    parked = Parked(room_for(batch(two, four), newer, newest), ledger, None, {PRIORITY})
    parked.park(Job(mixed, seq=1))
    parked.park(Job(newer, seq=2))
    parked.park(Job(newest, seq=3))
    assert sorted(e.event_id for e in reported) == ["e1", "e3"]
    assert len(parked) == 7
    first, second, third = parked.take()
    assert (ids_of(first.request), first.seq) == (["e2", "e4"], 1)
    assert first.request.key != mixed.key  # other events, another key
    assert (second.request, third.request) == (newer, newest)
    assert stats(ledger).parked == 7


def test_oldest_is_by_batch_not_by_when_it_parked() -> None:
    """A request that parks after newer batches (it was out, retrying) is still the
    oldest: it goes first."""
    reported: list[Event] = []
    ledger = Ledger(lambda error, events: reported.extend(events))
    late, newer, newest = batch(event(1)), batch(event(2)), batch(event(3))
    # Room for any two of them (their random padding makes their sizes differ), not three.
    parked = Parked(max(room_for(newer, late), room_for(newer, newest)), ledger, None)
    parked.park(Job(newer, seq=2))
    parked.park(Job(late, seq=1))
    parked.park(Job(newest, seq=3))
    assert [e.event_id for e in reported] == ["e1"]
    assert [job.seq for job in parked.take()] == [2, 3]


def test_priority_goes_last_oldest_first_and_the_newest_stays() -> None:
    """With only priority requests left, the oldest of them go; the newest always stays."""
    ledger = Ledger(None)
    requests = [batch(event(i, PRIORITY)) for i in range(4)]
    parked = Parked(room_for(*requests[2:]), ledger, None, {PRIORITY})
    for request in requests:
        parked.park(Job(request))
    assert [ids_of(job.request) for job in parked.take()] == [["e2"], ["e3"]]
    assert dict(stats(ledger).dropped) == {"backlog_full": 2}


def test_backlog_bytes_follow_park_and_take() -> None:
    """``bytes`` is the packed size of what is parked; take gives it back."""
    parked = Parked(1 << 20, Ledger(None), None)
    request = batch(event(1), event(2))
    parked.park(Job(request))
    assert parked.bytes == room_for(request)
    assert [job.request for job in parked.take()] == [request]
    assert (parked.bytes, len(parked)) == (0, 0)


def test_a_parked_request_that_cannot_be_read_back_is_counted_not_lost() -> None:
    """A packed request whose data is damaged: dropped as internal_error (counted, its
    batch settled), the rest taken as usual."""
    settled: list[int] = []
    ledger = Ledger(None)
    parked = Parked(1 << 20, ledger, None)
    parked.on_evicted = lambda job: settled.append(job.seq)
    parked.park(Job(batch(event(1), event(2)), seq=1))
    parked.park(Job(batch(event(3)), seq=2))
    parked._memory[0] = dataclasses.replace(parked._memory[0], data=b"damaged")
    assert [ids_of(job.request) for job in parked.take()] == [["e3"]]
    assert settled == [1]
    assert dict(stats(ledger).dropped) == {"internal_error": 2}
    assert (stats(ledger).parked, len(parked)) == (1, 0)


# -- the queue's byte bound ------------------------------------------------------------


def test_queue_limit_follows_the_measured_size_per_event() -> None:
    """Large events measured lower the queue's limit to what the bytes hold; small ones
    raise it back to max_queue_size."""
    queue: EventQueue[object] = EventQueue(1_000, 10, lambda: None)
    bound = QueueBytes(queue, 1_000, 1_000_000)
    bound.measured(10, 1_000_000)  # 100 kB each
    assert queue.limit == 10
    bound.measured(500, 50_000)  # 100 bytes each: counted by events, the mean falls fast
    bound.measured(500, 50_000)
    assert queue.limit == 1_000


def test_queue_limit_change_never_opens_a_closed_queue() -> None:
    """A limit set by the worker after close() leaves the queue refusing."""
    queue: EventQueue[object] = EventQueue(1_000, 10, lambda: None)
    queue.closed = True
    QueueBytes(queue, 1_000, 100_000).measured(10, 100_000)
    assert queue.put(object()) is False
    queue.closed = False
    assert queue.limit == 10
    assert queue.put(object()) is True


def test_huge_events_are_refused_once_the_queue_bytes_are_full(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, app_logger: logging.Logger
) -> None:
    """After the worker measured events of ~16 kB, a 40 KiB queue holds two; the rest of a
    run of them is refused as queue_full (counted), the two are delivered."""
    handler = make_handler(max_queue_bytes=40 * 1024, adaptive_batching=False)
    app_logger.addHandler(handler)

    def huge(name: str) -> None:
        # A string property is cut at MAX_STRING_LENGTH (16 KiB): 16 kB of JSON.
        pad = {"pad": os.urandom(MAX_STRING_LENGTH).hex()}
        app_logger.info(name, extra={"vf_user": "usr_1", "vf_properties": pad})

    for i in range(3):
        huge(f"measured_{i}")
    assert handler.flush(timeout=15)
    for i in range(5):
        huge(f"held_{i}")
    assert handler.stats().queued == 2
    assert handler.stats().dropped["queue_full"] == 3
    assert handler.flush(timeout=15) is False  # the refusals, said once
    names = [e["name"] for e in vibefollow_server.events]
    assert names == ["measured_0", "measured_1", "measured_2", "held_0", "held_1"]


# -- outages over real HTTP ------------------------------------------------------------


def log_events(log: logging.Logger, count: int, prefix: str, *, per_ms: float) -> None:
    """Log ``count`` padded events named ``<prefix>_<i>`` at about ``per_ms`` per ms."""
    started = time.monotonic()
    for i in range(count):
        extra = {
            "vf_event": f"{prefix}_{i}",
            "vf_user": "u",
            "vf_properties": {"pad": os.urandom(50).hex()},
        }
        log.warning("%s_%d", prefix, i, extra=extra)
        ahead = (i + 1) / per_ms / 1000 - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)


def parks(handler: Any, events: int = 1, users: int = 0, timeout: float = 60.0) -> bool:
    """Whether ``events`` events and ``users`` user upserts are parked within ``timeout``
    (the circuit opens after a few failed attempts; until then a request is being tried)."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        stats = handler.stats()
        if stats.parked >= events and stats.users_parked >= users:
            return True
        time.sleep(0.05)
    return False


def delivered_once(server: VibefollowServer) -> list[str]:
    """The names of the events the server holds, checked to be there once each."""
    events = [(e["name"], e["external_user_id"]) for e in server.events]
    assert len(events) == len(set(events))
    return [name for name, _ in events]


@pytest.mark.slow
@pytest.mark.usefixtures("fast_clock")  # backoff and cool-down not waited out
def test_503_outage_within_the_bound_drops_nothing_and_delivers_each_event_once(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """Default-shaped settings, 3,000 events during a 503 outage: all parked (compressed),
    none dropped, each delivered exactly once after the API recovers."""
    handler = make_handler(flush_interval=0.5)
    log = logging.getLogger("app.backlog.503")
    log.propagate = False
    log.addHandler(handler)
    vibefollow_server.fail_next(503, count=1_000_000)
    log_events(log, 3_000, "down", per_ms=1.0)
    assert parks(handler)
    vibefollow_server.clear_faults()
    try:
        assert handler.flush(timeout=90)
        assert sorted(delivered_once(vibefollow_server)) == sorted(
            f"down_{i}" for i in range(3_000)
        )
        assert (handler.stats().sent, handler.stats().dropped_total) == (3_000, 0)
    finally:
        log.removeHandler(handler)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
@pytest.mark.usefixtures("fast_clock")  # backoff and cool-down not waited out
def test_refused_connections_within_the_bound_drop_nothing(
    make_handler: HandlerFactory,
) -> None:
    """Nothing listening while 3,000 events are logged, then a server on that port: each
    delivered exactly once, none dropped."""
    port = _free_port()
    later = VibefollowServer(port=port)
    handler = make_handler(
        base_url=f"http://127.0.0.1:{port}", api_key=later.api_key, flush_interval=0.5
    )
    log = logging.getLogger("app.backlog.refused")
    log.propagate = False
    log.addHandler(handler)
    log_events(log, 3_000, "down", per_ms=1.0)
    assert parks(handler)
    later.start()
    try:
        assert handler.flush(timeout=90)
        assert len(delivered_once(later)) == 3_000
        assert (handler.stats().sent, handler.stats().dropped_total) == (3_000, 0)
    finally:
        log.removeHandler(handler)
        later.stop()


@pytest.mark.slow
@pytest.mark.usefixtures("fast_clock")  # backoff and cool-down not waited out
def test_past_the_bound_the_oldest_plain_events_go_upserts_and_priority_last(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory
) -> None:
    """A 64 KiB backlog through a 503 outage: user upserts and priority events logged
    first all arrive; the plain events lost are the oldest, counted as backlog_full and
    reported; everything else arrives once."""
    reported: list[str] = []
    handler = make_handler(
        flush_interval=0.5,
        max_backlog_bytes=64 * 1024,
        priority_events=[PRIORITY],
        on_error=lambda error, events: reported.extend(e.name for e in events),
    )
    log = logging.getLogger("app.backlog.priority")
    log.propagate = False
    log.addHandler(handler)
    vibefollow_server.fail_next(503, count=1_000_000)
    for i in range(20):
        user = f"usr_{i}"
        log.warning("signed up", extra={"vf_event": PRIORITY, "vf_user": user})
        traits = {"plan": "pro", "i": i}
        log.warning("traits", extra={"vf_event": "profile", "vf_user": user, "vf_traits": traits})
    # Their batch parked first (its events wait for its upserts' outcomes), then the rest.
    assert parks(handler, events=40, users=20)
    log_events(log, 3_000, "plain", per_ms=1.0)
    vibefollow_server.clear_faults()
    try:
        assert handler.flush(timeout=90) is False  # the drops, said once
        stats = handler.stats()
        names = delivered_once(vibefollow_server)
        assert names.count(PRIORITY) == 20
        assert len(vibefollow_server.users) == 20
        assert stats.users_failed == 0
        lost = list(reported)
        assert lost
        assert PRIORITY not in lost
        assert dict(stats.dropped) == {"backlog_full": len(lost)}
        assert len(names) + len(lost) == 20 + 20 + 3_000
        plain_lost = sorted(int(n.split("_")[1]) for n in lost if n.startswith("plain_"))
        plain_sent = sorted(int(n.split("_")[1]) for n in names if n.startswith("plain_"))
        assert plain_sent[-1] == 2_999  # the newest arrive
        assert max(plain_lost) < min(plain_sent)  # the oldest went
    finally:
        log.removeHandler(handler)
