"""A raw-socket HTTP server that misbehaves for real: hangs, trickles, answers 200 MB.

Not vf_otel.testing's strict server: that one answers like the API. This one
reads each request whole (headers and Content-Length body), counts it, notes when
it arrived and was answered (``seen``), and then does what its ``mode`` says. The
``CONNECTION_MODES`` answer the first ``answer_first`` requests of each connection
and misbehave from the next on: what a pooled keep-alive connection meets. Every loop
is bounded: a trickle or a huge answer ends when the client closes, when ``stop()`` is
called, or at ``MAX_SECONDS``.
"""

from __future__ import annotations

import contextlib
import functools
import select
import socket
import struct
import threading
import time
import zlib
from collections.abc import Mapping
from typing import Final, NamedTuple

#: No connection is served longer than this, whatever the mode.
MAX_SECONDS: Final = 60.0
#: The size of an oversized answer.
HUGE_BYTES: Final = 200 * 1024 * 1024
_CHUNK: Final = b"x" * 65536
#: What a gzip bomb decodes to: an envelope padded to this many bytes (sent ~1,000x smaller).
BOMB_BYTES: Final = 256 * 1024 * 1024
_ENVELOPE: Final = b'{"data":{"accepted":true}}'
#: Modes that answer a connection's first ``answer_first`` requests, then: close it
#: unanswered (a keep-alive the server dropped as it was reused), reset it, or trickle
#: the next status line a byte every ``trickle_every`` seconds.
CONNECTION_MODES: Final = frozenset({"close_unanswered", "reset", "trickle_status"})


class Seen(NamedTuple):
    """A request read whole: its path, when (``time.monotonic()``) it arrived and its
    answer started (None: no answer, or not one of ``answer``'s), its connection's number."""

    path: str
    arrived: float
    answered: float | None
    connection: int


