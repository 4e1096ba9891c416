"""Delivery over httpx.MockTransport: headers, retries, dead letters, backlog (design §5).

Nothing here sleeps: jitter is pinned to zero and the clock is driven by hand, so
a retry happens at once and a long Retry-After runs into the deadline instead.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from vf_otel._config import Settings, resolve_settings
from vf_otel._delivery.delivery import AUTH_PAUSE, Delivery
from vf_otel._delivery.stats import Counters
from vf_otel._delivery.wire import EVENTS_PATH
from vf_otel._errors import (
    AuthError,
    NetworkError,
    RateLimitError,
    ServerError,
    UndeliveredError,
    ValidationError,
    VibefollowError,
)
from vf_otel._event.model import Event, idempotency_key

API_KEY = "sk_live_UNITtest0123456789abcdefghijklmnop"
WHEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ACCEPTED = {"data": {"accepted": True}}

# A status, (status, JSON body, headers), an httpx.TransportError class to raise, or a handler.
Action = (
    int
    | tuple[int, dict[str, Any], dict[str, str]]
    | type[httpx.TransportError]
    | Callable[[httpx.Request], httpx.Response]
)


class Clock:
    """A monotonic clock the test (or the fake server) moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NoJitter(random.Random):
    """Full jitter pinned to its lower end: every backoff is 0 s, so nothing waits."""

    def uniform(self, a: float, b: float) -> float:
        return a


@dataclass
class Seen:
    """One request as the fake server received it."""

    method: str
    path: str
    headers: httpx.Headers
    body: bytes

    @property
    def key(self) -> str:
        return self.headers["Idempotency-Key"]

    @property
    def event_ids(self) -> list[str]:
        return [e["properties"]["id"] for e in json.loads(self.body)["events"]]


@dataclass
class FakeServer:
    """A MockTransport handler that plays a script of answers, then accepts everything."""

    script: list[Action] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(Seen(request.method, request.url.path, request.headers, request.read()))
        action: Action = self.script.pop(0) if self.script else 202
        if isinstance(action, type):
            raise action("connection refused", request=request)
        if isinstance(action, int):
            return _answer(action)
        if isinstance(action, tuple):
            status, body, headers = action
            return httpx.Response(status, json=body, headers=headers)
        return action(request)


def _answer(status: int) -> httpx.Response:
    if status < 300:
        return httpx.Response(status, json=ACCEPTED)
    body = {"errors": [{"code": f"code_{status}", "message": "nope"}]}
    return httpx.Response(status, json=body)


