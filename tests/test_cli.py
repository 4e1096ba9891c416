"""The vf-otel command: devserver, doctor and send, their output and exit statuses."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import sysconfig
import threading
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

import vf_otel
from vf_otel._cli import ExitCode, main
from vf_otel._cli._devserver import _Printer
from vf_otel._cli._diagnose import environment_proxy, failure_for_exception, failure_for_response
from vf_otel._cli._runtime import detect
from vf_otel._cli._send import parse_value
from vf_otel._cli._settings import redact_key
from vf_otel._cli._terminal import Style
from vf_otel._config import DEFAULTS, resolve_settings
from vf_otel.testing import RecordedRequest, VibefollowServer

from .conftest import run_python

LIVE_KEY = "sk_live_" + "k3y" * 11 + "abcd"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
WAIT = 15.0  # seconds: a bound on every subprocess wait, never an expected duration


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never go through a proxy the developer's shell happens to set."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def doctor(server: VibefollowServer, *extra: str, key: str | None = None) -> int:
    """Run ``vf-otel doctor`` against ``server`` in-process."""
    return main(
        ["doctor", "--api-key", key or server.api_key, "--base-url", server.base_url, *extra]
    )


def send(server: VibefollowServer, *extra: str) -> int:
    """Run ``vf-otel send`` against ``server`` in-process."""
    return main(["send", "--api-key", server.api_key, "--base-url", server.base_url, *extra])


# -- the command line -------------------------------------------------------------


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints vf-otel's version and exits 0."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"vf-otel {vf_otel.__version__}"


@pytest.mark.parametrize("command", [[], ["devserver"], ["doctor"], ["send"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """--help works on the tool and on each command, and exits 0."""
    assert main([*command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: vf-otel {' '.join(command)}".rstrip())


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A bare ``vf-otel`` explains its usage on stderr and exits 2."""
    assert main([]) == ExitCode.USAGE
    assert "required: COMMAND" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_runs_the_same_tool() -> None:
    """``python -m vf_otel --help`` lists the commands."""
    done = subprocess.run(
        [sys.executable, "-m", "vf_otel", "--help"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: vf-otel")
    for command in ("devserver", "doctor", "send"):
        assert command in done.stdout


def test_exit_status_table_matches_the_code() -> None:
    """docs/cli.md's exit status table lists exactly ExitCode, number and name."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \|", text, flags=re.MULTILINE)
    assert [(int(number), name) for number, name in rows] == [(c.value, c.name) for c in ExitCode]


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        (LIVE_KEY, "sk_live_…abcd"),
        ("sk_test_" + "x" * 32 + "wxyz", "sk_test_…wxyz"),
        ("sk_live_short123", "sk_live_…"),
        ("custom-token-0123456789", "…6789"),
        ("tiny", "…"),
        (None, "(not set)"),
    ],
)
def test_redacted_key_shows_at_most_prefix_and_last_four(key: str | None, shown: str) -> None:
    """Only the sk_live_/sk_test_ prefix and, for a long key, its last 4 characters show."""
    assert redact_key(key) == shown


# -- doctor: success and configuration ----------------------------------------------


def test_doctor_sends_one_test_event_and_says_ok(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """An accepted test event is exit 0 and OK; it was one POST with an Idempotency-Key."""
    assert doctor(vibefollow_server) == ExitCode.OK
    out = capsys.readouterr().out
    steps = [
        "[1/5] configuration",
        "[2/5] runtime",
        "[3/5] connect",
        "connected to",
        "[4/5] send",
        "[5/5] result",
    ]
    positions = [out.index(step) for step in steps]
    assert positions == sorted(positions)
    assert "OK: Vibefollow accepted the test event" in out
    (request,) = vibefollow_server.requests
    assert request.path == "/api/v1/events/batch"
    assert request.idempotency_key
    (event,) = vibefollow_server.events
    assert event["name"] == "vf_otel_doctor"
    assert event["external_user_id"] == "vf-otel-doctor"
    assert event["properties"] == {"source": "vf-otel doctor"}


#: Runs the doctor inside a process set up by ``{setup}``, as an app's process would be.
DOCTOR_IN_PROCESS = """\
import sys
{setup}
from vf_otel._cli import main

sys.exit(main(["doctor"]))
"""


def doctor_in_process(server: VibefollowServer, setup: str, **env: str) -> tuple[int, str]:
    """Run the doctor in a child process after ``setup``; (exit status, stdout + stderr)."""
    script = DOCTOR_IN_PROCESS.replace("{setup}", setup)
    done = run_python(server, ["-c", script], timeout=WAIT * 4, **env)
    return done.returncode, done.stdout + done.stderr


def runtime_lines(out: str) -> str:
    """The doctor's runtime step: the lines between its heading and the next step."""
    return out[out.index("[2/5] runtime") : out.index("[3/5]")]


@pytest.mark.slow
def test_doctor_reports_a_plain_process(vibefollow_server: VibefollowServer) -> None:
    """No special runtime (fork start method, GIL build): one line says so; exit 0."""
    status, out = doctor_in_process(
        vibefollow_server, 'import multiprocessing; multiprocessing.set_start_method("fork")'
    )
    assert status == ExitCode.OK, out
    assert "a plain process" in runtime_lines(out)


@pytest.mark.slow
def test_doctor_reports_gevent_patching(vibefollow_server: VibefollowServer) -> None:
    """Inside a gevent-patched process the doctor says so and what vf-otel does; exit 0."""
    if importlib.util.find_spec("gevent") is None:  # not imported here: the child patches
        pytest.skip("gevent is not installed (the monkey-patching detected)")
    status, out = doctor_in_process(
        vibefollow_server, "from gevent import monkey; monkey.patch_all()"
    )
    assert status == ExitCode.OK, out
    assert "gevent: threading is monkey-patched" in runtime_lines(out)
    assert "docs/runtimes.md#gevent-and-eventlet" in runtime_lines(out)


@pytest.mark.slow
def test_doctor_reports_lambda_and_a_start_method_that_needs_a_pattern(
    vibefollow_server: VibefollowServer,
) -> None:
    """AWS Lambda's variables and a forkserver start method: one line each, the exit status
    is still the endpoint's (0)."""
    status, out = doctor_in_process(
        vibefollow_server,
        'import multiprocessing; multiprocessing.set_start_method("forkserver")',
        AWS_LAMBDA_FUNCTION_NAME="checkout",
        AWS_LAMBDA_RUNTIME_API="127.0.0.1:9001",
    )
    assert status == ExitCode.OK, out
    lines = runtime_lines(out)
    assert "AWS Lambda (function checkout)" in lines
    assert "multiprocessing start method 'forkserver' (set)" in lines
    assert "flush at the end of each task" in lines


def test_doctor_reads_uwsgi_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """uWSGI's options as its ``uwsgi`` module gives them (bytes): enable-threads off warns."""
    fake = types.SimpleNamespace(opt={b"master": True, b"lazy-apps": True})
    monkeypatch.setitem(sys.modules, "uwsgi", fake)
    (found,) = [f for f in detect() if f.runtime.startswith("uWSGI")]
    assert found.runtime == "uWSGI (enable-threads off, lazy-apps on)"
    assert found.warn
    assert "enable-threads = true" in found.does
    fake.opt[b"enable-threads"] = True
    (found,) = [f for f in detect() if f.runtime.startswith("uWSGI")]
    assert not found.warn


def test_doctor_names_a_free_threaded_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A free-threaded build (Py_GIL_DISABLED) with the GIL off at run time: said, once."""
    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: 1)
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    found = [f.runtime for f in detect({})]
    assert found.count("free-threaded Python build (GIL off)") == 1


def test_doctor_says_when_delivery_is_off(
    vibefollow_server: VibefollowServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The endpoint works, but with VIBEFOLLOW_ENABLED=false the app sends nothing: said."""
    monkeypatch.setenv("VIBEFOLLOW_ENABLED", "false")
    assert doctor(vibefollow_server) == ExitCode.OK
    out = capsys.readouterr().out
    assert "OK: Vibefollow accepted the test event" in out
    assert "Delivery is off here (VIBEFOLLOW_ENABLED=false" in out
    assert out.index("OK: Vibefollow") < out.index("Delivery is off")


def test_doctor_says_nothing_of_delivery_when_it_is_on(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default: no note."""
    assert doctor(vibefollow_server) == ExitCode.OK
    assert "Delivery is off" not in capsys.readouterr().out


def test_doctor_shows_each_option_with_its_source(
    vibefollow_server: VibefollowServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every option is listed with its value and argument/env/default as its source."""
    monkeypatch.setenv("VIBEFOLLOW_API_KEY", vibefollow_server.api_key)
    monkeypatch.setenv("VIBEFOLLOW_BATCH_SIZE", "100")
    args = ["doctor", "--base-url", vibefollow_server.base_url, "--timeout", "5"]
    assert main(args) == ExitCode.OK
    out = capsys.readouterr().out
    table = out[out.index("[1/5]") : out.index("[2/5]")].splitlines()[1:]
    rows = {line.split()[0]: line.split() for line in table}
    assert set(rows) == set(DEFAULTS)
    assert rows["api_key"][-2:] == ["env", "VIBEFOLLOW_API_KEY"]
    assert rows["base_url"][1:] == [vibefollow_server.base_url, "argument"]
    assert rows["batch_size"][1:] == ["100", "env", "VIBEFOLLOW_BATCH_SIZE"]
    assert rows["timeout"][1:] == ["5.0", "argument"]
    assert rows["max_retries"][-1] == "default"


def test_docs_doctor_sample_shows_the_real_rows(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/cli.md's `vf-otel doctor` sample lists the options the real output lists, in
    order, and the same steps."""
    assert doctor(vibefollow_server) == ExitCode.OK
    real = capsys.readouterr().out
    page = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    sample = page[page.index("$ vf-otel doctor\n") :]
    sample = sample[: sample.index("```")]

    def options(out: str) -> list[str]:
        table = out[out.index("[1/5] configuration") : out.index("[2/5]")].splitlines()[1:]
        return [line.split()[0] for line in table]

    def steps(out: str) -> list[str]:
        return re.findall(r"^\[\d/\d\] \w+", out, flags=re.MULTILINE)

    assert options(sample) == options(real)
    assert steps(sample) == steps(real)


def test_doctor_without_an_api_key_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    """No key anywhere: exit 3, saying how to set one, before any request."""
    assert main(["doctor", "--base-url", "http://127.0.0.1:9"]) == ExitCode.NO_API_KEY
    out = capsys.readouterr().out
    assert "(not set)" in out
    assert "no API key" in out
    assert "VIBEFOLLOW_API_KEY" in out
    assert "[3/5]" not in out


@pytest.mark.parametrize(
    ("base_url", "words"),
    [
        ("ftp://api.example.com", "must be an http(s) URL"),
        ("http://api.example.com", "plain http:// is allowed only to loopback"),
        ("https://user:pw@api.example.com", "must not carry"),
    ],
)
def test_doctor_rejects_a_bad_base_url_argument(
    base_url: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed or insecure --base-url is exit 4 with the settings' own words."""
    assert main(["doctor", "--api-key", LIVE_KEY, "--base-url", base_url]) == ExitCode.BAD_CONFIG
    assert words in capsys.readouterr().out


def test_doctor_explains_an_invalid_base_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid VIBEFOLLOW_BASE_URL is exit 4: the library sends nothing, to no host."""
    monkeypatch.setenv("VIBEFOLLOW_API_KEY", LIVE_KEY)
    monkeypatch.setenv("VIBEFOLLOW_BASE_URL", "http://api.example.com")
    assert main(["doctor"]) == ExitCode.BAD_CONFIG
    out = capsys.readouterr().out
    assert "VIBEFOLLOW_BASE_URL is invalid (plain http://" in out
    assert "sends nothing, to no host" in out
    assert "never falls back to the default URL" in out
    assert "(invalid: nothing is sent)" in out
    assert "env VIBEFOLLOW_BASE_URL" in out
    assert "[3/5]" not in out  # nothing was sent, not even the test event


def test_doctor_flags_an_environment_value_the_library_would_ignore(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid VIBEFOLLOW_TIMEOUT (replaced by the default) is exit 4."""
    monkeypatch.setenv("VIBEFOLLOW_API_KEY", LIVE_KEY)
    monkeypatch.setenv("VIBEFOLLOW_TIMEOUT", "soon")
    assert main(["doctor"]) == ExitCode.BAD_CONFIG
    out = capsys.readouterr().out
    assert "VIBEFOLLOW_TIMEOUT is invalid (expected a number)" in out
    assert "default (VIBEFOLLOW_TIMEOUT ignored" in out


def test_doctor_rejects_a_non_positive_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    """--timeout 0 is a usage error."""
    assert main(["doctor", "--timeout", "0"]) == ExitCode.USAGE
    assert "positive number of seconds" in capsys.readouterr().err


# -- doctor: the network ----------------------------------------------------------


def test_doctor_reports_a_refused_connection(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listening: exit 5, 'cannot connect', wrong URL or server down."""
    base_url = f"http://127.0.0.1:{closed_port}"
    assert main(["doctor", "--api-key", LIVE_KEY, "--base-url", base_url]) == ExitCode.CONNECTION
    out = capsys.readouterr().out
    assert f"cannot connect to 127.0.0.1:{closed_port}" in out
    assert "host or port is wrong, or it is down" in out


def test_doctor_reports_a_dns_failure() -> None:
    """A host name that does not resolve is a connection failure naming the host."""
    settings = resolve_settings(api_key=LIVE_KEY, base_url="https://api.vibefollow.invalid")
    error = httpx.ConnectError("[Errno -2] Name or service not known")
    error.__cause__ = socket.gaierror(-2, "Name or service not known")
    failure = failure_for_exception(error, settings, proxy=None)
    assert failure.code == ExitCode.CONNECTION
    assert "cannot resolve the host name api.vibefollow.invalid" in failure.message


def test_doctor_reports_a_tls_error(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """https:// to a plain-HTTP port fails the handshake: exit 6 names TLS and the scheme."""
    base_url = vibefollow_server.base_url.replace("http://", "https://")
    args = ["doctor", "--api-key", vibefollow_server.api_key, "--base-url", base_url]
    assert main(args) == ExitCode.TLS
    out = capsys.readouterr().out
    assert "the TLS handshake with 127.0.0.1" in out
    assert "needs http://" in out
    assert vibefollow_server.events == []


def test_a_certificate_error_is_a_tls_failure() -> None:
    """httpx.ConnectError caused by a certificate check is classed as TLS, not connection."""
    settings = resolve_settings(api_key=LIVE_KEY)
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate")
    error = httpx.ConnectError("certificate verify failed")
    error.__cause__ = cause
    failure = failure_for_exception(error, settings, proxy=None)
    assert failure.code == ExitCode.TLS
    assert "certificate verify failed" in failure.message
    assert "SSL_CERT_FILE" in failure.hint


def test_doctor_reports_a_timeout(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server slower than --timeout: exit 7 with the timeout in the message."""
    vibefollow_server.delay_next(5)
    assert doctor(vibefollow_server, "--timeout", "0.1") == ExitCode.TIMEOUT
    assert "within 0.1 s (ReadTimeout)" in capsys.readouterr().out


def test_doctor_reports_an_unreachable_proxy(
    vibefollow_server: VibefollowServer,
    closed_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """HTTP_PROXY naming a closed port: exit 8, naming the proxy and NO_PROXY."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("NO_PROXY", "")
    assert doctor(vibefollow_server) == ExitCode.PROXY
    out = capsys.readouterr().out
    assert f"through the proxy http://127.0.0.1:{closed_port} (from the environment)" in out
    assert f"cannot connect to the proxy http://127.0.0.1:{closed_port}" in out
    assert "HTTPS_PROXY" in out
    assert "NO_PROXY" in out
    assert vibefollow_server.requests == []


def test_doctor_reports_a_proxy_that_refuses_the_tunnel(
    vibefollow_server: VibefollowServer,
    closed_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A proxy answering CONNECT with an error raises httpx.ProxyError: exit 8."""
    monkeypatch.setenv("HTTPS_PROXY", vibefollow_server.base_url)  # answers CONNECT with 501
    base_url = f"https://127.0.0.1:{closed_port}"
    assert main(["doctor", "--api-key", LIVE_KEY, "--base-url", base_url]) == ExitCode.PROXY
    out = capsys.readouterr().out
    assert f"the proxy {vibefollow_server.base_url} would not connect" in out
    assert "[4/5]" not in out


def test_doctor_reports_a_proxy_variable_httpx_cannot_use(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A proxy URL httpx refuses (here an ftp:// one) is exit 8, not a traceback."""
    monkeypatch.setenv("HTTPS_PROXY", "ftp://127.0.0.1:21")
    assert main(["doctor", "--api-key", LIVE_KEY]) == ExitCode.PROXY
    out = capsys.readouterr().out
    assert "through the proxy ftp://127.0.0.1:21" in out
    assert "httpx cannot use the proxy set in the environment" in out


def test_no_proxy_and_credentials_in_the_proxy_url() -> None:
    """NO_PROXY hosts and domains bypass the proxy; a proxy's password is never shown."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HTTPS_PROXY", "http://me:secret@proxy.internal:3128")
        env.setenv("NO_PROXY", "localhost,.example.com")
        assert environment_proxy("https://api.vibefollow.com/x") == "http://proxy.internal:3128"
        assert environment_proxy("https://api.example.com/x") is None
        assert environment_proxy("https://localhost:8/x") is None
        env.setenv("NO_PROXY", "*")
        assert environment_proxy("https://api.vibefollow.com/x") is None


# -- doctor: HTTP answers ---------------------------------------------------------


def test_doctor_reports_a_refused_key_without_printing_it(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong key is 401: exit 9, the key shown redacted, never whole."""
    assert doctor(vibefollow_server, key=LIVE_KEY) == ExitCode.AUTH
    captured = capsys.readouterr()
    assert "the API key sk_live_…abcd was refused (HTTP 401 auth_required" in captured.out
    assert LIVE_KEY not in captured.out + captured.err


def test_doctor_hides_a_key_that_the_server_echoes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Even a response quoting the Authorization header prints the key redacted."""
    from vf_otel._cli import _doctor

    def echo(client: Any, settings: Any, request: Any, progress: Any) -> httpx.Response:
        body = {"errors": [{"code": "bad_request", "message": f"got Bearer {settings.api_key}"}]}
        post = httpx.Request("POST", settings.api_url + request.path)
        return httpx.Response(400, json=body, request=post)

    monkeypatch.setattr(_doctor, "_post", echo)
    assert main(["doctor", "--api-key", LIVE_KEY]) == ExitCode.UNEXPECTED_RESPONSE
    out = capsys.readouterr().out
    assert "got Bearer sk_live_…abcd" in out
    assert LIVE_KEY not in out


def test_doctor_reports_a_key_without_access(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 403 is exit 9 too, worded as a key for another project."""
    vibefollow_server.fail_next(403)
    assert doctor(vibefollow_server) == ExitCode.AUTH
    assert "is not allowed here (HTTP 403 forbidden" in capsys.readouterr().out


def test_doctor_reports_a_base_url_that_is_not_the_api(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A base URL with a wrong path prefix gets 404: exit 10, saying what the URL must be."""
    base_url = vibefollow_server.base_url + "/vibefollow"
    args = ["doctor", "--api-key", vibefollow_server.api_key, "--base-url", base_url]
    assert main(args) == ExitCode.WRONG_URL
    out = capsys.readouterr().out
    assert f"nothing at {base_url}/api/v1/events/batch takes events (HTTP 404" in out
    assert "must be the API origin" in out


@pytest.mark.parametrize(
    ("status", "options", "code", "words"),
    [
        (429, {"retry_after": "7"}, ExitCode.RATE_LIMITED, "rate limited (HTTP 429"),
        (503, {}, ExitCode.SERVER_ERROR, "the server failed (HTTP 503 server_error"),
        (500, {}, ExitCode.SERVER_ERROR, "the server failed (HTTP 500"),
        (400, {}, ExitCode.UNEXPECTED_RESPONSE, "unexpected answer HTTP 400"),
    ],
)
def test_doctor_names_error_statuses(
    vibefollow_server: VibefollowServer,
    capsys: pytest.CaptureFixture[str],
    status: int,
    options: dict[str, Any],
    code: ExitCode,
    words: str,
) -> None:
    """429, 5xx and other statuses each have their exit status and words; no retry."""
    vibefollow_server.fail_next(status, **options)
    assert doctor(vibefollow_server) == code
    out = capsys.readouterr().out
    assert words in out
    assert len(vibefollow_server.requests) == 1
    if status == 429:
        assert "retry after 7 s" in out


def test_doctor_shows_the_field_of_a_validation_error(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 422 is exit 13 and names the field the server pointed at."""
    vibefollow_server.reject_event(lambda event: event["name"] == "vf_otel_doctor")
    assert doctor(vibefollow_server) == ExitCode.INVALID_EVENT
    assert "; field events[0].name)" in capsys.readouterr().out


def _response(status: int, body: bytes = b"", **headers: str) -> httpx.Response:
    request = httpx.Request("POST", "https://api.example.com/api/v1/events/batch")
    return httpx.Response(status, content=body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("response", "code", "words"),
    [
        (_response(202, b'{"data": {"accepted": true}}'), None, ""),
        (_response(200, b"<html>welcome</html>", **{"Content-Type": "text/html"}),
         ExitCode.WRONG_URL, "but not the way the Vibefollow API does"),
        (_response(301, Location="https://www.example.com/"),
         ExitCode.WRONG_URL, "redirects (HTTP 301 Moved Permanently) to https://www.example.com/"),
        (_response(405), ExitCode.WRONG_URL, "takes events (HTTP 405 Method Not Allowed)"),
        (_response(409, b'{"errors": [{"code": "idempotency_key_reuse", "message": "x"}]}'),
         ExitCode.INVALID_EVENT, "refused the test event (HTTP 409 idempotency_key_reuse: x)"),
        (_response(418, b"\x1b[31mteapot"), ExitCode.UNEXPECTED_RESPONSE, '"\\u001b[31mteapot"'),
    ],
)  # fmt: skip
def test_responses_are_named_in_plain_words(
    response: httpx.Response, code: ExitCode | None, words: str
) -> None:
    """Redirects, non-API 2xx, 405, 409 and odd statuses; server text cannot inject ANSI."""
    failure = failure_for_response(response, resolve_settings(api_key=LIVE_KEY))
    assert (failure and failure.code) == code
    if failure is not None:
        assert words in failure.message
        assert "\x1b" not in failure.message


# -- send -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("2.5", 2.5),
        ("true", True),
        ("null", None),
        ('"42"', "42"),
        ("[1, 2]", [1, 2]),
        ("pro", "pro"),
        ("NaN", "NaN"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_values_are_json_when_they_parse_as_json(text: str, value: object) -> None:
    """--prop/--trait values: JSON when valid (NaN is not), else the raw string."""
    assert parse_value(text) == value


def test_send_delivers_one_event_with_typed_properties(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The event arrives with JSON-typed properties; exit 0 and 'sent' on stdout."""
    props = ["--prop", "feature=export", "--prop", "rows=3", "--prop", "beta=true",
             "--prop", 'code="007"', "--prop", "note=a=b"]  # fmt: skip
    assert send(vibefollow_server, "feature_used", "--user", "usr_42", *props) == ExitCode.OK
    assert capsys.readouterr().out.startswith("sent feature_used for user usr_42: ")
    (event,) = vibefollow_server.events
    assert event["name"] == "feature_used"
    assert event["external_user_id"] == "usr_42"
    expected = {"feature": "export", "rows": 3, "beta": True, "code": "007", "note": "a=b"}
    assert event["properties"] == expected
    assert vibefollow_server.users == []


def test_send_with_traits_upserts_the_user(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """--trait values upsert the user, email at the top level."""
    traits = ["--trait", "email=ada@example.com", "--trait", "plan=pro"]
    assert send(vibefollow_server, "user_signed_up", "--user", "usr_7", *traits) == ExitCode.OK
    assert "(user traits upserted)" in capsys.readouterr().out
    assert vibefollow_server.users == [
        {"external_user_id": "usr_7", "email": "ada@example.com", "traits": {"plan": "pro"}}
    ]
    assert len(vibefollow_server.events) == 1


def test_send_refuses_an_event_the_client_checks_reject(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """feature_used without feature: exit 13 naming the property; nothing is sent."""
    assert send(vibefollow_server, "feature_used", "--user", "usr_42") == ExitCode.INVALID_EVENT
    err = capsys.readouterr().err
    assert "'feature_used' requires the property 'feature'" in err
    assert "field properties.feature" in err
    assert vibefollow_server.requests == []


def test_send_reports_a_server_validation_error(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 422 from the server is exit 13 with its field."""
    vibefollow_server.reject_event(lambda event: True)
    assert send(vibefollow_server, "anything", "--user", "u1") == ExitCode.INVALID_EVENT
    assert "(field events[0].name)" in capsys.readouterr().err


def test_send_reports_a_refused_key_without_printing_it(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong key: exit 9 as doctor's, the reason says the key was refused, and the key
    never shows."""
    args = ["send", "x", "--user", "u1", "--api-key", LIVE_KEY,
            "--base-url", vibefollow_server.base_url]  # fmt: skip
    assert main(args) == ExitCode.AUTH
    captured = capsys.readouterr()
    assert "not delivered: Vibefollow refused the API key (401 auth_required)" in captured.err
    assert "vf-otel doctor" in captured.err
    assert LIVE_KEY not in captured.out + captured.err


def test_send_gives_up_on_an_unreachable_server(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listening: exit 5 as doctor's, within --timeout, with the connection error."""
    args = ["send", "x", "--user", "u1", "--api-key", LIVE_KEY, "--timeout", "0.3",
            "--base-url", f"http://127.0.0.1:{closed_port}"]  # fmt: skip
    assert main(args) == ExitCode.CONNECTION
    assert "not delivered: ConnectError" in capsys.readouterr().err


@pytest.mark.slow
def test_send_says_what_it_waits_for_while_it_retries(closed_port: int) -> None:
    """Nothing listening, --timeout 60: within seconds, while still retrying, stderr names the
    URL and the deadline (never the key); then it is stopped."""
    url = f"http://127.0.0.1:{closed_port}"
    command = [sys.executable, "-m", "vf_otel", "send", "x", "--user", "u1",
               "--timeout", "60", "--base-url", url]  # fmt: skip
    env = {**os.environ, "VIBEFOLLOW_API_KEY": LIVE_KEY}
    with subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
        command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    ) as child:
        assert child.stderr is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: lines.put(child.stderr.readline()), daemon=True)
        reader.start()
        try:
            line = lines.get(timeout=WAIT)
            still_running = child.poll() is None
        finally:
            child.terminate()
            rest = child.communicate(timeout=WAIT)[1]
    assert still_running, line + rest
    assert f"no answer from {url}/api/v1 yet" in line
    assert "retrying until" in line
    assert "--timeout 60 s" in line
    assert LIVE_KEY not in line + rest


@pytest.mark.parametrize(
    ("status", "expected"),
    [(503, ExitCode.SERVER_ERROR), (429, ExitCode.RATE_LIMITED), (404, ExitCode.WRONG_URL),
     (403, ExitCode.AUTH), (418, ExitCode.UNEXPECTED_RESPONSE)],
)  # fmt: skip
def test_send_exits_with_the_status_doctor_gives(
    vibefollow_server: VibefollowServer, status: int, expected: ExitCode
) -> None:
    """send and doctor agree on the exit status of each failure (docs/cli.md)."""
    body = '{"errors": [{"code": "x", "message": "no"}]}'
    # Every attempt within --timeout meets the same answer (a 5xx or 429 is retried).
    vibefollow_server.respond_next(status, body, count=50)
    assert send(vibefollow_server, "x", "--user", "u1", "--timeout", "0.5") == expected
    vibefollow_server.respond_next(status, body, count=50)
    assert doctor(vibefollow_server) == expected


def test_send_without_an_api_key_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    """No key: exit 3 and nothing attempted."""
    assert main(["send", "x", "--user", "u1"]) == ExitCode.NO_API_KEY
    assert "no API key" in capsys.readouterr().err


def test_send_with_delivery_off_checks_the_event_and_sends_nothing(
    vibefollow_server: VibefollowServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """VIBEFOLLOW_ENABLED=false, as in the library: the event is checked and not sent, even
    with a working key; no key is needed. stderr says delivery is off, stdout stays empty
    (no "sent"), exit 0; an invalid event is still exit 13."""
    monkeypatch.setenv("VIBEFOLLOW_ENABLED", "false")
    props = ["--prop", "feature=export"]
    assert send(vibefollow_server, "feature_used", "--user", "usr_42", *props) == ExitCode.OK
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "vf-otel send: not sent: delivery is off (VIBEFOLLOW_ENABLED=false); feature_used "
        'for user usr_42 passes the checks: {"feature": "export"}\n'
    )
    assert main(["send", "feature_used", "--user", "usr_42", *props]) == ExitCode.OK
    assert "delivery is off" in capsys.readouterr().err
    assert main(["send", "feature_used", "--user", "usr_42"]) == ExitCode.INVALID_EVENT
    assert "requires the property 'feature'" in capsys.readouterr().err
    assert vibefollow_server.requests == []


@pytest.mark.parametrize("bad", [["--prop", "novalue"], ["--prop", "=1"], []])
def test_send_usage_errors_exit_2(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A property without KEY=, or no --user, is a usage error."""
    user = [] if not bad else ["--user", "u1"]
    assert main(["send", "x", *user, *bad]) == ExitCode.USAGE
    assert "usage: vf-otel send" in capsys.readouterr().err


# -- devserver: in-process pieces ---------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _accepted_batch(events: list[dict[str, Any]]) -> RecordedRequest:
    body = json.dumps({"events": events}).encode()
    return RecordedRequest("POST", "/api/v1/events/batch", {}, body, 202,
                           {"events": events}, None, replayed=False, fault=None)  # fmt: skip


def test_arrivals_are_one_line_each_and_escape_control_characters() -> None:
    """Each event is one line with user, name and properties; ESC in data is escaped."""
    events = [{"external_user_id": "usr_1", "name": "a\x1b[2Jb", "properties": {"k": "x\ny"}}]
    (line,) = _Printer(io.StringIO()).lines(_accepted_batch(events))
    assert "usr_1" in line
    assert '"a\\u001b[2Jb"' in line
    assert '{"k": "x\\ny"}' in line
    assert "\x1b" not in line


@pytest.mark.parametrize(("no_color", "coloured"), [(None, True), ("1", False), ("", True)])
def test_colour_only_on_a_terminal_without_no_color(
    monkeypatch: pytest.MonkeyPatch, no_color: str | None, coloured: bool
) -> None:
    """ANSI colour needs a TTY and NO_COLOR unset or empty; a pipe is never coloured."""
    if no_color is not None:
        monkeypatch.setenv("NO_COLOR", no_color)
    events = [{"external_user_id": "u", "name": "n", "properties": {}}]
    (line,) = _Printer(_Terminal()).lines(_accepted_batch(events))
    assert ("\x1b[" in line) is coloured
    assert Style.for_stream(io.StringIO()).colour is False


def test_devserver_refuses_a_live_key(capsys: pytest.CaptureFixture[str]) -> None:
    """The devserver prints its key, so a sk_live_ key is refused (exit 2)."""
    assert main(["devserver", "--api-key", LIVE_KEY, "--port", "0"]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert "not a live sk_live_ key" in captured.err
    assert LIVE_KEY not in captured.out + captured.err


def test_devserver_refuses_a_non_loopback_host(capsys: pytest.CaptureFixture[str]) -> None:
    """Only loopback addresses: anything else is exit 2 before binding."""
    assert main(["devserver", "--host", "0.0.0.0", "--port", "0"]) == ExitCode.USAGE
    assert "loopback" in capsys.readouterr().err


def test_devserver_reports_a_busy_port(
    vibefollow_server: VibefollowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port already in use is exit 1 with the OS's reason, not a traceback."""
    port = vibefollow_server.base_url.rsplit(":", 1)[1]
    assert main(["devserver", "--port", port]) == ExitCode.FAILED
    assert f"cannot listen on 127.0.0.1 port {port}" in capsys.readouterr().err


# -- devserver: as a process ----------------------------------------------------------


class _Devserver:
    """A ``vf-otel devserver`` subprocess whose stdout is read line by line, with bounds."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        self._reader = threading.Thread(target=self._pump, args=(process.stdout,), daemon=True)
        self._reader.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, wanted: Callable[[str], bool]) -> str:
        """The next line ``wanted`` accepts; fails if the output ends or WAIT passes first."""
        while True:
            line = self._queue.get(timeout=WAIT)
            if line is None:
                pytest.fail("devserver output ended early:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if wanted(line):
                return line

    def finish(self) -> int:
        """Wait for the exit status and read the rest of the output."""
        status = self.process.wait(timeout=WAIT)
        self._reader.join(timeout=WAIT)
        while (line := self._queue.get_nowait() if not self._queue.empty() else None) is not None:
            self.lines.append(line)
        return status


@contextlib.contextmanager
def running_devserver() -> Iterator[_Devserver]:
    """Start the devserver on a free port; always killed and reaped afterwards."""
    env = {**os.environ, "NO_COLOR": ""}  # empty NO_COLOR: colour would be allowed on a TTY
    process = subprocess.Popen(
        [sys.executable, "-m", "vf_otel", "devserver", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        yield _Devserver(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=WAIT)
        if process.stdout is not None:
            process.stdout.close()


def _post(base_url: str, key: str, path: str, body: dict[str, Any], idem: str) -> int:
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idem}
    response = httpx.post(f"{base_url}/api/v1{path}", json=body, headers=headers, timeout=WAIT)
    return response.status_code


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_devserver_shows_arrivals_and_a_summary(stop_signal: signal.Signals) -> None:
    """It prints the env lines, one line per arrival, then on SIGINT/SIGTERM a summary, exit 0."""
    with running_devserver() as devserver:
        base_url = devserver.expect(lambda line: line.startswith("VIBEFOLLOW_BASE_URL="))
        key = devserver.expect(lambda line: line.startswith("VIBEFOLLOW_API_KEY="))
        base_url, key = base_url.partition("=")[2], key.partition("=")[2]
        event = {
            "external_user_id": "usr_42",
            "name": "user_signed_up",
            "properties": {"plan": "trial"},
            "occurred_at": "2026-01-02T03:04:05.678Z",
        }
        batch_key = str(uuid.uuid4())
        assert _post(base_url, key, "/events/batch", {"events": [event]}, batch_key) == 202
        line = devserver.expect(lambda line: "user_signed_up" in line)
        assert line.split()[1:] == ["event", "usr_42", "user_signed_up", '{"plan":', '"trial"}']
        user = {"external_user_id": "usr_42", "email": "ada@example.com"}
        assert _post(base_url, key, "/users", user, str(uuid.uuid4())) == 202
        devserver.expect(lambda line: " user " in line and "ada@example.com" in line)
        assert _post(base_url, key, "/events/batch", {"events": [event]}, batch_key) == 202
        devserver.expect(lambda line: " replay " in line)
        assert _post(base_url, "sk_test_wrong", "/users", user, str(uuid.uuid4())) == 401
        devserver.expect(lambda line: " refused " in line and "401" in line)
        devserver.process.send_signal(stop_signal)
        assert devserver.finish() == 0
    assert devserver.lines[-1] == "stopped: events 1, users 1, requests 4, replays 1, rejected 1"
    assert not any("\x1b" in line for line in devserver.lines)  # a pipe is not a terminal


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes and signals")
def test_devserver_stops_quietly_when_its_reader_goes_away() -> None:
    """`vf-otel devserver | head -3`: once the pipe closes it exits 141 with no traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vf_otel", "devserver", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # the banner's first line, as `head -1` would read
        assert "dev server listening on" in first
        process.stdout.close()  # the reader goes away
        # Make it print (a refused request's line): that write finds the pipe closed. It
        # may stop before answering, so the request's own outcome does not matter.
        base_url = first.split(" on ", 1)[1].split(" ", 1)[0]
        with contextlib.suppress(httpx.HTTPError):
            _post(base_url, "sk_test_wrong", "/users", {"external_user_id": "u"}, str(uuid.uuid4()))
        try:
            status = process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)  # printed nothing more: the summary will
            status = process.wait(timeout=WAIT)
        assert process.stderr is not None
        err = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=WAIT)
        if process.stderr is not None:
            process.stderr.close()
    assert status == ExitCode.BROKEN_PIPE
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err


@pytest.mark.slow
def test_devserver_accepts_localhost() -> None:
    """--host localhost is resolved to its loopback address and served there."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vf_otel", "devserver", "--host", "localhost", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        devserver = _Devserver(process)
        line = devserver.expect(lambda line: line.startswith("VIBEFOLLOW_BASE_URL="))
        key = devserver.expect(lambda line: line.startswith("VIBEFOLLOW_API_KEY="))
        base_url = line.partition("=")[2]
        assert base_url.startswith(("http://127.", "http://[::1]"))
        user = {"external_user_id": "usr_42"}
        assert _post(base_url, key.partition("=")[2], "/users", user, str(uuid.uuid4())) == 202
        process.send_signal(signal.SIGTERM)
        assert devserver.finish() == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=WAIT)
        if process.stdout is not None:
            process.stdout.close()
