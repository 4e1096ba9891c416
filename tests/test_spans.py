"""VibefollowSpanExporter and VibefollowUserSpanProcessor over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, Tracer

import vf_otel
from vf_otel import VibefollowSpanExporter, VibefollowUserSpanProcessor
from vf_otel._sources.otel import CONTEXT_USER_KEY, translate_span
from vf_otel.testing import VibefollowServer

START = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z
START_WIRE = "2023-11-14T22:13:20.123Z"
LATER = START + 2_500_000_000
LATER_WIRE = "2023-11-14T22:13:22.623Z"

MakeExporter = Callable[..., VibefollowSpanExporter]


@pytest.fixture
def make_exporter(server: VibefollowServer) -> Iterator[MakeExporter]:
    """Build exporters pointed at the server; all are shut down afterwards."""
    made: list[VibefollowSpanExporter] = []

    def make(**options: Any) -> VibefollowSpanExporter:
        options.setdefault("api_key", server.api_key)
        exporter = VibefollowSpanExporter(base_url=server.base_url, **options)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.shutdown()


@pytest.fixture
def exporter(make_exporter: MakeExporter) -> VibefollowSpanExporter:
    """An exporter with default options."""
    return make_exporter()


def tracer_for(exporter: VibefollowSpanExporter) -> Tracer:
    """A tracer whose spans go, synchronously, through the user processor to ``exporter``."""
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(VibefollowUserSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("tests")


def recorded_spans(build: Callable[[Tracer], None]) -> list[ReadableSpan]:
    """Finished spans made by ``build``, captured in memory."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("tests"))
    return list(memory.get_finished_spans())


def test_tagged_span_is_delivered_exactly(
    exporter: VibefollowSpanExporter, server: VibefollowServer
) -> None:
    """vf.user, vf.event and vf.properties.* become one event at the span's start time."""
    span = tracer_for(exporter).start_span(
        "GET /reports",
        start_time=START,
        attributes={
            "vf.user": "usr_42",
            "vf.event": "report_viewed",
            "vf.properties.report": "weekly",
            "vf.properties.rows": 3,
            "vf.properties.tags": ("a", "b"),
            "http.method": "GET",
        },
    )
    span.end(end_time=LATER)
    assert exporter.force_flush(5_000) is True
    assert server.events == [
        {
            "external_user_id": "usr_42",
            "name": "report_viewed",
            "properties": {"report": "weekly", "rows": 3, "tags": ["a", "b"]},
            "occurred_at": START_WIRE,
        }
    ]
    assert exporter.stats().sent == 1


def test_event_name_defaults_to_span_name(
    exporter: VibefollowSpanExporter, server: VibefollowServer
) -> None:
    """A span with vf.user but no vf.event is named after the span."""
    tracer_for(exporter).start_span("checkout", attributes={"vf.user": 7}).end()
    assert exporter.force_flush(5_000)
    assert [(e["name"], e["external_user_id"], e["properties"]) for e in server.events] == [
        ("checkout", "7", {})
    ]


def test_untagged_spans_send_nothing(
    exporter: VibefollowSpanExporter, server: VibefollowServer
) -> None:
    """Spans without vf.user or vf.event (even inside a user context) are not events."""
    tracer = tracer_for(exporter)
    with vf_otel.user("usr_1"), tracer.start_as_current_span("db.query") as span:
        span.set_attribute("vf.properties.ignored", 1)
        span.add_event("cache miss", {"key": "x"})
    assert exporter.force_flush(5_000)
    stats = exporter.stats()
    assert (stats.enqueued, stats.dropped_total) == (0, 0)
    assert server.requests == []


def test_traits_upsert_the_user(exporter: VibefollowSpanExporter, server: VibefollowServer) -> None:
    """vf.traits.* become a /users upsert with email at the top level."""
    attributes = {
        "vf.user": "usr_5",
        "vf.event": "user_signed_up",
        "vf.traits.email": "ada@example.com",
        "vf.traits.plan": "pro",
    }
    tracer_for(exporter).start_span("signup", attributes=attributes).end()
    assert exporter.force_flush(5_000)
    assert server.users == [
        {"external_user_id": "usr_5", "email": "ada@example.com", "traits": {"plan": "pro"}}
    ]
    assert [e["name"] for e in server.events] == ["user_signed_up"]


