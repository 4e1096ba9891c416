"""Every answer the API or a proxy can give, over real HTTP: nothing good is thrown away.

Each test drives a VibefollowHandler against the local server (vf_otel.testing) on
127.0.0.1, which scripts the answer: every 5xx, a Retry-After far beyond two
minutes, 413s from a proxy's body limit, 422s naming events in any field-path form
or none, a 2xx that is not the API's envelope, redirects, an invalid
VIBEFOLLOW_BASE_URL, a refused key, and a server that echoes the API key back.
No test measures time: every pipeline runs on short backoff and cool-down, and a
hold that would last a minute or ten is skipped by moving the clock (``fast_clock``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import vf_otel
from vf_otel._delivery.pipeline import Pipeline
from vf_otel._delivery.policy import AUTH_PAUSE, WRONG_URL_PAUSE
from vf_otel.testing import VibefollowServer

from .conftest import HandlerFactory, SkipClock

#: Keeps a property big enough that a few dozen events make a request of some KiB.
PADDING = "p" * 120
#: Rounds of flush() a scenario may need (each ends a hold the server caused); a bound.
MAX_ROUNDS = 20


class Reported:
    """An on_error callback that keeps what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[vf_otel.VibefollowError, list[vf_otel.Event]]] = []

    def __call__(self, error: vf_otel.VibefollowError, events: Any) -> None:
        self.calls.append((error, list(events)))

    @property
    def ids(self) -> list[int]:
        """The ``id`` property of every event reported, sorted."""
        return sorted(int(e.properties["id"]) for _, events in self.calls for e in events)

    @property
    def errors(self) -> list[vf_otel.VibefollowError]:
        return [error for error, _ in self.calls]


@pytest.fixture(autouse=True)
def clock(fast_clock: SkipClock) -> SkipClock:
    """Every test here on fast backoff and cool-down, with a clock it moves past a hold."""
    return fast_clock


