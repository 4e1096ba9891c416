"""The attempt loop over httpx.MockTransport: headers, retries, refusals, parking, the circuit.

Nothing here sleeps: jitter is pinned to zero, the clock is driven by hand, and the
loop's ``sleep`` only moves that clock, so a retry happens at once and a long
Retry-After runs into the deadline instead.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from vf_otel._config import resolve_settings
from vf_otel._delivery.attempt import (
    AUTH_PAUSE,
    MIN_ATTEMPT,
    WRONG_URL_PAUSE,
    Attempts,
    Outcome,
)
from vf_otel._delivery.client import NOT_THE_API, Client, _Inflate
from vf_otel._delivery.ledger import Ledger
from vf_otel._delivery.policy import (
    COOLDOWN_BASE,
    FAILURE_THRESHOLD,
    RETRY_AFTER_CAP,
    CircuitBreaker,
    Timing,
)
from vf_otel._delivery.wire import (
    EVENTS_PATH,
    Request,
    encode_event,
    events_request,
    user_requests,
)
from vf_otel._errors import (
    AuthError,
    NetworkError,
    RateLimitError,
    ServerError,
    ValidationError,
    VibefollowError,
)
from vf_otel._event.model import Event, idempotency_key

API_KEY = "sk_live_UNITtest0123456789abcdefghijklmnop"
WHEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ACCEPTED = {"data": {"accepted": True}}
#: The deadline every attempt gets unless a test says otherwise (seconds from now).
DEADLINE = 30.0
BROKEN_GZIP = "broken_gzip"

# A status, (status, JSON body, headers), an httpx exception class to raise,
# BROKEN_GZIP (a 200 whose gzip body cannot be decoded), or a handler.
Action = (
    int
    | str
    | tuple[int, dict[str, Any], dict[str, str]]
    | type[Exception]
    | Callable[[httpx.Request], httpx.Response]
)


class Clock:
    """A monotonic clock the test (or the fake server) moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NoJitter(random.Random):
    """Full jitter pinned to its lower end: every backoff is 0 s."""

    def uniform(self, a: float, b: float) -> float:
        return a


