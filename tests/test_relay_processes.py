"""The relay as production runs it: `vf-otel relay` processes fed by the OTel SDK's own
OTLP/HTTP exporters, delivering to the local Vibefollow server; re-sent batches, an
API outage and a SIGKILL."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto: the relay extra")
pytest.importorskip("uvicorn", reason="uvicorn: the relay extra")
pytest.importorskip(
    "opentelemetry.exporter.otlp.proto.http", reason="opentelemetry-exporter-otlp-proto-http"
)

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from vf_otel.testing import VibefollowServer

from .relay_support import (
    AUTH,
    Forwarder,
    free_port,
    json_span,
    json_traces,
    relay_env,
    relay_process,
    stop_process,
    wait_ready,
)

pytestmark = pytest.mark.slow

SPANS = 40  # each with one tagged span event: 80 events
LOGS = 30


class EveryBatchTwice(SpanExporter):
    """A client that sends every batch once to each exporter (a re-send, maybe elsewhere)."""

    def __init__(self, *exporters: SpanExporter) -> None:
        self._exporters = exporters

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        results = [exporter.export(spans) for exporter in self._exporters]
        ok = all(result is SpanExportResult.SUCCESS for result in results)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        for exporter in self._exporters:
            exporter.shutdown()


def span_exporter(url: str, encoding: str) -> SpanExporter:
    """The SDK's own OTLP/HTTP span exporter, protobuf or JSON, with the relay's token."""
    if encoding == "json":
        module = pytest.importorskip(
            "opentelemetry.exporter.otlp.json.http.trace_exporter",
            reason="opentelemetry-exporter-otlp-json-http (the SDK's OTLP/JSON exporter, "
            "released for SDK 1.45 and later; in the dev extra)",
        )
        exporter: SpanExporter = module.OTLPSpanExporter(
            endpoint=f"{url}/v1/traces", headers=AUTH, compression=module.Compression.GZIP
        )
        return exporter
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=AUTH, compression=Compression.Gzip)


def emit_spans(exporter: SpanExporter, tag: str) -> None:
    """SPANS tagged spans, each with a tagged span event, and as many untagged ones."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=16))
    tracer = provider.get_tracer("shop")
    for i in range(SPANS):
        attributes = {"vf.user": f"u{i}", "vf.event": f"{tag}_signup_{i}"}
        with tracer.start_as_current_span("POST /signup", attributes=attributes) as span:
            span.add_event("clicked", {"vf.event": f"{tag}_clicked_{i}"})
        with tracer.start_as_current_span("GET /health"):
            pass
    provider.shutdown()