@pytest.fixture
def log(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """An application logger of its own, not propagating to root."""
    logger = logging.getLogger(f"app.answers.{request.node.name}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger
    for handler in logger.handlers[:]:
        logger.removeHandler(handler)


def emit(log: logging.Logger, ids: range | list[int], **properties: Any) -> None:
    """Log one tagged event per id, its id in the properties."""
    for i in ids:
        props = {"id": i, "padding": PADDING, **properties}
        log.info("e", extra={"vf_user": f"usr_{i % 7}", "vf_event": "step", "vf_properties": props})


def received(server: VibefollowServer) -> list[int]:
    """The ids of the events the server accepted, sorted (duplicates kept)."""
    return sorted(int(e["properties"]["id"]) for e in server.events)


def pipeline(handler: vf_otel.VibefollowHandler) -> Pipeline:
    """The handler's delivery pipeline (to read its circuit)."""
    found: Pipeline = handler._pipeline
    return found


def settle(handler: vf_otel.VibefollowHandler, total: int, clock: SkipClock) -> vf_otel.Stats:
    """Flush until every event is delivered or dead-lettered, skipping holds between rounds."""
    for _ in range(MAX_ROUNDS):
        handler.flush(timeout=60)
        stats = handler.stats()
        if stats.sent + stats.dead_lettered + stats.dropped_total >= total:
            return stats
        clock.advance(max(AUTH_PAUSE, WRONG_URL_PAUSE))  # a redirect's or a refused key's minute
    raise AssertionError(f"not settled after {MAX_ROUNDS} rounds: {handler.stats()}")


def envelope(*entries: dict[str, Any]) -> str:
    """A JSON error envelope with these entries."""
    return json.dumps({"errors": list(entries)})


# -- 1. every 5xx is retryable ------------------------------------------------------------


def test_every_5xx_is_retried_and_lands_once(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, log: logging.Logger
) -> None:
    """520, 522, 507 and 599 (CDN, storage, odd codes) are retried like 503: nothing lost."""
    handler = make_handler()
    log.addHandler(handler)
    for status in (520, 522, 507, 599):
        vibefollow_server.fail_next(status, path="/events/batch")
    emit(log, range(20))
    assert handler.flush(timeout=60)
    assert received(vibefollow_server) == list(range(20))
    assert len({r.idempotency_key for r in vibefollow_server.requests}) == 1
    stats = handler.stats()
    assert (stats.sent, stats.retried, stats.dead_lettered, stats.dropped_total) == (20, 4, 0, 0)


def test_a_408_from_a_proxy_is_retried_and_lands_once(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, log: logging.Logger
) -> None:
    """A 408 Request Timeout (a proxy's, a load balancer's) is retried with the same key,
    not dead-lettered: delivered once, nothing dropped."""
    reported = Reported()
    # One batch for the five (adaptive batching would send the first at once).
    handler = make_handler(on_error=reported, adaptive_batching=False)
    log.addHandler(handler)
    vibefollow_server.fail_next(408, path="/events/batch")
    emit(log, range(5))
    assert handler.flush(timeout=60)
    assert received(vibefollow_server) == list(range(5))
    assert [r.status for r in vibefollow_server.requests] == [408, 202]
    assert len({r.idempotency_key for r in vibefollow_server.requests}) == 1
    stats = handler.stats()
    assert (stats.sent, stats.retried, stats.dead_lettered, stats.dropped_total) == (5, 1, 0, 0)
    assert reported.calls == []


# -- 6. Retry-After is honoured in full ---------------------------------------------------


def test_a_retry_after_of_ten_minutes_holds_everything_that_long(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    log: logging.Logger,
    clock: SkipClock,
) -> None:
    """A 429 with Retry-After: 600 holds every request for 600 s (not 120), events parked."""
    handler = make_handler()
    log.addHandler(handler)
    vibefollow_server.fail_next(429, retry_after="600")
    emit(log, range(5))
    assert not handler.flush(timeout=5)
    circuit = pipeline(handler).circuit
    assert circuit.seconds_until_ready() > 590
    emit(log, range(5, 8))
    assert not handler.flush(timeout=5)
    assert len(vibefollow_server.requests) == 1  # nothing else went out while held
    stats = handler.stats()
    assert (stats.parked, stats.sent, stats.dead_lettered, stats.dropped_total) == (8, 0, 0, 0)
    clock.advance(600)  # the ten minutes, passed
    assert handler.flush(timeout=60)
    assert received(vibefollow_server) == list(range(8))


# -- 2. too large: split until it fits ----------------------------------------------------


def test_a_proxy_body_limit_splits_the_batch_until_it_fits(log: logging.Logger) -> None:
    """A 413 from a 4 KiB body limit halves the batch (new keys) until every piece passes."""
    with VibefollowServer(max_body_bytes=4096) as server:
        handler = vf_otel.VibefollowHandler(
            api_key=server.api_key, base_url=server.base_url, flush_interval=60.0
        )
        log.addHandler(handler)
        try:
            emit(log, range(100))
            assert handler.flush(timeout=60)
            stats = handler.stats()
        finally:
            handler.close()
        assert received(server) == list(range(100))
        accepted = [r for r in server.requests if r.status == 202]
        assert all(len(r.body) <= 4096 for r in accepted)
        assert {r.status for r in server.requests} == {202, 413}
        assert len({r.idempotency_key for r in server.requests}) == len(server.requests)
        assert (stats.sent, stats.dead_lettered, stats.dropped_total) == (100, 0, 0)


def test_only_an_event_too_large_alone_is_dead_lettered(log: logging.Logger) -> None:
    """One event over the proxy's limit even alone is dead-lettered (413); the rest land."""
    reported = Reported()
    with VibefollowServer(max_body_bytes=4096) as server:
        handler = vf_otel.VibefollowHandler(
            api_key=server.api_key,
            base_url=server.base_url,
            flush_interval=60.0,
            on_error=reported,
        )
        log.addHandler(handler)
        try:
            emit(log, range(12))
            emit(log, [12], big="b" * 5000)
            emit(log, range(13, 30))
            assert not handler.flush(timeout=60)  # one event was refused for good
            stats = handler.stats()
        finally:
            handler.close()
    assert received(server) == [i for i in range(30) if i != 12]
    assert reported.ids == [12]
    assert [e.status for e in reported.errors] == [413]
    assert (stats.sent, stats.dead_lettered, stats.dropped_total) == (29, 1, 0)


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (413, "<html><center><h1>413 Request Entity Too Large</h1></center></html>", "text/html"),
        (400, envelope({"code": "bad_request", "message": "body exceeds 1048576 bytes"}), None),
        (400, envelope({"code": "request_too_large", "message": "refused"}), "application/json"),
    ],
    ids=["nginx-413", "400-exceeds", "400-too-large"],
)
def test_a_size_answer_from_a_proxy_splits_and_loses_nothing(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    log: logging.Logger,
    status: int,
    body: str,
    content_type: str | None,
) -> None:
    """A proxy's 413 page or a 400 about size splits the batch; every event lands once."""
    handler = make_handler()
    log.addHandler(handler)
    vibefollow_server.respond_next(status, body, content_type=content_type, count=2)
    emit(log, range(40))
    assert handler.flush(timeout=60)
    assert received(vibefollow_server) == list(range(40))
    assert [len(r.json["events"]) for r in vibefollow_server.requests] == [40, 20, 10, 10, 20]
    assert handler.stats().dead_lettered == 0


