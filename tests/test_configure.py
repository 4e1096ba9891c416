"""vf_otel.configure(): handler + span exporter installed in one call, drained by shutdown()."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._once import Once

import vf_otel
from vf_otel import VibefollowHandler
from vf_otel.testing import VibefollowServer

# Long enough that only flush/shutdown deliver: the tests prove shutdown drains.
IDLE_INTERVAL = 600.0


@pytest.fixture
def no_global_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the global tracer provider for this test (the API sets it once per process)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    """A logger of the app's own, not propagating, so tests do not share handlers."""
    logger = logging.getLogger("tests.configure.app")
    logger.propagate = False
    yield logger
    logger.handlers.clear()
    logger.propagate = True


def names(server: VibefollowServer) -> list[tuple[str, str]]:
    """(name, user) of every accepted event, sorted (logs and spans deliver independently)."""
    return sorted((e["name"], e["external_user_id"]) for e in server.events)


def test_logs_and_spans_are_sent_and_shutdown_drains_both(
    server: VibefollowServer, app_logger: logging.Logger
) -> None:
    """A tagged record and a tagged span both arrive once shutdown() has drained the queues."""
    provider = TracerProvider(shutdown_on_exit=False)
    configured = vf_otel.configure(
        api_key=server.api_key,
        base_url=server.base_url,
        flush_interval=IDLE_INTERVAL,
        logger=app_logger,
        tracer_provider=provider,
    )
    assert isinstance(configured.handler, VibefollowHandler)
    assert configured.handler in app_logger.handlers
    app_logger.warning("user_signed_up", extra={"vf_user": "usr_1"})
    tracer = provider.get_tracer("tests")
    with vf_otel.user("usr_2"), tracer.start_as_current_span("checkout") as span:
        span.set_attribute("vf.event", "trial_started")
    configured.shutdown()
    assert names(server) == [("trial_started", "usr_2"), ("user_signed_up", "usr_1")]
    assert configured.handler not in app_logger.handlers
    configured.shutdown()  # idempotent
    assert configured.span_exporter is not None
    assert configured.span_exporter.stats().sent == 1


def test_flush_delivers_without_shutting_down(
    server: VibefollowServer, app_logger: logging.Logger
) -> None:
    """flush() delivers what both sides queued and returns True."""
    provider = TracerProvider(shutdown_on_exit=False)
    configured = vf_otel.configure(
        api_key=server.api_key,
        base_url=server.base_url,
        flush_interval=IDLE_INTERVAL,
        logger=app_logger,
        tracer_provider=provider,
    )
    try:
        app_logger.warning("a", extra={"vf_user": "u"})
        provider.get_tracer("t").start_span("b", attributes={"vf.user": "u"}).end()
        assert configured.flush(5.0) is True
        assert names(server) == [("a", "u"), ("b", "u")]
    finally:
        configured.shutdown()


@pytest.mark.usefixtures("no_global_provider")
def test_creates_a_global_sdk_provider_when_none_is_set(
    server: VibefollowServer, app_logger: logging.Logger
) -> None:
    """With no provider set, configure() makes an SDK TracerProvider global and uses it."""
    configured = vf_otel.configure(
        api_key=server.api_key, base_url=server.base_url, logger=app_logger
    )
    try:
        assert isinstance(trace.get_tracer_provider(), TracerProvider)
        trace.get_tracer("t").start_span("global", attributes={"vf.user": "u"}).end()
    finally:
        configured.shutdown()
    assert names(server) == [("global", "u")]


@pytest.mark.usefixtures("no_global_provider")
def test_adds_to_an_existing_global_sdk_provider(
    server: VibefollowServer, app_logger: logging.Logger
) -> None:
    """An SDK provider already set globally is kept; the processors are added to it."""
    existing = TracerProvider(shutdown_on_exit=False)
    trace.set_tracer_provider(existing)
    configured = vf_otel.configure(
        api_key=server.api_key, base_url=server.base_url, logger=app_logger, logs=False
    )
    try:
        assert trace.get_tracer_provider() is existing
        assert configured.handler is None
        existing.get_tracer("t").start_span("kept", attributes={"vf.user": "u"}).end()
    finally:
        configured.shutdown()
    assert names(server) == [("kept", "u")]


def test_non_sdk_provider_skips_spans_with_a_warning(
    server: VibefollowServer, app_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider that cannot take processors: spans are skipped, logs still work."""
    with caplog.at_level(logging.WARNING, logger="vf_otel"):
        configured = vf_otel.configure(
            api_key=server.api_key,
            base_url=server.base_url,
            logger=app_logger,
            tracer_provider=trace.NoOpTracerProvider(),
        )
    try:
        assert configured.span_exporter is None
        assert "not an OpenTelemetry SDK TracerProvider" in caplog.text
        app_logger.warning("still_logged", extra={"vf_user": "u"})
    finally:
        configured.shutdown()
    assert names(server) == [("still_logged", "u")]


def test_track_reaches_the_configured_root_handler(server: VibefollowServer) -> None:
    """@track events reach the handler configure() put on the root logger."""
    configured = vf_otel.configure(api_key=server.api_key, base_url=server.base_url, spans=False)

    @vf_otel.track("feature_used", properties={"feature": "export"})
    def export() -> str:
        return "ok"

    try:
        with vf_otel.user("usr_3"):
            assert export() == "ok"
    finally:
        configured.shutdown()
    assert names(server) == [("feature_used", "usr_3")]
    assert configured.handler not in logging.getLogger().handlers


def test_bad_option_raises_before_installing_anything(app_logger: logging.Logger) -> None:
    """A bad argument raises ValueError and leaves the logger and provider untouched."""
    provider = TracerProvider(shutdown_on_exit=False)
    with pytest.raises(ValueError, match="batch_size"):
        vf_otel.configure(api_key="k", batch_size=0, logger=app_logger, tracer_provider=provider)
    with pytest.raises(ValueError, match="include_error_spans"):
        vf_otel.configure(
            api_key="k",
            include_error_spans=1,  # type: ignore[arg-type]
            logger=app_logger,
            tracer_provider=provider,
        )
    assert not any(isinstance(h, VibefollowHandler) for h in app_logger.handlers)