def test_span_events_become_events(
    exporter: VibefollowSpanExporter, server: VibefollowServer
) -> None:
    """Tagged span events are sent at their own time, taking the span's user when they lack one."""
    span = tracer_for(exporter).start_span("import", start_time=START)
    span.add_event("noise", {"rows": 1}, timestamp=START)
    span.add_event("step", {"vf.event": "onboarding_step", "vf.properties.step": 2}, LATER)
    span.add_event("invite", {"vf.user": "usr_8", "vf.properties.n": 1}, timestamp=LATER)
    span.set_attribute("vf.user", "usr_3")
    span.end()
    assert exporter.force_flush(5_000)
    assert server.events == [
        {
            "external_user_id": "usr_3",
            "name": "import",
            "properties": {},
            "occurred_at": START_WIRE,
        },
        {
            "external_user_id": "usr_3",
            "name": "onboarding_step",
            "properties": {"step": 2},
            "occurred_at": LATER_WIRE,
        },
        {
            "external_user_id": "usr_8",
            "name": "invite",
            "properties": {"n": 1},
            "occurred_at": LATER_WIRE,
        },
    ]


def test_span_event_alone_is_sent_without_the_span(
    exporter: VibefollowSpanExporter, server: VibefollowServer
) -> None:
    """An untagged span with one tagged span event yields only that event."""
    tracer = tracer_for(exporter)
    with tracer.start_as_current_span("job") as span:
        span.add_event("done", {"vf.user": "usr_2", "vf.event": "trial_started"})
    assert exporter.force_flush(5_000)
    assert [(e["name"], e["external_user_id"]) for e in server.events] == [
        ("trial_started", "usr_2")
    ]


def test_user_from_context_fills_tagged_spans(
    exporter: VibefollowSpanExporter, server: VibefollowServer
) -> None:
    """Inside vf_otel.user(), a span tagged only with vf.event takes that user."""
    tracer = tracer_for(exporter)
    with vf_otel.user("usr_9"), tracer.start_as_current_span("export") as span:
        span.set_attribute("vf.event", "data_exported")
    assert exporter.force_flush(5_000)
    assert [(e["name"], e["external_user_id"]) for e in server.events] == [
        ("data_exported", "usr_9")
    ]


def test_explicit_vf_user_beats_context(
    exporter: VibefollowSpanExporter, server: VibefollowServer
) -> None:
    """A span's own vf.user wins over the user in context."""
    tracer = tracer_for(exporter)
    with vf_otel.user("usr_ctx"):
        tracer.start_span("x", attributes={"vf.user": "usr_own", "vf.event": "e"}).end()
    assert exporter.force_flush(5_000)
    assert [e["external_user_id"] for e in server.events] == ["usr_own"]


def test_w3c_baggage_header_supplies_the_user(
    exporter: VibefollowSpanExporter, server: VibefollowServer
) -> None:
    """A user received in a W3C baggage header (extracted by the propagators) is used."""
    tracer = tracer_for(exporter)
    incoming = propagate.extract({"baggage": "vf.user=usr_7,other=1"})
    token = otel_context.attach(incoming)
    try:
        with tracer.start_as_current_span("GET /") as span:
            span.set_attribute("vf.event", "page_viewed")
    finally:
        otel_context.detach(token)
    # An explicit parent context (as instrumentations pass) is honoured too.
    tracer.start_span("child", context=incoming, attributes={"vf.event": "clicked"}).end()
    assert exporter.force_flush(5_000)
    assert [(e["name"], e["external_user_id"]) for e in server.events] == [
        ("page_viewed", "usr_7"),
        ("clicked", "usr_7"),
    ]


