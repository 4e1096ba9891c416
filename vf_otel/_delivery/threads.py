"""Real OS threads and locks for the delivery machinery, whatever gevent or eventlet patched.

gevent's and eventlet's monkey-patching turn ``threading``, ``_thread``, ``queue`` and
``time.sleep`` into greenlet versions. vf-otel's worker and sender threads must stay
real OS threads blocking on real OS locks: a thread started before the patch (a handler
created at import, ``gunicorn --preload``) would otherwise start its senders as
greenlets on a hub that never runs, or wait on a green lock no one can wake, and
deliver nothing while holding the process open at exit.

So everything the delivery core starts or waits on comes from here, built on the
interpreter's original ``_thread`` functions (``gevent.monkey.get_original``,
``eventlet.patcher.original``). ``threading.Event``, ``Semaphore`` and ``Condition``
are not used even unpatched: they look up ``Lock`` in the ``threading`` module at call
time, so one made before the patch builds green locks after it. ``Event`` and
``Semaphore`` below are the stdlib's semantics on original locks.

The app's side (a greenlet calling ``handle()`` or ``flush()``) then takes real locks:
each is held only for a few counter updates, never across I/O, so a greenlet never
waits on one another greenlet holds. ``flush()`` from a greenlet blocks its hub for at
most its timeout (docs/runtimes.md).
"""

from __future__ import annotations

import _thread
import select  # noqa: F401 - loaded for _original("select", ...) before any patch
import signal
import sys
import threading

# The C queue: its blocking get() waits on a real lock; no library patches ``_queue``.
from _queue import SimpleQueue
from collections import deque
from collections.abc import Callable
from typing import Any, Final

__all__ = [
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
    "SimpleQueue",
    "Thread",
    "green_patched",
    "local",
    "sleep",
    "wait_readable",
]


def _original(module: str, name: str) -> Any:
    """``module.name`` as it was before gevent or eventlet patched it."""
    gevent = sys.modules.get("gevent.monkey")
    if gevent is not None:
        return gevent.get_original(module, name)
    eventlet = sys.modules.get("eventlet.patcher")
    if eventlet is not None:
        return getattr(eventlet.original(module), name)
    # Neither is loaded: nothing is patched yet, and what a later patch replaces is
    # captured here first.
    return getattr(sys.modules[module], name)


_allocate_lock: Final[Callable[[], _thread.LockType]] = _original("_thread", "allocate_lock")
_start_new_thread: Final[Callable[..., int]] = _original("_thread", "start_new_thread")
_get_ident: Final[Callable[[], int]] = _original("_thread", "get_ident")
#: A real re-entrant lock (the C one; a green one after the patch is ``threading.RLock``).
RLock: Final[Callable[[], Any]] = _original("_thread", "RLock")
#: A real thread-local: a greenlet-local would differ per greenlet, not per thread.
local: Final[type[threading.local]] = _original("_thread", "_local")
#: A real sleep, which releases the GIL and blocks only this thread.
sleep: Final[Callable[[float], None]] = _original("time", "sleep")
_select: Final[Callable[..., Any]] = _original("select", "select")
#: The longest wait a real lock accepts.
_TIMEOUT_MAX: Final = _thread.TIMEOUT_MAX


def Lock() -> _thread.LockType:  # noqa: N802 - named like threading.Lock, which it replaces
    """A real lock."""
    return _allocate_lock()


_marker = local()


def on_delivery_thread() -> bool:
    """Whether the calling thread is one of vf-otel's (worker or sender)."""
    return getattr(_marker, "delivery", False)


def mark_delivery_thread() -> None:
    """Mark the calling thread as vf-otel's: flush() from it must not wait for itself."""
    _marker.delivery = True


def green_patched() -> bool:
    """Whether gevent or eventlet has patched ``threading`` in this process."""
    # getattr: the app's thread may be importing either module right now, and a module
    # half imported has not patched anything yet (its test is not even defined).
    gevent = getattr(sys.modules.get("gevent.monkey"), "is_module_patched", None)
    if gevent is not None and gevent("threading"):
        return True
    eventlet = getattr(sys.modules.get("eventlet.patcher"), "is_monkey_patched", None)
    return bool(eventlet is not None and eventlet("thread"))


