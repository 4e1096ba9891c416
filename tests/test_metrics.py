"""Visible loss: stats() as OpenTelemetry metrics, and on_error for every dead letter."""

from __future__ import annotations

import dataclasses
import gc
import logging
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import vf_otel
from vf_otel._delivery.ledger import Stats
from vf_otel._observe import COUNTERS, QUEUE_GAUGE, SOURCE_ATTRIBUTE, register_metrics
from vf_otel.testing import VibefollowServer

Points = dict[tuple[str, tuple[tuple[str, Any], ...]], float]


@pytest.fixture(scope="module")
def server() -> Iterator[VibefollowServer]:
    """One local Vibefollow API for the module; each test clears it."""
    with VibefollowServer() as running:
        yield running


@pytest.fixture
def api(server: VibefollowServer) -> VibefollowServer:
    """The module's server, emptied."""
    server.clear()
    return server


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryMetricReader]:
    """An SDK MeterProvider standing in for the app's global one, read in memory."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory], shutdown_on_exit=False)
    # Patched, not set: the global provider can be set only once per process.
    monkeypatch.setattr(metrics, "get_meter_provider", lambda: provider)
    yield memory
    provider.shutdown()


def collect(reader: InMemoryMetricReader) -> Points:
    """Every data point as {(metric name, sorted attributes): value}."""
    points: Points = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attrs = tuple(sorted((point.attributes or {}).items()))
                    points[metric.name, attrs] = point.value  # type: ignore[union-attr]
    return points


def _handler(api: VibefollowServer, **options: Any) -> vf_otel.VibefollowHandler:
    options.setdefault("flush_interval", 60.0)
    return vf_otel.VibefollowHandler(api_key=api.api_key, base_url=api.base_url, **options)


HANDLER = ((SOURCE_ATTRIBUTE, "handler"),)
EXPORTER = ((SOURCE_ATTRIBUTE, "exporter"),)


def test_handler_counters_are_observable(
    api: VibefollowServer, reader: InMemoryMetricReader, app_logger: logging.Logger
) -> None:
    """enqueued, sent, dropped{reason} and the queue gauge follow the handler's stats()."""
    handler = _handler(api)
    app_logger.addHandler(handler)
    try:
        for n in range(3):
            app_logger.info("signup", extra={"vf_user": f"u{n}"})
        app_logger.info("anonymous", extra={"vf_event": "x"})  # no user: dropped
        assert not handler.flush(5.0)  # one record was dropped
        points = collect(reader)
    finally:
        handler.close()
    assert points["vibefollow.events.enqueued", HANDLER] == 3
    assert points["vibefollow.events.sent", HANDLER] == 3
    assert points["vibefollow.events.retried", HANDLER] == 0
    assert points["vibefollow.events.dead_lettered", HANDLER] == 0
    assert points["vibefollow.events.dropped", (("reason", "missing_user"), *HANDLER)] == 1
    assert points[QUEUE_GAUGE, HANDLER] == 0


def test_user_upserts_and_key_collisions_are_observable(
    api: VibefollowServer, reader: InMemoryMetricReader, app_logger: logging.Logger
) -> None:
    """users_sent, users_failed (an email the API would refuse) and key_collisions."""
    handler = _handler(api)
    app_logger.addHandler(handler)
    try:
        app_logger.info("a", extra={"vf_user": "u1", "vf_traits": {"plan": "pro"}})
        app_logger.info("b", extra={"vf_user": "u2", "vf_traits": {"email": "not-an-email"}})
        app_logger.info("c", extra={"vf_user": "u3", "vf_properties": {1: "x", "1": "y"}})
        assert handler.flush(5.0)  # an upsert refused and a value left out: no event lost
        points = collect(reader)
    finally:
        handler.close()
    assert points["vibefollow.events.sent", HANDLER] == 3
    assert points["vibefollow.users.sent", HANDLER] == 1
    assert points["vibefollow.users.failed", HANDLER] == 1
    assert points["vibefollow.properties.key_collisions", HANDLER] == 1


def test_instruments_match_the_stats_fields(
    api: VibefollowServer, reader: InMemoryMetricReader
) -> None:
    """Every Stats counter named in the brief is an instrument; spooled only if Stats has it."""
    handler = _handler(api)
    try:
        names = {name for name, _ in collect(reader)}
    finally:
        handler.close()
    fields = {field.name for field in dataclasses.fields(Stats)}
    expected = {COUNTERS[name][0] for name in COUNTERS if name in fields and name != "dropped"}
    # An observable counter with no observation (no drop yet) exports no point.
    assert names == expected | {QUEUE_GAUGE}


