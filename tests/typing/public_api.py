"""The README's and the docs' examples, type-annotated: checked by ``mypy --strict tests/typing``.

Never run, only type-checked: it pins the public API's types as users see them, so a
signature change that would break a strictly typed app fails CI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

import vf_otel
from vf_otel.testing import DEFAULT_API_KEY, FaultKind, RecordedRequest, VibefollowServer
from vf_otel.typing import BeforeSend, ErrorCallback


def readme() -> None:
    """README.md: the handler on the root logger, a tagged and an untagged record."""
    logging.getLogger().addHandler(vf_otel.VibefollowHandler())
    log = logging.getLogger("myapp")
    log.info("user_signed_up", extra={"vf_user": "usr_42", "vf_properties": {"plan": "trial"}})
    log.info("cache warmed")


def on_error(exc: vf_otel.VibefollowError, events: Sequence[vf_otel.Event], /) -> None:
    """An ``on_error`` hook: the exception says why, the events say what."""
    status: int = exc.status
    names: list[str] = [event.name for event in events]
    users: list[str] = [event.user_id for event in events]
    print(status, names, users)


def handler_options() -> vf_otel.VibefollowHandler:
    """docs/configuration.md: every option by keyword."""
    callback: ErrorCallback = on_error
    return vf_otel.VibefollowHandler(
        logging.INFO,
        api_key="sk_live_x",
        base_url="https://api.vibefollow.com",
        batch_size=100,
        flush_interval=2.0,
        max_queue_size=10_000,
        timeout=10.0,
        export_timeout=30.0,
        shutdown_timeout=10.0,
        max_retries=8,
        allow_insecure_http=False,
        enabled=True,
        debug=False,
        on_error=callback,
        transport=httpx.MockTransport(lambda request: httpx.Response(202)),
    )


def handler_methods(handler: vf_otel.VibefollowHandler) -> None:
    """flush, stats, close: docs/configuration.md#methods and docs/delivery.md#counting."""
    delivered: bool = handler.flush(timeout=5)
    stats: vf_otel.Stats = handler.stats()
    counts: tuple[int, int, int, int, int, int, int] = (
        stats.enqueued,
        stats.sent,
        stats.retried,
        stats.dead_lettered,
        stats.users_sent,
        stats.queued,
        stats.backlog,
    )
    missing: int = stats.dropped.get("missing_user", 0)
    disabled: int = stats.disabled
    collided: int = stats.key_collisions
    print(delivered, counts, missing, disabled, collided, stats.dropped_total)
    handler.close()


def context_user() -> str | None:
    """docs/logging.md: the user for a block."""
    with vf_otel.user("usr_42") as current:
        inner: str | None = current
    with vf_otel.user(42), vf_otel.user(None):
        pass
    print(inner)
    return vf_otel.current_user()


def spans(server: VibefollowServer) -> list[str]:
    """docs/spans.md: the exporter behind a batch processor, the user processor first."""
    exporter = vf_otel.VibefollowSpanExporter(
        api_key=server.api_key, base_url=server.base_url, include_error_spans=False
    )
    provider = TracerProvider()
    provider.add_span_processor(vf_otel.VibefollowUserSpanProcessor())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    with provider.get_tracer("billing").start_as_current_span("POST /billing/plan") as span:
        span.set_attributes({"vf.user": "usr_42", "vf.event": "subscription_changed"})
    flushed: bool = exporter.force_flush(timeout_millis=5_000)
    result: SpanExportResult = exporter.export([])
    print(flushed, result, exporter.stats().sent)
    provider.shutdown()
    return [str(event["name"]) for event in server.events]


def log_exporter() -> vf_otel.VibefollowLogExporter:
    """docs/spans.md#the-otel-log-pipeline: the exporter for an OTel LoggerProvider."""
    exporter = vf_otel.VibefollowLogExporter(api_key="sk_live_x")
    ok: bool = exporter.force_flush()
    print(ok, exporter.stats())
    return exporter


def configure() -> None:
    """docs/configure-and-track.md: everything in one call."""
    configured: vf_otel.Configuration = vf_otel.configure(
        spans=False, logger=logging.getLogger("myapp"), handle_sigterm=True, flush_interval=1.0
    )
    same: vf_otel.Configuration = vf_otel.configure(handle_sigterm=False)
    print(same is configured)
    handler: vf_otel.VibefollowHandler | None = configured.handler
    exporter: vf_otel.VibefollowSpanExporter | None = configured.span_exporter
    delivered: bool = configured.flush(timeout=5)
    print(handler, exporter, delivered)
    configured.shutdown()


def sigterm_for_a_handler_from_dictconfig() -> None:
    """docs/production.md#at-sigterm: the one-liner for a handler installed without configure()."""
    installed: bool = vf_otel.flush_on_sigterm()
    print(installed)