def emit_logs(url: str, tag: str) -> None:
    """LOGS tagged records through the SDK's LoggingHandler and OTLP/HTTP log exporter."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    provider = LoggerProvider(shutdown_on_exit=False)
    exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", headers=AUTH)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # SDK 1.45 moved the handler
        handler = LoggingHandler(logger_provider=provider)
    for i in range(LOGS):
        extra = {"vf_user": f"u{i}", "vf_event": f"{tag}_log_{i}"}
        record = logging.makeLogRecord({"name": "shop", "msg": "did", "extra": extra, **extra})
        record.levelno, record.levelname = logging.INFO, "INFO"
        handler.handle(record)
    provider.shutdown()


def assert_once(server: VibefollowServer, names: set[str]) -> None:
    """Every one of ``names`` arrived, each exactly once, and nothing else."""
    assert server.wait_for_events(len(names))
    got = [event["name"] for event in server.events]
    assert sorted(got) == sorted(names)


def expected(tag: str, *, logs: bool = True) -> set[str]:
    names = {f"{tag}_signup_{i}" for i in range(SPANS)} | {
        f"{tag}_clicked_{i}" for i in range(SPANS)
    }
    return names | ({f"{tag}_log_{i}" for i in range(LOGS)} if logs else set())


@pytest.fixture
def relay(server: VibefollowServer, tmp_path: Path) -> Iterator[str]:
    """One `vf-otel relay` process delivering to the local server."""
    env = relay_env(server.base_url, server.api_key)
    with relay_process(env, log=tmp_path / "relay.log") as (url, _):
        yield url


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_sdk_exporters_through_the_relay_deliver_once(
    relay: str, server: VibefollowServer, encoding: str
) -> None:
    """The SDK's own OTLP/HTTP exporters (gzip) → relay → API: every tagged span, span
    event and log record arrives exactly once; untagged spans make nothing."""
    emit_spans(span_exporter(relay, encoding), "a")
    emit_logs(relay, "a")
    assert_once(server, expected("a"))


def test_every_batch_resent_to_a_second_relay_is_delivered_once(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """Two relay processes; a client sends every batch to both (a re-send after a lost
    answer, through a load balancer): each event still arrives once."""
    env = relay_env(server.base_url, server.api_key)
    with (
        relay_process(env, log=tmp_path / "one.log") as (one, _),
        relay_process(env, log=tmp_path / "two.log") as (two, _),
    ):
        emit_spans(
            EveryBatchTwice(span_exporter(one, "protobuf"), span_exporter(two, "protobuf")), "b"
        )
    assert_once(server, expected("b", logs=False))
    assert server.replayed > 0


def test_api_down_answers_503_then_delivers_once(server: VibefollowServer, tmp_path: Path) -> None:
    """API down and no spool: 503 with Retry-After (nothing acknowledged); the client
    retries as told, and after recovery every event arrives once."""
    env = relay_env(
        server.base_url, server.api_key, VIBEFOLLOW_MAX_RETRIES="0", VIBEFOLLOW_RELAY_WAIT="2"
    )
    bodies = [
        json.dumps(
            json_traces(
                json_span("s", {"vf.user": "u", "vf.event": f"down_{i}"}, span_id=f"{i + 1:016x}")
            )
        )
        for i in range(5)
    ]
    headers = {"Content-Type": "application/json", **AUTH}
    server.fail_next(503, count=100_000)
    with relay_process(env, log=tmp_path / "relay.log") as (url, _):
        for body in bodies:
            reply = httpx.post(f"{url}/v1/traces", content=body, headers=headers, timeout=30)
            assert reply.status_code == 503
            assert int(reply.headers["retry-after"]) >= 1
        server.clear_faults()
        for body in bodies:
            for _ in range(60):  # bounded: the client retries after Retry-After
                reply = httpx.post(f"{url}/v1/traces", content=body, headers=headers, timeout=30)
                if reply.status_code == 200:
                    break
                threading.Event().wait(min(1.0, float(reply.headers["retry-after"])))
            assert reply.status_code == 200
    assert_once(server, {f"down_{i}" for i in range(5)})
    assert server.api_key not in (tmp_path / "relay.log").read_text()


def keep_sending(url: str, acknowledged: list[str], stop: threading.Event) -> None:
    """One batch after another (a tagged span each) until ``stop`` or the relay is gone;
    the names of the batches answered 200 go to ``acknowledged``."""
    headers = {"Content-Type": "application/json", **AUTH}
    for i in range(10_000):
        if stop.is_set():
            return
        name = f"kill_{i}"
        span = json_span("s", {"vf.user": "u", "vf.event": name}, span_id=f"{i + 1:016x}")
        try:
            reply = httpx.post(f"{url}/v1/traces", json=json_traces(span), headers=headers)
        except httpx.HTTPError:
            return  # the relay is gone: this batch was never acknowledged
        if reply.status_code == 200:
            acknowledged.append(name)


def test_sigkill_loses_nothing_acknowledged(server: VibefollowServer, tmp_path: Path) -> None:
    """With a spool, a relay killed with SIGKILL mid-run loses no acknowledged batch: the
    next relay on the same spool delivers each of them, once."""
    env = relay_env(
        server.base_url,
        server.api_key,
        VIBEFOLLOW_MAX_RETRIES="0",
        VIBEFOLLOW_SPOOL_PATH=str(tmp_path / "relay.db"),
        VIBEFOLLOW_FLUSH_INTERVAL="0.2",
    )
    server.fail_next(503, count=100_000)  # nothing reaches the API before the kill
    acknowledged: list[str] = []
    with relay_process(env, log=tmp_path / "first.log") as (url, process):
        stop = threading.Event()
        sender = threading.Thread(target=keep_sending, args=(url, acknowledged, stop))
        sender.start()
        for _ in range(600):  # bounded: until some batches are acknowledged
            if len(acknowledged) >= 20:
                break
            threading.Event().wait(0.05)
        os.kill(process.pid, signal.SIGKILL)  # while the client is still sending
        process.wait()
        stop.set()
        sender.join(30)
    assert len(acknowledged) >= 20
    assert server.events == []
    server.clear_faults()
    with relay_process(env, log=tmp_path / "second.log"):
        assert server.wait_for_events(len(acknowledged), timeout=30)
    got = [event["name"] for event in server.events]
    assert set(acknowledged) <= set(got)
    assert len(got) == len(set(got))  # none twice


def run_cli(env: dict[str, Any], *args: str) -> tuple[int, str]:
    """`vf-otel relay ARGS` in-process with ``env``; its status and standard error."""
    import io

    from vf_otel._cli import main

    err = io.StringIO()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        with contextlib.redirect_stderr(err):
            status = main(["relay", *args])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return status, err.getvalue()


@pytest.mark.parametrize(
    ("args", "drop", "status", "needle"),
    [
        (["--host", "0.0.0.0"], None, 2, "not a loopback address"),
        (["--host", "relay.example"], None, 2, "--insecure-no-tls"),
        (["--ssl-certfile", "c.pem"], None, 2, "go together"),
        ([], "VIBEFOLLOW_RELAY_TOKEN", 4, "VIBEFOLLOW_RELAY_TOKEN"),
        ([], "VIBEFOLLOW_API_KEY", 3, "VIBEFOLLOW_API_KEY"),
        (["--workers", "0"], None, 2, "--workers"),
        ([], "same", 4, "must not be the Vibefollow API key"),
        (["--wait", "0"], None, 2, "--wait"),
        (["--max-body-bytes", "10"], None, 2, "--max-body-bytes"),
        (["--rules", "no-such-rules.toml"], None, 4, "cannot read the rules"),
    ],
)
def test_cli_refuses_unsafe_or_incomplete_settings(
    server: VibefollowServer,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    drop: str | None,
    status: int,
    needle: str,
) -> None:
    """`vf-otel relay` refuses a non-loopback bind without TLS (or the opt-out), a
    missing token or key, or an unreadable rules file, with a message and its exit
    status, before serving."""
    uvicorn = pytest.importorskip("uvicorn", reason="uvicorn: the relay extra")

    def serve(*_args: object, **kwargs: object) -> None:
        # A check that let these through would serve (on 0.0.0.0) for ever: fail instead.
        raise AssertionError(f"vf-otel relay served with {kwargs.get('host')!r}")

    monkeypatch.setattr(uvicorn, "run", serve)
    env = relay_env(server.base_url, server.api_key)
    if drop == "same":
        env["VIBEFOLLOW_RELAY_TOKEN"] = server.api_key
    elif drop:
        env.pop(drop)
    got, err = run_cli(env, *args)
    assert got == status
    assert needle in err
    assert server.api_key not in err


def test_cli_rules_file_makes_events_of_untagged_spans(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """`vf-otel relay --rules FILE` (no VIBEFOLLOW_RULES): an untagged request span the
    file maps arrives as its event with the allow-listed properties only; a span no rule
    matches makes nothing."""
    rules = Path(__file__).resolve().parent.parent / "examples" / "rules.toml"
    shutil.copy(rules, tmp_path / "rules.toml")
    env = relay_env(server.base_url, server.api_key)
    env.pop("VIBEFOLLOW_RULES", None)
    signup = {
        "http.request.method": "POST",
        "http.route": "/api/signup",
        "http.response.status_code": 201,
        "enduser.id": "usr_9",
        "app.plan": "pro",
        "app.secret": "never copied",
    }
    other = {**signup, "http.route": "/api/other"}
    # A relative path, resolved against the directory the relay starts in.
    with relay_process(env, "--rules", "rules.toml", cwd=tmp_path) as (url, _):
        body = json_traces(
            json_span("POST /api/signup", signup),
            json_span("POST /api/other", other, span_id="aaa19b7ec3c1b174"),
        )
        reply = httpx.post(f"{url}/v1/traces", json=body, headers=AUTH, timeout=30)
        assert reply.status_code == 200, reply.text
    got = [(e["name"], e["external_user_id"], e["properties"]) for e in server.events]
    assert got == [("user_signed_up", "usr_9", {"plan": "pro", "route": "/api/signup"})]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(  # noqa: S603 - fixed argv, no shell
        [
            *(shutil.which("openssl") or "openssl",),
            *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def send_in_parallel(url: str, names: list[str], verify: ssl.SSLContext) -> None:
    """A batch per name, from four clients at once over HTTPS; each must be answered 200."""

    def send(chunk: list[str]) -> None:
        with httpx.Client(verify=verify, headers=AUTH) as client:
            for name in chunk:
                i = int(name.split("_")[1])
                span = json_span("s", {"vf.user": "u", "vf.event": name}, span_id=f"{i + 1:016x}")
                assert client.post(f"{url}/v1/traces", json=json_traces(span)).status_code == 200

    senders = [threading.Thread(target=send, args=(names[k::4],)) for k in range(4)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(60)


def wait_https_ready(url: str, verify: ssl.SSLContext) -> None:
    """Wait (bounded) until a worker answers /readyz over HTTPS."""
    with httpx.Client(verify=verify) as client:
        for _ in range(300):
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                threading.Event().wait(0.05)
    raise AssertionError("the relay did not become ready over HTTPS")


def test_tls_and_workers(server: VibefollowServer, tmp_path: Path) -> None:
    """`--ssl-certfile/--ssl-keyfile --workers 2`: HTTPS only, parallel clients' batches
    all delivered once across the two workers; SIGTERM stops it cleanly."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command, to make a test certificate")
    cert, key = self_signed(tmp_path)
    verify = ssl.create_default_context(cafile=str(cert))
    port = free_port()
    args = ("--workers", "2", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    command = [sys.executable, "-m", "vf_otel", "relay", "--port", str(port), *args]
    env = relay_env(server.base_url, server.api_key)
    names = [f"tls_{i}" for i in range(40)]
    with (tmp_path / "relay.log").open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=out)  # noqa: S603
        try:
            wait_https_ready(f"https://127.0.0.1:{port}", verify)
            send_in_parallel(f"https://127.0.0.1:{port}", names, verify)
            with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
                httpx.post(f"http://127.0.0.1:{port}/v1/traces", json={}, headers=AUTH)
            assert_once(server, set(names))
        finally:
            process.send_signal(signal.SIGTERM)
            status = process.wait(30)
    # uvicorn raises SIGTERM again once its graceful shutdown is done (0.29 and later).
    assert status in (0, -signal.SIGTERM)


