"""Mapping rules end to end: an auto-instrumented Flask app with no vf.* tags, whose
spans become events in-process (the vibefollow exporter) and through `vf-otel relay`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest

from vf_otel.testing import VibefollowServer

from .conftest import server_env
from .relay_support import TOKEN, free_port, relay_env, relay_process

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
READY_ATTEMPTS = 300  # x 0.05 s: the app imports Flask and the SDK first
EXIT_TIMEOUT = 30.0
#: The app's OpenTelemetry settings, whichever exporter it uses.
OTEL_ENV: Final = {
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
    "OTEL_SERVICE_NAME": "vf-otel-rules-example",
}
#: What examples/rules.toml makes of the requests ``browse`` sends, and nothing else.
EXPECTED: Final = [
    ("report_viewed", "usr_1", {"report": "weekly"}),
    ("user_signed_up", "usr_1", {"plan": "pro", "route": "/api/signup"}),
]


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


@contextlib.contextmanager
def _rules_app(env: dict[str, str], log: Path) -> Iterator[str]:
    """examples/rules_app.py under opentelemetry-instrument, serving; yields its URL.

    Stopped with SIGTERM afterwards (the SDK exports what is left), which must exit 0.
    """
    command = _instrument_command()
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [command, sys.executable, str(EXAMPLES / "rules_app.py")],
            env={**env, "PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(proc, base + "/health", log)
        yield base
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=EXIT_TIMEOUT) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=EXIT_TIMEOUT)


def _browse(base: str) -> None:
    """Two requests the rules name, and three they do not (no rule, not POST, a 404)."""
    with httpx.Client(base_url=base, timeout=5.0) as client:
        user = {"X-User-Id": "usr_1"}
        assert client.post("/api/signup?plan=pro", headers=user).status_code == 201
        assert client.get("/api/reports/weekly", headers=user).is_success
        assert client.get("/health", headers=user).is_success  # no rule: nothing
        assert client.get("/api/signup", headers=user).status_code == 405  # not POST
        assert client.post("/api/missing", headers=user).status_code == 404


def _received(server: VibefollowServer) -> list[tuple[str, str, dict[str, object]]]:
    return sorted((e["name"], e["external_user_id"], e["properties"]) for e in server.events)


@pytest.mark.slow
def test_rules_make_events_of_an_untagged_auto_instrumented_flask_app(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """examples/rules_app.py under opentelemetry-instrument, VIBEFOLLOW_RULES set: the
    requests the rules name arrive as their events, with the allow-listed properties
    only; other routes, failed requests and anonymous ones send nothing."""
    env = server_env(
        server,
        drop=("OTEL_",),
        OTEL_TRACES_EXPORTER="vibefollow",
        VIBEFOLLOW_RULES=str(EXAMPLES / "rules.toml"),
        **OTEL_ENV,
    )
    log = tmp_path / "app.log"
    with _rules_app(env, log) as base:
        _browse(base)
    assert _received(server) == EXPECTED, log.read_text()
    assert server.users == []


@pytest.mark.slow
def test_rules_apply_in_the_relay_to_an_untagged_app_exporting_otlp(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """The same app with no Vibefollow settings, exporting OTLP/HTTP to a `vf-otel relay`
    that has VIBEFOLLOW_RULES: the relay delivers the same events, each exactly once."""
    pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto: the relay extra")
    pytest.importorskip("uvicorn", reason="uvicorn: the relay extra")
    pytest.importorskip(
        "opentelemetry.exporter.otlp.proto.http", reason="opentelemetry-exporter-otlp-proto-http"
    )
    relay = relay_env(
        server.base_url, server.api_key, VIBEFOLLOW_RULES=str(EXAMPLES / "rules.toml")
    )
    with relay_process(relay, log=tmp_path / "relay.log") as (url, _):
        # The app holds no API key: only the relay can have delivered what arrives.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIBEFOLLOW_", "OTEL_"))}
        env |= OTEL_ENV | {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{url}/v1/traces",
            "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{TOKEN}",
        }
        log = tmp_path / "app.log"
        with _rules_app(env, log) as base:
            _browse(base)
        # The app's exit flushed its spans, and the relay answered only once delivered.
        relay_log = (tmp_path / "relay.log").read_text()
        assert _received(server) == EXPECTED, log.read_text() + relay_log
    assert server.users == []
    assert server.replayed == 0


@pytest.mark.slow
def test_rule_matches_without_a_user_are_counted_not_sent(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """An anonymous POST /api/signup matches the rule but names no user: nothing is sent,
    and the app's log says which rule dropped it and why (rate-limited warning)."""
    env = server_env(
        server,
        drop=("OTEL_",),
        OTEL_TRACES_EXPORTER="vibefollow",
        VIBEFOLLOW_RULES=str(EXAMPLES / "rules.toml"),
        **OTEL_ENV,
    )
    log = tmp_path / "app.log"
    with _rules_app(env, log) as base:
        assert httpx.post(f"{base}/api/signup", timeout=5.0).status_code == 201
    assert server.events == []
    text = log.read_text()
    assert "dropped 1 event(s) (missing_user)" in text, text
    assert "rule 'signup' matched but no user attribute is set" in text, text