def invalid(field_path: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A 422 answer naming one field."""
    error = {"code": "validation_failed", "message": "invalid", "field": field_path}
    return (422, {"errors": [error]}, {})


@dataclass
class Rig:
    """A Delivery wired to a fake server, a hand clock and a record of on_error calls."""

    delivery: Delivery
    server: FakeServer
    clock: Clock
    counters: Counters
    reported: list[tuple[VibefollowError, list[Event]]]

    def stats(self) -> Any:
        return self.counters.snapshot(backlog=self.delivery.backlog_size)

    def reported_ids(self) -> list[str]:
        return [e.event_id for _, events in self.reported for e in events]


def make_settings(**options: Any) -> Settings:
    """Settings for a loopback endpoint with a known key."""
    return resolve_settings(environ={}, api_key=API_KEY, base_url="http://127.0.0.1:9", **options)


@pytest.fixture
def build() -> Iterator[Callable[..., Rig]]:
    """Make rigs with given settings and server script; close their deliveries afterwards."""
    made: list[Delivery] = []

    def factory(script: Sequence[Action] = (), **options: Any) -> Rig:
        server = FakeServer(list(script))
        clock = Clock()
        counters = Counters()
        reported: list[tuple[VibefollowError, list[Event]]] = []
        delivery = Delivery(
            make_settings(**options),
            counters,
            on_error=lambda exc, events: reported.append((exc, list(events))),
            transport=httpx.MockTransport(server),
            clock=clock,
            rng=NoJitter(),
        )
        made.append(delivery)
        return Rig(delivery, server, clock, counters, reported)

    yield factory
    for delivery in made:
        delivery.close()


def events(count: int, *, start: int = 0, traits: dict[str, Any] | None = None) -> list[Event]:
    """Events ``e<start>``... whose id is also in their properties, for easy checking."""
    return [
        Event("feature_used", "usr_1", {"feature": "x", "id": f"e{i}"}, WHEN, f"e{i}", traits)
        for i in range(start, start + count)
    ]


def ids(items: Sequence[Event]) -> list[str]:
    """The event ids, in order."""
    return [e.event_id for e in items]


# -- the request ---------------------------------------------------------------


def test_request_headers_and_body(build: Callable[..., Rig]) -> None:
    """A batch is POSTed to /api/v1/events/batch with auth, JSON, key and UA headers."""
    rig = build()
    batch = events(3)
    assert rig.delivery.export(batch) is True
    (seen,) = rig.server.seen
    assert seen.method == "POST"
    assert seen.path == "/api/v1/events/batch"
    assert seen.headers["Authorization"] == f"Bearer {API_KEY}"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"].startswith("vf-otel/")
    assert seen.key == idempotency_key(EVENTS_PATH, ids(batch))
    assert uuid.UUID(seen.key).version == 4
    assert json.loads(seen.body) == {"events": [e.to_wire() for e in batch]}
    stats = rig.stats()
    assert (stats.sent, stats.retried, stats.backlog, stats.dead_lettered) == (3, 0, 0, 0)


def test_batches_split_by_batch_size(build: Callable[..., Rig]) -> None:
    """Each chunk of batch_size events is its own request with its own key."""
    rig = build(batch_size=2)
    rig.delivery.export(events(5))
    assert [s.event_ids for s in rig.server.seen] == [["e0", "e1"], ["e2", "e3"], ["e4"]]
    assert len({s.key for s in rig.server.seen}) == 3
    assert rig.stats().sent == 5


def test_traits_sent_as_user_upsert(build: Callable[..., Rig]) -> None:
    """Events with traits also upsert the user, once per user, counted as users_sent."""
    rig = build()
    rig.delivery.export(events(2, traits={"email": "a@b.c", "plan": "pro"}))
    paths = [s.path for s in rig.server.seen]
    assert paths == ["/api/v1/users", "/api/v1/events/batch"]
    assert json.loads(rig.server.seen[0].body) == {
        "external_user_id": "usr_1",
        "email": "a@b.c",
        "traits": {"plan": "pro"},
    }
    assert (rig.stats().users_sent, rig.stats().sent) == (1, 2)


def test_empty_export_sends_nothing(build: Callable[..., Rig]) -> None:
    """Exporting no events makes no request and reports success."""
    rig = build()
    assert rig.delivery.export([]) is True
    assert rig.server.seen == []


# -- retries ---------------------------------------------------------------------

RETRYABLE: list[Action] = [500, 502, 503, 504, 429, httpx.ConnectError, httpx.ReadTimeout]


@pytest.mark.parametrize(
    "failure", RETRYABLE, ids=["500", "502", "503", "504", "429", "connect", "timeout"]
)
def test_retry_keeps_key_and_body(build: Callable[..., Rig], failure: Action) -> None:
    """A retried request carries the same Idempotency-Key and byte-identical body."""
    rig = build(script=[failure, failure])
    assert rig.delivery.export(events(3)) is True
    first, second, third = rig.server.seen
    assert first.key == second.key == third.key
    assert first.body == second.body == third.body
    stats = rig.stats()
    assert (stats.sent, stats.retried, stats.backlog) == (3, 2, 0)
    assert rig.reported == []


@pytest.mark.parametrize("failure", [503, httpx.ConnectError], ids=["503", "connect"])
def test_retry_budget_spent_parks(build: Callable[..., Rig], failure: Action) -> None:
    """After max_retries retries the request is parked, not dropped or dead-lettered."""
    rig = build(script=[failure] * 10, max_retries=2)
    assert rig.delivery.export(events(2)) is False
    assert len(rig.server.seen) == 3
    stats = rig.stats()
    assert (stats.retried, stats.sent, stats.backlog, stats.dead_lettered) == (2, 0, 2, 0)
    assert stats.dropped_total == 0


def test_retry_after_beyond_deadline_parks_without_waiting(build: Callable[..., Rig]) -> None:
    """A Retry-After longer than the export deadline parks at once instead of sleeping."""
    rig = build(script=[(503, {}, {"Retry-After": "60"})], export_timeout=5)
    assert rig.delivery.export(events(1)) is False
    assert len(rig.server.seen) == 1
    assert rig.stats().backlog == 1
    assert rig.stats().retried == 0


# -- refused for good ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, VibefollowError),
        (404, VibefollowError),
        (409, ValidationError),
        (413, VibefollowError),
        (422, ValidationError),
    ],
)
def test_client_error_dead_lettered_not_retried(
    build: Callable[..., Rig], status: int, error_type: type[VibefollowError]
) -> None:
    """A 4xx (other than 401/403/429) dead-letters the batch at once and tells on_error."""
    rig = build(script=[status])
    batch = events(3)
    assert rig.delivery.export(batch) is True
    assert len(rig.server.seen) == 1
    stats = rig.stats()
    assert (stats.dead_lettered, stats.retried, stats.sent, stats.backlog) == (3, 0, 0, 0)
    ((error, reported),) = rig.reported
    assert type(error) is error_type
    assert error.status == status
    assert error.code == f"code_{status}"
    assert reported == batch


def test_poison_event_dropped_rest_resent(build: Callable[..., Rig]) -> None:
    """A 422 naming events[1] dead-letters that event; the rest go as a new request."""
    rig = build(script=[invalid("events[1].name")])
    batch = events(3)
    assert rig.delivery.export(batch) is True
    first, second = rig.server.seen
    assert first.event_ids == ["e0", "e1", "e2"]
    assert second.event_ids == ["e0", "e2"]
    assert second.key != first.key
    assert second.key == idempotency_key(EVENTS_PATH, ["e0", "e2"])
    ((error, reported),) = rig.reported
    assert isinstance(error, ValidationError)
    assert error.field == "events[1].name"
    assert ids(reported) == ["e1"]
    stats = rig.stats()
    assert (stats.sent, stats.dead_lettered, stats.backlog) == (2, 1, 0)


def test_two_poison_events_removed_one_at_a_time(build: Callable[..., Rig]) -> None:
    """Each further 422 removes the event it names from the shrinking request."""
    rig = build(script=[invalid("events[0].name"), invalid("events[1].properties")])
    rig.delivery.export(events(3))
    assert [s.event_ids for s in rig.server.seen] == [
        ["e0", "e1", "e2"],
        ["e1", "e2"],
        ["e1"],
    ]
    assert rig.reported_ids() == ["e0", "e2"]
    assert (rig.stats().sent, rig.stats().dead_lettered) == (1, 2)


def test_422_with_out_of_range_index_dead_letters_batch(build: Callable[..., Rig]) -> None:
    """A 422 pointing at no event of the request dead-letters the whole request."""
    rig = build(script=[invalid("events[7].name")])
    rig.delivery.export(events(2))
    assert len(rig.server.seen) == 1
    assert rig.stats().dead_lettered == 2


def test_rest_after_poison_parked_then_resent_without_poison(build: Callable[..., Rig]) -> None:
    """If the re-sent rest is parked, the next export sends only the rest, not the poison."""
    rig = build(script=[invalid("events[1].name"), (503, {}, {"Retry-After": "600"})])
    assert rig.delivery.export(events(3)) is False
    assert rig.stats().backlog == 2
    rig.clock.now += 600  # the Retry-After holds every request back until it passes
    assert rig.delivery.export([]) is True
    assert [s.event_ids for s in rig.server.seen] == [
        ["e0", "e1", "e2"],
        ["e0", "e2"],
        ["e0", "e2"],
    ]
    assert rig.server.seen[1].key == rig.server.seen[2].key
    assert rig.reported_ids() == ["e1"]
    stats = rig.stats()
    assert (stats.sent, stats.dead_lettered, stats.backlog) == (2, 1, 0)


# -- auth -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_parks_and_stops_sending(
    build: Callable[..., Rig], status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """401/403 parks every pending request, sends nothing more, and logs one error."""
    rig = build(script=[status], batch_size=2)
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        assert rig.delivery.export(events(5)) is False
        assert rig.delivery.export(events(1, start=5)) is False
        rig.clock.now += AUTH_PAUSE / 2
        assert rig.delivery.export([]) is False
    assert len(rig.server.seen) == 1
    stats = rig.stats()
    assert (stats.backlog, stats.sent, stats.retried, stats.dead_lettered) == (6, 0, 0, 0)
    assert stats.dropped_total == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "VIBEFOLLOW_API_KEY" in errors[0].getMessage()
    assert rig.reported == []


def test_auth_pause_ends_and_backlog_delivered_with_same_keys(build: Callable[..., Rig]) -> None:
    """After the auth pause the parked requests go out with their original keys."""
    rig = build(script=[401], batch_size=2)
    rig.delivery.export(events(4))
    refused_key = rig.server.seen[0].key
    rig.clock.now += AUTH_PAUSE + 1
    assert rig.delivery.export([]) is True
    assert [s.event_ids for s in rig.server.seen[1:]] == [["e0", "e1"], ["e2", "e3"]]
    assert rig.server.seen[1].key == refused_key
    assert (rig.stats().sent, rig.stats().backlog) == (4, 0)


def test_backlog_bounded_by_max_queue_size(build: Callable[..., Rig]) -> None:
    """Parking beyond max_queue_size evicts the oldest, counted as backlog_full."""
    rig = build(script=[401], batch_size=1, max_queue_size=3)
    rig.delivery.export(events(5))
    stats = rig.stats()
    assert stats.backlog == 3
    assert dict(stats.dropped) == {"backlog_full": 2}
    assert rig.reported_ids() == ["e0", "e1"]
    assert all(isinstance(error, UndeliveredError) for error, _ in rig.reported)
    rig.clock.now += AUTH_PAUSE + 1
    rig.delivery.export([])
    assert [s.event_ids for s in rig.server.seen[1:]] == [["e2"], ["e3"], ["e4"]]


def test_backlog_bound_holds_across_exports(build: Callable[..., Rig]) -> None:
    """Repeated exports while paused never let the backlog grow past max_queue_size."""
    rig = build(script=[401], batch_size=2, max_queue_size=4)
    for start in range(0, 12, 2):
        rig.delivery.export(events(2, start=start))
        assert rig.delivery.backlog_size <= 4
    stats = rig.stats()
    assert stats.backlog == 4
    assert stats.dropped["backlog_full"] == 8


# -- deadline --------------------------------------------------------------------


def test_deadline_exhausted_parks_then_next_export_delivers(build: Callable[..., Rig]) -> None:
    """Time running out parks the request; the next export sends it first, same key and body."""
    rig = build(export_timeout=5)

    def slow_failure(request: httpx.Request) -> httpx.Response:
        rig.clock.now += 10  # the attempt used up the whole export deadline
        return _answer(503)

    rig.server.script = [slow_failure]
    assert rig.delivery.export(events(2)) is False
    assert rig.stats().backlog == 2
    assert rig.delivery.export(events(1, start=2)) is True
    first, resent, fresh = rig.server.seen
    assert (resent.key, resent.body) == (first.key, first.body)
    assert fresh.event_ids == ["e2"]
    stats = rig.stats()
    assert (stats.sent, stats.backlog, stats.dropped_total) == (3, 0, 0)


def test_timeout_argument_overrides_export_timeout(build: Callable[..., Rig]) -> None:
    """export(timeout=...) sets this call's deadline."""
    rig = build(script=[(503, {}, {"Retry-After": "20"})], export_timeout=60)
    assert rig.delivery.export(events(1), timeout=10) is False
    assert len(rig.server.seen) == 1


# -- shutdown --------------------------------------------------------------------


def test_close_counts_leftovers_as_shutdown(build: Callable[..., Rig]) -> None:
    """close() drops what is still parked, counted as shutdown and reported."""
    rig = build(script=[401], batch_size=2)
    rig.delivery.export(events(3))
    rig.delivery.close()
    stats = rig.stats()
    assert (stats.backlog, stats.sent) == (0, 0)
    assert dict(stats.dropped) == {"shutdown": 3}
    assert sorted(rig.reported_ids()) == ["e0", "e1", "e2"]
    assert all(isinstance(error, UndeliveredError) for error, _ in rig.reported)
    rig.delivery.close()
    assert rig.stats().dropped["shutdown"] == 3


def test_close_with_nothing_parked_drops_nothing(build: Callable[..., Rig]) -> None:
    """close() after a clean export counts no drops."""
    rig = build()
    rig.delivery.export(events(2))
    rig.delivery.close()
    assert rig.stats().dropped_total == 0
    assert rig.reported == []


# -- never raising ---------------------------------------------------------------


def test_unserializable_event_dropped_alone(build: Callable[..., Rig]) -> None:
    """An event that is not strict JSON is dropped and counted; the others are sent."""
    rig = build()
    bad = Event("x", "usr_1", {"nan": float("nan"), "id": "bad"}, WHEN, "bad")
    batch = [*events(1), bad, *events(1, start=1)]
    assert rig.delivery.export(batch) is True
    assert rig.server.seen[0].event_ids == ["e0", "e1"]
    assert dict(rig.stats().dropped) == {"unserializable": 1}
    assert rig.reported_ids() == ["bad"]


def test_oversized_event_dropped_alone(build: Callable[..., Rig]) -> None:
    """An event over MAX_EVENT_BYTES is dropped as event_too_large; the others are sent."""
    rig = build()
    huge = Event("x", "usr_1", {"blob": "y" * 70_000, "id": "huge"}, WHEN, "huge")
    rig.delivery.export([huge, *events(1)])
    assert rig.server.seen[0].event_ids == ["e0"]
    assert dict(rig.stats().dropped) == {"event_too_large": 1}


def test_failing_on_error_callback_is_contained(caplog: pytest.LogCaptureFixture) -> None:
    """An on_error callback that raises is logged; export still returns normally."""

    def explode(exc: VibefollowError, events: Sequence[Event]) -> None:
        raise RuntimeError("callback bug")

    server = FakeServer([400])
    delivery = Delivery(
        make_settings(),
        Counters(),
        on_error=explode,
        transport=httpx.MockTransport(server),
        clock=Clock(),
        rng=NoJitter(),
    )
    with caplog.at_level(logging.ERROR, logger="vf_otel"):
        assert delivery.export(events(1)) is True
    delivery.close()
    assert "on_error callback raised" in caplog.text


# -- the key stays secret --------------------------------------------------------


def test_api_key_never_logged_or_in_errors(
    build: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    """Across every failure kind the key is in no log line and no error's str or repr."""
    script: list[Action] = [
        400,
        invalid("events[0].name"),
        httpx.ConnectError,
        httpx.ReadTimeout,
        429,
        500,
        401,
    ]
    rig = build(script=script, batch_size=2, max_retries=1, max_queue_size=2)
    with caplog.at_level(logging.DEBUG):
        rig.delivery.export(events(2))
        rig.delivery.export(events(2, start=2))
        rig.delivery.export(events(2, start=4))
        rig.delivery.export(events(2, start=6))
        rig.delivery.export(events(2, start=8))
        rig.delivery.close()
    kinds = {type(error) for error, _ in rig.reported}
    assert {VibefollowError, ValidationError, UndeliveredError} <= kinds
    assert rig.stats().retried > 0
    assert caplog.records
    assert API_KEY not in caplog.text
    assert all(API_KEY not in str(r.args) for r in caplog.records)
    for error, _ in rig.reported:
        assert API_KEY not in str(error)
        assert API_KEY not in repr(error)
    assert API_KEY not in repr(rig.delivery._settings)


@pytest.mark.parametrize(
    "error",
    [
        AuthError("HTTP 401 auth_required", status=401, code="auth_required"),
        RateLimitError("HTTP 429", retry_after=1.0),
        ServerError("HTTP 503", status=503),
        NetworkError("ConnectError: connection refused"),
    ],
)
def test_error_reprs_carry_status_and_code(error: VibefollowError) -> None:
    """Every error's repr shows its class, message, status and code."""
    text = repr(error)
    assert text.startswith(type(error).__name__ + "(")
    assert f"status={error.status}" in text


# -- containment ---------------------------------------------------------------


def test_unencodable_event_is_dropped_alone(build: Callable[..., Rig]) -> None:
    """An event that fails to encode (any exception) is dropped as unserializable; others land."""
    rig = build()
    broken = Event("feature_used", "usr_1", {"feature": "x"}, None, "bad")  # type: ignore[arg-type]
    good = events(2)
    assert rig.delivery.export([good[0], broken, good[1]])
    (seen,) = rig.server.seen
    assert [e["properties"]["id"] for e in json.loads(seen.body)["events"]] == ["e0", "e1"]
    stats = rig.stats()
    assert (stats.sent, dict(stats.dropped)) == (2, {"unserializable": 1})
    assert rig.reported_ids() == ["bad"]


def test_internal_failure_is_counted_not_raised(build: Callable[..., Rig]) -> None:
    """A bug while sending one request drops its events as internal_error; export still returns."""

    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug, not a network error")

    rig = build([explode])
    assert rig.delivery.export(events(3)) is True
    assert dict(rig.stats().dropped) == {"internal_error": 3}
    assert len(rig.reported_ids()) == 3


def test_concurrent_deadline_caps_are_independent(build: Callable[..., Rig]) -> None:
    """Two nested cap_deadline blocks each keep their own cap until they exit."""
    rig = build()
    delivery = rig.delivery
    with delivery.cap_deadline(50.0):
        with delivery.cap_deadline(10.0):
            assert delivery._effective_deadline(100.0) == 10.0
        assert delivery._effective_deadline(100.0) == 50.0
    assert delivery._effective_deadline(100.0) == 100.0


def test_parked_after_close_is_counted_as_shutdown(build: Callable[..., Rig]) -> None:
    """An export racing with close() counts what it cannot send as dropped, never holds it."""
    rig = build()
    rig.delivery.close()
    assert rig.delivery.export(events(2))
    assert rig.server.seen == []
    assert dict(rig.stats().dropped) == {"shutdown": 2}
    assert rig.stats().backlog == 0