def test_two_relays_behind_a_round_robin_balancer(server: VibefollowServer, tmp_path: Path) -> None:
    """Two relay processes behind a round-robin balancer; the client sends every batch
    twice, on new connections, so each copy lands on a different relay: once each."""
    env = relay_env(server.base_url, server.api_key)
    ports = [free_port(), free_port()]
    with (
        relay_process(env, port=ports[0], log=tmp_path / "one.log"),
        relay_process(env, port=ports[1], log=tmp_path / "two.log"),
    ):
        balancer = Forwarder(ports)  # round robin: each new connection to the next relay
        url = balancer.url
        headers = {"Connection": "close", **AUTH}
        try:
            for i in range(20):
                spans = [
                    json_span(
                        "s",
                        {"vf.user": "u", "vf.event": f"lb_{i}_{j}"},
                        span_id=f"{i * 8 + j + 1:016x}",
                    )
                    for j in range(3)
                ]
                body = json_traces(*spans)
                for _ in range(2):
                    reply = httpx.post(f"{url}/v1/traces", json=body, headers=headers)
                    assert reply.status_code == 200
        finally:
            balancer.close()
    assert_once(server, {f"lb_{i}_{j}" for i in range(20) for j in range(3)})
    assert server.replayed >= 20


def metric_points(text: str, name: str) -> list[tuple[dict[str, Any], Any]]:
    """Every (attributes, value) point of metric ``name`` in the console metric exporter's
    output: one JSON document per export, written one after another."""
    decoder = json.JSONDecoder()
    points: list[tuple[dict[str, Any], Any]] = []
    position = 0
    while (start := text.find("{", position)) != -1:
        try:
            document, position = decoder.raw_decode(text, start)
        except ValueError:
            break  # the last export is still being written
        for resource in document.get("resource_metrics", []):
            for scope in resource.get("scope_metrics", []):
                for metric in scope.get("metrics", []):
                    if metric.get("name") == name:
                        points.extend(
                            (point.get("attributes", {}), point.get("value"))
                            for point in metric["data"]["data_points"]
                        )
    return points


