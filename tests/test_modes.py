"""Delivery off (enabled=False / VIBEFOLLOW_ENABLED=false) and debug output (debug=True).

The claims about a whole process (no thread, no SIGTERM handler, nothing printed, what
stderr shows) are checked in a fresh interpreter, as an app would run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

import vf_otel
from vf_otel._config import NO_BASE_URL, resolve_settings
from vf_otel.testing import VibefollowServer

from .test_spans import recorded_spans

#: A hang guard for a child process, not a timing assertion.
HANG_GUARD = 120
SECRET = "hunter2-do-not-print"


def run(source: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``source`` in a fresh interpreter with only ``env`` as VIBEFOLLOW_* settings."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(source))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIBEFOLLOW_")}
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(script)],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )


DISABLED_APP = """
import json, logging, signal, threading
from opentelemetry import trace
import vf_otel

configured = vf_otel.configure()
log = logging.getLogger("shop")
for n in range(3):
    log.info("signed_up", extra={"vf_user": f"usr_{n}"})
log.info("orphan", extra={"vf_event": "orphan"})  # no user: counted all the same
with trace.get_tracer("shop").start_as_current_span("checkout") as span:
    span.set_attribute("vf.user", "usr_9")
assert configured.flush(5)
print(json.dumps({
    "threads": sorted(t.name for t in threading.enumerate()),
    "sigterm_default": signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
    "handler": {
        "disabled": configured.handler.stats().disabled,
        "enqueued": configured.handler.stats().enqueued,
        "dropped": dict(configured.handler.stats().dropped),
    },
    "spans": configured.span_exporter.stats().disabled,
}))
configured.shutdown()
"""


def test_disabled_by_env_sends_nothing_says_nothing_and_starts_no_thread(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """VIBEFOLLOW_ENABLED=false with configure(): events and spans counted as disabled,
    nothing sent, nothing printed, no thread of any kind, SIGTERM left alone."""
    done = run(
        DISABLED_APP,
        tmp_path,
        VIBEFOLLOW_ENABLED="false",
        VIBEFOLLOW_API_KEY=server.api_key,
        VIBEFOLLOW_BASE_URL=server.base_url,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    report = json.loads(done.stdout)
    assert report["threads"] == ["MainThread"]
    assert report["sigterm_default"] is True
    assert report["handler"] == {"disabled": 4, "enqueued": 0, "dropped": {}}
    assert report["spans"] == 1
    assert server.requests == []


def test_disabled_needs_no_key_and_no_valid_url(tmp_path: Path) -> None:
    """Without an API key and with a bad VIBEFOLLOW_BASE_URL, disabled says nothing at all
    (no missing-key warning, no base-URL error) and counts the events as disabled."""
    done = run(
        DISABLED_APP,
        tmp_path,
        VIBEFOLLOW_ENABLED="0",
        VIBEFOLLOW_BASE_URL="ftp://not-an-api",
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout)["handler"]["disabled"] == 4


def test_enabled_false_argument_counts_and_never_warns(
    caplog: pytest.LogCaptureFixture, app_logger: logging.Logger
) -> None:
    """enabled=False on the handler: no key needed, no warning, every tagged record is
    counted in stats().disabled (not dropped, not enqueued); flush and close answer at once."""
    calls: list[object] = []
    with caplog.at_level(logging.DEBUG, logger="vf_otel"):
        handler = vf_otel.VibefollowHandler(enabled=False, on_error=lambda *a: calls.append(a))
        app_logger.addHandler(handler)
        app_logger.info("a", extra={"vf_user": "u"})
        app_logger.info("b", extra={"vf_event": "b"})  # no user anywhere
        app_logger.info("not an event")
        assert handler.flush()
        handler.close()
    stats = handler.stats()
    assert (stats.disabled, stats.enqueued, stats.sent, dict(stats.dropped)) == (2, 0, 0, {})
    assert calls == []
    assert [r for r in caplog.records if r.name.startswith("vf_otel")] == []


def test_enabled_false_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The argument wins over VIBEFOLLOW_ENABLED, either way round."""
    monkeypatch.setenv("VIBEFOLLOW_ENABLED", "true")
    assert resolve_settings(enabled=False).enabled is False
    monkeypatch.setenv("VIBEFOLLOW_ENABLED", "false")
    assert resolve_settings(enabled=True).enabled is True
    assert resolve_settings().enabled is False