# -- 3. a 422 for a batch -----------------------------------------------------------------


def test_every_event_a_422_names_is_removed_at_once(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, log: logging.Logger
) -> None:
    """The server names three bad events in one 422: all three go, the rest land in one more."""
    reported = Reported()
    handler = make_handler(on_error=reported)
    log.addHandler(handler)
    poison = {3, 11, 17}
    vibefollow_server.reject_event(lambda e: e["properties"]["id"] in poison)
    emit(log, range(20))
    handler.flush(timeout=60)
    assert [r.status for r in vibefollow_server.requests] == [422, 202]
    assert received(vibefollow_server) == [i for i in range(20) if i not in poison]
    assert reported.ids == sorted(poison)
    assert handler.stats().dead_lettered == 3


@pytest.mark.parametrize(
    "field", ["events[2].name", "events.2.name", "/events/2/name", "events[2]"]
)
def test_every_field_path_form_names_the_event(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    log: logging.Logger,
    field: str,
) -> None:
    """A 422 naming event 2 as events[2].x, events.2.x or /events/2/x dead-letters only it."""
    reported = Reported()
    handler = make_handler(on_error=reported)
    log.addHandler(handler)
    entry = {"code": "validation_failed", "message": "name is reserved", "field": field}
    vibefollow_server.respond_next(422, envelope(entry))
    emit(log, range(6))
    handler.flush(timeout=60)
    assert received(vibefollow_server) == [0, 1, 3, 4, 5]
    assert reported.ids == [2]


def test_a_422_naming_no_event_is_bisected_to_the_bad_one(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, log: logging.Logger
) -> None:
    """A server that refuses a batch without saying which event: only that event is lost."""
    reported = Reported()
    handler = make_handler(on_error=reported)
    log.addHandler(handler)
    vibefollow_server.reject_event(lambda e: e["properties"]["id"] == 13, name_field=False)
    emit(log, range(32))
    handler.flush(timeout=60)
    assert received(vibefollow_server) == [i for i in range(32) if i != 13]
    assert reported.ids == [13]
    stats = handler.stats()
    assert (stats.sent, stats.dead_lettered, stats.dropped_total) == (31, 1, 0)
    # 32 -> 16 -> 8 -> 4 -> 2 -> 1: two requests per level, not one per event.
    assert len(vibefollow_server.requests) <= 11


# -- 4. a 2xx that is not the API's envelope ----------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "content_type", "process"),
    [
        (200, "<html><title>Hotel WiFi: sign in</title></html>", "text/html", False),
        (200, "<html><title>Proxy</title></html>", "text/html", True),
        (202, '{"data": {"accepted": tr', "application/json", True),
        (204, "", None, False),
    ],
    ids=["captive-portal", "proxy-after-the-api", "invalid-json", "no-content"],
)
def test_a_2xx_that_is_not_the_api_answer_is_retried(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    log: logging.Logger,
    status: int,
    body: str,
    content_type: str | None,
    process: bool,
) -> None:
    """A foreign 2xx is no delivery: retried with the same key, every event lands once."""
    handler = make_handler()
    log.addHandler(handler)
    vibefollow_server.respond_next(status, body, content_type=content_type, process=process)
    emit(log, range(10))
    assert handler.flush(timeout=60)
    assert received(vibefollow_server) == list(range(10))
    assert len({r.idempotency_key for r in vibefollow_server.requests}) == 1
    assert vibefollow_server.replayed == (1 if process else 0)
    stats = handler.stats()
    assert (stats.sent, stats.retried, stats.dead_lettered) == (10, 1, 0)


