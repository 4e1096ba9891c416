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

import pytest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import vf_otel
from vf_otel import VibefollowLogExporter, VibefollowSpanExporter
from vf_otel._delivery import deadline
from vf_otel._delivery.pipeline import Pipeline

from .hostile import HostileServer, Seen

KEY = "vf_test_paths_0123456789abcdef"
USERS = "/api/v1/users"
EVENTS = "/api/v1/events/batch"
#: How long the server holds each user upsert before answering it.
UPSERT_DELAY = 0.3
#: Runs of the ordering scenario: it failed 3 of 3 before the fix.
RUNS = 3


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