class HostileServer:
    """One misbehaviour on 127.0.0.1; ``requests`` counts the requests read whole."""

    def __init__(
        self,
        mode: str,
        *,
        reason: str = "OK",
        body: bytes = _ENVELOPE,
        delays: Mapping[str, float] | None = None,
        answer_first: int = 1,
        trickle_every: float = 0.3,
    ) -> None:
        self.mode = mode
        self.reason = reason
        self.body = body
        #: In ``answer`` mode: seconds to wait before answering a request for a path.
        self.delays = dict(delays or {})
        self.answer_first = answer_first
        self.trickle_every = trickle_every
        self.requests = 0
        self.seen: list[Seen] = []
        #: ``trickle_status``: the bytes of each trickled answer sent before the client closed.
        self.trickled: list[int] = []
        self._connections = 0
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.02)  # how soon stop() ends the accept loop
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop accepting and end every connection's loop."""
        self._stopped.set()
        self._thread.join(2.0)
        self._sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._connections += 1
                number = self._connections
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        until = time.monotonic() + MAX_SECONDS
        with contextlib.suppress(OSError), conn:
            conn.settimeout(1.0)
            buffer = b""
            index = 0  # requests read on this connection
            while not self._stopped.is_set() and time.monotonic() < until:
                while b"\r\n\r\n" not in buffer:
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        if self._stopped.is_set() or time.monotonic() > until:
                            return
                        continue
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(buffer) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                buffer = buffer[length:]
                path = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
                arrived = time.monotonic()
                with self._lock:
                    self.requests += 1
                index += 1
                if self.mode in CONNECTION_MODES and index > self.answer_first:
                    self._note(path, arrived, None, number)
                    self._misbehave(conn, until)
                    return
                delay = self.delays.get(path, 0.0)
                if delay and self._stopped.wait(delay):
                    return
                # Noted as the answer goes: a client that has it finds it noted.
                answers = self.mode == "answer" or self.mode in CONNECTION_MODES
                self._note(path, arrived, time.monotonic() if answers else None, number)
                if not self._answer(conn, until):
                    return

    def _note(self, path: str, arrived: float, answered: float | None, number: int) -> None:
        with self._lock:
            self.seen.append(Seen(path, arrived, answered, number))

    def _misbehave(self, conn: socket.socket, until: float) -> None:
        """A request past ``answer_first`` on its connection: closed unanswered, reset,
        or trickled."""
        if self.mode == "reset":
            # SO_LINGER 0: the close sends a RST, as a server's abort does.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if self.mode == "close_unanswered":
            return
        sent = 0
        answer = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
        for byte in answer:
            if self._stopped.is_set() or time.monotonic() > until:
                break
            conn.sendall(bytes([byte]))
            sent += 1
            if self._closed_by_client(conn, self.trickle_every):
                break
        with self._lock:
            self.trickled.append(sent)

    @staticmethod
    def _closed_by_client(conn: socket.socket, seconds: float) -> bool:
        """Wait ``seconds``; True as soon as the client closed (or reset) the connection."""
        readable, _, _ = select.select([conn], [], [], seconds)
        if not readable:
            return False
        try:
            return conn.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _answer(self, conn: socket.socket, until: float) -> bool:
        """Answer one request as ``mode`` says; False when the connection must end."""
        mode = self.mode
        if mode == "answer" or mode in CONNECTION_MODES:
            head = (
                f"HTTP/1.1 202 {self.reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(self.body)}\r\n\r\n"
            )
            conn.sendall(head.encode("latin-1") + self.body)
            return True
        if mode in ("huge200", "huge500"):
            status = "200 OK" if mode == "huge200" else "500 Internal Server Error"
            conn.sendall(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {HUGE_BYTES}\r\n\r\n".encode()
            )
            conn.sendall(b'{"data":{"accepted":true},"pad":"')
            sent = 0
            # Made as it goes: never 200 MB in this process. Ends when the client closes.
            while sent < HUGE_BYTES and not self._stopped.is_set() and time.monotonic() < until:
                conn.sendall(_CHUNK)
                sent += len(_CHUNK)
            return False
        if mode in ("gzip_bomb200", "gzip_bomb500"):
            # Compressed although the client asked for identity: each 64 KiB of it a
            # client's socket read decodes to 64 MB.
            status = "200 OK" if mode == "gzip_bomb200" else "500 Internal Server Error"
            bomb = gzip_bomb()
            conn.sendall(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n".encode()
                + bomb
            )
            return True
        if mode == "gzip_trailing200":
            # A whole gzip envelope, then bytes after its end until the client closes: they
            # decode to nothing, and nothing in the headers says when the body ends.
            pack = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS | 16)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Encoding: gzip\r\nConnection: close\r\n\r\n"
                + pack.compress(_ENVELOPE)
                + pack.flush()
            )
            while not self._stopped.is_set() and time.monotonic() < until:
                conn.sendall(_CHUNK)
            return False
        if mode in ("trickle_head", "trickle_body"):
            answer = (
                b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(_ENVELOPE)}\r\n\r\n".encode()
            )
            if mode == "trickle_body":
                conn.sendall(answer.replace(b"Length: 26", b"Length: 226"))
                answer = _ENVELOPE + b" " * 200  # JSON allows trailing blanks: 40 s of them
            else:
                answer += _ENVELOPE
            # One byte every 0.2 s: each read succeeds, so no read timeout ever trips.
            for byte in answer:
                if self._stopped.is_set() or time.monotonic() > until:
                    return False
                conn.sendall(bytes([byte]))
                time.sleep(0.2)
            return True
        # "hang": read the request, never answer.
        while not self._stopped.is_set() and time.monotonic() < until:
            time.sleep(0.05)
        return False


@functools.cache
def gzip_bomb() -> bytes:
    """A gzip body of BOMB_BYTES: an API envelope, then a JSON string of zeros (~250 KB)."""
    pack = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    head = b'{"data":{"accepted":true},"pad":"'
    parts = [pack.compress(head)]
    zeros = b"0" * (1024 * 1024)
    parts += [pack.compress(zeros) for _ in range(BOMB_BYTES // len(zeros) - 1)]
    parts += [pack.compress(zeros[: len(zeros) - len(head) - 2]), pack.compress(b'"}')]
    parts.append(pack.flush())
    return b"".join(parts)