class TopJitter(random.Random):
    """Full jitter pinned to its upper end: every backoff is the policy's ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


class HandSleep:
    """The loop's wait: records it and moves the hand clock by it; interrupted only if told."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waits: list[float] = []
        self.during: Callable[[], None] = lambda: None
        self.interrupted = False

    def __call__(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.during()
        self.clock.now += seconds
        return self.interrupted


@dataclass
class Seen:
    """One request as the fake server received it."""

    method: str
    path: str
    headers: httpx.Headers
    body: bytes
    timeout: dict[str, float]

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
        timeout = dict(request.extensions.get("timeout", {}))
        self.seen.append(
            Seen(request.method, request.url.path, request.headers, request.read(), timeout)
        )
        action: Action = self.script.pop(0) if self.script else 202
        if isinstance(action, type):
            raise action("connection refused")
        if action == BROKEN_GZIP:
            headers = {"content-encoding": "gzip"}
            # stream=, not content=: the client decodes (and fails) as it would off the wire.
            return httpx.Response(200, headers=headers, stream=httpx.ByteStream(b"not gzip"))
        if isinstance(action, int):
            return answer(action)
        if isinstance(action, tuple):
            status, body, headers = action
            return httpx.Response(status, json=body, headers=headers)
        assert callable(action)
        return action(request)


def answer(status: int) -> httpx.Response:
    """The API's answer with ``status``: accepted, or an error envelope with code_<status>."""
    if status < 300:
        return httpx.Response(status, json=ACCEPTED)
    body = {"errors": [{"code": f"code_{status}", "message": "nope"}]}
    return httpx.Response(status, json=body)


def invalid(field_path: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A 422 answer naming one field."""
    error = {"code": "validation_failed", "message": "invalid", "field": field_path}
    return (422, {"errors": [error]}, {})


def retry_after(status: int, seconds: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """An error answer carrying a Retry-After header."""
    body = {"errors": [{"code": f"code_{status}", "message": "later"}]}
    return (status, body, {"Retry-After": seconds})


@dataclass
class Rig:
    """An Attempts loop wired to a fake server, a hand clock, a circuit and a ledger."""

    attempts: Attempts
    server: FakeServer
    clock: Clock
    sleep: HandSleep
    circuit: CircuitBreaker
    ledger: Ledger
    stop: threading.Event
    reported: list[tuple[VibefollowError, list[Event]]]

    def run(self, request: Request, timeout: float = DEADLINE) -> tuple[Outcome, Request]:
        """Attempt ``request`` with a deadline ``timeout`` seconds from now."""
        return self.attempts.run(request, self.clock() + timeout)

    def stats(self) -> Any:
        return self.ledger.snapshot(queued=0, refused={})

    def reported_ids(self) -> list[str]:
        return [e.event_id for _, events in self.reported for e in events]


@pytest.fixture
def build() -> Iterator[Callable[..., Rig]]:
    """Make rigs with a server script and settings; close their HTTP clients afterwards."""
    clients: list[Client] = []

    def factory(
        script: Sequence[Action] = (), *, rng: random.Random | None = None, **options: Any
    ) -> Rig:
        settings = resolve_settings(
            environ={}, api_key=API_KEY, base_url="http://127.0.0.1:9", **options
        )
        server = FakeServer(list(script))
        clock = Clock()
        sleep = HandSleep(clock)
        reported: list[tuple[VibefollowError, list[Event]]] = []
        ledger = Ledger(lambda exc, events: reported.append((exc, list(events))))
        client = Client(settings, httpx.MockTransport(server))
        clients.append(client)
        circuit = CircuitBreaker(clock=clock)
        stop = threading.Event()
        attempts = Attempts(
            settings,
            client,
            circuit,
            ledger,
            stop=stop,
            timing=Timing(now=clock),
            rng=rng or NoJitter(),
            sleep=sleep,
        )
        return Rig(attempts, server, clock, sleep, circuit, ledger, stop, reported)

    yield factory
    for client in clients:
        client.close()


def state(circuit: CircuitBreaker) -> str:
    """The circuit's state, read afresh (a call, so type checkers do not pin it)."""
    return circuit.state


def events(count: int, *, start: int = 0, traits: dict[str, Any] | None = None) -> list[Event]:
    """Events ``e<start>``... whose id is also in their properties, for easy checking."""
    return [
        Event("feature_used", "usr_1", {"feature": "x", "id": f"e{i}"}, WHEN, f"e{i}", traits)
        for i in range(start, start + count)
    ]


def batch(count: int, *, start: int = 0) -> Request:
    """An /events/batch request for ``events(count, start=start)``."""
    chosen = events(count, start=start)
    return events_request(chosen, [encode_event(e) for e in chosen])


def ids(items: Sequence[Event]) -> list[str]:
    """The event ids, in order."""
    return [e.event_id for e in items]


# -- the request ---------------------------------------------------------------------


def test_request_headers_and_body(build: Callable[..., Rig]) -> None:
    """A batch is POSTed to /api/v1/events/batch with auth, JSON, UA and a v4-shaped key."""
    rig = build()
    request = batch(3)
    assert rig.run(request) == ("sent", request)
    (seen,) = rig.server.seen
    assert seen.method == "POST"
    assert seen.path == "/api/v1/events/batch"
    assert seen.headers["Authorization"] == f"Bearer {API_KEY}"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"].startswith("vf-otel/")
    assert seen.key == idempotency_key(EVENTS_PATH, ["e0", "e1", "e2"])
    key = uuid.UUID(seen.key)
    assert (key.version, key.variant, str(key)) == (4, uuid.RFC_4122, seen.key)
    assert seen.body == request.body
    assert json.loads(seen.body) == {"events": [e.to_wire() for e in events(3)]}
    stats = rig.stats()
    assert (stats.sent, stats.retried, stats.dead_lettered, stats.users_sent) == (3, 0, 0, 0)


def test_user_upsert_posted_to_users_and_counted_apart(build: Callable[..., Rig]) -> None:
    """A user upsert goes to /api/v1/users and counts as users_sent, not as sent events."""
    rig = build()
    (upsert,) = user_requests(events(2, traits={"email": "a@b.c", "plan": "pro"}))
    assert rig.run(upsert) == ("sent", upsert)
    (seen,) = rig.server.seen
    assert seen.path == "/api/v1/users"
    assert json.loads(seen.body) == {
        "external_user_id": "usr_1",
        "email": "a@b.c",
        "traits": {"plan": "pro"},
    }
    assert (rig.stats().users_sent, rig.stats().sent) == (1, 0)


def test_no_authorization_header_without_a_key(build: Callable[..., Rig]) -> None:
    """A client built without an API key sends no Authorization header at all."""
    rig = build()
    settings = resolve_settings(environ={}, base_url="http://127.0.0.1:9")
    client = Client(settings, httpx.MockTransport(rig.server))
    try:
        assert client.post(batch(1), 5.0) is None
    finally:
        client.close()
    assert "Authorization" not in rig.server.seen[0].headers


@pytest.mark.parametrize(("left", "expected"), [(30.0, 10.0), (4.0, 4.0)])
def test_request_timeout_is_capped_by_the_deadline(
    build: Callable[..., Rig], left: float, expected: float
) -> None:
    """Each request's timeout is the smaller of ``timeout`` and the time left to the deadline."""
    rig = build(timeout=10.0)
    rig.run(batch(1), timeout=left)
    assert rig.server.seen[0].timeout["read"] == expected


# -- retries -----------------------------------------------------------------------

RETRYABLE: list[Action] = [
    500,
    502,
    503,
    504,
    507,
    520,
    522,
    599,
    429,
    httpx.ConnectError,
    httpx.ReadTimeout,
    httpx.RemoteProtocolError,
    BROKEN_GZIP,
]


def action_id(action: Action) -> str:
    """A readable test id for a scripted answer."""
    return action.__name__ if isinstance(action, type) else str(action)


@pytest.mark.parametrize("failure", RETRYABLE, ids=action_id)
def test_retry_keeps_key_and_body(build: Callable[..., Rig], failure: Action) -> None:
    """Network errors, 429 and every 5xx are retried with the same key and identical bytes."""
    rig = build(script=[failure, failure])
    request = batch(3)
    assert rig.run(request) == ("sent", request)
    first, second, third = rig.server.seen
    assert first.key == second.key == third.key == request.key
    assert first.body == second.body == third.body == request.body
    stats = rig.stats()
    assert (stats.sent, stats.retried, stats.dead_lettered) == (3, 2, 0)
    assert stats.dropped_total == 0
    assert rig.reported == []
    assert rig.sleep.waits == [0.0, 0.0]


def test_broken_gzip_body_is_a_network_error_not_an_internal_one(
    build: Callable[..., Rig],
) -> None:
    """An undecodable (gzip) answer is retried like a lost answer, never counted internal_error."""
    rig = build(script=[BROKEN_GZIP], max_retries=0)
    request = batch(2)
    assert rig.run(request) == ("parked", request)
    assert isinstance(rig.ledger.last_error, NetworkError)
    assert "decoded" in str(rig.ledger.last_error)
    assert rig.circuit.failing
    assert rig.stats().dropped_total == 0
    assert rig.run(request) == ("sent", request)


def encoded(status: int, body: bytes, encoding: str, wbits: int = 31) -> Action:
    """An answer whose body is compressed (``wbits``: zlib's) and says ``encoding``."""
    pack = zlib.compressobj(6, zlib.DEFLATED, wbits)
    data = pack.compress(body) + pack.flush()
    headers = {"content-encoding": encoding, "content-type": "application/json"}
    # stream=, not content=: the client reads and decodes it as it would off the wire.
    return lambda _request: httpx.Response(status, headers=headers, stream=httpx.ByteStream(data))


@pytest.mark.parametrize(
    ("encoding", "wbits"),
    [
        ("gzip", zlib.MAX_WBITS | 16),
        ("x-gzip", zlib.MAX_WBITS | 16),
        ("deflate", zlib.MAX_WBITS),  # with the zlib wrapper, as the RFC says
        ("deflate", -zlib.MAX_WBITS),  # raw, as many servers send it
        ("identity, gzip", zlib.MAX_WBITS | 16),
    ],
)
def test_a_compressed_answer_is_decoded_though_identity_was_asked(
    build: Callable[..., Rig], encoding: str, wbits: int
) -> None:
    """A server (or proxy) that compresses anyway: gzip and deflate answers are read as
    httpx reads them (an accepted envelope is sent; a 400's error text is understood)."""
    envelope = json.dumps(ACCEPTED).encode()
    rig = build(script=[encoded(202, envelope, encoding, wbits)])
    assert rig.run(batch(2))[0] == "sent"
    refusal = {"errors": [{"code": "bad_thing", "message": "the properties are wrong"}]}
    rig = build(script=[encoded(400, json.dumps(refusal).encode(), encoding, wbits)])
    assert rig.run(batch(1))[0] == "refused"
    assert "the properties are wrong" in str(rig.ledger.last_error)


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, gzip", "compress"])
def test_an_answer_in_a_coding_not_decoded_here_is_read_as_it_is(
    build: Callable[..., Rig], encoding: str
) -> None:
    """br, zstd, several at once: not decoded (none is bounded as gzip is here), read as
    they are, as httpx reads a coding it does not know: a 2xx that is not the API's
    envelope then, retried; the next try lands."""
    rig = build(script=[encoded(202, json.dumps(ACCEPTED).encode(), encoding)], max_retries=0)
    request = batch(2)
    assert rig.run(request) == ("parked", request)
    assert isinstance(rig.ledger.last_error, NetworkError)
    assert rig.ledger.last_error.code == NOT_THE_API
    assert rig.run(request) == ("sent", request)


@pytest.mark.parametrize("encoding", ["none", "utf-8", "binary", "br"])
def test_a_coding_a_proxy_made_up_leaves_the_answer_as_it_is(
    build: Callable[..., Rig], encoding: str
) -> None:
    """A misconfigured proxy's ``Content-Encoding: none`` on a plain body: the answer is
    read as it is (sent), and a status with such a label still says what it says (a 429's
    Retry-After is honoured)."""
    headers = {"content-encoding": encoding, "content-type": "application/json"}
    limited = {**headers, "retry-after": "7"}
    plain = json.dumps(ACCEPTED).encode()
    rig = build(
        script=[
            lambda _r: httpx.Response(429, headers=limited, stream=httpx.ByteStream(b"")),
            lambda _r: httpx.Response(202, headers=headers, stream=httpx.ByteStream(plain)),
        ]
    )
    assert rig.run(batch(1))[0] == "sent"
    assert rig.sleep.waits == [7.0]


def test_inflate_never_makes_more_than_it_is_asked_for() -> None:
    """_Inflate's bound, trailing bytes and corruption, fed a chunk at a time."""
    pack = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    bomb = pack.compress(b"0" * (16 * 1024 * 1024)) + pack.flush()
    inflate = _Inflate.of("gzip")
    assert inflate is not None
    assert len(inflate.feed(bomb, 100)) == 100  # 16 MB in it, at most what was asked for out
    # After the end of a body: bytes decode to nothing and are not kept.
    small = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    body = small.compress(b"{}") + small.flush()
    inflate = _Inflate.of("gzip")
    assert inflate is not None
    assert inflate.feed(body, 1000) == b"{}"
    for _ in range(100):
        assert inflate.feed(b"\0" * 65536, 1000) == b""
    assert len(inflate._zlib.unused_data) == 0
    # deflate: the raw fallback is for the first chunk only; corruption later is an error.
    deflate = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS)
    data = deflate.compress(bytes(range(256)) * 64) + deflate.flush()
    inflate = _Inflate.of("deflate")
    assert inflate is not None
    assert inflate.feed(data[:20], 1 << 20) is not None
    with pytest.raises(httpx.DecodingError):
        inflate.feed(b"\xff" * 64, 1 << 20)


def test_retries_back_off_exponentially(build: Callable[..., Rig]) -> None:
    """The waits between retries follow the policy: 0.5, 1, 2 s at the top of the jitter."""
    rig = build(script=[503, 503, 503], rng=TopJitter())
    assert rig.run(batch(1))[0] == "sent"
    assert rig.sleep.waits == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_waited_in_full_with_the_circuit_held(
    build: Callable[..., Rig], status: int
) -> None:
    """A Retry-After longer than the backoff is the wait, and every request is held meanwhile."""
    rig = build(script=[retry_after(status, "3")])
    held: list[float] = []
    rig.sleep.during = lambda: held.append(rig.circuit.seconds_until_ready())
    assert rig.run(batch(1))[0] == "sent"
    assert rig.sleep.waits == [3.0]
    assert held == [3.0]
    assert len(rig.server.seen) == 2
    assert rig.stats().retried == 1


def test_retry_after_beyond_the_deadline_parks_without_waiting(
    build: Callable[..., Rig],
) -> None:
    """A Retry-After past the deadline parks at once and holds every request until it passes."""
    rig = build(script=[retry_after(503, "60")])
    request = batch(1)
    assert rig.run(request, timeout=5.0) == ("parked", request)
    assert len(rig.server.seen) == 1
    assert rig.sleep.waits == []
    assert rig.stats().retried == 0
    assert rig.circuit.seconds_until_ready() == 60.0
    assert rig.run(batch(1, start=1)) == ("parked", batch(1, start=1))
    assert len(rig.server.seen) == 1
    rig.clock.now += 60.0
    assert rig.run(request)[0] == "sent"
    assert rig.server.seen[1].key == rig.server.seen[0].key


def test_huge_retry_after_holds_at_most_the_cap(build: Callable[..., Rig]) -> None:
    """A Retry-After of a billion seconds holds sending for RETRY_AFTER_CAP, not forever."""
    rig = build(script=[retry_after(429, "1000000000")])
    assert rig.run(batch(1))[0] == "parked"
    assert rig.circuit.seconds_until_ready() == RETRY_AFTER_CAP


@pytest.mark.parametrize("failure", [503, httpx.ConnectError], ids=["503", "connect"])
def test_retry_budget_spent_parks(build: Callable[..., Rig], failure: Action) -> None:
    """After max_retries retries the request is parked as it is: not dropped or dead-lettered."""
    rig = build(script=[failure] * 10, max_retries=2)
    request = batch(2)
    assert rig.run(request) == ("parked", request)
    assert len(rig.server.seen) == 3
    stats = rig.stats()
    assert (stats.retried, stats.sent, stats.dead_lettered, stats.dropped_total) == (2, 0, 0, 0)
    assert state(rig.circuit) == "closed"
    assert rig.circuit.failing


def test_no_retries_when_max_retries_is_zero(build: Callable[..., Rig]) -> None:
    """max_retries=0 makes one attempt, then parks."""
    rig = build(script=[503], max_retries=0)
    assert rig.run(batch(1))[0] == "parked"
    assert len(rig.server.seen) == 1
    assert rig.stats().retried == 0


# -- refused for good -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "count", "error_type"),
    [
        (400, 3, VibefollowError),
        (404, 3, VibefollowError),
        (409, 3, ValidationError),
        (413, 1, VibefollowError),
        (422, 1, ValidationError),
    ],
)
def test_client_error_dead_lettered_not_retried(
    build: Callable[..., Rig], status: int, count: int, error_type: type[VibefollowError]
) -> None:
    """A 4xx (not 401/403/429; 413/422 for one event) dead-letters at once and tells on_error."""
    rig = build(script=[status])
    request = batch(count)
    assert rig.run(request) == ("refused", request)
    assert len(rig.server.seen) == 1
    stats = rig.stats()
    assert (stats.dead_lettered, stats.retried, stats.sent) == (count, 0, 0)
    ((error, reported),) = rig.reported
    assert type(error) is error_type
    assert (error.status, error.code) == (status, f"code_{status}")
    assert ids(reported) == ids(request.events)
    assert (state(rig.circuit), rig.circuit.failing) == ("closed", False)  # the API answered


