"""A loopback server for the benchmarks, in a process of its own.

    python benchmarks/_server_proc.py sink|vibefollow|latency

Prints its base URL, then answers one line per command read from stdin:
``events`` (how many events the Vibefollow server accepted), ``fail STATUS COUNT``,
``reset COUNT``, ``clear`` (forget faults and recordings), ``requests``. It stops when
stdin closes. ``sink`` answers every POST with 200 at once and counts requests: a
stand-in for posthog, Segment and OTLP/HTTP endpoints that never leaves 127.0.0.1, and
for the Vibefollow API itself (on ``/api/`` paths it answers with the API's envelope,
which vf-otel requires of a 2xx: a proxy's page is not a delivery). ``latency`` is
that sink on the API's paths, which also notes, for each event of an ``/events/batch``
request, how long ago (``time.monotonic()``, one clock for every process on the
machine) its ``properties.t`` says it was logged; ``latencies`` prints them and the
count of event requests as JSON, and forgets them.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from vf_otel.testing import VibefollowServer

_JSON_OK: Final = b'{"status": 1}'
# The Vibefollow API's own answer: vf-otel takes a 2xx without it for a proxy's page.
_API_OK: Final = b'{"data": {"accepted": true}}'
_API_PREFIX: Final = "/api/"
_PROTOBUF_PATHS: Final = ("/v1/logs", "/v1/traces")


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as every client here uses
    # Headers and body go out in two writes: without this, Nagle + delayed ACK
    # hold every response ~40 ms.
    disable_nagle_algorithm = True
    requests_seen = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        """Read the body, answer 200: JSON (the API's on its paths), empty protobuf for OTLP."""
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with _SinkHandler.lock:
            _SinkHandler.requests_seen += 1
        otlp = self.path.startswith(_PROTOBUF_PATHS)
        body = b"" if otlp else _API_OK if self.path.startswith(_API_PREFIX) else _JSON_OK
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf" if otlp else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silence: one line per request would cost more than the request."""


class _LatencyHandler(_SinkHandler):
    latencies: list[float] = []  # noqa: RUF012 - one server per process, read under lock
    event_requests = 0

    def do_POST(self) -> None:
        """Note each event's time since it was logged, then answer as the sink does."""
        received = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.endswith("/events/batch"):
            events = json.loads(body)["events"]
            with _SinkHandler.lock:
                _LatencyHandler.event_requests += 1
                _LatencyHandler.latencies += [received - e["properties"]["t"] for e in events]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(_API_OK)))
        self.end_headers()
        self.wfile.write(_API_OK)


def _serve_sink(handler: type[_SinkHandler] = _SinkHandler) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2})
    thread.start()
    print(f"http://127.0.0.1:{httpd.server_address[1]}", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "requests":
                print(_SinkHandler.requests_seen, flush=True)
            elif line.strip() == "latencies":
                with _SinkHandler.lock:
                    seen = {
                        "latencies": _LatencyHandler.latencies,
                        "requests": _LatencyHandler.event_requests,
                    }
                    _LatencyHandler.latencies, _LatencyHandler.event_requests = [], 0
                print(json.dumps(seen), flush=True)
            else:
                print("ok", flush=True)
    finally:
        httpd.shutdown()
        thread.join()
        httpd.server_close()


def _serve_vibefollow() -> None:
    with VibefollowServer("sk_test_" + "0" * 32) as server:
        print(server.base_url, flush=True)
        for line in sys.stdin:
            command, *args = line.split()
            if command == "events":
                print(_event_count(server), flush=True)
                continue
            if command == "requests":
                print(len(server.requests), flush=True)
                continue
            if command == "fail":
                server.fail_next(int(args[0]), count=int(args[1]))
            elif command == "reset":
                server.reset_next(count=int(args[0]))
            elif command == "clear":
                server.clear()
            print("ok", flush=True)


def _event_count(server: VibefollowServer) -> int:
    # server.events deep-copies every event: count them under the lock instead.
    api = server._api
    with api.changed:
        return len(api.events)


if __name__ == "__main__":
    servers: dict[str, Callable[[], None]] = {
        "sink": _serve_sink,
        "vibefollow": _serve_vibefollow,
        "latency": functools.partial(_serve_sink, _LatencyHandler),
    }
    servers[sys.argv[1]]()