def test_user_block_stays_out_of_outgoing_headers_by_default() -> None:
    """vf_otel.user() keeps the id in-process: propagators inject no vf.user baggage."""
    carrier: dict[str, str] = {}
    with vf_otel.user("usr_private"):
        assert vf_otel.current_user() == "usr_private"
        propagate.inject(carrier)
    assert "usr_private" not in str(carrier)


def test_user_block_propagates_only_when_asked() -> None:
    """user(..., propagate=True) puts the id in the W3C baggage header for downstream services."""
    carrier: dict[str, str] = {}
    with vf_otel.user("usr_shared", propagate=True):
        propagate.inject(carrier)
    assert "vf.user=usr_shared" in carrier.get("baggage", "")
    after: dict[str, str] = {}
    propagate.inject(after)
    assert "vf.user" not in after.get("baggage", "")  # gone with the block


def test_inner_user_block_beats_upstream_baggage(
    exporter: VibefollowSpanExporter, server: VibefollowServer
) -> None:
    """An upstream vf.user in baggage applies until a user() block says otherwise, even None."""
    tracer = tracer_for(exporter)
    token = otel_context.attach(propagate.extract({"baggage": "vf.user=usr_upstream"}))
    try:
        tracer.start_span("a", attributes={"vf.event": "upstream"}).end()
        with vf_otel.user("usr_inner"):
            tracer.start_span("b", attributes={"vf.event": "inner"}).end()
        with vf_otel.user(None):
            assert vf_otel.current_user() is None  # anonymous: the baggage user is hidden
    finally:
        otel_context.detach(token)
    assert exporter.force_flush(5_000)
    assert [(e["name"], e["external_user_id"]) for e in server.events] == [
        ("upstream", "usr_upstream"),
        ("inner", "usr_inner"),
    ]


def test_processor_copies_user_under_its_own_key() -> None:
    """The processor writes vf.context_user (never vf.user), and only with a user in context."""

    def build(tracer: Tracer) -> None:
        tracer.start_span("outside").end()
        with vf_otel.user("usr_4"):
            tracer.start_span("inside").end()

    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(VibefollowUserSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("tests"))
    attrs = {span.name: dict(span.attributes or {}) for span in memory.get_finished_spans()}
    assert attrs == {"outside": {}, "inside": {CONTEXT_USER_KEY: "usr_4"}}


def test_tagged_span_without_any_user_is_dropped_and_counted(
    exporter: VibefollowSpanExporter, server: VibefollowServer
) -> None:
    """vf.event with no user anywhere is counted as missing_user and never sent."""
    tracer_for(exporter).start_span("x", attributes={"vf.event": "e"}).end()
    assert not exporter.force_flush(5_000)  # the event was dropped
    assert exporter.stats().dropped == {"missing_user": 1}
    assert server.requests == []


def test_error_spans_are_skipped_by_default(
    exporter: VibefollowSpanExporter, server: VibefollowServer
) -> None:
    """A span with status ERROR (and its span events) emits nothing."""
    span = tracer_for(exporter).start_span("pay", attributes={"vf.user": "u", "vf.event": "paid"})
    span.add_event("step", {"vf.event": "charged"})
    span.set_status(Status(StatusCode.ERROR, "card declined"))
    span.end()
    assert exporter.force_flush(5_000)
    assert server.events == []
    assert exporter.stats().enqueued == 0


def test_error_spans_are_sent_when_opted_in(
    make_exporter: MakeExporter, server: VibefollowServer
) -> None:
    """include_error_spans=True sends ERROR spans like any other."""
    exporter = make_exporter(include_error_spans=True)
    span = tracer_for(exporter).start_span("pay", attributes={"vf.user": "u", "vf.event": "paid"})
    span.set_status(Status(StatusCode.ERROR))
    span.end()
    assert exporter.force_flush(5_000)
    assert [e["name"] for e in server.events] == ["paid"]


