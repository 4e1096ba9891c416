"""Timing in one place: retry backoff, the circuit, a request's deadline, the worker's pace,
when a partial batch goes out."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal, TypeVar

import httpcore
import httpx

from .. import _compat
from . import threads

__all__ = [
    "AUTH_PAUSE",
    "BUSY_AFTER",
    "COOLDOWN_BASE",
    "COOLDOWN_CAP",
    "FAILURE_THRESHOLD",
    "FASTEST_LOGGING",
    "PAUSE_EVERY",
    "RATE_SPAN",
    "RETRY_AFTER_CAP",
    "STEP_BACK",
    "WINDOW_PER_RATE",
    "WRONG_URL_PAUSE",
    "CircuitBreaker",
    "Gather",
    "Pace",
    "Permit",
    "RetryPolicy",
    "Timing",
    "Watch",
    "Watchdog",
    "parse_retry_after",
    "watch_streams",
    "watching",
]


# When to send and when to wait: retry backoff, ``Retry-After``, the circuit breaker.
#
# Retry: capped exponential backoff with full jitter; a server's ``Retry-After``
# (seconds or an HTTP date) is a floor, honoured in full (events wait parked).
#
# Circuit: after ``threshold`` consecutive failed attempts (network error, 5xx,
# 408, 429, an answer that is not the API's) it opens and nothing is sent. After a
# cool-down it lets exactly one probe through; success closes it, failure reopens
# it with a longer cool-down (doubling, capped). Every attempt holds a
# ``Permit`` and settles it exactly once — sent, failed or abandoned — so a
# probe that never went out (a flush with no time left) cannot block the next one.
# A *hold* (``Retry-After``, a refused API key) stops every request until it ends.

BACKOFF_BASE: Final = 0.5
BACKOFF_CAP: Final = 30.0
#: A Retry-After longer than a day is taken as a day (a broken header, not a plan).
RETRY_AFTER_CAP: Final = 86_400.0
#: Consecutive failed attempts that open the circuit.
FAILURE_THRESHOLD: Final = 5
#: The first cool-down (seconds); each failed probe doubles it, up to COOLDOWN_CAP.
COOLDOWN_BASE: Final = 1.0
COOLDOWN_CAP: Final = 30.0
#: After a 401/403, how long to hold every request before trying the key again.
AUTH_PAUSE: Final = 60.0
#: After a redirect (or with no valid base URL), how long to hold every request.
WRONG_URL_PAUSE: Final = 60.0

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class Timing:
    """Where delivery reads the time and how long it pauses, in one value.

    The default is the real clock and the delays above; the pipeline passes it down to
    the circuit, the attempt loop and the worker. Tests pass a fast one (a clock they
    move forward, short backoff, cool-down and holds, and a ``retry_wait`` that moves
    that clock instead of sleeping), so outage and retry paths run without waiting them
    out. Waits stay ``Event.wait`` (shutdown cuts them short); the request watchdog and
    the app-thread pace keep real time: they time real sockets and real threads.
    """

    now: Callable[[], float] = time.monotonic
    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP
    cooldown: float = COOLDOWN_BASE
    cooldown_cap: float = COOLDOWN_CAP
    auth_pause: float = AUTH_PAUSE
    wrong_url_pause: float = WRONG_URL_PAUSE
    #: How the attempt loop waits before a retry (its backoff, or a Retry-After):
    #: ``retry_wait(stop, seconds)``, True when ``stop`` was set (delivery is stopping).
    retry_wait: Callable[[threads.Event, float], bool] = threads.Event.wait


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff for attempt ``n`` (0-based) is uniform in [0, min(cap, base * 2**n)]."""

    max_retries: int
    base: float = BACKOFF_BASE
    cap: float = BACKOFF_CAP

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt + 1``; Retry-After is a floor."""
        backoff = rng.uniform(0.0, min(self.cap, self.base * 2.0 ** min(attempt, 32)))
        if retry_after is None:
            return backoff
        return max(backoff, min(retry_after, RETRY_AFTER_CAP))


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - now_epoch
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), RETRY_AFTER_CAP)


class Permit:
    """Leave to send one attempt; settle it with exactly one of its three methods."""

    __slots__ = ("_circuit", "_probe", "_settled")

    def __init__(self, circuit: CircuitBreaker, *, probe: bool) -> None:
        self._circuit = circuit
        self._probe = probe
        self._settled = False

    def succeeded(self) -> None:
        """The server answered as the API does (any status but 5xx/408/429): close."""
        if self._settle():
            self._circuit._succeeded()

    def failed(self, retry_after: float | None = None) -> bool:
        """Network error, 5xx, 408, 429 or a foreign answer; True if the circuit is now open."""
        if self._settle():
            return self._circuit._failed(retry_after, probe=self._probe)
        return self._circuit.state == "open"

    def abandon(self) -> None:
        """The attempt never went out: give the probe slot back."""
        if self._settle() and self._probe:
            self._circuit._probe_abandoned()

    def _settle(self) -> bool:
        first, self._settled = not self._settled, True
        return first


class CircuitBreaker:
    """Thread-safe; every method is O(1) and never blocks on I/O."""

    def __init__(
        self,
        *,
        threshold: int = FAILURE_THRESHOLD,
        cooldown: float = COOLDOWN_BASE,
        cooldown_cap: float = COOLDOWN_CAP,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._threshold = threshold
        self._base = cooldown
        self._cap = max(cooldown, cooldown_cap)
        self._clock = clock
        self._on_change = on_change
        self._lock = threads.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._cooldown = cooldown
        self._open_until = 0.0
        self._hold_until = 0.0
        self._probing = False
        self._proven = False  # no answer from the API yet

    @property
    def state(self) -> State:
        """``closed`` (sending), ``open`` (nothing goes out) or ``half_open`` (probing)."""
        with self._lock:
            if self._state == "open" and self._clock() >= self._open_until:
                return "half_open"
            return self._state

    def acquire(self) -> Permit | None:
        """A permit to send one attempt now, or None (held, open, or a probe is out)."""
        now = self._clock()
        with self._lock:
            if now < self._hold_until:
                return None
            if self._state == "closed":
                return Permit(self, probe=False)
            if self._state == "open" and now < self._open_until:
                return None
            self._state = "half_open"
            if self._probing:
                return None
            self._probing = True
            return Permit(self, probe=True)

    def ready(self) -> bool:
        """Whether ``acquire`` would give a permit now (without taking it)."""
        return self.seconds_until_ready() == 0.0

    def seconds_until_ready(self) -> float:
        """How long until ``acquire`` may say yes (0 now; inf while a probe is out)."""
        now = self._clock()
        with self._lock:
            until = self._hold_until
            if self._state == "open":
                until = max(until, self._open_until)
            elif self._state == "half_open" and self._probing:
                return math.inf
            return max(0.0, until - now)

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed (or a hold is on): send one request at a time."""
        with self._lock:
            return (
                self._failures > 0 or self._state != "closed" or (self._clock() < self._hold_until)
            )

    @property
    def cautious(self) -> bool:
        """Whether requests should go one at a time: until the API first answered as the
        API does (a slow start: a hung or rate-limiting API is met by one request, not
        by every sender at once), and again whenever :attr:`failing`."""
        with self._lock:
            proven = self._proven
        return not proven or self.failing

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (a Retry-After, or a refused key), whatever the state."""
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + seconds)

    def _succeeded(self) -> None:
        with self._lock:
            changed = self._state != "closed" or not self._proven
            self._proven = True
            self._state = "closed"
            self._failures = 0
            self._cooldown = self._base
            self._probing = False
        if changed:
            self._on_change()

    def _failed(self, retry_after: float | None, *, probe: bool) -> bool:
        now = self._clock()
        with self._lock:
            if retry_after is not None:
                self._hold_until = max(self._hold_until, now + min(retry_after, RETRY_AFTER_CAP))
            self._failures += 1
            if probe:
                # The probe failed: back off further before the next one.
                self._probing = False
                self._cooldown = min(self._cap, self._cooldown * 2)
                self._open(now)
            elif self._state == "closed" and self._failures >= self._threshold:
                self._open(now)
            return self._state == "open"

    def _probe_abandoned(self) -> None:
        with self._lock:
            self._probing = False
        self._on_change()

    def _open(self, now: float) -> None:
        self._state = "open"
        self._open_until = now + self._cooldown


# A request's deadline: ``timeout`` bounds the whole request, connect to last byte.
#
# httpx's timeouts are per operation (each connect, each socket read): a server that
# trickles a byte a second never trips a read timeout and holds a request for as
# long as it likes. Two things bound it instead. The body is read in chunks, and
# the deadline is checked between them (client.py). And a watchdog thread shuts
# down the socket of a request still running at its deadline, so a read that
# waits (a stalled or trickled status line and headers) ends at once with a
# transport error, which the client then reports as a timeout. One watchdog thread
# per process, started at the first request; it holds no socket after its request
# ended. It sleeps until the earliest deadline it knows of, and a new request wakes it
# only when that one is due sooner (or to drop the many that ended meanwhile): waking
# it for every request cost a thread switch and a GIL hand-over each time.
#
# The watchdog learns the socket from the stream itself: the connection pools of
# the client's own transports get a network backend whose streams tell the request
# reading or writing on them (the calling thread's :class:`Watch`) which stream it
# is, on a new connection as on a reused keep-alive one. httpx offers no public way
# to give its transport a network backend (``httpx.HTTPTransport`` builds its
# ``httpcore`` pool itself), so :func:`watch_streams` sets the pool's
# ``_network_backend`` through ``HTTPTransport._pool`` and the client's
# ``_transport``/``_mounts``, each looked up with a guard. When the layout is not the
# one known (a future httpx, a transport the app gave, or
# ``VF_OTEL_FORCE_COMPAT_FALLBACK=1``), nothing is changed and the watch falls back to
# httpcore's trace: the stream a new connection opened, and on a reused connection
# the stream the answer arrived on, so there the status line and headers are bounded
# by the read timeout only.
#
# The watch also notes what a stale keep-alive connection needs (client.py): whether
# the request went out on a reused connection, and how many bytes of an answer came.

#: The trace events that hand over a new connection's stream (TCP, then TLS on it).
_NEW_STREAM: Final = frozenset({"connection.connect_tcp.complete", "connection.start_tls.complete"})
#: The trace event of a new connection: a request without it went out on a reused one.
_CONNECTING: Final = "connection.connect_tcp.started"
#: The trace events of a request's head going out (HTTP/1.1, HTTP/2).
_SENDING: Final = frozenset(
    {"http11.send_request_headers.started", "http2.send_request_headers.started"}
)
#: Watches held before a new one wakes the watchdog to drop those that ended (and
#: twice as many as it kept after that, so a long request at the head costs no wake-ups).
_PRUNE_AT: Final = 64
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
        # When the thread looks at the heap next (inf: when woken), and the heap's size
        # at which a new watch wakes it all the same, to drop the watches that ended.
        self._until = math.inf
        self._prune_at = _PRUNE_AT

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
            # Woken only when it would look too late, not for every request: a wake-up
            # is a thread switch and a GIL hand-over (about 50 µs of a request's CPU).
            wake = watch.deadline < self._until or len(self._heap) >= self._prune_at
        if wake:
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
                self._until = math.inf
                self._prune_at = max(_PRUNE_AT, 2 * len(self._heap))
                if self._heap:
                    self._until = self._heap[0][0]
                    wait = self._until - time.monotonic()
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


# When the worker lets the app's threads run: it hands the GIL back while it builds,
# and steps back while they are busy.
#
# A thread waiting for the GIL gets it only when the holder lets go: at the latest
# after the switch interval (5 ms), a long time on a request path. A batch takes a
# few ms to build and encode, so the worker lets go every ``PAUSE_EVERY`` events.
# When getting the GIL back took ``BUSY_AFTER`` or more, the app's threads kept it
# until the interpreter made them let go: they are computing, not waiting for I/O.
# The worker then waits ``STEP_BACK`` before it goes on, so a burst of log calls is
# not slowed by the delivery of the calls before it; the queue holds them meanwhile.
# Two bounds keep that a burst's pause: a step back ends before the queue could reach
# half full at ``FASTEST_LOGGING`` events/s, and once the app has been busy for
# ``patience`` seconds (the ``flush_interval``) in a row (pauses that find it busy,
# ``RUN_GAP`` apart at most) the worker stops stepping back and takes its share of
# the GIL. None of this while the worker is hurried: a flush() or shutdown waits for
# it (handing the GIL back and forth costs time they would wait; a flush ends a step
# back at once), or the queue is past half full (the worker takes its share, so the
# queue drains).

T = TypeVar("T")
R = TypeVar("R")
#: The worker lets go of the GIL after building (and after encoding) this many events.
PAUSE_EVERY: Final = 20

#: Getting the GIL back took this long (seconds): the app's threads are busy.
BUSY_AFTER: Final = 0.001
#: How long the worker then stays out of their way (seconds), unless hurried.
STEP_BACK: Final = 0.02
#: Busy pauses further apart than this (seconds) are not one run of a busy app.
RUN_GAP: Final = 1.0
#: Faster than one interpreter can log (events/s): a step back lasts no longer than
#: the queue would take to fill up to half at this rate.
FASTEST_LOGGING: Final = 200_000


class Pace:
    """Whether the worker is hurried, and its pause when it is not."""

    __slots__ = (
        "_busy_since",
        "_clock",
        "_flush_waiting",
        "_hurry",
        "_hurrying",
        "_last_busy",
        "_max_queue_size",
        "_patience",
        "_queue",
        "_stop",
    )

    def __init__(
        self,
        *,
        queue: Sized,
        max_queue_size: int,
        stop: threads.Event,
        flush_waiting: Callable[[], bool],
        patience: float,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._queue = queue
        self._max_queue_size = max_queue_size
        self._stop = stop
        self._flush_waiting = flush_waiting
        self._patience = patience
        self._clock = clock
        self._hurry = threads.Event()
        self._hurrying = threads.Lock()
        # When the app's threads were first found busy in the present run of such pauses,
        # and last found busy (a longer gap than RUN_GAP ends a run: the worker was idle,
        # or hurried, meanwhile).
        self._busy_since: float | None = None
        self._last_busy = 0.0

    def hurried(self) -> bool:
        """Build without pausing: a flush() or shutdown waits, or the queue is past half."""
        return (
            self._flush_waiting()
            or self._stop.is_set()
            or len(self._queue) * 2 > self._max_queue_size
        )

    def hurry(self) -> None:
        """A flush() or shutdown now waits: end a step back at once.

        Unless this thread is already doing so (a SIGTERM hook's flush interrupting
        a flush): ``Event.set`` holds a lock it cannot take twice, and the outer
        call sets the event anyway.
        """
        if self._hurrying.acquire(blocking=False):
            try:
                self._hurry.set()
            finally:
                self._hurrying.release()

    def pause(self) -> None:
        """Let the app's threads run, unless hurried; step back while they are busy."""
        if self.hurried():
            return
        started = self._clock()
        _yield_gil()
        now = self._clock()
        if now - started < BUSY_AFTER:
            self._busy_since = None
            return  # nobody was waiting for the GIL: go on
        if self._busy_since is None or now - self._last_busy > RUN_GAP:
            self._busy_since = now  # a new run of busy pauses
        self._last_busy = now
        if now - self._busy_since > self._patience:
            return  # busy for longer than a burst: the hand-over above is the app's share
        half = self._max_queue_size / 2
        step = min(STEP_BACK, (half - len(self._queue)) / FASTEST_LOGGING)
        if step <= 0:
            return
        self._hurry.clear()
        if not self.hurried():  # asked again after the clear: a hurry() is never missed
            self._hurry.wait(step)

    def in_steps(self, build: Callable[[list[T]], list[R]], items: list[T]) -> list[R]:
        """``build(items)``, ``PAUSE_EVERY`` items at a time with a pause after each
        (at once when hurried)."""
        if self.hurried():
            return build(items)
        built: list[R] = []
        for start in range(0, len(items), PAUSE_EVERY):
            built += build(items[start : start + PAUSE_EVERY])
            self.pause()
        return built