# -- 5. redirects -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_never_followed_and_the_events_are_held(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    log: logging.Logger,
    clock: SkipClock,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    """A 3xx holds the events with one error naming VIBEFOLLOW_BASE_URL; the key goes nowhere."""
    reported = Reported()
    handler = make_handler(on_error=reported)
    log.addHandler(handler)
    with VibefollowServer() as elsewhere:
        vibefollow_server.redirect_next(elsewhere.base_url + "/api/v1/events/batch", status=status)
        with caplog.at_level(logging.WARNING, logger="vf_otel"):
            emit(log, range(5))
            assert not handler.flush(timeout=5)
            emit(log, range(5, 9))
            assert not handler.flush(timeout=5)
        assert elsewhere.requests == []  # not followed: the key never reached the other host
    assert len(vibefollow_server.requests) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "VIBEFOLLOW_BASE_URL" in errors[0]
    assert str(status) in errors[0]
    stats = handler.stats()
    assert (stats.parked, stats.dead_lettered, stats.dropped_total) == (9, 0, 0)
    assert reported.calls == []
    clock.advance(WRONG_URL_PAUSE)  # the hold is over (and here the next answer is OK)
    assert handler.flush(timeout=60)
    assert received(vibefollow_server) == list(range(9))


# -- 7. an invalid VIBEFOLLOW_BASE_URL ----------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    ["{origin}?debug=1", "http://vf.internal.example", "ftp://{host}", "{origin}#frag"],
    ids=["query", "plain-http-elsewhere", "ftp", "fragment"],
)
def test_an_invalid_base_url_from_the_environment_sends_nothing_anywhere(
    vibefollow_server: VibefollowServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    log: logging.Logger,
    bad: str,
) -> None:
    """A bad VIBEFOLLOW_BASE_URL stops sending (counted, one error); no fallback host at all."""
    origin = vibefollow_server.base_url
    value = bad.format(origin=origin, host=origin.removeprefix("http://"))
    monkeypatch.setenv("VIBEFOLLOW_BASE_URL", value)
    reported = Reported()
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        handler = vf_otel.VibefollowHandler(
            api_key=vibefollow_server.api_key, flush_interval=60.0, on_error=reported
        )
        log.addHandler(handler)
        try:
            emit(log, range(4))
            assert not handler.flush(timeout=30)
            stats = handler.stats()
        finally:
            handler.close()
    assert vibefollow_server.requests == []
    assert stats.dropped == {"invalid_base_url": 4}
    assert (stats.sent, stats.parked) == (0, 0)
    assert reported.ids == [0, 1, 2, 3]
    assert all("VIBEFOLLOW_BASE_URL" in str(error) for error in reported.errors)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "VIBEFOLLOW_BASE_URL is invalid" in errors[0]
    assert value not in caplog.text


def test_an_invalid_base_url_never_reaches_the_transport(
    monkeypatch: pytest.MonkeyPatch, log: logging.Logger
) -> None:
    """With no usable base URL not even a transport given to the handler is asked."""
    monkeypatch.setenv("VIBEFOLLOW_BASE_URL", "https://api.vibefollow.com?x=1")
    seen: list[httpx.Request] = []

    def anywhere(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"data": {"accepted": True}})

    handler = vf_otel.VibefollowHandler(
        api_key="sk_live_" + "t" * 32, transport=httpx.MockTransport(anywhere)
    )
    log.addHandler(handler)
    try:
        emit(log, range(3))
        assert not handler.flush(timeout=30)
    finally:
        handler.close()
    assert seen == []
    assert handler.stats().dropped == {"invalid_base_url": 3}


def test_an_invalid_base_url_argument_still_raises() -> None:
    """A bad base_url *argument* is the caller's to fix: ValueError at construction."""
    with pytest.raises(ValueError, match="base_url"):
        vf_otel.VibefollowHandler(api_key="sk_live_" + "t" * 32, base_url="ftp://x.example")


# -- 12. the cause survives to close; the key never leaks ---------------------------------


def test_events_held_by_a_refused_key_are_reported_at_close_with_the_cause(
    vibefollow_server: VibefollowServer, make_handler: HandlerFactory, log: logging.Logger
) -> None:
    """Closed while the key is refused: on_error gets the 401 as the cause of the loss."""
    reported = Reported()
    handler = make_handler(on_error=reported, shutdown_timeout=1.0)
    log.addHandler(handler)
    vibefollow_server.fail_next(401, count=10)
    emit(log, range(3))
    assert not handler.flush(timeout=5)
    handler.close()
    assert handler.stats().dropped == {"shutdown": 3}
    ((error, events),) = reported.calls
    assert isinstance(error, vf_otel.UndeliveredError)
    assert "HTTP 401 auth_required" in str(error)
    assert isinstance(error.__cause__, vf_otel.AuthError)
    assert error.__cause__.status == 401
    assert sorted(int(e.properties["id"]) for e in events) == [0, 1, 2]


