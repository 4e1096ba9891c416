"""Beyond the bridge (issue 12): event(), identify(), backdated times, before_send.

All over real HTTP to the local server, through the same handler, queue, delivery and
counters as tagged records (no second delivery path).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import vf_otel
from vf_otel.testing import VibefollowServer

WHEN = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.fixture
def handler(root_handler: vf_otel.VibefollowHandler) -> vf_otel.VibefollowHandler:
    """The handler on the root logger, where event() and identify() records go."""
    return root_handler


def test_event_takes_its_user_from_the_argument_or_the_context(
    vibefollow_server: VibefollowServer, handler: vf_otel.VibefollowHandler
) -> None:
    """event() sends one event; the user is the argument, else vf_otel.user()'s."""
    vf_otel.event("report_exported", user="usr_1", properties={"format": "pdf"})
    with vf_otel.user("usr_2"):
        vf_otel.event("report_exported")
    assert handler.flush(10.0)
    sent = [(e["name"], e["external_user_id"], e["properties"]) for e in vibefollow_server.events]
    assert sent == [
        ("report_exported", "usr_1", {"format": "pdf"}),
        ("report_exported", "usr_2", {}),
    ]


def test_event_without_any_user_is_counted_as_missing_user(
    vibefollow_server: VibefollowServer, handler: vf_otel.VibefollowHandler
) -> None:
    """No user argument and none in context: dropped and counted, never raised."""
    vf_otel.event("report_exported")
    assert not handler.flush(10.0)
    assert handler.stats().dropped == {"missing_user": 1}
    assert vibefollow_server.events == []


@pytest.mark.parametrize(
    "when",
    [
        WHEN,
        WHEN.astimezone(timezone(timedelta(hours=2))),
        WHEN.timestamp(),
        int(WHEN.timestamp()),
        "2026-11-30T10:00:00Z",
        "2026-11-30T12:00:00+02:00",
    ],
    ids=["utc", "offset", "float", "int", "iso-z", "iso-offset"],
)
def test_occurred_at_backdates_the_event_in_utc(
    vibefollow_server: VibefollowServer, handler: vf_otel.VibefollowHandler, when: object
) -> None:
    """occurred_at= (datetime with any offset, epoch seconds, ISO string) is sent as UTC Z."""
    vf_otel.event("imported", user="usr_1", occurred_at=when)  # type: ignore[arg-type]
    assert handler.flush(10.0)
    assert [e["occurred_at"] for e in vibefollow_server.events] == ["2026-11-30T10:00:00.000Z"]


def test_the_vf_occurred_at_tag_backdates_a_log_call(
    vibefollow_server: VibefollowServer, handler: vf_otel.VibefollowHandler
) -> None:
    """extra={"vf_occurred_at": ...} sets the event's time; a time two days ahead is refused."""
    log = logging.getLogger("app.backfill")
    log.warning("imported", extra={"vf_user": "usr_1", "vf_occurred_at": WHEN})
    ahead = datetime.now(UTC) + timedelta(days=2)
    log.warning("imported", extra={"vf_user": "usr_2", "vf_occurred_at": ahead})
    assert not handler.flush(10.0)  # one was refused
    assert [e["occurred_at"] for e in vibefollow_server.events] == ["2026-11-30T10:00:00.000Z"]
    assert handler.stats().dropped == {"invalid_occurred_at": 1}


def test_the_vf_occurred_at_span_attribute_backdates_the_event(
    vibefollow_server: VibefollowServer,
) -> None:
    """A span's vf.occurred_at (epoch seconds or ISO string) replaces its start time."""
    exporter = vf_otel.VibefollowSpanExporter(
        api_key=vibefollow_server.api_key, base_url=vibefollow_server.base_url
    )
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    tracer.start_span("a", attributes={"vf.user": "u", "vf.occurred_at": WHEN.timestamp()}).end()
    tracer.start_span("b", attributes={"vf.user": "u", "vf.occurred_at": "2026-11-30T10:00Z"}).end()
    try:
        assert exporter.export(memory.get_finished_spans()) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert [e["occurred_at"] for e in vibefollow_server.events] == ["2026-11-30T10:00:00.000Z"] * 2


def test_identify_upserts_the_user_without_an_event(
    vibefollow_server: VibefollowServer, handler: vf_otel.VibefollowHandler
) -> None:
    """identify() posts /users with email top-level, sends no event, counts users_sent."""
    vf_otel.identify("usr_9", {"email": "ada@example.com", "plan": "pro"})
    assert handler.flush(10.0)
    assert vibefollow_server.users == [
        {"external_user_id": "usr_9", "email": "ada@example.com", "traits": {"plan": "pro"}}
    ]
    assert vibefollow_server.events == []
    stats = handler.stats()
    assert (stats.enqueued, stats.sent, stats.users_sent, stats.dropped_total) == (0, 0, 1, 0)