def test_poison_event_dropped_rest_resent(build: Callable[..., Rig]) -> None:
    """A 422 naming events[1] dead-letters that event alone; the rest go with a new key."""
    rig = build(script=[invalid("events[1].name")])
    outcome, request = rig.run(batch(3))
    assert outcome == "sent"
    assert ids(request.events) == ["e0", "e2"]
    first, second = rig.server.seen
    assert first.event_ids == ["e0", "e1", "e2"]
    assert second.event_ids == ["e0", "e2"]
    assert second.key != first.key
    assert second.key == request.key == idempotency_key(EVENTS_PATH, ["e0", "e2"])
    ((error, reported),) = rig.reported
    assert isinstance(error, ValidationError)
    assert error.field == "events[1].name"
    assert ids(reported) == ["e1"]
    stats = rig.stats()
    assert (stats.sent, stats.dead_lettered, stats.retried) == (2, 1, 0)


def test_two_poison_events_removed_one_at_a_time(build: Callable[..., Rig]) -> None:
    """Each further 422 removes the event it names from the shrinking request."""
    rig = build(script=[invalid("events[0].name"), invalid("events[1].properties")])
    rig.run(batch(3))
    assert [s.event_ids for s in rig.server.seen] == [["e0", "e1", "e2"], ["e1", "e2"], ["e1"]]
    assert rig.reported_ids() == ["e0", "e2"]
    assert (rig.stats().sent, rig.stats().dead_lettered) == (1, 2)


