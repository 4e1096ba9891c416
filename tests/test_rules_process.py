"""Mapping rules end to end: an auto-instrumented Flask app with no vf.* tags."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from vf_otel.testing import VibefollowServer

from .conftest import server_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
READY_ATTEMPTS = 300  # x 0.05 s: the app imports Flask and the SDK first
EXIT_TIMEOUT = 30.0


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
def test_rules_make_events_of_an_untagged_auto_instrumented_flask_app(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """examples/rules_app.py under opentelemetry-instrument, VIBEFOLLOW_RULES set: the
    requests the rules name arrive as their events, with the allow-listed properties
    only; other routes, failed requests and anonymous ones send nothing."""
    command = _instrument_command()
    port = _free_port()
    env = server_env(
        server,
        drop=("OTEL_",),
        OTEL_TRACES_EXPORTER="vibefollow",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_SEMCONV_STABILITY_OPT_IN="http",
        OTEL_SERVICE_NAME="vf-otel-rules-example",
        VIBEFOLLOW_RULES=str(EXAMPLES / "rules.toml"),
        PORT=str(port),
    )
    log = tmp_path / "app.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [command, sys.executable, str(EXAMPLES / "rules_app.py")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(proc, base + "/health", log)
        with httpx.Client(base_url=base, timeout=5.0) as client:
            user = {"X-User-Id": "usr_1"}
            assert client.post("/api/signup?plan=pro", headers=user).status_code == 201
            assert client.get("/api/reports/weekly", headers=user).is_success
            assert client.get("/health", headers=user).is_success  # no rule: nothing
            assert client.get("/api/signup", headers=user).status_code == 405  # not POST
            assert client.post("/api/missing", headers=user).status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=EXIT_TIMEOUT) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=EXIT_TIMEOUT)
    received = sorted((e["name"], e["external_user_id"], e["properties"]) for e in server.events)
    assert received == [
        ("report_viewed", "usr_1", {"report": "weekly"}),
        ("user_signed_up", "usr_1", {"plan": "pro", "route": "/api/signup"}),
    ], log.read_text()
    assert server.users == []


@pytest.mark.slow
def test_rule_matches_without_a_user_are_counted_not_sent(
    server: VibefollowServer, tmp_path: Path
) -> None:
    """An anonymous POST /api/signup matches the rule but names no user: nothing is sent,
    and the app's log says which rule dropped it and why (rate-limited warning)."""
    command = _instrument_command()
    port = _free_port()
    env = server_env(
        server,
        drop=("OTEL_",),
        OTEL_TRACES_EXPORTER="vibefollow",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_SEMCONV_STABILITY_OPT_IN="http",
        VIBEFOLLOW_RULES=str(EXAMPLES / "rules.toml"),
        PORT=str(port),
    )
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [command, sys.executable, str(EXAMPLES / "rules_app.py")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(proc, f"http://127.0.0.1:{port}/health", log)
        assert httpx.post(f"http://127.0.0.1:{port}/api/signup", timeout=5.0).status_code == 201
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=EXIT_TIMEOUT) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=EXIT_TIMEOUT)
    assert server.events == []
    text = log.read_text()
    assert "dropped 1 event(s) (missing_user)" in text, text
    assert "rule 'signup' matched but no user attribute is set" in text, text