class Account:
    """A service object for ``@track`` on methods."""

    owner_id = "usr_42"


class Billing:
    """``@track`` with callables that receive the call's arguments."""

    def __init__(self) -> None:
        self.account = Account()

    @vf_otel.track(
        "plan_changed",
        user=lambda self, plan: self.account.owner_id,
        properties=lambda self, plan: {"to": plan},
    )
    def change_plan(self, plan: str) -> None:
        """The decorated method keeps its signature."""


@vf_otel.track("feature_used", properties={"feature": "export"})
def export_report(report_id: str) -> bytes:
    """``@track`` preserves the function's type: ``export_report("r1")`` is ``bytes``."""
    return report_id.encode()


@vf_otel.track("onboarding_step", properties=lambda step: {"step": step})
async def complete_step(step: int) -> None:
    """Async functions keep their coroutine type."""


def tracked() -> None:
    """The decorated callables type-check like the originals."""
    data: bytes = export_report("r1")
    Billing().change_plan("pro")
    asyncio.run(complete_step(2))
    print(data)


def sample(event: vf_otel.Event, /) -> vf_otel.Event | None:
    """A ``before_send`` hook: sampling and scrubbing."""
    if event.name == "noise":
        return None
    return dataclasses.replace(event, properties={"scrubbed": True})


def beyond_the_bridge() -> None:
    """docs/configure-and-track.md: event(), identify(), backdated times, before_send."""
    vf_otel.event("report_exported", user="usr_42", properties={"format": "pdf"})
    vf_otel.event("report_exported", occurred_at=datetime.now(UTC))
    vf_otel.event("imported", user=42, occurred_at=1_764_496_800.0)
    vf_otel.event("imported", user="usr_1", occurred_at="2026-11-30T10:00:00Z")
    vf_otel.identify("usr_42", {"email": "ada@example.com", "plan": "pro"})
    hook: BeforeSend = sample
    config = vf_otel.configure(before_send=hook, spans=False)
    handler = vf_otel.VibefollowHandler(before_send=sample)
    exporter = vf_otel.VibefollowSpanExporter(before_send=sample)
    config.shutdown()
    handler.close()
    exporter.shutdown()


def testing_server() -> None:
    """docs/testing.md: the local server, its records and its scripted faults."""
    with VibefollowServer() as server:
        server.fail_next(503, retry_after="1")
        server.reset_next(count=1)
        server.delay_next(0.1)
        server.lose_response_next(path="/api/v1/events/batch")
        server.reject_event(lambda event: event.get("name") == "bad")
        ok: bool = server.wait_for_events(1, timeout=1)
        events: list[dict[str, Any]] = server.events
        requests: list[RecordedRequest] = server.requests
        print(ok, events, [r.status for r in requests], server.replayed, server.rejected)
        faults: list[FaultKind | None] = [r.fault for r in requests]
        print(server.api_key == DEFAULT_API_KEY, faults)
        server.clear()


def errors(exc: Exception) -> str:
    """The exception hierarchy of docs/delivery.md."""
    if isinstance(exc, vf_otel.RateLimitError | vf_otel.ServerError):
        retry_after: float | None = exc.retry_after
        return f"retry after {retry_after}"
    if isinstance(exc, vf_otel.ValidationError):
        field: str | None = exc.field
        return f"invalid {field}"
    if isinstance(exc, vf_otel.AuthError | vf_otel.NetworkError | vf_otel.UndeliveredError):
        return exc.message
    required: tuple[str, ...] = vf_otel.CANONICAL_EVENTS["feature_used"]
    version: str = vf_otel.__version__
    return f"{required} {version}"


def structlog_chain() -> list[Any]:
    """docs/integrations/structlog.md: the processor before the renderer (no structlog import:
    a processor is a plain callable)."""
    event_dict: dict[str, Any] = {"event": "signup", "vf_user": "usr_1"}
    rest = vf_otel.structlog_processor(logging.getLogger("shop"), "info", event_dict)
    return [vf_otel.structlog_processor, dict(rest)]


def mapping_rules() -> None:
    """docs/rules.md: rules as values or from a file, given to both exporters."""
    signup = vf_otel.Rule(
        name="signup",
        event="user_signed_up",
        kind="server",
        where={"http.route": "/api/signup", "http.response.status_code": "2xx"},
        properties={"plan": "app.plan"},
    )
    from_file: tuple[vf_otel.Rule, ...] = vf_otel.load_rules("rules.toml")
    label: str = signup.label
    vf_otel.VibefollowSpanExporter(rules=[signup, *from_file])
    vf_otel.VibefollowLogExporter(rules="rules.toml")
    print(label)
