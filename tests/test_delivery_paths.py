"""The handler and the exporters share one dispatch; pooled connections that go stale or
stall are met as the OTLP exporter meets them (issue 19 defects 1 and 3, issue 18).

Raw-socket servers (tests/hostile.py) on 127.0.0.1 note when each request arrived and
was answered, on which connection, and how much of a stalled answer went out before
the client gave up: the assertions are on what the server saw and on ``stats()``,
never on elapsed time.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import vf_otel
from vf_otel import VibefollowLogExporter, VibefollowSpanExporter
from vf_otel._delivery import policy as deadline
from vf_otel._delivery.pipeline import Pipeline

from .conftest import wait_until
from .hostile import HostileServer, Seen

KEY = "vf_test_paths_0123456789abcdef"
USERS = "/api/v1/users"
EVENTS = "/api/v1/events/batch"
#: How long the server holds each user upsert before answering it.
UPSERT_DELAY = 0.1
#: Runs of the ordering scenario: it failed 3 of 3 before the fix.
RUNS = 3
#: The client's ``timeout`` against a trickling server, and the trickle's pace: each
#: byte comes before a read could time out, the 55 bytes of head would take 8 s.
TIMEOUT = 0.5
TRICKLE_EVERY = 0.15


def upserts_answered_before_events_arrived(seen: list[Seen]) -> None:
    """Every events request arrived after every user upsert was answered."""
    users = [s for s in seen if s.path == USERS]
    events = [s for s in seen if s.path == EVENTS]
    assert users, seen
    assert events, seen
    last_answer = max(s.answered or float("inf") for s in users)
    first_event = min(s.arrived for s in events)
    assert last_answer <= first_event, seen


@pytest.mark.parametrize("run", range(RUNS))
def test_the_span_exporter_sends_events_after_the_user_upserts_are_answered(run: int) -> None:
    """Three spans of new users (vf.traits.*) in one export: their /users upserts are all
    answered before the /events/batch request starts."""
    with HostileServer("answer", delays={USERS: UPSERT_DELAY}) as server:
        exporter = VibefollowSpanExporter(api_key=KEY, base_url=server.base_url)
        spans = InMemorySpanExporter()
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(spans))
        for i in range(3):
            attributes = {
                "vf.user": f"usr_{run}_{i}",
                "vf.event": "user_signed_up",
                "vf.traits.email": f"u{i}@example.com",
            }
            provider.get_tracer("tests").start_span("signup", attributes=attributes).end()
        try:
            result = exporter.export(spans.get_finished_spans())  # one batch, as the SDK's
            stats = exporter.stats()
        finally:
            exporter.shutdown()
        seen = list(server.seen)
    assert result is SpanExportResult.SUCCESS
    upserts_answered_before_events_arrived(seen)
    assert (stats.users_sent, stats.sent, stats.dropped_total) == (3, 3, 0)


def log_exporter_emit(exporter: VibefollowLogExporter) -> Iterator[Callable[..., None]]:
    """A stdlib record through the OTel LoggingHandler to ``exporter``, synchronously."""
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        # SDK 1.45 deprecates its LoggingHandler (still what auto-instrumentation installs).
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=provider)

    def send(**extra: Any) -> None:
        fields = {"name": "app", "msg": "signup", "args": (), **extra}
        fields.update(levelno=logging.INFO, levelname="INFO")
        handler.handle(logging.makeLogRecord(fields))

    yield send
    handler.close()


@pytest.mark.parametrize("run", range(RUNS))
def test_the_log_exporter_sends_events_after_the_user_upsert_is_answered(run: int) -> None:
    """A record of a new user (vf_traits): its upsert is answered before /events/batch
    starts, also once the API answered (no slow start sends one request at a time)."""
    with HostileServer("answer", delays={USERS: UPSERT_DELAY}) as server:
        exporter = VibefollowLogExporter(api_key=KEY, base_url=server.base_url)
        emitting = log_exporter_emit(exporter)
        send = next(emitting)
        try:
            send(vf_event="visit", vf_user="known")  # the API answered: all senders may run
            warmed = len(server.seen)
            send(vf_event="signup", vf_user=f"u{run}", vf_traits={"email": "u@example.com"})
            stats = exporter.stats()
        finally:
            emitting.close()
            exporter.shutdown()
        seen = list(server.seen)
    assert warmed == 1
    upserts_answered_before_events_arrived(seen[warmed:])
    assert (stats.users_sent, stats.sent, stats.dropped_total) == (1, 2, 0)


def pipeline(handler: vf_otel.VibefollowHandler) -> Pipeline:
    """The handler's delivery pipeline (its circuit and last error)."""
    found: Pipeline = handler._pipeline
    return found


def log_to(handler: vf_otel.VibefollowHandler, name: str) -> logging.Logger:
    """A logger of its own, not propagating, writing to ``handler`` only."""
    log = logging.getLogger(f"app.paths.{name}")
    log.propagate = False
    log.handlers[:] = [handler]
    return log


