"""HTTP/1.1 plumbing for the test server: framing, keep-alive, resets. No API logic here."""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

from vf_otel.testing._api import Incoming, InMemoryApi, Reply, error_body
from vf_otel.testing._records import normalise_headers
from vf_otel.testing._validation import DEFAULT_MAX_BODY_BYTES, ApiError

logger = logging.getLogger(__name__)

# Bounded so a runaway client cannot make the test process swallow unbounded memory.
MAX_BODY_BYTES: Final = DEFAULT_MAX_BODY_BYTES
# Idle keep-alive connections are dropped after this long, so their threads do not pile up.
IDLE_TIMEOUT_SECONDS: Final = 60.0
_MAX_CHUNK_LINE: Final = 1024
# Codes for the errors http.server detects itself, before a request reaches the API.
_ERROR_CODES: Final[dict[int, str]] = {
    414: "uri_too_long",
    431: "headers_too_large",
    501: "not_implemented",
    505: "http_version_not_supported",
}
# SO_LINGER on with a zero timeout makes close() send RST instead of FIN.
_LINGER_RESET: Final = struct.pack("ii", 1, 0)


class BodyError(Exception):
    """The request body could not be framed; carries the error to answer with."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that stops at once and drops its connections when it does.

    serve_forever() only notices shutdown() on its next poll tick, which would add that
    tick to every test using the fixture; a wake-up socket pair makes stopping immediate.
    Connections are tracked because a client's pooled keep-alive connection would otherwise
    still be served by its handler thread after the server stopped.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: InMemoryApi, family: int) -> None:
        self.address_family = family
        self.api = api
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._stopped = threading.Event()
        # Made before binding: a failed bind calls server_close(), which closes these.
        self._wake_reader, self._wake_writer = socket.socketpair()
        super().__init__(address, RequestHandler)
        # Non-blocking: a connection that vanished between select() and accept() must not
        # leave the loop stuck in accept(), where stop_serving() could not reach it.
        self.socket.setblocking(False)

    def serve_until_stopped(self) -> None:
        """Accept connections until ``stop_serving``; runs in the server thread."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self._stopped.is_set():
                ready = selector.select()
                if any(key.fileobj is self.socket for key, _ in ready):
                    self._accept_one()

    def stop_serving(self) -> None:
        """Make ``serve_until_stopped`` return; call from any other thread."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def _accept_one(self) -> None:
        # What BaseServer._handle_request_noblock() does, without relying on a private name.
        try:
            request, client_address = self.get_request()
        except OSError:
            return
        if self._stopped.is_set():
            self.shutdown_request(request)
            return
        try:
            self.process_request(request, client_address)
        except Exception:  # noqa: BLE001 (one connection must never end the accept loop)
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Shut down every open connection; their handler threads then see EOF and exit."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its own thread
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a client hanging up is routine here.
        # socketserver calls this from inside its own except block, so exc_info is set.
        logger.debug("connection from %s failed", client_address, exc_info=True)  # noqa: LOG014


class RequestHandler(BaseHTTPRequestHandler):
    """Reads one request, asks the ``InMemoryApi`` for a reply and writes it."""

    protocol_version = "HTTP/1.1"  # keep-alive, so pooled httpx connections get reused
    server_version = "vf-otel-testing"
    sys_version = ""
    timeout = IDLE_TIMEOUT_SECONDS
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK would
    # add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server: LoopbackHTTPServer

    def do_POST(self) -> None:
        """Every Vibefollow route is a POST."""
        self._dispatch()

    # Other methods get a JSON 405 rather than http.server's HTML 501.
    def do_GET(self) -> None:
        """Answered with 405."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Answered with 405."""
        self._dispatch()

    def do_PATCH(self) -> None:
        """Answered with 405."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Answered with 405."""
        self._dispatch()

    def do_HEAD(self) -> None:
        """Answered with 405 (headers only)."""
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request line on stderr; debug logging only."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s - %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer requests http.server rejects itself (bad request line, ...) with JSON too."""
        error = ApiError(code, _ERROR_CODES.get(code, "bad_request"), message or "")
        self.close_connection = True
        self._write(Reply(code, error_body(error), close=True))

    def _dispatch(self) -> None:
        try:
            body, body_error = self._read_body(), None
        except BodyError as failure:
            body, body_error = b"", failure.error
        incoming = Incoming(
            method=self.command,
            path=urlsplit(self.path).path,
            headers=normalise_headers(self.headers.items()),
            body=body,
            body_error=body_error,
        )
        reply = self.server.api.handle(incoming)
        if reply.reset:
            self._reset()
        else:
            self._write(reply)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length", "0").strip()
        if not (raw.isascii() and raw.isdigit()):
            raise BodyError(ApiError(400, "bad_request", "invalid Content-Length"))
        length = int(raw)
        if length > MAX_BODY_BYTES:
            raise BodyError(_too_large())
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(_MAX_CHUNK_LINE)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BodyError(ApiError(400, "bad_request", "invalid chunk size")) from None
            if size == 0:
                break
            if len(body) + size > MAX_BODY_BYTES:
                raise BodyError(_too_large())
            body += self.rfile.read(size)
            self.rfile.readline(_MAX_CHUNK_LINE)  # the CRLF closing this chunk
        while self.rfile.readline(_MAX_CHUNK_LINE).strip():
            pass  # trailer fields: nothing in this API uses them
        return bytes(body)

    def _write(self, reply: Reply) -> None:
        self.send_response(reply.status)
        if reply.content_type is not None:
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _reset(self) -> None:
        # rfile holds a reference to the socket; close it first or close() keeps the fd open.
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.rfile.close()
        self.connection.close()


def _too_large() -> ApiError:
    return ApiError(413, "payload_too_large", f"request body exceeds {MAX_BODY_BYTES} bytes")
