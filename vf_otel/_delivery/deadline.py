"""A request's deadline: ``timeout`` bounds the whole request, connect to last byte.

httpx's timeouts are per operation (each connect, each socket read): a server that
trickles a byte a second never trips a read timeout and holds a request for as
long as it likes. Two things bound it instead. The body is read in chunks, and
the deadline is checked between them (client.py). And a watchdog thread shuts
down the socket of a request still running at its deadline, so a read that
waits (a stalled or trickled status line and headers) ends at once with a
transport error, which the client then reports as a timeout.

The socket comes from httpcore's trace: the stream a new connection opened; on a
reused connection, the stream the answer arrived on (``network_stream``). So on a
reused connection the status line and headers are bounded by the read timeout
only (httpcore's trace names no stream there): a server that answered once and
then trickles its next status line is cut off only at the first body chunk. One
thread per process, started at the first request; it holds no socket after its
request ended.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import time
from typing import Any, Final

from . import threads

__all__ = ["Watch", "Watchdog"]

#: The trace events that hand over a new connection's stream (TCP, then TLS on it).
_NEW_STREAM: Final = frozenset({"connection.connect_tcp.complete", "connection.start_tls.complete"})


class Watch:
    """One request under watch: its deadline, its stream once known, whether it expired."""

    __slots__ = ("deadline", "expired", "finished", "stream")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.stream: Any = None
        self.expired = False
        self.finished = False

    def trace(self, name: str, info: dict[str, Any]) -> None:
        """httpcore's trace callback: remember the stream a new connection opened."""
        if name in _NEW_STREAM:
            self.use(info.get("return_value"))

    def use(self, stream: Any) -> None:
        """The request runs on ``stream``; cut it at once if the deadline passed already."""
        if stream is None:
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


def _cut(stream: Any) -> None:
    """Shut the stream's socket down: a read waiting on it returns at once."""
    sock = None
    with contextlib.suppress(Exception):
        sock = stream.get_extra_info("socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
