"""A real collector hop in front of the relay: rotel (OTLP in, OTLP/HTTP out with gzip and
the relay's token as a header), fed by the OTel SDK; the API failing, then back."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto: the relay extra")
pytest.importorskip("uvicorn", reason="uvicorn: the relay extra")
pytest.importorskip(
    "opentelemetry.exporter.otlp.proto.http", reason="opentelemetry-exporter-otlp-proto-http"
)
pytest.importorskip("rotel", reason="rotel (its wheel: CPython 3.11, Linux x86-64)")

import rotel
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from vf_otel.testing import VibefollowServer

from .relay_support import TOKEN, Forwarder, free_port, relay_env, relay_process, stop_process

pytestmark = pytest.mark.slow

AGENT = Path(rotel.__file__).parent / "rotel-agent"


@contextlib.contextmanager
def collector(relay_url: str, tmp_path: Path) -> Iterator[str]:
    """rotel receiving OTLP/HTTP and exporting it to the relay; yields its receiver's URL."""
    http_port, grpc_port = free_port(), free_port()
    command = [
        str(AGENT),
        "start",
        *("--otlp-http-endpoint", f"127.0.0.1:{http_port}"),
        *("--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}"),
        *("--exporter", "otlp", "--otlp-exporter-endpoint", relay_url),
        *("--otlp-exporter-protocol", "http", "--otlp-exporter-compression", "gzip"),
        *("--otlp-exporter-custom-headers", f"Authorization=Bearer {TOKEN}"),
        *("--otlp-exporter-retry-initial-backoff", "100ms"),
        *("--otlp-exporter-retry-max-backoff", "500ms"),
        *("--batch-timeout", "100ms"),
        *("--pid-file", str(tmp_path / "rotel.pid"), "--log-file", str(tmp_path / "rotel.log")),
    ]
    with (tmp_path / "rotel.out").open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out)  # noqa: S603 - fixed argv
        try:
            url = f"http://127.0.0.1:{http_port}"
            wait_listening(http_port, process)
            yield url
        finally:
            stop_process(process)


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    """Wait (bounded) until something accepts connections on ``port``."""
    for _ in range(200):
        if process.poll() is not None:
            raise AssertionError(f"rotel exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        threading.Event().wait(0.05)
    raise AssertionError("rotel did not start listening")


def send_spans(collector_url: str, names: list[str]) -> None:
    """Tagged spans through the SDK's OTLP/HTTP exporter to the collector."""
    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=f"{collector_url}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("shop")
    for name in names:
        with tracer.start_as_current_span(
            "POST /signup", attributes={"vf.user": "u", "vf.event": name}
        ):
            pass
        with tracer.start_as_current_span("GET /health"):
            pass
    provider.shutdown()


def test_collector_hop_delivers_once(server: VibefollowServer, tmp_path: Path) -> None:
    """SDK → rotel → relay (gzip, token header) → API: every tagged span arrives once, and
    what reached the relay was gzip-compressed OTLP/HTTP carrying the relay's token."""
    names = [f"hop_{i}" for i in range(30)]
    env = relay_env(server.base_url, server.api_key)
    with relay_process(env, log=tmp_path / "relay.log") as (relay_url, _):
        recorder = Forwarder([int(relay_url.rsplit(":", 1)[1])], record=True)
        try:
            with collector(recorder.url, tmp_path) as collector_url:
                send_spans(collector_url, names)
                assert server.wait_for_events(len(names))
        finally:
            recorder.close()
    assert sorted(event["name"] for event in server.events) == sorted(names)
    head = recorder.sent.lower()
    assert b"post /v1/traces http/1.1" in head
    assert b"content-type: application/x-protobuf" in head
    assert b"content-encoding: gzip" in head
    assert f"authorization: bearer {TOKEN}".lower().encode() in head


def test_collector_retries_through_an_outage(server: VibefollowServer, tmp_path: Path) -> None:
    """API down, no spool: the relay answers 503 + Retry-After, the collector retries; after
    recovery every event arrives, once."""
    names = [f"outage_{i}" for i in range(10)]
    env = relay_env(
        server.base_url, server.api_key, VIBEFOLLOW_MAX_RETRIES="0", VIBEFOLLOW_RELAY_WAIT="1"
    )
    server.fail_next(503, count=100_000)
    with (
        relay_process(env, log=tmp_path / "relay.log") as (relay_url, _),
        collector(relay_url, tmp_path) as collector_url,
    ):
        send_spans(collector_url, names)
        # The relay refused while the API failed: nothing acknowledged, nothing delivered.
        assert server.wait_for_requests(3)
        assert server.events == []
        server.clear_faults()
        assert server.wait_for_events(len(names), timeout=30)
        # The collector's retry and the relay's own parked copy both reached the API: the
        # second was recognised by its idempotency key (no duplicate).
        for _ in range(200):  # bounded
            if server.replayed:
                break
            threading.Event().wait(0.05)
        assert server.replayed >= 1
    assert sorted(event["name"] for event in server.events) == sorted(names)