def test_422_naming_the_only_event_dead_letters_it(build: Callable[..., Rig]) -> None:
    """A 422 for a one-event request dead-letters that event, whatever field it names."""
    rig = build(script=[invalid("events[0].name")])
    assert rig.run(batch(1))[0] == "refused"
    assert len(rig.server.seen) == 1
    assert rig.stats().dead_lettered == 1


@pytest.mark.parametrize(
    "field_path",
    [
        "events[2].name",
        "events.2.name",
        "/events/2/name",
        "events[2]",
        "events.2",
        "/events/2",
        "$.events[2].name",
        "body.events.2.name",
    ],
)
def test_422_field_path_forms_name_the_event(build: Callable[..., Rig], field_path: str) -> None:
    """Every field-path form an API may use names the event: it alone is dead-lettered."""
    rig = build(script=[invalid(field_path)])
    outcome, request = rig.run(batch(4))
    assert outcome == "sent"
    assert rig.reported_ids() == ["e2"]
    assert ids(request.events) == ["e0", "e1", "e3"]
    assert (rig.stats().sent, rig.stats().dead_lettered) == (3, 1)


def test_422_location_list_and_index_forms_name_the_event(build: Callable[..., Rig]) -> None:
    """A field given as a location list, or an entry with an index, names the event too."""
    errors = [
        {"code": "validation_failed", "message": "bad", "field": ["body", "events", 1, "name"]},
        {"code": "validation", "message": "bad", "index": 3},
    ]
    rig = build(script=[(422, {"errors": errors}, {})])
    assert rig.run(batch(5))[0] == "sent"
    assert rig.reported_ids() == ["e1", "e3"]
    assert [s.event_ids for s in rig.server.seen][1] == ["e0", "e2", "e4"]