def test_disabled_quiet_about_a_bad_env_base_url(caplog: pytest.LogCaptureFixture) -> None:
    """A bad VIBEFOLLOW_BASE_URL is no error while delivery is off (nothing goes anywhere)."""
    env = {"VIBEFOLLOW_ENABLED": "false", "VIBEFOLLOW_BASE_URL": "http://example.com"}
    with caplog.at_level(logging.DEBUG, logger="vf_otel"):
        settings = resolve_settings(environ=env)
    assert settings.base_url == NO_BASE_URL
    assert caplog.records == []


def test_disabled_span_exporter_counts_spans() -> None:
    """A span exporter with enabled=False reports SUCCESS and counts tagged spans as disabled."""
    exporter = vf_otel.VibefollowSpanExporter(enabled=False)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for user in ("u1", "u2"):
        with tracer.start_as_current_span("checkout") as span:
            span.set_attribute("vf.user", user)
    with tracer.start_as_current_span("untagged"):
        pass
    provider.shutdown()
    assert exporter.stats().disabled == 2
    assert exporter.stats().dropped_total == 0


def test_disabled_exporters_answer_at_once_and_stop_for_good() -> None:
    """Both exporters with enabled=False: a tagged span or record is counted as disabled,
    export answers SUCCESS and force_flush True at once; after shutdown (twice) export
    answers FAILURE and counts nothing more, as with delivery on."""
    spans = recorded_spans(lambda tracer: tracer.start_span("s", attributes={"vf.user": "u"}).end())
    span_exporter = vf_otel.VibefollowSpanExporter(enabled=False)
    log_exporter = vf_otel.VibefollowLogExporter(enabled=False)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # SDK 1.45 deprecates it
        otel_logging = LoggingHandler(logger_provider=provider)
    record = {"name": "app", "msg": "checkout", "levelno": logging.INFO, "vf_user": "u1"}

    assert span_exporter.export(spans) is SpanExportResult.SUCCESS
    otel_logging.handle(logging.makeLogRecord(record))
    for exporter in (span_exporter, log_exporter):
        assert exporter.force_flush(0) is True
        assert exporter.stats().disabled == 1
        exporter.shutdown()
        exporter.shutdown()
    assert span_exporter.export(spans) is SpanExportResult.FAILURE
    otel_logging.handle(logging.makeLogRecord(record))
    otel_logging.close()
    for exporter in (span_exporter, log_exporter):
        stats = exporter.stats()
        assert (stats.disabled, stats.enqueued, stats.dropped_total) == (1, 0, 0)


DEBUG_APP = """
import logging, sys
import vf_otel

SETUP
log = logging.getLogger("shop")
log.info("signed_up", extra={"vf_user": "usr_1",
                             "vf_properties": {"plan": "pro", "password": "SECRET"}})
log.info("orphan", extra={"vf_event": "orphan"})
vf_otel.identify("usr_1", {"email": "a@example.com"})
assert configured.flush(30) is EXPECT_FLUSH
configured.shutdown()
"""


def debug_app(setup: str, *, expect_flush: bool = True) -> str:
    """DEBUG_APP with ``setup`` (which sets ``configured``)."""
    return (
        DEBUG_APP.replace("SETUP", setup)
        .replace("SECRET", SECRET)
        .replace("EXPECT_FLUSH", str(expect_flush))
    )