@pytest.mark.usefixtures("fast_clock")  # the retry's backoff not waited out
def test_retries_and_dead_letters_are_counted(
    api: VibefollowServer, reader: InMemoryMetricReader, app_logger: logging.Logger
) -> None:
    """A 503 shows up as a retry, a poison event as a dead letter."""
    handler = _handler(api)
    app_logger.addHandler(handler)
    api.fail_next(503, retry_after="0")
    api.reject_event(lambda event: event["name"] == "poison")
    try:
        app_logger.info("poison", extra={"vf_user": "u"})
        app_logger.info("fine", extra={"vf_user": "u"})
        assert not handler.flush(10.0)  # one event was dead-lettered
        points = collect(reader)
    finally:
        handler.close()
    assert points["vibefollow.events.retried", HANDLER] >= 1
    assert points["vibefollow.events.dead_lettered", HANDLER] == 1
    assert points["vibefollow.events.sent", HANDLER] == 1


def test_exporters_report_under_their_own_source(
    api: VibefollowServer, reader: InMemoryMetricReader
) -> None:
    """The span exporter registers through its sink, as source "exporter"."""
    exporter = vf_otel.VibefollowSpanExporter(api_key=api.api_key, base_url=api.base_url)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        with provider.get_tracer("t").start_as_current_span("s", attributes={"vf.user": "u"}):
            pass
        assert exporter.force_flush(5000)
        points = collect(reader)
    finally:
        exporter.shutdown()
    assert points["vibefollow.events.sent", EXPORTER] == 1


def test_several_handlers_are_summed_and_not_kept_alive(
    api: VibefollowServer, reader: InMemoryMetricReader, app_logger: logging.Logger
) -> None:
    """Two handlers add up; registering does not keep a dropped handler's pipeline alive."""
    first, second = _handler(api), _handler(api)
    app_logger.addHandler(first)
    app_logger.addHandler(second)
    app_logger.info("e", extra={"vf_user": "u"})
    app_logger.removeHandler(first)
    app_logger.removeHandler(second)
    assert first.flush(5.0)
    assert second.flush(5.0)
    assert collect(reader)["vibefollow.events.sent", HANDLER] == 2
    first.close()
    second.close()
    pipeline = weakref.ref(second._pipeline)
    del second
    gc.collect()
    assert pipeline() is None
    assert collect(reader)["vibefollow.events.sent", HANDLER] == 1


def test_default_global_provider_registers_nothing() -> None:
    """Without an app MeterProvider (the API's proxy or no-op one) nothing is registered."""
    handler = vf_otel.VibefollowHandler(api_key="sk_test_x")
    try:
        assert not register_metrics(handler._pipeline, source_kind="handler")
        noop = metrics.NoOpMeterProvider()
        assert register_metrics(handler._pipeline, source_kind="x", meter_provider=noop)
    finally:
        handler.close()


def test_explicit_meter_provider_is_used(api: VibefollowServer) -> None:
    """meter_provider= wins over the global default."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory], shutdown_on_exit=False)
    handler = _handler(api)
    try:
        assert register_metrics(handler._pipeline, source_kind="mine", meter_provider=provider)
        points = collect(memory)
    finally:
        handler.close()
        provider.shutdown()
    assert points["vibefollow.events.enqueued", ((SOURCE_ATTRIBUTE, "mine"),)] == 0


def test_a_failing_stats_read_never_breaks_collection(reader: InMemoryMetricReader) -> None:
    """A source whose stats() raises is skipped quietly."""

    class Broken:
        def stats(self) -> Stats:
            raise RuntimeError("boom")

    broken = Broken()
    assert register_metrics(broken, source_kind="broken")
    assert not any(attrs == ((SOURCE_ATTRIBUTE, "broken"),) for _, attrs in collect(reader))


# -- on_error sees every dead letter ---------------------------------------------------------


def test_span_exporter_reports_every_dead_lettered_event(api: VibefollowServer) -> None:
    """A span event the server refuses reaches on_error with the Event; the rest lands."""
    reported: list[tuple[vf_otel.VibefollowError, Sequence[vf_otel.Event]]] = []
    exporter = vf_otel.VibefollowSpanExporter(
        api_key=api.api_key,
        base_url=api.base_url,
        on_error=lambda exc, events: reported.append((exc, list(events))),
    )
    api.reject_event(lambda event: event["name"].startswith("poison"))
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        for name in ("ok-1", "poison-1", "ok-2", "poison-2"):
            with provider.get_tracer("t").start_as_current_span(name, attributes={"vf.user": "u"}):
                pass
        assert not exporter.force_flush(10_000)  # two were dead-lettered
        stats = exporter.stats()
    finally:
        exporter.shutdown()
    assert sorted(e["name"] for e in api.events) == ["ok-1", "ok-2"]
    dead = [event.name for _, events in reported for event in events]
    assert sorted(dead) == ["poison-1", "poison-2"]
    assert all(isinstance(exc, vf_otel.ValidationError) for exc, _ in reported)
    assert stats.dead_lettered == 2
    assert stats.sent == 2