def test_422_every_error_in_the_envelope_is_read(build: Callable[..., Rig]) -> None:
    """A 422 naming three events removes all three at once: one more request, not three."""
    errors = [
        {"code": "validation_failed", "message": "required", "field": f"events[{i}].name"}
        for i in (4, 0, 2)
    ]
    rig = build(script=[(422, {"errors": errors}, {})])
    outcome, _ = rig.run(batch(6))
    assert outcome == "sent"
    assert [s.event_ids for s in rig.server.seen] == [
        ["e0", "e1", "e2", "e3", "e4", "e5"],
        ["e1", "e3", "e5"],
    ]
    ((error, reported),) = rig.reported
    assert isinstance(error, ValidationError)
    assert error.fields == ("events[4].name", "events[0].name", "events[2].name")
    assert error.field == "events[4].name"
    assert "and 2 more errors" in str(error)
    assert ids(reported) == ["e0", "e2", "e4"]
    assert (rig.stats().sent, rig.stats().dead_lettered) == (3, 3)


@pytest.mark.parametrize("field_path", ["events[7].name", "name", None])
def test_422_naming_no_event_bisects_and_sends_the_good_halves(
    build: Callable[..., Rig], field_path: str | None
) -> None:
    """A 422 that names no event of the request halves it (new keys); nothing is dropped."""
    error: dict[str, Any] = {"code": "validation_failed", "message": "invalid"}
    if field_path is not None:
        error["field"] = field_path
    rig = build(script=[(422, {"errors": [error]}, {})])
    outcome, request = rig.run(batch(4))
    assert outcome == "sent"
    seen = [s.event_ids for s in rig.server.seen]
    assert seen == [["e0", "e1", "e2", "e3"], ["e0", "e1"], ["e2", "e3"]]
    keys = [s.key for s in rig.server.seen]
    assert keys[1:] == [idempotency_key(EVENTS_PATH, ["e0", "e1"]), request.key]
    assert len(set(keys)) == 3
    assert (rig.stats().sent, rig.stats().dead_lettered) == (4, 0)
    assert rig.reported == []


def test_bisection_finds_the_one_bad_event(build: Callable[..., Rig]) -> None:
    """A server refusing any batch holding e5, naming nothing: only e5 is dead-lettered."""

    def refuse_e5(request: httpx.Request) -> httpx.Response:
        if "e5" in [e["properties"]["id"] for e in json.loads(request.read())["events"]]:
            return httpx.Response(422, json={"errors": [{"code": "validation_failed"}]})
        return answer(202)

    rig = build(script=[refuse_e5] * 100)
    outcome, _ = rig.run(batch(8))
    assert outcome == "sent"
    assert rig.reported_ids() == ["e5"]
    assert (rig.stats().sent, rig.stats().dead_lettered) == (7, 1)
    # 8 -> 4+4, 4 -> 2+2, 2 -> 1+1: at most 2·log2(8)+1 requests, not one per event.
    assert len(rig.server.seen) <= 7
    delivered = [s.event_ids for s in rig.server.seen if "e5" not in s.event_ids]
    assert sorted(i for ids in delivered for i in ids) == ["e0", "e1", "e2", "e3", "e4", "e6", "e7"]


def test_idempotency_key_reuse_is_not_bisected(build: Callable[..., Rig]) -> None:
    """A 422 idempotency_key_reuse is about the key, not the events: dead-lettered as before."""
    reuse = {"errors": [{"code": "idempotency_key_reuse", "message": "used"}]}
    rig = build(script=[(422, reuse, {})])
    assert rig.run(batch(4))[0] == "refused"
    assert len(rig.server.seen) == 1
    assert rig.stats().dead_lettered == 4


# -- too large: split ---------------------------------------------------------------------


def too_large_answer(
    status: int, body: dict[str, Any]
) -> Callable[[httpx.Request], httpx.Response]:
    """A handler refusing any body over 3 events' worth with ``status`` and ``body``."""

    def handler(request: httpx.Request) -> httpx.Response:
        if len(json.loads(request.read())["events"]) > 3:
            return httpx.Response(status, json=body)
        return answer(202)

    return handler


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (413, {"errors": [{"code": "payload_too_large", "message": "too big"}]}),
        (400, {"errors": [{"code": "bad_request", "message": "Request body exceeds 1 MB"}]}),
        (400, {"errors": [{"code": "request_too_large", "message": "no"}]}),
        (400, {"message": "Request size limit exceeded"}),
    ],
    ids=["413", "400-exceeds", "400-code", "400-no-envelope"],
)
def test_too_large_batch_is_halved_until_it_fits(
    build: Callable[..., Rig], status: int, body: dict[str, Any]
) -> None:
    """A 413 (or a 400 about size) halves the batch, new keys per half, until each fits."""
    rig = build(script=[too_large_answer(status, body)] * 100)
    outcome, _ = rig.run(batch(10))
    assert outcome == "sent"
    accepted = [s for s in rig.server.seen if len(s.event_ids) <= 3]
    landed = [i for s in accepted for i in s.event_ids]
    assert sorted(landed, key=lambda i: int(i[1:])) == [f"e{i}" for i in range(10)]
    assert [len(s.event_ids) for s in rig.server.seen] == [10, 5, 2, 3, 5, 2, 3]
    assert len({s.key for s in rig.server.seen}) == len(rig.server.seen)
    stats = rig.stats()
    assert (stats.sent, stats.dead_lettered, stats.retried, stats.dropped_total) == (10, 0, 0, 0)
    assert rig.reported == []


def test_a_400_not_about_size_is_not_split(build: Callable[..., Rig]) -> None:
    """A 400 that says nothing about size dead-letters the batch: splitting would not help."""
    body = {"errors": [{"code": "invalid_json", "message": "request body is not JSON"}]}
    rig = build(script=[(400, body, {})])
    assert rig.run(batch(4))[0] == "refused"
    assert len(rig.server.seen) == 1


def test_one_event_too_large_alone_is_the_only_one_dead_lettered(
    build: Callable[..., Rig],
) -> None:
    """An event that is refused as too large even alone is dead-lettered; the others land."""

    def refuse_e2(request: httpx.Request) -> httpx.Response:
        if "e2" in [e["properties"]["id"] for e in json.loads(request.read())["events"]]:
            return httpx.Response(413, text="<html><title>413 Too Large</title></html>")
        return answer(202)

    rig = build(script=[refuse_e2] * 100)
    assert rig.run(batch(4))[0] == "sent"
    assert rig.reported_ids() == ["e2"]
    ((error, _),) = rig.reported
    assert error.status == 413
    assert (rig.stats().sent, rig.stats().dead_lettered) == (3, 1)