def test_same_span_exported_twice_is_recorded_once(
    exporter: VibefollowSpanExporter, server: VibefollowServer
) -> None:
    """Exporting one span twice sends the same idempotency key; the server replays it."""
    spans = recorded_spans(
        lambda tracer: tracer.start_span("s", attributes={"vf.user": "u", "vf.event": "e"}).end()
    )
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.force_flush(5_000)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.force_flush(5_000)
    assert len(server.events) == 1
    assert server.replayed == 1
    keys = [request.idempotency_key for request in server.requests]
    assert len(keys) == 2
    assert keys[0] is not None
    assert keys[0] == keys[1]


@pytest.mark.usefixtures("fast_clock")  # the retry's backoff not waited out
def test_lost_response_is_retried_and_deduplicated(
    exporter: VibefollowSpanExporter, server: VibefollowServer
) -> None:
    """A response lost after processing is retried with the same key and not recorded twice."""
    server.lose_response_next()
    tracer_for(exporter).start_span("s", attributes={"vf.user": "u", "vf.event": "e"}).end()
    assert exporter.force_flush(10_000)
    assert len(server.events) == 1
    assert server.replayed == 1


def test_event_ids_derive_from_trace_span_and_index() -> None:
    """The span is index 0 and its i-th span event i + 1, in the trace/span id form."""

    def build(tracer: Tracer) -> None:
        span = tracer.start_span("s", attributes={"vf.user": "u"})
        span.add_event("untagged")
        span.add_event("tagged", {"vf.event": "t"})
        span.end()

    (span,) = recorded_spans(build)
    ctx = span.context
    assert ctx is not None
    ids = [getattr(result, "event_id", None) for result in translate_span(span)]
    prefix = f"{ctx.trace_id:032x}{ctx.span_id:016x}"
    assert ids == [f"{prefix}-0", f"{prefix}-2"]
    assert [getattr(r, "event_id", None) for r in translate_span(span)] == ids


def test_export_never_raises(exporter: VibefollowSpanExporter) -> None:
    """A batch that cannot be translated returns FAILURE and is counted, not raised."""
    result = exporter.export([object()])  # type: ignore[list-item]
    assert result is SpanExportResult.FAILURE
    assert exporter.stats().dropped == {"internal_error": 1}


def test_shutdown_is_idempotent_and_later_exports_fail(
    exporter: VibefollowSpanExporter,
) -> None:
    """shutdown() twice is fine; export() after it returns FAILURE; force_flush a bool."""
    spans = recorded_spans(lambda tracer: tracer.start_span("s").end())
    exporter.shutdown()
    exporter.shutdown()
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert isinstance(exporter.force_flush(100), bool)


def test_without_api_key_events_are_counted_and_dropped(
    make_exporter: MakeExporter, server: VibefollowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no key at all, tagged spans are dropped as no_api_key and nothing is sent."""
    monkeypatch.delenv("VIBEFOLLOW_API_KEY", raising=False)
    exporter = make_exporter(api_key=None)
    tracer_for(exporter).start_span("s", attributes={"vf.user": "u"}).end()
    assert not exporter.force_flush(1_000)  # the event was dropped
    assert exporter.stats().dropped == {"no_api_key": 1}
    assert server.requests == []


def test_invalid_event_is_rejected_and_reported(
    make_exporter: MakeExporter, server: VibefollowServer
) -> None:
    """A canonical event missing its required property is refused client-side and reported."""
    errors: list[object] = []
    exporter = make_exporter(on_error=lambda exc, events: errors.append(exc))
    attributes = {"vf.user": "u", "vf.event": "feature_used"}
    tracer_for(exporter).start_span("s", attributes=attributes).end()
    assert not exporter.force_flush(1_000)  # the event was refused
    assert exporter.stats().dropped == {"missing_required_property": 1}
    assert len(errors) == 1
    assert server.requests == []


def test_bad_include_error_spans_raises() -> None:
    """include_error_spans must be a bool (bad arguments raise at construction)."""
    with pytest.raises(ValueError, match="include_error_spans"):
        VibefollowSpanExporter(api_key="k", include_error_spans="yes")  # type: ignore[arg-type]
