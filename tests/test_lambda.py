"""AWS Lambda: the real runtime client (awslambdaric) against a fake Runtime API on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import pytest

from vf_otel.testing import VibefollowServer

from .conftest import NO_FLUSH_TIMER, server_env

pytest.importorskip("awslambdaric", reason="the Lambda tests need the awslambdaric package")

INVOCATIONS: Final = 4
EVENTS_PER_INVOCATION: Final = 3
#: A hang guard for the whole run, not a timing assertion.
RUN_TIMEOUT: Final = 60.0
_PREFIX: Final = "/2018-06-01/runtime"

# The function: tagged records at INFO, a handler installed and nothing else (no flush).
_FUNCTION = """\
import logging

import vf_otel

logging.getLogger().addHandler(vf_otel.VibefollowHandler())
log = logging.getLogger("fn")
log.setLevel(logging.INFO)


def handler(event, context):
    for i in range({per}):
        log.info("ran", extra={{"vf_user": "usr_1", "vf_properties": {{"k": event["k"], "i": i}}}})
    if event.get("fail"):
        raise RuntimeError("this invocation fails")
    return {{"k": event["k"]}}
"""


class FakeRuntimeApi:
    """The Lambda Runtime API: hands out ``INVOCATIONS`` events, records each result.

    At each result it notes how many of that invocation's events the Vibefollow
    server already has. ``before_next`` runs before invocation k > 0 is handed out.
    """

    def __init__(self, vibefollow: VibefollowServer, events: list[dict[str, Any]]) -> None:
        self.vibefollow = vibefollow
        self.events = events
        self.delivered_at_result: dict[str, int] = {}
        self.results: dict[str, str] = {}
        self.before_next: Callable[[int], None] = lambda k: None
        self.done = threading.Event()
        self._next = 0
        self._lock = threading.Lock()
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.http.daemon_threads = True

    @property
    def address(self) -> str:
        """``host:port`` for AWS_LAMBDA_RUNTIME_API."""
        return f"127.0.0.1:{self.http.server_address[1]}"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                api.next_invocation(self)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                api.record(self.path, body)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def next_invocation(self, request: BaseHTTPRequestHandler) -> None:
        """Hand out the next event; after the last one, never answer (the sandbox idles)."""
        with self._lock:
            k, self._next = self._next, self._next + 1
        if k >= len(self.events):
            self.done.set()
            time.sleep(RUN_TIMEOUT)  # the test kills the runtime, as Lambda discards a sandbox
            return
        if k > 0:
            self.before_next(k)
        body = json.dumps(self.events[k]).encode()
        request.send_response(200)
        request.send_header("Lambda-Runtime-Aws-Request-Id", f"req-{k}")
        request.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
        request.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:::function:fn")
        request.send_header("Lambda-Runtime-Trace-Id", f"Root=1-0-{k}")
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def record(self, path: str, body: bytes) -> None:
        """A result (response or error): how many of its events had landed by then."""
        parts = path.removeprefix(_PREFIX + "/invocation/").split("/")
        if len(parts) != 2:
            self.results[path] = body.decode(errors="replace")  # an init error
            return
        invoke_id, kind = parts
        k = int(invoke_id.removeprefix("req-"))
        landed = sum(1 for event in self.vibefollow.events if event["properties"]["k"] == k)
        self.delivered_at_result[invoke_id] = landed
        self.results[invoke_id] = kind


@contextlib.contextmanager
def _runtime(
    server: VibefollowServer, tmp_path: Path, events: list[dict[str, Any]]
) -> Iterator[tuple[FakeRuntimeApi, Callable[[], subprocess.Popen[bytes]]]]:
    """The fake Runtime API serving, and a way to start ``python -m awslambdaric``."""
    (tmp_path / "function.py").write_text(
        textwrap.dedent(_FUNCTION.format(per=EVENTS_PER_INVOCATION))
    )
    api = FakeRuntimeApi(server, events)
    serving = threading.Thread(target=api.http.serve_forever, args=(0.01,), daemon=True)
    serving.start()
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        env = server_env(
            server,
            drop=("OTEL_", "AWS_"),
            app_env=NO_FLUSH_TIMER,
            AWS_LAMBDA_RUNTIME_API=api.address,
            AWS_LAMBDA_FUNCTION_NAME="fn",
            LAMBDA_TASK_ROOT=str(tmp_path),
            PYTHONPATH=str(tmp_path),
        )
        with (tmp_path / "runtime.log").open("wb") as log:
            runtime = subprocess.Popen(
                [sys.executable, "-m", "awslambdaric", "function.handler"],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(runtime)
        return runtime

    try:
        yield api, start
    finally:
        for runtime in started:
            if runtime.poll() is None:
                runtime.kill()
                runtime.wait(timeout=10)
        api.http.shutdown()
        api.http.server_close()


def _run_until_idle(api: FakeRuntimeApi, runtime: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the runtime asks for an invocation past the last, then discard it (SIGKILL)."""
    if not api.done.wait(RUN_TIMEOUT) or runtime.poll() is not None:
        pytest.fail(f"the runtime did not finish its invocations:\n{log.read_text()}")
    runtime.kill()  # Lambda discards an idle sandbox without any exit hook
    runtime.wait(timeout=10)


def _events_by_invocation(server: VibefollowServer) -> Counter[int]:
    return Counter(event["properties"]["k"] for event in server.events)


@pytest.mark.slow
def test_events_land_before_each_result_is_posted(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """Each invocation's events reach the API before its result (or error) is posted."""
    events: list[dict[str, Any]] = [{"k": k} for k in range(INVOCATIONS)]
    events[2]["fail"] = True  # post_invocation_error too
    with _runtime(vibefollow_server, tmp_path, events) as (api, start):
        runtime = start()
        _run_until_idle(api, runtime, tmp_path / "runtime.log")
    log = (tmp_path / "runtime.log").read_text()
    expected = {f"req-{k}": EVENTS_PER_INVOCATION for k in range(INVOCATIONS)}
    assert api.delivered_at_result == expected, log
    assert api.results["req-2"] == "error", log
    assert _events_by_invocation(vibefollow_server) == Counter(
        dict.fromkeys(range(INVOCATIONS), EVENTS_PER_INVOCATION)
    )


@pytest.mark.slow
def test_a_frozen_sandbox_loses_nothing(
    vibefollow_server: VibefollowServer, tmp_path: Path
) -> None:
    """SIGSTOP between invocations, SIGCONT later: every event lands once, before its result."""
    with _runtime(vibefollow_server, tmp_path, [{"k": k} for k in range(INVOCATIONS)]) as (
        api,
        start,
    ):
        runtime = start()

        def freeze(k: int) -> None:
            os.kill(runtime.pid, signal.SIGSTOP)  # as Lambda freezes an idle sandbox
            time.sleep(1.0)
            os.kill(runtime.pid, signal.SIGCONT)

        api.before_next = freeze
        _run_until_idle(api, runtime, tmp_path / "runtime.log")
    expected = {f"req-{k}": EVENTS_PER_INVOCATION for k in range(INVOCATIONS)}
    assert api.delivered_at_result == expected, (tmp_path / "runtime.log").read_text()
    assert _events_by_invocation(vibefollow_server) == Counter(
        dict.fromkeys(range(INVOCATIONS), EVENTS_PER_INVOCATION)
    )