def test_split_pieces_that_must_wait_park_as_one_request(build: Callable[..., Rig]) -> None:
    """When a piece must wait, it and the pieces after it park as one request of their events."""
    big = {"errors": [{"code": "payload_too_large", "message": "too big"}]}
    rig = build(script=[(413, big, {}), 202, retry_after(503, "600")])
    outcome, rest = rig.run(batch(4))
    assert outcome == "parked"
    assert ids(rest.events) == ["e2", "e3"]
    assert rest.key == idempotency_key(EVENTS_PATH, ["e2", "e3"])
    assert (rig.stats().sent, rig.stats().dead_lettered, rig.stats().dropped_total) == (2, 0, 0)


def test_split_pieces_left_after_a_wait_park_together(build: Callable[..., Rig]) -> None:
    """A piece parked with pieces still after it: one request holds all their events."""
    big = {"errors": [{"code": "payload_too_large", "message": "too big"}]}
    rig = build(script=[(413, big, {}), retry_after(503, "600")])
    outcome, rest = rig.run(batch(4))
    assert outcome == "parked"
    assert ids(rest.events) == ["e0", "e1", "e2", "e3"]
    assert rig.stats().sent == 0
    rig.clock.now += 600
    assert rig.run(rest)[0] == "sent"


# -- answers that are not the API's -------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, html="<html><title>Hotel WiFi login</title></html>"),
        httpx.Response(200, text="{not json", headers={"Content-Type": "application/json"}),
        httpx.Response(202, json={"accepted": True}),
        httpx.Response(202, json=[1]),
        httpx.Response(204),
    ],
    ids=["html", "invalid-json", "no-data", "list", "empty"],
)
def test_a_2xx_that_is_not_the_api_envelope_is_retried(
    build: Callable[..., Rig], response: httpx.Response
) -> None:
    """A 2xx whose body is not the API's JSON envelope is not a delivery: retried, same key."""
    rig = build(script=[lambda request: response])
    request = batch(2)
    assert rig.run(request) == ("sent", request)
    first, second = rig.server.seen
    assert (first.key, first.body) == (second.key, second.body)
    stats = rig.stats()
    assert (stats.sent, stats.retried, stats.dead_lettered) == (2, 1, 0)


