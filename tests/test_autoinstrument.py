"""Entry points, env-only configuration and opentelemetry-instrument, end to end."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

import vf_otel
from vf_otel._sources.otel import install_user_span_processor
from vf_otel.testing import VibefollowServer

from .conftest import server_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
READY_ATTEMPTS = 300  # x 0.05 s: the app imports Flask and the SDK first
EXIT_TIMEOUT = 30.0


def _installed(group: str) -> bool:
    return any(ep.name == "vibefollow" for ep in entry_points(group=group))


needs_install = pytest.mark.skipif(
    not _installed("opentelemetry_traces_exporter"),
    reason="vf-otel is not installed, so its entry points are missing (pip install -e .)",
)


@pytest.fixture
def vibefollow_env(server: VibefollowServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """VIBEFOLLOW_* variables pointing at the local server, as a deployment would set them."""
    monkeypatch.setenv("VIBEFOLLOW_API_KEY", server.api_key)
    monkeypatch.setenv("VIBEFOLLOW_BASE_URL", server.base_url)


@pytest.fixture
def no_global_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the global tracer provider for this test (the API sets it once per process)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)


@needs_install
@pytest.mark.parametrize(
    ("group", "cls"),
    [
        ("opentelemetry_traces_exporter", vf_otel.VibefollowSpanExporter),
        ("opentelemetry_logs_exporter", vf_otel.VibefollowLogExporter),
    ],
)
def test_entry_points_name_the_exporters(group: str, cls: type) -> None:
    """Both exporter groups have a 'vibefollow' entry that loads the exporter class."""
    (entry,) = entry_points(group=group, name="vibefollow")
    assert entry.load() is cls


@needs_install
@pytest.mark.usefixtures("vibefollow_env")
def test_exporter_is_configured_from_the_environment_alone(server: VibefollowServer) -> None:
    """Built with no arguments, as the SDK does, the exporter delivers to VIBEFOLLOW_BASE_URL."""
    (entry,) = entry_points(group="opentelemetry_traces_exporter", name="vibefollow")
    exporter = entry.load()()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("t").start_span("env_only", attributes={"vf.user": "u"}).end()
    exporter.shutdown()
    assert [e["name"] for e in server.events] == ["env_only"]


@pytest.mark.usefixtures("no_global_provider")
def test_post_instrument_hook_needs_vibefollow_in_traces_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hook adds the user processor only when OTEL_TRACES_EXPORTER names vibefollow."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    assert install_user_span_processor() is False
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp, Vibefollow")
    assert install_user_span_processor() is True
    with vf_otel.user("usr_1"):
        provider.get_tracer("t").start_span("s").end()
    (span,) = memory.get_finished_spans()
    assert dict(span.attributes or {}) == {"vf.context_user": "usr_1"}


def test_own_requests_are_not_traced_by_httpx_instrumentation(server: VibefollowServer) -> None:
    """With opentelemetry-instrumentation-httpx active, vf-otel's own requests make no spans."""
    instrumentation = pytest.importorskip("opentelemetry.instrumentation.httpx")
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = instrumentation.HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        handler = vf_otel.VibefollowHandler(api_key=server.api_key, base_url=server.base_url)
        handler.handle(_tagged_record())
        assert handler.flush(5.0)
        handler.close()
        # Control: the instrumentation is live for the app's own clients.
        with httpx.Client() as client:
            client.get(server.base_url + "/control")
    finally:
        instrumentor.uninstrument()
    assert len(server.events) == 1
    spans = memory.get_finished_spans()
    assert len(spans) == 1
    assert "/control" in str(dict(spans[0].attributes or {}))


def _tagged_record() -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "app", "msg": "user_signed_up", "levelno": 20, "vf_user": "usr_1"}
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _instrument_command() -> str:
    pytest.importorskip("flask")
    pytest.importorskip("opentelemetry.instrumentation.flask")
    command = Path(sys.executable).parent / "opentelemetry-instrument"
    if not command.exists():
        pytest.skip("opentelemetry-instrument is not installed next to this Python")
    return str(command)


def _wait_until_serving(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    for _ in range(READY_ATTEMPTS):
        if proc.poll() is not None:
            pytest.fail(f"the app exited early ({proc.returncode}):\n{log.read_text()}")
        try:
            httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.05)
        else:
            return
    pytest.fail(f"the app did not start serving:\n{log.read_text()}")


@pytest.mark.slow
@needs_install
def test_opentelemetry_instrument_delivers_tagged_request_spans(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """The Flask example under opentelemetry-instrument sends its tagged spans on SIGTERM."""
    command = _instrument_command()
    port = _free_port()
    env = server_env(
        server,
        OTEL_TRACES_EXPORTER="vibefollow",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_SERVICE_NAME="vf-otel-flask-example",
        PORT=str(port),
    )
    log = tmp_path / "app.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [command, sys.executable, str(EXAMPLES / "flask_app.py")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(proc, base + "/health", log)
        with httpx.Client(base_url=base, timeout=5.0) as client:
            assert client.get("/reports/weekly", headers={"baggage": "vf.user=usr_7"}).is_success
            assert client.post("/signup/usr_8").status_code == 201
            assert client.get("/reports/nobody").is_success  # no user anywhere: dropped
            assert client.get("/fail", headers={"baggage": "vf.user=usr_7"}).status_code == 500
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=EXIT_TIMEOUT) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=EXIT_TIMEOUT)
    # Delivered during shutdown, before the process exited.
    events = sorted((e["name"], e["external_user_id"], e["properties"]) for e in server.events)
    assert events == [
        ("report_viewed", "usr_7", {"report": "weekly"}),
        ("user_signed_up", "usr_8", {}),
    ], log.read_text()
    assert server.users == [{"external_user_id": "usr_8", "traits": {"plan": "trial"}}]