def wait_readable(fd: int, timeout: float | None) -> bool:
    """Wait on a real ``select`` until ``fd`` is readable or ``timeout``; whether it is."""
    readable, _, _ = _select([fd], [], [], timeout)
    return bool(readable)


def _limit(timeout: float | None) -> float:
    return -1 if timeout is None else min(max(0.0, timeout), _TIMEOUT_MAX)


class Event:
    """``threading.Event`` on real locks: one waiter lock per wait, released by set()."""

    __slots__ = ("_flag", "_lock", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._lock = _allocate_lock()
        self._waiters: list[_thread.LockType] = []

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        with self._lock:
            self._flag = True
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.release()

    def clear(self) -> None:
        """Clear the flag."""
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or ``timeout``; the flag on return."""
        with self._lock:
            if self._flag:
                return True
            waiter = _allocate_lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if waiter.acquire(True, _limit(timeout)):
            return True
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                return True  # set() took it as this wait timed out: it was set
            return self._flag


class Semaphore:
    """``threading.Semaphore`` on real locks; release() hands a unit to the first waiter."""

    __slots__ = ("_lock", "_value", "_waiters")

    def __init__(self, value: int = 1) -> None:
        self._value = value
        self._lock = _allocate_lock()
        self._waiters: deque[_thread.LockType] = deque()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a unit, waiting up to ``timeout`` (forever if None); False if none came."""
        with self._lock:
            if self._value > 0:
                self._value -= 1
                return True
            if not blocking:
                return False
            waiter = _allocate_lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if waiter.acquire(True, _limit(timeout)):
            return True
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                return True  # release() handed its unit over as this wait timed out
            return False

    def release(self) -> None:
        """Give a unit back (to the first waiter, if any)."""
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._value += 1


class Thread:
    """A daemon OS thread running ``target``; a ``threading.Thread`` unless threading
    is patched now (then one started by the original ``_thread``, which threading does
    not list: its name shows only here)."""

    __slots__ = ("_done", "_target", "ident", "name")

    def __init__(self, target: Callable[[], object], name: str) -> None:
        self._target = target
        self.name = name
        self._done = Event()
        self.ident: int | None = None

    def start(self) -> None:
        """Start it; RuntimeError if no thread can be started (the interpreter exits)."""
        if green_patched():
            _start_new_thread(self._run, ())
        else:
            # A threading.Thread keeps its name in log records and thread listings.
            threading.Thread(target=self._run, name=self.name, daemon=True).start()

    def _run(self) -> None:
        self.ident = _get_ident()
        _leave_signals_to_the_main_thread()
        try:
            self._target()
        finally:
            self._done.set()
            if green_patched():
                _rekey_for_patched_threading()

    def join(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` for it to end."""
        self._done.wait(timeout)

    def is_alive(self) -> bool:
        """Started and not ended."""
        return self.ident is not None and not self._done.is_set()

    def is_current(self) -> bool:
        """Whether the caller runs on this thread."""
        return self.ident == _get_ident()


def _rekey_for_patched_threading() -> None:
    """Let a ``threading.Thread`` started before the patch end without a KeyError.

    Its exit removes it from threading's table under ``threading.get_ident()``, which
    gevent made a greenlet's id (the entry is under the OS thread's id: moved), and in
    a table eventlet replaced (no entry: a placeholder is put there for it to remove).
    """
    active = getattr(threading, "_active", None)
    if isinstance(active, dict):
        active.setdefault(threading.get_ident(), active.pop(_get_ident(), None))


#: Signals a vf-otel thread blocks, so the kernel delivers them to the app's threads.
_APP_SIGNALS: Final = frozenset(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)


def _leave_signals_to_the_main_thread() -> None:
    """Block the process-directed signals the app handles on this thread.

    Python runs signal handlers on the main thread whichever thread the kernel picks,
    but a signal whose disposition is the default action ends the process from any
    thread that does not block it. sigterm.py holds a SIGTERM that a server raises again
    after its graceful shutdown by blocking it on the main thread until the exit; a
    SIGTERM sent meanwhile (uvicorn's parent terminating its workers) must not land on
    a vf-otel thread and end the process before the exit delivers. Never raises.
    """
    if not _APP_SIGNALS or not hasattr(signal, "pthread_sigmask"):
        return
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, _APP_SIGNALS)
    except (OSError, ValueError, RuntimeError):  # no thread signal masks here: nothing to do
        return
