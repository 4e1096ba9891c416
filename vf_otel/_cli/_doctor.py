"""``vf-otel doctor``: show the configuration, send one test event, say what is wrong."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, TextIO

import httpx

from .._config import DEFAULTS, ENV_VARS, NO_BASE_URL, Settings, base_url_problem
from .._delivery.client import USER_AGENT
from .._delivery.wire import Request, encode_event, events_request
from .._event.build import make_event
from .._event.model import Event, new_event_id
from .._spool.database import readable_by_others
from ._diagnose import (
    PROXY_HINT,
    Failure,
    environment_proxy,
    failure_for_exception,
    failure_for_response,
)
from ._exit import DOCS_URL, ExitCode
from ._runtime import Finding, detect
from ._settings import (
    SourcedSettings,
    add_connection_options,
    hide_key,
    redact_key,
    resolve_sourced,
    seconds,
)
from ._terminal import Style

__all__ = ["DOCTOR_EVENT", "DOCTOR_PROPERTIES", "DOCTOR_USER", "add_parser", "run"]

DOCTOR_EVENT: Final = "vf_otel_doctor"
DOCTOR_USER: Final = "vf-otel-doctor"
DOCTOR_PROPERTIES: Final[Mapping[str, Any]] = MappingProxyType({"source": "vf-otel doctor"})
_STEPS: Final = 5


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``doctor``."""
    parser = commands.add_parser(
        "doctor",
        help="check the configuration and send one test event",
        description=(
            "Show the resolved configuration and where each value came from, then send one "
            f"test event ({DOCTOR_EVENT!r} for user {DOCTOR_USER!r}) and explain any failure. "
            f"Each failure has its own exit status ({DOCS_URL})."
        ),
    )
    add_connection_options(parser)
    parser.add_argument(
        "--timeout",
        type=seconds,
        metavar="S",
        help="seconds to wait for the API (default: $VIBEFOLLOW_TIMEOUT, else 10)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the checks in order, printing each step as it goes; the exit status names the result."""
    report = _Report(sys.stdout)
    report.step(1, "configuration")
    explicit = {
        "api_key": args.api_key,
        "base_url": args.base_url,
        "timeout": args.timeout,
        "allow_insecure_http": args.allow_insecure_http,
    }
    try:
        sourced = resolve_sourced(explicit)
    except ValueError as exc:
        return report.result(Failure(ExitCode.BAD_CONFIG, f"invalid option: {exc}"))
    report.secret = sourced.settings.api_key
    report.settings(sourced)
    report.step(2, "runtime")
    report.runtime(detect())
    problem = _config_problem(sourced)
    if problem is not None:
        return report.result(problem)
    loose = _shared_spool(sourced.settings)
    failure = _check_endpoint(sourced.settings, report)
    if failure is None and not sourced.settings.enabled:
        # The endpoint works, but the app with these settings sends nothing (on purpose).
        report.note(
            f"Delivery is off here ({ENV_VARS['enabled']}=false or enabled=False): the "
            "library counts events in stats().disabled and sends none."
        )
    if loose:
        report.note(
            f"others can read the spool ({', '.join(loose)}): it holds user ids, properties "
            "and emails. Make it private: chmod 600 (the library tightens files it owns "
            "when it opens them)."
        )
    return report.result(failure)


def _shared_spool(settings: Settings) -> list[str]:
    """The spool's files that group or others may read (the spool is private: 0600)."""
    if settings.spool_path is None:
        return []
    return readable_by_others(settings.spool_path)


def _config_problem(sourced: SourcedSettings) -> Failure | None:
    settings = sourced.settings
    if not settings.has_base_url:
        variable = ENV_VARS["base_url"]
        value = os.environ.get(variable, "")
        reason = base_url_problem(value, allow_insecure=settings.allow_insecure_http)
        message = (
            f"{variable} is invalid ({reason}): the library sends nothing, to no host "
            "(events are dropped and counted as invalid_base_url); it never falls back "
            "to the default URL"
        )
        hint = f"Fix {variable} (e.g. https://api.vibefollow.com) or unset it for the default."
        return Failure(ExitCode.BAD_CONFIG, message, hint)
    if sourced.ignored:
        name, reason = next(iter(sourced.ignored.items()))
        variable = ENV_VARS[name]
        message = f"{variable} is invalid ({reason}); the library ignores it and uses the default"
        return Failure(ExitCode.BAD_CONFIG, message, f"Fix or unset {variable}.")
    if sourced.settings.api_key is None:
        message = "no API key: without one the library counts events and drops them"
        hint = (
            "Set VIBEFOLLOW_API_KEY to the project's key (sk_live_...), or pass --api-key. "
            "No account yet? `vf-otel devserver` runs a local server and prints the two "
            "variables to use."
        )
        return Failure(ExitCode.NO_API_KEY, message, hint)
    return None


def _check_endpoint(settings: Settings, report: _Report) -> Failure | None:
    request = _test_request()
    url = settings.api_url + request.path
    proxy = environment_proxy(url)
    report.step(3, f"connect  {url}")
    report.detail(f"through the proxy {proxy} (from the environment)" if proxy else "no proxy")
    progress = _Progress(report)
    started = time.monotonic()
    try:
        client = _client(settings)
    except (ImportError, ValueError) as exc:  # httpx refuses the proxy variables themselves
        message = f"httpx cannot use the proxy set in the environment: {exc}"
        return Failure(ExitCode.PROXY, message, PROXY_HINT)
    try:
        with client:
            response = _post(client, settings, request, progress)
    except httpx.HTTPError as exc:
        return failure_for_exception(exc, settings, proxy)
    progress.sending()
    elapsed = (time.monotonic() - started) * 1000
    report.detail(f"HTTP {response.status_code} {response.reason_phrase} in {elapsed:.0f} ms")
    return failure_for_response(response, settings)


def _test_request() -> Request:
    event = make_event(
        name=DOCTOR_EVENT,
        user_id=DOCTOR_USER,
        properties=dict(DOCTOR_PROPERTIES),
        traits=None,
        occurred_at=datetime.now(UTC),
        event_id=new_event_id(),
    )
    if not isinstance(event, Event):  # a constant event: only a library bug gets here
        raise TypeError(f"the doctor's test event is invalid: {event.message}")
    return events_request([event], [encode_event(event)])


def _client(settings: Settings) -> httpx.Client:
    """A client like the library's: environment proxies and certificates, no redirects."""
    return httpx.Client(base_url=settings.api_url, timeout=settings.timeout, follow_redirects=False)


def _post(
    client: httpx.Client, settings: Settings, request: Request, progress: _Progress
) -> httpx.Response:
    """One POST, the way the library sends it (same headers, body, key), without retries."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Authorization": f"Bearer {settings.api_key}",
        "Idempotency-Key": request.key,
    }
    return client.post(
        request.path, content=request.body, headers=headers, extensions={"trace": progress}
    )


class _Report:
    """The doctor's output: numbered steps, indented details, one verdict."""

    def __init__(self, stream: TextIO) -> None:
        self._out = stream
        self.secret: str | None = None
        self._notes: list[str] = []
        self._style = Style.for_stream(stream)

    def _print(self, text: str) -> None:
        print(hide_key(text, self.secret), file=self._out, flush=True)

    def step(self, number: int, title: str) -> None:
        """A step heading, printed before the step's work starts."""
        self._print(self._style.bold(f"[{number}/{_STEPS}] {title}"))

    def detail(self, text: str) -> None:
        """One indented line under the current step."""
        self._print("      " + text)

    def settings(self, sourced: SourcedSettings) -> None:
        """Every option, its value (the key redacted) and where it came from."""
        rows = [
            (name, _shown(name, getattr(sourced.settings, name)), sourced.sources[name])
            for name in DEFAULTS
        ]
        widths = [max(len(row[i]) for row in rows) for i in (0, 1)]
        for name, value, source in rows:
            text = f"{name:<{widths[0]}}  {value:<{widths[1]}}  {source}"
            self.detail(self._style.yellow(text) if "ignored" in source else text)

    def runtime(self, findings: list[Finding]) -> None:
        """What vf-otel does in each runtime found, one line each (and where to read more)."""
        if not findings:
            self.detail("a plain process: threads run, exit hooks run, SIGTERM drains the queue")
            return
        for finding in findings:
            line = f"{finding.runtime}: {finding.does} ({finding.docs})"
            self.detail(self._style.yellow(line) if finding.warn else line)

    def note(self, text: str) -> None:
        """A line shown under an OK verdict: something the user may not expect."""
        self._notes.append(text)

    def result(self, failure: Failure | None) -> int:
        """The verdict; returns the exit status."""
        title = f"[{_STEPS}/{_STEPS}] result"
        if failure is None:
            verdict = self._style.green("OK: Vibefollow accepted the test event")
            self._print(f"{self._style.bold(title)}  {verdict}")
            self.detail(f"It shows up as {DOCTOR_EVENT!r} for user {DOCTOR_USER!r}.")
            for text in self._notes:
                self.detail(self._style.yellow(text))
            return ExitCode.OK
        verdict = self._style.red(f"FAILED (exit {int(failure.code)}): {failure.message}")
        self._print(f"{self._style.bold(title)}  {verdict}")
        if failure.hint:
            self.detail(failure.hint)
        return failure.code


def _shown(name: str, value: object) -> str:
    if name == "base_url" and value == NO_BASE_URL:
        return "(invalid: nothing is sent)"
    if name == "api_key":
        return redact_key(value if isinstance(value, str) else None)
    if name == "rules" and isinstance(value, tuple) and value:
        return f"{len(value)} rule(s): " + ", ".join(rule.label for rule in value)
    if isinstance(value, tuple):
        return ", ".join(map(str, value)) or "(none)"
    return str(value)


class _Progress:
    """Prints connection milestones as httpx reaches them (its ``trace`` request extension)."""

    def __init__(self, report: _Report) -> None:
        self._report = report
        self._target = ""
        self._sent = False

    def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        if name == "connection.connect_tcp.started":
            self._target = f"{info.get('host')}:{info.get('port')}"
        elif name == "connection.connect_tcp.complete":
            self._report.detail(f"connected to {self._target}")
        elif name == "connection.start_tls.complete":
            self._report.detail(f"TLS handshake done{_tls_version(info)}")
        elif name.endswith(".send_request_headers.started"):
            request = info.get("request")
            if getattr(request, "method", b"") != b"CONNECT":  # not a proxy's tunnel
                self.sending()

    def sending(self) -> None:
        """Announce step 4 once (also after the fact if the transport sent no trace)."""
        if not self._sent:
            self._sent = True
            self._report.step(4, f"send  one event {DOCTOR_EVENT!r} for user {DOCTOR_USER!r}")


def _tls_version(info: Mapping[str, Any]) -> str:
    stream = info.get("return_value")
    get_extra_info = getattr(stream, "get_extra_info", None)
    ssl_object = get_extra_info("ssl_object") if callable(get_extra_info) else None
    version = getattr(ssl_object, "version", None)
    return f" ({version()})" if callable(version) else ""