@pytest.mark.parametrize("mode", ["close_unanswered", "reset"])
def test_a_stale_keep_alive_connection_is_sent_again_at_once_on_a_new_one(mode: str) -> None:
    """A pooled connection the server closed (or reset) as it was reused, before any
    answer: sent again at once on a new connection (one retry); no failed attempt, so no
    backoff and nothing for the circuit."""
    with HostileServer(mode) as server:
        handler = vf_otel.VibefollowHandler(api_key=KEY, base_url=server.base_url)
        log = log_to(handler, mode)
        try:
            log.warning("e", extra={"vf_event": "first", "vf_user": "u"})
            assert handler.flush(timeout=30)
            log.warning("e", extra={"vf_event": "second", "vf_user": "u"})
            assert handler.flush(timeout=30)
            stats = handler.stats()
            circuit = pipeline(handler).circuit
            state, cautious = circuit.state, circuit.cautious
            last_error = pipeline(handler).ledger.last_error
        finally:
            handler.close()
        seen = list(server.seen)
    # The second batch met the stale connection (1), then went out on a new one (2).
    assert [(s.connection, s.answered is not None) for s in seen] == [
        (1, True),
        (1, False),
        (2, True),
    ]
    assert (stats.sent, stats.retried, stats.dropped_total, stats.in_flight) == (2, 1, 0, 0)
    # A failed attempt records its error before any backoff or circuit step: none here.
    assert (state, cautious, last_error) == ("closed", False, None)


@pytest.mark.skipif(
    vf_otel._compat.FALLBACK,
    reason="needs httpx's own pools watched: VF_OTEL_FORCE_COMPAT_FALLBACK=1 forces the fallback",
)
def test_timeout_bounds_a_stalled_status_line_on_a_reused_connection() -> None:
    """A server that answered once, then trickles the next status line on the same
    connection (a byte per 0.15 s, under the read timeout): cut at ``timeout`` (0.5 s)
    after a few bytes, counted as a retry, and delivered on a new connection."""
    with HostileServer("trickle_status", trickle_every=TRICKLE_EVERY) as server:
        handler = vf_otel.VibefollowHandler(api_key=KEY, base_url=server.base_url, timeout=TIMEOUT)
        log = log_to(handler, "trickle")
        try:
            assert pipeline(handler)._client.http() is not None
            watched = pipeline(handler)._client.streams_watched
            log.warning("e", extra={"vf_event": "first", "vf_user": "u"})
            assert handler.flush(timeout=30)
            log.warning("e", extra={"vf_event": "second", "vf_user": "u"})
            assert handler.flush(timeout=30)
            stats = handler.stats()
        finally:
            handler.close()
        seen = list(server.seen)
        trickled = list(server.trickled)
    assert watched is True
    assert [(s.connection, s.answered is not None) for s in seen] == [
        (1, True),
        (1, False),
        (2, True),
    ]
    # About 0.5 s of a byte per 0.15 s; left alone, the 55 bytes of head take 8 s.
    assert len(trickled) == 1
    assert trickled[0] <= 12, trickled
    assert (stats.sent, stats.retried, stats.dropped_total, stats.in_flight) == (2, 1, 0, 0)


def test_without_watched_streams_a_new_connection_is_still_cut_at_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the fallback forced (httpx laid out otherwise): nothing of httpx is changed,
    and a status line trickled on a new connection is still cut at ``timeout``."""
    monkeypatch.setattr(vf_otel._compat, "FALLBACK", True)
    with HostileServer("trickle_status", answer_first=0, trickle_every=TRICKLE_EVERY) as server:
        handler = vf_otel.VibefollowHandler(
            api_key=KEY,
            base_url=server.base_url,
            timeout=TIMEOUT,
            max_retries=0,
            shutdown_timeout=0.5,  # close() does not try the trickling server for 10 s more
        )
        log = log_to(handler, "fallback")
        client = pipeline(handler)._client
        try:
            transport = client.http()._transport  # what watch_streams would have changed
            backend = transport._pool._network_backend
            log.warning("e", extra={"vf_event": "first", "vf_user": "u"})
            assert handler.flush(timeout=0.2) is False  # every connection trickles
            # The first connection ended by the client (cut at timeout), before close().
            wait_until(lambda: server.trickled)
        finally:
            handler.close()
        trickled = list(server.trickled)
    stats = handler.stats()
    assert client.streams_watched is False
    assert not isinstance(backend, deadline._Backend)
    assert trickled
    assert trickled[0] <= 12, trickled
    assert stats.sent == 0
    assert stats.dropped_total + stats.in_flight == 1  # reported at close, never silent


@pytest.mark.skipif(
    vf_otel._compat.FALLBACK,
    reason="needs httpx's own pools watched: VF_OTEL_FORCE_COMPAT_FALLBACK=1 forces the fallback",
)
def test_watch_streams_wraps_httpx_own_pools_once_and_leaves_other_transports_alone() -> None:
    """httpx's own transports get the watched backend (once, however often asked); a
    client with a transport of another kind is left as it is (the fallback)."""
    with httpx.Client() as own:
        assert deadline.watch_streams(own) is True
        assert deadline.watch_streams(own) is True
        backend = own._transport._pool._network_backend
        assert isinstance(backend, deadline._Backend)
        assert not isinstance(backend._backend, deadline._Backend)
    mock = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=mock) as other:
        assert deadline.watch_streams(other) is False