def test_identify_with_no_traits_mapping_is_refused(
    vibefollow_server: VibefollowServer, handler: vf_otel.VibefollowHandler
) -> None:
    """identify() with traits that are no mapping: counted as invalid_traits, nothing sent."""
    vf_otel.identify("usr_9", "plan=pro")  # type: ignore[arg-type]
    assert not handler.flush(10.0)
    assert handler.stats().dropped == {"invalid_traits": 1}
    assert vibefollow_server.requests == []


def _scrub(event: vf_otel.Event) -> vf_otel.Event | None:
    if event.name == "noise":
        return None
    if event.name == "boom":
        raise RuntimeError("a bug in the app's hook")
    return dataclasses.replace(event, properties={**event.properties, "scrubbed": True})


def test_before_send_rewrites_filters_and_survives_its_own_errors(
    vibefollow_server: VibefollowServer,
) -> None:
    """before_send's result is what is sent; None leaves the event out (filtered, not a
    loss for flush()); what it raises drops that event only, reported to on_error."""
    errors: list[tuple[str, int]] = []
    made = vf_otel.VibefollowHandler(
        api_key=vibefollow_server.api_key,
        base_url=vibefollow_server.base_url,
        before_send=_scrub,
        on_error=lambda exc, events: errors.append((type(exc).__name__, len(events))),
    )
    log = logging.getLogger("app.before_send")
    log.propagate = False
    log.addHandler(made)
    try:
        log.warning("kept", extra={"vf_user": "u", "vf_properties": {"a": 1}})
        log.warning("noise", extra={"vf_user": "u"})
        assert made.flush(10.0)  # a filtered event is the app's choice, not a loss
        log.warning("boom", extra={"vf_user": "u"})
        assert not made.flush(10.0)
        stats = made.stats()
    finally:
        log.removeHandler(made)
        made.close()
    assert [e["properties"] for e in vibefollow_server.events] == [{"a": 1, "scrubbed": True}]
    assert stats.dropped == {"filtered": 1, "before_send_failed": 1}
    assert errors == [("UndeliveredError", 1)]


def test_before_send_is_an_option_of_configure_and_the_exporters(
    vibefollow_server: VibefollowServer,
) -> None:
    """configure(before_send=...) applies it to the span exporter as to the handler."""
    provider = TracerProvider(shutdown_on_exit=False)
    logger = logging.getLogger("app.configured")
    logger.propagate = False
    config = vf_otel.configure(
        api_key=vibefollow_server.api_key,
        base_url=vibefollow_server.base_url,
        before_send=_scrub,
        logger=logger,
        tracer_provider=provider,
        handle_sigterm=False,
    )
    try:
        provider.get_tracer("t").start_span("span_kept", attributes={"vf.user": "u"}).end()
        provider.get_tracer("t").start_span("noise", attributes={"vf.user": "u"}).end()
        logger.warning("log_kept", extra={"vf_user": "u"})
        assert config.flush(10.0)
    finally:
        config.shutdown()
    seen: dict[str, Any] = {e["name"]: e["properties"] for e in vibefollow_server.events}
    assert seen == {"span_kept": {"scrubbed": True}, "log_kept": {"scrubbed": True}}


def test_before_send_must_be_callable() -> None:
    """A before_send that cannot be called is a ValueError at construction."""
    with pytest.raises(ValueError, match="before_send"):
        vf_otel.VibefollowHandler(api_key="sk_test_x", before_send="nope")  # type: ignore[arg-type]


@pytest.mark.parametrize("call", ["event", "identify", "track"])
def test_with_no_handler_installed_it_says_so(call: str) -> None:
    """event(), identify() and @track with no Vibefollow handler warn (RuntimeWarning), as the
    structlog processor does, instead of doing nothing silently; they never raise."""
    assert not any(isinstance(h, vf_otel.VibefollowHandler) for h in logging.getLogger().handlers)

    @vf_otel.track("report_viewed", user="usr_1")
    def view() -> str:
        return "ok"

    calls: dict[str, Callable[[], object]] = {
        "event": lambda: vf_otel.event("report_viewed", user="usr_1"),
        "identify": lambda: vf_otel.identify("usr_1", {"plan": "pro"}),
        "track": view,
    }
    with pytest.warns(RuntimeWarning, match=rf"vf_otel\.{call}: no VibefollowHandler"):
        calls[call]()


def test_with_a_handler_installed_it_says_nothing(
    handler: vf_otel.VibefollowHandler, recwarn: pytest.WarningsRecorder
) -> None:
    """With a VibefollowHandler on the root logger the events go, and nothing is warned."""
    vf_otel.event("report_viewed", user="usr_1")
    vf_otel.identify("usr_1", {"plan": "pro"})
    assert handler.flush(10)
    assert [w for w in recwarn if issubclass(w.category, RuntimeWarning)] == []
    assert handler.stats().sent == 1
    assert handler.stats().users_sent == 1
