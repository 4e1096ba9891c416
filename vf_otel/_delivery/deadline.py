"""A request's deadline: ``timeout`` bounds the whole request, connect to last byte.

httpx's timeouts are per operation (each connect, each socket read): a server that
trickles a byte a second never trips a read timeout and holds a request for as
long as it likes. Two things bound it instead. The body is read in chunks, and
the deadline is checked between them (client.py). And a watchdog thread shuts
down the socket of a request still running at its deadline, so a read that
waits (a stalled or trickled status line and headers) ends at once with a
transport error, which the client then reports as a timeout. One watchdog thread
per process, started at the first request; it holds no socket after its request
ended.

The watchdog learns the socket from the stream itself: the connection pools of
the client's own transports get a network backend whose streams tell the request
reading or writing on them (the calling thread's :class:`Watch`) which stream it
is, on a new connection as on a reused keep-alive one. httpx offers no public way
to give its transport a network backend (``httpx.HTTPTransport`` builds its
``httpcore`` pool itself), so :func:`watch_streams` sets the pool's
``_network_backend`` through ``HTTPTransport._pool`` and the client's
``_transport``/``_mounts``, each looked up with a guard. When the layout is not the
one known (a future httpx, a transport the app gave, or
``VF_OTEL_FORCE_COMPAT_FALLBACK=1``), nothing is changed and the watch falls back to
httpcore's trace: the stream a new connection opened, and on a reused connection
the stream the answer arrived on, so there the status line and headers are bounded
by the read timeout only.

The watch also notes what a stale keep-alive connection needs (client.py): whether
the request went out on a reused connection, and how many bytes of an answer came.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any, Final

import httpcore
import httpx

from .. import _compat
from . import threads

__all__ = ["Watch", "Watchdog", "watch_streams", "watching"]

#: The trace events that hand over a new connection's stream (TCP, then TLS on it).
_NEW_STREAM: Final = frozenset({"connection.connect_tcp.complete", "connection.start_tls.complete"})
#: The trace event of a new connection: a request without it went out on a reused one.
_CONNECTING: Final = "connection.connect_tcp.started"
#: The trace events of a request's head going out (HTTP/1.1, HTTP/2).
_SENDING: Final = frozenset(
    {"http11.send_request_headers.started", "http2.send_request_headers.started"}
)
#: The request each thread is running now, for the streams it reads and writes.
_current: Final = threads.local()


class Watch:
    """One request under watch: its deadline, its stream once known, whether it expired,
    whether it went out on a reused connection, and the answer's bytes read so far."""

    __slots__ = ("connected", "deadline", "expired", "finished", "received", "sent", "stream")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.stream: Any = None
        self.expired = False
        self.finished = False
        self.connected = False  # a new connection was opened for it
        self.sent = False  # its head started going out
        # Counted by the watched streams only: stays 0 when the fallback is in use.
        self.received = 0

    def trace(self, name: str, info: dict[str, Any]) -> None:
        """httpcore's trace callback: remember the stream a new connection opened."""
        if name in _NEW_STREAM:
            self.use(info.get("return_value"))
        elif name == _CONNECTING:
            self.connected = True
        elif name in _SENDING:
            self.sent = True

    @property
    def reused(self) -> bool:
        """Whether the request went out on a pooled connection opened by an earlier one."""
        return self.sent and not self.connected

    def use(self, stream: Any) -> None:
        """The request runs on ``stream``; cut it at once if the deadline passed already."""
        if stream is None or stream is self.stream:
            return
        self.stream = stream
        if self.expired:
            _cut(stream)

    def late(self) -> bool:
        """Whether the deadline has passed."""
        return self.expired or time.monotonic() >= self.deadline


class Watchdog:
    """Cuts the socket of each request still running at its deadline; thread-safe."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        # Real OS primitives (threads.py): the watchdog must run whatever gevent patched.
        self._lock = threads.Lock()
        self._wake = threads.Event()
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._thread: threads.Thread | None = None

    def watch(self, seconds: float) -> Watch:
        """Start watching a request that must end within ``seconds``."""
        if self._pid != os.getpid():
            self._reset()  # forked: the parent's thread does not exist here
        watch = Watch(time.monotonic() + seconds)
        with self._lock:
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threads.Thread(target=self._loop, name="VibefollowWatchdog")
                self._thread.start()
        self._wake.set()
        return watch

    def release(self, watch: Watch) -> None:
        """The request ended: its stream is no longer this watchdog's business."""
        watch.finished = True
        watch.stream = None

    def _loop(self) -> None:
        while True:
            self._wake.clear()  # before looking: a watch() from now on wakes the wait below
            due: Watch | None = None
            wait: float | None = None
            with self._lock:
                while self._heap and self._heap[0][2].finished:
                    heapq.heappop(self._heap)  # ended in time: nothing to do
                if self._heap:
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        due = heapq.heappop(self._heap)[2]
            if due is None:
                self._wake.wait(wait)
                continue
            due.expired = True
            if not due.finished and due.stream is not None:
                _cut(due.stream)


@contextlib.contextmanager
def watching(watch: Watch) -> Iterator[None]:
    """Within the block, the streams this thread reads or writes belong to ``watch``."""
    _current.watch = watch
    try:
        yield
    finally:
        _current.watch = None


class _Stream(httpcore.NetworkStream):
    """A connection's stream that tells the request using it (the thread's Watch) which
    stream it is, and counts the bytes of its answer."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        watch: Watch | None = getattr(_current, "watch", None)
        if watch is not None:
            watch.use(self)
        data = self._stream.read(max_bytes, timeout)
        if watch is not None:
            watch.received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        watch: Watch | None = getattr(_current, "watch", None)
        if watch is not None:
            watch.use(self)
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _Stream(self._stream.start_tls(*args, **kwargs))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """A pool's network backend whose streams are watched (:class:`_Stream`)."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _Stream(self._backend.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _Stream(self._backend.connect_unix_socket(*args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def watch_streams(client: httpx.Client) -> bool:
    """Watch the streams of ``client``'s own transports; False (the trace-only fallback,
    nothing changed) unless every one is an ``httpx.HTTPTransport`` laid out as known.

    The private names are the module docstring's; each is looked up with a guard.
    """
    if _compat.FALLBACK:
        return False
    mounts: Any = getattr(client, "_mounts", None)
    if not isinstance(mounts, dict):
        return False
    transports: Iterable[Any] = [getattr(client, "_transport", None), *mounts.values()]
    pools: list[Any] = []
    for transport in transports:
        if transport is None:
            continue  # a mount that sends nothing (NO_PROXY)
        if not isinstance(transport, httpx.HTTPTransport):
            return False
        pool = getattr(transport, "_pool", None)
        if not isinstance(getattr(pool, "_network_backend", None), httpcore.NetworkBackend):
            return False
        pools.append(pool)
    for pool in pools:
        if not isinstance(pool._network_backend, _Backend):
            pool._network_backend = _Backend(pool._network_backend)
    return bool(pools)


def _cut(stream: Any) -> None:
    """Shut the stream's socket down: a read waiting on it returns at once."""
    sock = None
    with contextlib.suppress(Exception):
        sock = stream.get_extra_info("socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