def test_a_server_echoing_the_key_never_gets_it_into_errors_or_logs(
    vibefollow_server: VibefollowServer,
    make_handler: HandlerFactory,
    log: logging.Logger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Key echoed in a 400, a 422 field, a 502 page, a 200 page and a Location: always scrubbed."""
    key = vibefollow_server.api_key
    reported = Reported()
    handler = make_handler(on_error=reported)
    log.addHandler(handler)
    header = f"Authorization: Bearer {key}"
    batch = "/events/batch"
    server = vibefollow_server
    server.respond_next(502, f"<pre>{header}</pre>", content_type="text/html", path=batch)
    server.respond_next(200, f"<pre>{header}</pre>", content_type="text/html", path=batch)
    server.respond_next(
        422, envelope({"code": key, "message": header, "field": f"events[0].{key}"}), path=batch
    )
    server.respond_next(400, envelope({"code": "bad", "message": header}), path=batch)
    with caplog.at_level(logging.DEBUG):
        emit(log, range(2))
        handler.flush(timeout=60)
        emit(log, range(2, 4))
        handler.flush(timeout=60)
        server.redirect_next(f"https://x.example/?echo={key}", path=batch)
        emit(log, range(4, 6))
        handler.flush(timeout=5)
        handler.close()
    assert reported.calls  # the 422'd event, the 400'd batch and what the redirect held
    for error in reported.errors:
        for text in (str(error), repr(error), str(getattr(error, "field", "")), str(error.code)):
            assert key not in text
        assert key not in str(error.__cause__)
    # vf-otel's own records (httpcore's DEBUG trace of raw headers is not vf-otel's to edit).
    ours = [r for r in caplog.records if r.name.startswith("vf_otel")]
    assert any(r.levelno >= logging.WARNING for r in ours)
    assert all(key not in r.getMessage() and key not in str(r.args) for r in ours)


# -- all of it at once --------------------------------------------------------------------


@pytest.mark.slow
def test_through_a_mix_of_every_answer_each_event_lands_once_and_only_bad_ones_are_lost(
    log: logging.Logger, clock: SkipClock
) -> None:
    """Through every kind of answer at once each good event lands once; only poison is lost."""
    total = 300
    named, hidden = {17, 150, 231}, {99, 260}
    reported = Reported()
    with VibefollowServer(max_body_bytes=16_000) as server:
        server.reject_event(lambda e: e["properties"]["id"] in named)
        server.reject_event(lambda e: e["properties"]["id"] in hidden, name_field=False)
        script(server)
        handler = vf_otel.VibefollowHandler(
            api_key=server.api_key, base_url=server.base_url, flush_interval=60.0, on_error=reported
        )
        log.addHandler(handler)
        try:
            emit(log, range(total))
            stats = settle(handler, total, clock)
        finally:
            handler.close()
        assert server.pending_faults == 0  # every scripted answer was met
        ids = received(server)
    assert ids == [i for i in range(total) if i not in named | hidden]  # each exactly once
    assert reported.ids == sorted(named | hidden)
    assert all(isinstance(e, vf_otel.ValidationError) for e in reported.errors)
    assert (stats.sent, stats.dead_lettered, stats.dropped_total) == (295, 5, 0)


def script(server: VibefollowServer) -> None:
    """The mixed scenario's answers, in the order batch requests meet them.

    A fault whose request may have been processed (a lost answer, a foreign 2xx after
    the API) is followed by a normal answer, so its retry is the one that lands.
    """
    batch = "/events/batch"
    passing = 0.0  # delay_next(0): answered normally, in its turn
    server.respond_next(413, "<html><h1>413 Request Entity Too Large</h1></html>", path=batch)
    server.respond_next(400, envelope({"code": "body_too_large", "message": "no"}), path=batch)
    server.fail_next(520, path=batch)
    server.delay_next(passing, path=batch)
    server.respond_next(200, "<html>Hotel WiFi</html>", content_type="text/html", path=batch)
    server.delay_next(passing, path=batch)
    server.respond_next(202, '{"data": ', process=True, path=batch)
    server.delay_next(passing, path=batch)
    server.fail_next(507, path=batch)
    server.fail_next(429, retry_after="0", path=batch)
    server.delay_next(passing, path=batch)
    server.reset_next(path=batch)
    server.lose_response_next(path=batch)
    server.delay_next(passing, path=batch)
    server.fail_next(522, path=batch)
    server.delay_next(passing, path=batch)
    server.redirect_next("https://elsewhere.example/api/v1/events/batch", path=batch)
    server.delay_next(passing, path=batch)
    server.fail_next(401, path=batch)