def test_relay_process_exports_its_stats_as_otel_metrics(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """`opentelemetry-instrument vf-otel relay` (as docs/relay.md runs it for metrics): the
    relay process's stats() reach the configured metric exporter as vibefollow.* metrics
    with vibefollow.source=relay, counting the events it delivered."""
    pytest.importorskip("opentelemetry.instrumentation", reason="opentelemetry-instrumentation")
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    if not instrument.exists():
        pytest.skip("opentelemetry-instrument is not installed next to this Python")
    env = relay_env(server.base_url, server.api_key)
    env = {k: v for k, v in env.items() if not k.startswith("OTEL_")} | {
        "OTEL_METRICS_EXPORTER": "console",  # written to standard output, read below
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    port = free_port()
    command = [str(instrument), sys.executable, "-m", "vf_otel", "relay", "--port", str(port)]
    metrics_out = tmp_path / "metrics.json"
    with metrics_out.open("wb") as out, (tmp_path / "relay.log").open("ab") as log:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=log)  # noqa: S603
        try:
            wait_ready(f"http://127.0.0.1:{port}", process)
            spans = [
                json_span("s", {"vf.user": "u", "vf.event": f"metric_{i}"}, span_id=f"{i + 1:016x}")
                for i in range(3)
            ]
            reply = httpx.post(
                f"http://127.0.0.1:{port}/v1/traces", json=json_traces(*spans), headers=AUTH
            )
            assert reply.status_code == 200
            sent: list[Any] = []
            for _ in range(300):  # bounded: until an export after the delivery is written
                sent = [
                    value
                    for attributes, value in metric_points(
                        metrics_out.read_text(), "vibefollow.events.sent"
                    )
                    if attributes == {"vibefollow.source": "relay"}
                ]
                if 3 in sent:
                    break
                threading.Event().wait(0.1)
            assert 3 in sent, (tmp_path / "relay.log").read_text()
        finally:
            stop_process(process)
    assert sorted(e["name"] for e in server.events) == [f"metric_{i}" for i in range(3)]
