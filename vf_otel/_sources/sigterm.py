"""Deliver what is queued when SIGTERM arrives, then let the signal do what it did before.

Python's default action for SIGTERM ends the process at once, without ``atexit``, so
``logging.shutdown()`` never drains the handler's queue. Each ``VibefollowHandler``
(option ``handle_sigterm``, on by default), ``configure()`` and ``flush_on_sigterm()``
install the hook kept here; one hook per process, whoever asks first. It runs first
and then behaves exactly as SIGTERM did before it was installed:

- a Python handler was installed (a server's graceful shutdown, the app's own): the
  hook flushes (each handler within its ``shutdown_timeout``) and calls it; the
  process goes on, so everything stays open. A SIGTERM the server raises again later
  on the main thread (uvicorn's workers, after restoring the default action) is held
  until the exit, which delivers first (``_hold_until_exit``);
- the default action: the hook shuts vf-otel down (deliver, else spool, within
  ``shutdown_timeout``), restores the default and raises the signal again, so the
  process ends with SIGTERM's status (``-15`` for a parent, 143 in a shell).

A server that installs its own handler after the hook and puts the hook back before
raising SIGTERM again (uvicorn) reaches the default-action branch last, after its
graceful shutdown: what was logged during it is delivered too. While the hook is
installed anywhere in such a chain no second one is added, so nothing drains twice.

A SIGTERM is never lost to a blocking wait. CPython's C-level handler only sets a flag;
the hook runs at the main thread's next bytecode. A SIGTERM that lands just before the
main thread blocks in a C-level wait that nothing else ends (a ``multiprocessing`` pool
worker taking its next task while ``Pool.terminate()`` holds the queue's lock), or on
another thread while the main thread is blocked, would leave the process running for
ever. So while the hook is installed a small vf-otel thread watches the signal wake-up
fd (``signal.set_wakeup_fd``, a pipe of its own; a forked child makes its own): when
SIGTERM came and the hook has not started within ``_WAKE_AFTER``, it sends SIGTERM to
the main thread again, which ends the wait (``EINTR``) so the hook runs. A wake-up fd
set before the hook (asyncio's loop, which runs handlers promptly itself) is left
alone and nothing is watched; one set after it replaces the pipe, and the thread then
just waits (``_Watch``).

SIGTERM that is ignored (``SIG_IGN``) or handled outside Python (``getsignal`` says
``None``) is left alone: nothing is installed. Only the main thread can install a
signal handler; elsewhere nothing is installed either (``flush_on_sigterm()`` from the
main thread covers a handler built on another thread). The hook is taken out again when
the last handler or configuration that wanted it is closed, so tests that build and
close handlers leave SIGTERM as they found it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, Protocol

from .._delivery.threads import RLock, Thread, wait_readable

if TYPE_CHECKING:  # handler.py imports this module
    from .handler import VibefollowHandler

__all__ = [
    "SigtermHook",
    "flush_on_sigterm",
    "install_sigterm_hook",
    "release_sigterm_hook",
    "remove_sigterm_hook",
    "watch_sigterm",
]

_logger = logging.getLogger("vf_otel")
_SIGNAL: Final = getattr(signal, "SIGTERM", None)
PythonHandler = Callable[[int, FrameType | None], Any]
#: How long a SIGTERM may wait for the hook before it is sent to the main thread again
#: (a main thread running Python code runs the hook well within it).
_WAKE_AFTER: Final = 0.3
#: How often it is sent again at most: a C call that retries on EINTR without running
#: handlers is not ended by any number of them.
_WAKE_LIMIT: Final = 50
#: Whether this platform can send a signal to a thread (POSIX).
_CAN_WAKE: Final = _SIGNAL is not None and hasattr(signal, "pthread_kill")


class Deliverable(Protocol):
    """What the hook drains besides the handlers on loggers: a ``Configuration``."""

    def deliver_at_sigterm(self, *, final: bool) -> None:
        """Flush (``final=False``) or shut down (``final=True``) within ``shutdown_timeout``."""


class SigtermHook:
    """The SIGTERM handler: drain vf-otel, then chain to ``previous`` or re-raise."""

    __slots__ = ("_handlers", "_holding", "_targets", "_watch", "pinned", "previous")

    def __init__(self, previous: PythonHandler | signal.Handlers) -> None:
        self.previous = previous
        # Kept installed by flush_on_sigterm(): Configuration.shutdown() leaves it.
        self.pinned = False
        self._targets: weakref.WeakSet[Any] = weakref.WeakSet()
        # The handlers that asked for the hook, attached to a logger or not (loguru's
        # logger.add(handler) attaches none); weak: a dropped handler lets go of it.
        self._handlers: weakref.WeakSet[VibefollowHandler] = weakref.WeakSet()
        # SIGTERM is blocked on the main thread until exit (see _hold_until_exit).
        self._holding = False
        self._watch: _Watch | None = None

    @property
    def watching(self) -> bool:
        """Whether a ``_Watch`` thread looks out for a SIGTERM the hook misses."""
        return self._watch is not None

    @property
    def holding(self) -> bool:
        """Whether SIGTERM is held (blocked on the main thread) until the exit."""
        return self._holding

    def start_watching(self) -> None:
        """Watch for a SIGTERM the main thread does not run the hook for (``_Watch``)."""
        if self._watch is None and _CAN_WAKE:
            self._watch = _Watch.start(self)

    def stop_watching(self, *, inherited: bool = False) -> None:
        """Stop the watch (``inherited``: a forked child's copy, whose thread is gone)."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.stop(inherited=inherited)

    @property
    def wanted(self) -> bool:
        """Whether anything still asks for the hook (else it may be taken out)."""
        return self.pinned or bool(self._targets) or bool(self._handlers)

    def watch(self, handler: VibefollowHandler) -> None:
        """Drain ``handler`` at SIGTERM, attached to a logger or not."""
        self._handlers.add(handler)

    def unwatch(self, handler: VibefollowHandler) -> None:
        """``handler`` was closed: stop asking for the hook on its behalf."""
        self._handlers.discard(handler)

    def add(self, target: Deliverable) -> None:
        """Drain ``target`` too (a live ``Configuration``: its span side)."""
        self._targets.add(target)

    def discard(self, target: Deliverable) -> None:
        """Stop draining ``target``."""
        self._targets.discard(target)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        watch = self._watch
        if watch is not None:
            watch.started()
        previous = self.previous
        final = not callable(previous)  # the default action: the process ends right after
        try:
            self.deliver(final=final)
        except Exception:  # the signal must go on whatever happened here
            _logger.debug("vf-otel could not deliver at SIGTERM", exc_info=True)
        if callable(previous):
            self._hold_until_exit(signum)
            previous(signum, frame)
            return
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    def _hold_until_exit(self, signum: int) -> None:
        """After a server's handler, keep a SIGTERM it raises again for the exit.

        uvicorn's workers (``--workers``, ``--reload``) install their handler before
        importing the app, so the hook chains to it; after the graceful shutdown uvicorn
        puts back the default action and raises SIGTERM again, which would end the
        process with what that shutdown logged. ``raise_signal`` targets the calling
        (main) thread, so blocking SIGTERM there holds it pending: the process reaches
        its normal exit, where ``_release_at_exit`` delivers and unblocks it, and the
        process still ends with SIGTERM's status. A server that exits normally instead
        (gunicorn) raises nothing: then the exit is as it was.
        """
        if self._holding or not hasattr(signal, "pthread_sigmask"):
            return
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
        except (OSError, ValueError):  # no thread signal masks here: nothing is held
            return
        self._holding = True
        atexit.register(self._release_at_exit, signum)
        if hasattr(os, "register_at_fork"):  # a child forked meanwhile must feel SIGTERM
            os.register_at_fork(after_in_child=lambda: _unblock(signum))

    def _release_at_exit(self, signum: int) -> None:
        """At exit: deliver (final), then let a held SIGTERM act (first ``atexit`` hook)."""
        try:
            self.deliver(final=True)
        except Exception:  # the signal must go on whatever happened here
            _logger.debug("vf-otel could not deliver at exit after SIGTERM", exc_info=True)
        _unblock(signum)

    def deliver(self, *, final: bool) -> None:
        """Flush (or, when ``final``, close) every target and every handler on a logger."""
        done: set[int] = set()
        for target in list(self._targets):
            target.deliver_at_sigterm(final=final)
            handler = getattr(target, "handler", None)
            if handler is not None:
                done.add(id(handler))
        for handler in [*self._handlers, *attached_handlers()]:
            if id(handler) in done:
                continue
            done.add(id(handler))
            if final:
                handler.close()
            else:
                handler.flush()


def _unblock(signum: int) -> None:
    """Unblock ``signum`` on this thread: a pending one acts now. Never raises."""
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    except (OSError, ValueError):
        _logger.debug("vf-otel could not unblock signal %s", signum, exc_info=True)


def attached_handlers() -> list[VibefollowHandler]:
    """Every ``VibefollowHandler`` on the root logger or on any other logger, once."""
    from .handler import VibefollowHandler  # noqa: PLC0415 - handler.py imports this module

    loggers: list[object] = [logging.getLogger()]
    loggers += list(logging.Logger.manager.loggerDict.values())  # PlaceHolders included
    found: dict[int, VibefollowHandler] = {}
    for logger in loggers:
        for handler in list(getattr(logger, "handlers", ())):
            if isinstance(handler, VibefollowHandler):
                found.setdefault(id(handler), handler)
    return list(found.values())


class _Watch:
    """Sends SIGTERM to the main thread again while the hook waits for it in vain.

    The wake-up pipe gets a byte per signal that has a Python handler, written by the C
    handler right after it set the flag the hook waits on. The thread reads it; when a
    SIGTERM byte came and the hook has not started ``_WAKE_AFTER`` later, the main
    thread is blocked in a C call that has not seen the flag, and ``pthread_kill``
    interrupts it: the wait returns ``EINTR`` and runs the handlers. The flag is one
    bit, so a SIGTERM sent while one is pending still runs the hook once.

    ``starts`` counts the hook's starts; the hook drains the pipe as it starts, under the
    same lock the thread reads it with, so a byte the thread reads afterwards is a
    SIGTERM that came after that start: no byte makes a second call of a handled signal.
    Nothing is sent while the hook runs, while SIGTERM is held for the exit, or when
    another handler than the hook is installed (a server's, or the default action).
    """

    __slots__ = ("_hook", "_lock", "_main", "_read", "_signum", "_thread", "_write", "starts")

    def __init__(self, hook: SigtermHook, signum: int, read: int, write: int) -> None:
        self._hook = hook
        self._signum = signum
        self._read = read
        self._write = write
        self._lock = RLock()  # re-entrant: a second SIGTERM may run the hook inside it
        self._main = threading.main_thread().ident
        self._thread = Thread(self._run, "vf-otel-sigterm")
        self.starts = 0

    @classmethod
    def start(cls, hook: SigtermHook) -> _Watch | None:
        """Watch a new wake-up pipe; None when a wake-up fd was set already (kept)."""
        if _SIGNAL is None:
            return None
        read, write = os.pipe()
        try:
            for end in (read, write):
                os.set_blocking(end, False)
            previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
            if previous == -1:
                watch = cls(hook, int(_SIGNAL), read, write)
                watch._thread.start()
                return watch
            signal.set_wakeup_fd(previous)  # someone else's (asyncio's loop): theirs, not watched
        except (OSError, ValueError, RuntimeError):
            _logger.debug("vf-otel does not watch SIGTERM's wake-up fd", exc_info=True)
        _close(read, write)
        return None

    def stop(self, *, inherited: bool) -> None:
        """Put the wake-up fd back and end the thread (the pipe's end of file ends it)."""
        try:
            current = signal.set_wakeup_fd(-1)
            if current not in (-1, self._write):
                signal.set_wakeup_fd(current)  # set after the hook's: left as it is
        except ValueError:  # not on the main thread: the next set_wakeup_fd replaces ours
            _logger.debug("vf-otel could not take its wake-up fd back", exc_info=True)
        if inherited:  # a forked child: the parent's pipe, no thread reads it here
            _close(self._read, self._write)
            return
        _close(self._write)
        self._thread.join(timeout=1.0)

    def started(self) -> None:
        """The hook starts: count it and drop the bytes of the signals it handles."""
        with self._lock:
            self.starts += 1
            self._drain()

    def _drain(self) -> bool:
        """Read what the pipe holds; whether SIGTERM was in it. EOFError at its end."""
        seen = False
        while True:
            try:
                data = os.read(self._read, 512)
            except BlockingIOError:
                return seen
            if not data:
                raise EOFError
            seen = seen or self._signum in data

    def _run(self) -> None:
        pending: int | None = None  # ``starts`` when the unanswered SIGTERM was read
        due, sends = 0.0, 0
        try:
            while True:
                timeout = None if pending is None else max(0.0, due - time.monotonic())
                readable = wait_readable(self._read, timeout)
                with self._lock:
                    if readable:
                        starts = self.starts
                        if self._drain() and pending is None:
                            pending, due, sends = starts, time.monotonic() + _WAKE_AFTER, 0
                    if pending is not None and self.starts != pending:
                        pending = None  # the hook started: answered
                    elif pending is not None and time.monotonic() >= due:
                        if sends >= _WAKE_LIMIT:
                            pending = None
                        elif self._wake():
                            sends += 1
                        due = time.monotonic() + _WAKE_AFTER
        except EOFError:  # stop() closed the write end
            os.close(self._read)
        except Exception:  # a watch never takes the process down
            _logger.debug("vf-otel stopped watching SIGTERM", exc_info=True)

    def _wake(self) -> bool:
        """Send SIGTERM to the main thread if the hook still waits for it; whether sent."""
        hook = self._hook
        if self._main is None or hook.holding or signal.getsignal(self._signum) is not hook:
            return False
        frame = sys._current_frames().get(self._main)  # the only way to see its stack
        while frame is not None:
            if frame.f_code is SigtermHook.__call__.__code__:
                return False  # started, not counted yet
            frame = frame.f_back
        signal.pthread_kill(self._main, self._signum)
        return True


def _close(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _watch_again_in_child() -> None:
    """A forked child: the hook was copied, the parent's pipe too, its thread was not."""
    hook = _INSTALLED.hook
    if hook is None or not hook.watching:
        return
    hook.stop_watching(inherited=True)
    hook.start_watching()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watch_again_in_child)


class _Installed:
    """The process's one hook while it is installed (also when another handler was put
    above it since: a server's, which chains to it or puts it back before re-raising)."""

    __slots__ = ("hook",)

    def __init__(self) -> None:
        self.hook: SigtermHook | None = None


_INSTALLED: Final = _Installed()


def install_sigterm_hook() -> SigtermHook | None:
    """Install the hook (or return the one installed); None when SIGTERM must be left alone."""
    if _SIGNAL is None or threading.current_thread() is not threading.main_thread():
        return None
    current = signal.getsignal(_SIGNAL)
    if isinstance(current, SigtermHook):
        _INSTALLED.hook = current
        return current
    if _INSTALLED.hook is not None and current != signal.SIG_DFL:
        # Installed earlier, and a handler was put above it since (uvicorn's, while it
        # serves): that one calls the hook or puts it back; a second hook would drain twice.
        # (Back to the default action: nothing can reach the old hook any more.)
        return _INSTALLED.hook
    if current is None or current == signal.SIG_IGN:
        return None  # handled outside Python, or ignored: nothing is lost at SIGTERM
    previous: PythonHandler | signal.Handlers = (
        current if callable(current) else signal.Handlers.SIG_DFL
    )
    hook = SigtermHook(previous)
    signal.signal(_SIGNAL, hook)
    _INSTALLED.hook = hook
    hook.start_watching()
    return hook


def remove_sigterm_hook(hook: SigtermHook) -> None:
    """Put back what SIGTERM did before ``hook``, if it is still installed and nothing
    (a handler, a configuration, ``flush_on_sigterm()``) asks for it any more."""
    if _SIGNAL is None or hook.wanted or threading.current_thread() is not threading.main_thread():
        return
    previous = hook.previous
    installed = signal.getsignal(_SIGNAL) is hook  # (an `is` in the `if` narrows ``hook``)
    if installed:
        signal.signal(_SIGNAL, previous)
        hook.stop_watching()
        if _INSTALLED.hook is hook:
            _INSTALLED.hook = None


def watch_sigterm(handler: VibefollowHandler) -> None:
    """Drain ``handler`` at SIGTERM (its ``handle_sigterm`` option): install the hook if
    needed. Never raises: a handler is built whatever happens to SIGTERM."""
    try:
        hook = install_sigterm_hook()
        if hook is not None:
            hook.watch(handler)
    except Exception:  # e.g. signal.signal refused by an embedding runtime
        _logger.debug("vf-otel could not install its SIGTERM hook", exc_info=True)


def release_sigterm_hook(handler: VibefollowHandler) -> None:
    """``handler`` was closed: take the hook out if nothing else asks for it. Never raises."""
    hook = _INSTALLED.hook
    if hook is None:
        return
    try:
        hook.unwatch(handler)
        remove_sigterm_hook(hook)
    except Exception:  # closing a handler must not fail over a signal
        _logger.debug("vf-otel could not remove its SIGTERM hook", exc_info=True)


def flush_on_sigterm() -> bool:
    """At SIGTERM, deliver what every ``VibefollowHandler`` has queued, then let the signal act.

    Every ``VibefollowHandler`` built on the main thread does this itself (its
    ``handle_sigterm`` option, on by default), and so does ``configure()``. Call it
    for a handler built on another thread, or to keep the hook installed after the
    handlers are closed: once, from the main thread, after installing any SIGTERM
    handler of your own. At SIGTERM what every
    ``VibefollowHandler`` attached to a logger has queued is delivered (each within
    its ``shutdown_timeout``), then SIGTERM does exactly what it did before: a
    Python handler installed earlier is called; otherwise the default action is
    restored and the signal raised again, so the process ends with SIGTERM's status.

    Returns True when the hook is installed (now or already), False when SIGTERM is
    left alone: not on the main thread, SIGTERM ignored, handled outside Python, or
    no SIGTERM on this platform.
    """
    hook = install_sigterm_hook()
    if hook is None:
        return False
    hook.pinned = True
    return True