def test_debug_prints_each_event_when_nothing_else_would(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """VIBEFOLLOW_DEBUG=true in an app with no logging set up: each event is printed to
    stderr as it is queued, redacted, and still delivered."""
    done = run(
        debug_app("configured = vf_otel.configure(spans=False)", expect_flush=False),
        tmp_path,
        VIBEFOLLOW_DEBUG="true",
        VIBEFOLLOW_API_KEY=server.api_key,
        VIBEFOLLOW_BASE_URL=server.base_url,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    queued = [line for line in lines if line.startswith("vf-otel debug: queued event ")]
    assert len(queued) == 1
    body = json.loads(queued[0].removeprefix("vf-otel debug: queued event "))
    assert body["external_user_id"] == "usr_1"
    assert body["name"] == "signed_up"
    assert body["properties"] == {"plan": "pro", "password": "[redacted]"}
    assert "vf-otel debug: refused (missing_user)" in done.stderr
    assert 'vf-otel debug: queued user upsert {"external_user_id": "usr_1"' in done.stderr
    assert SECRET not in done.stderr + done.stdout
    assert [e["name"] for e in server.events] == ["signed_up"]


def test_debug_uses_the_apps_logging_when_it_has_some(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """With basicConfig, debug lines go through the app's handler (format and stream), once."""
    setup = """
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                        format="%(levelname)s|%(name)s|%(message)s")
    logging.getLogger("shop").setLevel(logging.INFO)
    configured = vf_otel.configure(spans=False, debug=True)
    """
    done = run(
        debug_app(textwrap.dedent(setup), expect_flush=False),
        tmp_path,
        VIBEFOLLOW_API_KEY=server.api_key,
        VIBEFOLLOW_BASE_URL=server.base_url,
    )
    assert done.returncode == 0, done.stderr
    assert "vf-otel debug" not in done.stderr
    assert done.stdout.count("INFO|vf_otel.debug|vf-otel debug: queued event ") == 1
    assert [e["name"] for e in server.events] == ["signed_up"]


def test_debug_while_disabled_shows_what_would_be_sent(tmp_path: Path) -> None:
    """enabled=False and debug=True: each event is shown as not sent; nothing else printed."""
    done = run(
        debug_app("configured = vf_otel.configure(spans=False, enabled=False, debug=True)"),
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("vf-otel debug: not sent (delivery is disabled) event {")
    assert '"password": "[redacted]"' in lines[0]
    assert lines[1] == (
        "vf-otel debug: refused (missing_user): no user: set vf_user or use vf_otel.user()"
    )
    assert lines[2].startswith("vf-otel debug: not sent (delivery is disabled) user upsert {")
    assert len(lines) == 3


@pytest.fixture
def debug_logger() -> Iterator[logging.Logger]:
    """The vf_otel.debug logger, put back as it was (debug=True sets its level and printer)."""
    logger = logging.getLogger("vf_otel.debug")
    level, handlers = logger.level, logger.handlers[:]
    yield logger
    logger.setLevel(level)
    for handler in logger.handlers[:]:
        if handler not in handlers:
            logger.removeHandler(handler)


def test_debug_span_exporter_shows_what_it_delivers(
    server: VibefollowServer, debug_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    """An exporter with debug=True shows each tagged span's event as it delivers it."""
    exporter = vf_otel.VibefollowSpanExporter(
        api_key=server.api_key, base_url=server.base_url, debug=True
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with caplog.at_level(logging.INFO, logger=debug_logger.name):
        with provider.get_tracer("test").start_as_current_span("checkout") as span:
            span.set_attributes({"vf.user": "u1", "vf.properties.cart": 3})
        provider.shutdown()
    (line,) = [r.getMessage() for r in caplog.records if r.name == debug_logger.name]
    assert line.startswith("vf-otel debug: delivering event {")
    body = json.loads(line.removeprefix("vf-otel debug: delivering event "))
    assert (body["name"], body["external_user_id"], body["properties"]) == (
        "checkout",
        "u1",
        {"cart": 3},
    )
    assert [e["name"] for e in server.events] == ["checkout"]