def _yield_gil() -> None:
    """Let a thread waiting for the GIL take it: a sleep releases it, even for 0 s."""
    threads.sleep(0)


# When the worker sends a partial batch: at once after a quiet spell, later when busy.
#
# A quiet app wants its events delivered in milliseconds (a ``user_signed_up`` is a
# welcome email); a busy one wants batches of hundreds, so that the API's rate limits
# are not spent on tiny requests. As a TCP stack does (Nagle), the worker sends what
# is queued at once when nothing of its own is in flight, and lets events gather into
# the next batch while a request is out. On loopback a request is out for a few
# milliseconds, so that alone would send one request per event at 100 events/s: the
# worker also waits, after each partial batch, a *gather window* that grows with the
# recent event rate, ``rate * WINDOW_PER_RATE`` seconds (71 ms at 100 events/s,
# 7 ms at 10 events/s, a full batch before the window ends at 1,000 events/s). The
# first event after a quiet spell longer than the window goes out at once. A queue
# that holds a full batch when the window ends sends full batches only: the rest
# waits for the next window, so a busy app never sends a full batch and a crumb.
#
# ``flush_interval`` stays the upper bound: nothing waits longer, whatever the
# window says. While the API fails (the circuit is open, or the last attempt
# failed) nothing is sent early: batches fill up to ``batch_size`` or the interval,
# as they did before, and what is parked is a few large requests, not many small.
#
# The rate is counted on the worker: the events taken in the last ``RATE_SPAN``
# seconds, or in the last two gaps between takes when those are longer (a busy app's
# full batches half a second apart are counted over a second, not as a burst of 500
# and then nothing): the app's threads do nothing more than before. They wake the
# worker for the first event only when it would send it at once
# (``EventQueue.wake_early``); otherwise once per batch, as before.

