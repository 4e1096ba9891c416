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

SIGTERM that is ignored (``SIG_IGN``) or handled outside Python (``getsignal`` says
``None``) is left alone: nothing is installed. Only the main thread can install a
signal handler; elsewhere nothing is installed either (``flush_on_sigterm()`` from the
main thread covers a handler built on another thread). The hook is taken out again when
the last handler or configuration that wanted it is closed, so tests that build and
close handlers leave SIGTERM as they found it.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, Protocol

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


class Deliverable(Protocol):
    """What the hook drains besides the handlers on loggers: a ``Configuration``."""

    def deliver_at_sigterm(self, *, final: bool) -> None:
        """Flush (``final=False``) or shut down (``final=True``) within ``shutdown_timeout``."""


class SigtermHook:
    """The SIGTERM handler: drain vf-otel, then chain to ``previous`` or re-raise."""

    __slots__ = ("_handlers", "_holding", "_targets", "pinned", "previous")

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
    return hook


def remove_sigterm_hook(hook: SigtermHook) -> None:
    """Put back what SIGTERM did before ``hook``, if it is still installed and nothing
    (a handler, a configuration, ``flush_on_sigterm()``) asks for it any more."""
    if _SIGNAL is None or hook.wanted or threading.current_thread() is not threading.main_thread():
        return
    previous = hook.previous
    if signal.getsignal(_SIGNAL) is hook:
        signal.signal(_SIGNAL, previous)
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
