"""``vf-otel devserver``: the strict local Vibefollow server in the foreground, showing arrivals."""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from http import HTTPStatus
from types import FrameType
from typing import Any, Final, TextIO

from .._version import __version__
from ..testing import DEFAULT_API_KEY, RecordedRequest, VibefollowServer
from ._exit import ExitCode
from ._terminal import Style, printable, to_json

__all__ = ["DEFAULT_PORT", "add_parser", "run"]

DEFAULT_PORT: Final = 8787
#: How long one wait for new requests lasts; also the longest a stop signal waits.
POLL_SECONDS: Final = 0.2
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``devserver``."""
    parser = commands.add_parser(
        "devserver",
        help="run a local Vibefollow-compatible server and show what arrives",
        description=(
            "Run vf_otel.testing.VibefollowServer in the foreground: a strict local "
            "Vibefollow API for development. Prints each event and user upsert as it "
            "arrives, and a summary on Ctrl-C or SIGTERM."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port, 0 for any free one (default: %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=DEFAULT_API_KEY,
        metavar="KEY",
        help="the key the server accepts (default: a fixed local-only test key)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C / SIGTERM, then print the summary; 0 on a normal stop."""
    out = sys.stdout
    if args.api_key.startswith("sk_live_"):
        # The devserver prints its key for the app to use: a production key must not be it.
        return _error("--api-key: use a local key, not a live sk_live_ key", ExitCode.USAGE)
    try:
        server = VibefollowServer(args.api_key, host=args.host, port=args.port)
    except ValueError as exc:
        return _error(str(exc), ExitCode.USAGE)
    stop = threading.Event()
    with _stop_on_signals(stop):
        try:
            _check_port(args.host, args.port)
            server.start()
        except OSError as exc:
            return _error(f"cannot listen on {args.host} port {args.port}: {exc}", ExitCode.FAILED)
        try:
            _announce(server, out)
            _watch(server, _Printer(out), stop)
        finally:
            server.stop()
    _summary(server, out)
    return ExitCode.OK


def _check_port(host: str, port: int) -> None:
    """Raise OSError if ``port`` is taken (bound the way the server binds: SO_REUSEADDR).

    VibefollowServer.start() currently fails with AttributeError rather than the OSError
    when its bind fails, so the reason is found out here first.
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def _error(message: str, code: ExitCode) -> int:
    print(f"vf-otel devserver: {message}", file=sys.stderr, flush=True)
    return code


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` instead of interrupting whatever runs at that moment."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in _STOP_SIGNALS:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _announce(server: VibefollowServer, out: TextIO) -> None:
    lines = [
        f"vf-otel {__version__} dev server listening on {server.base_url} (Ctrl-C to stop)",
        "Point an app at it with these environment variables (a local key, not a secret):",
        "",
        f"VIBEFOLLOW_BASE_URL={server.base_url}",
        f"VIBEFOLLOW_API_KEY={server.api_key}",
        "",
        "Waiting for events...",
    ]
    print("\n".join(lines), file=out, flush=True)


def _watch(server: VibefollowServer, printer: _Printer, stop: threading.Event) -> None:
    """Print requests as they are recorded, until ``stop``; bounded waits keep it responsive."""
    seen = 0
    while not stop.is_set():
        if server.wait_for_requests(seen + 1, timeout=POLL_SECONDS):
            seen = printer.show(server.requests, seen)
    printer.show(server.requests, seen)


def _summary(server: VibefollowServer, out: TextIO) -> None:
    counts = (
        f"events {len(server.events)}, users {len(server.users)}, "
        f"requests {len(server.requests)}, replays {server.replayed}, rejected {server.rejected}"
    )
    print(f"\nstopped: {counts}", file=out, flush=True)


class _Printer:
    """One readable line per accepted event or user upsert, replayed or refused request."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._style = Style.for_stream(out)

    def show(self, requests: list[RecordedRequest], seen: int) -> int:
        """Print the requests after the first ``seen``; returns how many are now shown."""
        for request in requests[seen:]:
            for line in self.lines(request):
                print(line, file=self._out, flush=True)
        return max(seen, len(requests))

    def lines(self, request: RecordedRequest) -> list[str]:
        """The lines for one request, each starting with the local time it was shown."""
        style = self._style
        now = style.dim(datetime.now().strftime("%H:%M:%S"))
        route = f"{request.method} {printable(request.path)}"
        if request.replayed:
            note = f"a retry answered from the idempotency store (HTTP {request.status})"
            return [f"{now}  {style.yellow('replay')}  {route}: {note}"]
        if request.status == 202:
            return [f"{now}  {line}" for line in self._accepted(request)]
        answer = "no answer" if request.status is None else _status_text(request.status)
        return [f"{now}  {style.red('refused')}  {route}: {answer}"]

    def _accepted(self, request: RecordedRequest) -> list[str]:
        payload: Any = request.json
        if request.path.endswith("/users"):
            rest = {k: v for k, v in payload.items() if k != "external_user_id"}
            user = self._style.cyan(printable(str(payload["external_user_id"])))
            return [f"{self._style.cyan('user ')}  {user}  {to_json(rest)}"]
        events = payload["events"] if request.path.endswith("/batch") else [payload]
        return [self._event(event) for event in events]

    def _event(self, event: dict[str, Any]) -> str:
        style = self._style
        user = style.cyan(printable(str(event["external_user_id"])))
        name = style.bold(printable(str(event["name"])))
        return f"{style.green('event')}  {user}  {name}  {to_json(event.get('properties', {}))}"


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"