#: The gather window is the recent rate (events/s) times this (seconds per event/s):
#: 1/1400 gives 71 ms at 100 events/s (at most 14 requests/s, half a window's wait
#: on average), 714 ms at 1,000 events/s (a batch of 500 fills first: 2 requests/s).
WINDOW_PER_RATE: Final = 1 / 1400
#: The recent rate counts the events taken in the last this many seconds: short, so
#: that a rising rate widens the window within a few batches.
RATE_SPAN: Final = 0.25


class Gather:
    """The recent event rate, and when the worker may send a partial batch."""

    __slots__ = ("_gap", "_interval", "_last_take", "_taken", "_takes", "enabled")

    def __init__(self, interval: float, *, enabled: bool) -> None:
        self._interval = interval
        #: False (``adaptive_batching=False``): partial batches wait for the interval.
        self.enabled = enabled
        self._takes: deque[tuple[float, int]] = deque()  # (when, events) in RATE_SPAN
        self._taken = 0  # their events
        self._last_take = -math.inf
        self._gap = 0.0  # between the last two takes

    def rate(self, now: float) -> float:
        """Events taken per second lately (see the module docstring)."""
        span = max(RATE_SPAN, 2 * self._gap)
        takes = self._takes
        while takes and takes[0][0] <= now - span:
            self._taken -= takes.popleft()[1]
        return self._taken / span

    def window(self, now: float) -> float:
        """How long after a take the next partial batch waits (at most the interval)."""
        return min(self._interval, self.rate(now) * WINDOW_PER_RATE)

    def took(self, count: int, now: float) -> None:
        """The worker took ``count`` events from the queue at ``now``."""
        if self._last_take > -math.inf:
            self._gap = now - self._last_take
        self._takes.append((now, count))
        self._taken += count
        self._last_take = now

    def opens_at(self, now: float) -> float:
        """When a partial batch may go (``now`` or earlier: at once); inf when disabled."""
        if not self.enabled:
            return math.inf
        return self._last_take + self.window(now)

    def after_fork(self) -> None:
        """In a forked child: the parent's rate is not the child's."""
        self._takes = deque()
        self._taken = 0
        self._last_take = -math.inf
        self._gap = 0.0