def test_a_foreign_2xx_counts_as_a_failure_for_the_circuit(build: Callable[..., Rig]) -> None:
    """Captive-portal pages only: after five the circuit opens, the events park, none lost."""
    portal = httpx.Response(200, html="<html><title>Sign in to the network</title></html>")
    rig = build(script=[lambda request: portal] * 10)
    request = batch(2)
    assert rig.run(request) == ("parked", request)
    assert len(rig.server.seen) == FAILURE_THRESHOLD
    assert state(rig.circuit) == "open"
    error = rig.ledger.last_error
    assert isinstance(error, NetworkError)
    assert error.code == "not_the_api"
    assert "HTTP 200" in str(error)
    assert "Sign in to the network" in str(error)
    assert rig.stats().dropped_total == rig.stats().dead_lettered == 0


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_holds_and_parks_never_followed(
    build: Callable[..., Rig], status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A 3xx holds every request like a refused key, logs one error naming the URL setting."""
    location = {"Location": "https://elsewhere.example/api/v1/events/batch"}
    rig = build(script=[(status, {}, location)])
    request = batch(2)
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        assert rig.run(request) == ("parked", request)
        assert rig.run(batch(1, start=2))[0] == "parked"
    assert len(rig.server.seen) == 1  # not followed, and nothing else sent while held
    assert rig.circuit.seconds_until_ready() == WRONG_URL_PAUSE
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "VIBEFOLLOW_BASE_URL" in errors[0].getMessage()
    assert "elsewhere.example" in errors[0].getMessage()
    stats = rig.stats()
    assert (stats.dead_lettered, stats.dropped_total, stats.sent) == (0, 0, 0)
    assert rig.reported == []
    rig.clock.now += WRONG_URL_PAUSE
    assert rig.run(request) == ("sent", request)


def test_without_a_base_url_nothing_is_sent(build: Callable[..., Rig]) -> None:
    """Settings with no base URL (an invalid VIBEFOLLOW_BASE_URL) park without any request."""
    rig = build()
    rig.attempts._settings = resolve_settings(
        environ={"VIBEFOLLOW_BASE_URL": "ftp://nowhere.example"}, api_key=API_KEY
    )
    request = batch(2)
    assert rig.run(request) == ("parked", request)
    assert rig.server.seen == []
    assert not rig.circuit.ready()


def test_refused_user_upsert_counts_users_failed(build: Callable[..., Rig]) -> None:
    """A 422 on a user upsert counts users_failed; its events, sent in their batch, are not lost."""
    rig = build(script=[invalid("traits.plan")])
    (upsert,) = user_requests(events(2, traits={"plan": "x"}))
    assert rig.run(upsert)[0] == "refused"
    stats = rig.stats()
    assert (stats.users_failed, stats.users_sent, stats.dead_lettered) == (1, 0, 0)
    assert rig.reported == []


def test_rest_after_poison_parked_then_resent_without_poison(build: Callable[..., Rig]) -> None:
    """If the narrowed rest is parked, it is what comes back: resent later without the poison."""
    rig = build(script=[invalid("events[1].name"), retry_after(503, "600")])
    outcome, rest = rig.run(batch(3))
    assert outcome == "parked"
    assert ids(rest.events) == ["e0", "e2"]
    rig.clock.now += 600  # the Retry-After holds every request back until it passes
    assert rig.run(rest) == ("sent", rest)
    assert [s.event_ids for s in rig.server.seen] == [
        ["e0", "e1", "e2"],
        ["e0", "e2"],
        ["e0", "e2"],
    ]
    assert rig.server.seen[1].key == rig.server.seen[2].key == rest.key
    assert rig.reported_ids() == ["e1"]
    assert (rig.stats().sent, rig.stats().dead_lettered) == (2, 1)


# -- auth ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_parks_holds_and_logs_one_error(
    build: Callable[..., Rig], status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """401/403 parks the request, holds every request for AUTH_PAUSE and logs one error."""
    rig = build(script=[status])
    first, second = batch(2), batch(2, start=2)
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        assert rig.run(first) == ("parked", first)
        assert rig.run(second) == ("parked", second)
        rig.clock.now += AUTH_PAUSE / 2
        assert rig.run(second) == ("parked", second)
    assert len(rig.server.seen) == 1
    assert rig.circuit.seconds_until_ready() == AUTH_PAUSE / 2
    assert isinstance(rig.ledger.last_error, AuthError)
    stats = rig.stats()
    assert (stats.sent, stats.retried, stats.dead_lettered, stats.dropped_total) == (0, 0, 0, 0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "VIBEFOLLOW_API_KEY" in errors[0].getMessage()
    assert rig.reported == []
    assert state(rig.circuit) == "closed"  # the API answered: no failure counted


def test_after_the_auth_pause_the_request_goes_with_its_key(build: Callable[..., Rig]) -> None:
    """Once AUTH_PAUSE has passed the parked request is sent with its original key and body."""
    rig = build(script=[401])
    request = batch(2)
    rig.run(request)
    rig.clock.now += AUTH_PAUSE
    assert rig.run(request) == ("sent", request)
    refused, accepted = rig.server.seen
    assert (accepted.key, accepted.body) == (refused.key, refused.body)


# -- deadline, stop and the circuit ------------------------------------------------


def test_deadline_spent_by_a_slow_failure_parks(build: Callable[..., Rig]) -> None:
    """A failure that used up the deadline parks the request; a later run sends it unchanged."""
    rig = build()

    def slow_failure(request: httpx.Request) -> httpx.Response:
        rig.clock.now += 10  # the attempt used up the whole deadline
        return answer(503)

    rig.server.script = [slow_failure]
    request = batch(2)
    assert rig.run(request, timeout=5.0) == ("parked", request)
    assert len(rig.server.seen) == 1
    assert rig.stats().retried == 0
    assert rig.run(request) == ("sent", request)
    first, resent = rig.server.seen
    assert (resent.key, resent.body) == (first.key, first.body)


def test_a_sliver_of_time_left_is_not_spent_on_an_attempt(build: Callable[..., Rig]) -> None:
    """A refused connection that leaves less than MIN_ATTEMPT of the deadline parks the
    request: no retry doomed to time out is made, and the error that says why delivery
    failed stays the last error (a `vf-otel send` to a closed port once exited 7, timed
    out, instead of 5, connection refused, after a 0.5 ms attempt)."""
    rig = build()

    def refused_slowly(request: httpx.Request) -> httpx.Response:
        rig.clock.now += 5.0 - MIN_ATTEMPT / 2  # what is left is shorter than MIN_ATTEMPT
        raise httpx.ConnectError("connection refused")

    rig.server.script = [refused_slowly]
    request = batch(1)
    assert rig.run(request, timeout=5.0) == ("parked", request)
    assert len(rig.server.seen) == 1
    assert isinstance(rig.ledger.last_error, NetworkError)
    assert "connection refused" in str(rig.ledger.last_error)
    assert rig.run(request, timeout=MIN_ATTEMPT * 2) == ("sent", request)  # time enough


def test_a_deadline_shorter_than_min_attempt_still_sends_its_first_attempt(
    build: Callable[..., Rig],
) -> None:
    """MIN_ATTEMPT holds back retries only: a request whose whole deadline is shorter
    (``export_timeout=0.04``) is still sent."""
    rig = build()
    request = batch(1)
    assert rig.run(request, timeout=MIN_ATTEMPT / 2) == ("sent", request)
    assert len(rig.server.seen) == 1


def test_no_time_left_parks_without_sending_or_failing(build: Callable[..., Rig]) -> None:
    """With the deadline already past nothing is sent and the circuit counts no failure."""
    rig = build()
    request = batch(1)
    for _ in range(FAILURE_THRESHOLD * 2):
        assert rig.run(request, timeout=0.0) == ("parked", request)
    assert rig.server.seen == []
    assert (state(rig.circuit), rig.circuit.failing) == ("closed", False)


def test_no_time_left_gives_the_probe_back(build: Callable[..., Rig]) -> None:
    """A half-open attempt with no time left abandons its probe: the next acquire gets it."""
    rig = build(script=[503] * FAILURE_THRESHOLD)
    rig.run(batch(1))
    rig.clock.now += COOLDOWN_BASE
    assert state(rig.circuit) == "half_open"
    assert rig.run(batch(1), timeout=0.0)[0] == "parked"
    assert len(rig.server.seen) == FAILURE_THRESHOLD
    probe = rig.circuit.acquire()
    assert probe is not None
    probe.abandon()
    assert rig.run(batch(1))[0] == "sent"
    assert state(rig.circuit) == "closed"


def test_circuit_opens_after_five_failures_then_parks_at_once(build: Callable[..., Rig]) -> None:
    """Five consecutive failures open the circuit before max_retries; then nothing is sent."""
    rig = build(script=[503] * 100, max_retries=8)
    request = batch(1)
    assert rig.run(request) == ("parked", request)
    assert len(rig.server.seen) == FAILURE_THRESHOLD
    assert rig.stats().retried == FAILURE_THRESHOLD - 1
    assert state(rig.circuit) == "open"
    for start in range(1, 51):
        assert rig.run(batch(1, start=start))[0] == "parked"
    assert len(rig.server.seen) == FAILURE_THRESHOLD


def test_probe_success_closes_the_circuit(build: Callable[..., Rig]) -> None:
    """After the cool-down one probe goes out; its success closes the circuit."""
    rig = build(script=[503] * FAILURE_THRESHOLD)
    request = batch(3)
    rig.run(request)
    rig.clock.now += COOLDOWN_BASE
    assert rig.run(request) == ("sent", request)
    assert len(rig.server.seen) == FAILURE_THRESHOLD + 1
    assert state(rig.circuit) == "closed"
    assert not rig.circuit.failing


def test_failed_probe_is_one_request_then_a_longer_wait(build: Callable[..., Rig]) -> None:
    """A failed probe is a single request (no retries); the next probe waits twice as long."""
    rig = build(script=[503] * (FAILURE_THRESHOLD + 1))
    rig.run(batch(1))
    rig.clock.now += COOLDOWN_BASE
    assert rig.run(batch(1))[0] == "parked"
    assert len(rig.server.seen) == FAILURE_THRESHOLD + 1
    assert rig.circuit.seconds_until_ready() == 2 * COOLDOWN_BASE


def test_stopping_parks_without_sending(build: Callable[..., Rig]) -> None:
    """Once delivery is stopping, a run parks the request without a request."""
    rig = build()
    rig.stop.set()
    assert rig.run(batch(1))[0] == "parked"
    assert rig.server.seen == []


def test_interrupted_wait_parks(build: Callable[..., Rig]) -> None:
    """A retry wait cut short (sleep returns True: stopping) parks the request at once."""
    rig = build(script=[503])
    rig.sleep.interrupted = True
    assert rig.run(batch(1))[0] == "parked"
    assert len(rig.server.seen) == 1
    assert rig.stats().retried == 0


def test_a_bug_while_sending_propagates_and_returns_the_probe(build: Callable[..., Rig]) -> None:
    """An exception that is not an HTTP error propagates, and the probe slot is given back."""

    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug, not a network error")

    rig = build(script=[503] * FAILURE_THRESHOLD)
    rig.run(batch(1))
    rig.clock.now += COOLDOWN_BASE
    rig.server.script = [explode]
    with pytest.raises(RuntimeError, match="a bug"):
        rig.run(batch(1))
    assert rig.circuit.ready()
    assert rig.run(batch(1))[0] == "sent"


def test_retried_counts_only_retries_that_went_out(build: Callable[..., Rig]) -> None:
    """A retry cut off by a hold that came during the wait is not counted as retried."""
    rig = build(script=[503])
    # Another sender got a Retry-After while this one waited.
    rig.sleep.during = lambda: rig.circuit.hold(120.0)
    assert rig.run(batch(1))[0] == "parked"
    assert len(rig.server.seen) == 1
    assert rig.stats().retried == 0


# -- the key stays secret --------------------------------------------------------------


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
        BROKEN_GZIP,
        401,
    ]
    rig = build(script=script, max_retries=1)
    errors: list[VibefollowError] = []
    with caplog.at_level(logging.DEBUG):
        for start in range(0, 12, 2):
            rig.run(batch(2, start=start))
            if rig.ledger.last_error is not None:
                errors.append(rig.ledger.last_error)
            rig.clock.now += AUTH_PAUSE
    errors += [error for error, _ in rig.reported]
    assert {type(e) for e in errors} >= {VibefollowError, ValidationError, NetworkError, AuthError}
    assert caplog.records
    assert API_KEY not in caplog.text
    assert all(API_KEY not in str(r.args) for r in caplog.records)
    for error in errors:
        assert API_KEY not in str(error)
        assert API_KEY not in repr(error)


def echo(status: int, shape: str) -> Callable[[httpx.Request], httpx.Response]:
    """A server that echoes the request's Authorization header back in its answer."""

    def handler(request: httpx.Request) -> httpx.Response:
        header = request.headers["Authorization"]
        if shape == "envelope":
            entry = {"code": header, "message": f"you sent {header}", "field": header}
            return httpx.Response(status, json={"errors": [entry]})
        if shape == "location":
            return httpx.Response(status, headers={"Location": f"https://x.example/?h={header}"})
        if shape == "boundary":  # the key straddles where the message is cut
            return httpx.Response(status, text="x" * 180 + header)
        return httpx.Response(status, text=f"<html><pre>{request.headers}</pre></html>")

    return handler


@pytest.mark.parametrize(
    ("status", "shape"),
    [
        (400, "envelope"),
        (401, "envelope"),
        (422, "envelope"),
        (404, "text"),
        (502, "text"),
        (200, "text"),
        (200, "boundary"),
        (400, "boundary"),
        (302, "location"),
    ],
)
def test_a_server_echoing_the_key_never_puts_it_in_errors_or_logs(
    build: Callable[..., Rig], status: int, shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever a server echoes back, the key is scrubbed from on_error errors and warnings."""
    rig = build(script=[echo(status, shape)], max_retries=0)
    with caplog.at_level(logging.DEBUG):
        rig.run(batch(1))
    errors = [error for error, _ in rig.reported]
    if rig.ledger.last_error is not None:
        errors.append(rig.ledger.last_error)
    assert errors
    for error in errors:
        for text in (str(error), repr(error), str(getattr(error, "field", ""))):
            assert API_KEY not in text
            assert API_KEY[:12] not in text  # not even the start of it, cut off
    assert API_KEY not in caplog.text
    assert API_KEY[:12] not in caplog.text


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
    assert f"code={error.code!r}" in text


def test_a_senders_end_is_announced_once_its_slot_is_free() -> None:
    """The worker, woken by a sender's end, must find that sender free: a wake-up while
    the slot was still taken let it sleep until the next replay with work it could send."""
    from vf_otel._delivery.dispatch import Senders

    seen: list[tuple[int, bool]] = []
    announced = threading.Event()

    def freed() -> None:
        if not seen:  # the first job's end: could the worker hand over another one now?
            seen.append((senders.busy, senders.submit("second", 0.0, limit=1)))
            announced.set()

    senders: Senders[str] = Senders(lambda job: None, size=1, freed=freed)
    assert senders.submit("first", 1.0, limit=1)
    assert announced.wait(10.0)
    assert seen == [(0, True)]
    senders.stop(10.0)
