"""Deliver what is queued when SIGTERM arrives, then let the signal do what it did before.

Python's default action for SIGTERM ends the process at once, without ``atexit``, so
``logging.shutdown()`` never drains the handler's queue. The hook installed here runs
first and then behaves exactly as SIGTERM did before it was installed:

- a Python handler was installed (a server's graceful shutdown, the app's own): the
  hook flushes (each handler within its ``shutdown_timeout``) and calls it; the
  process goes on, so everything stays open;
- the default action: the hook shuts vf-otel down (deliver, else spool, within
  ``shutdown_timeout``), restores the default and raises the signal again, so the
  process ends with SIGTERM's status (``-15`` for a parent, 143 in a shell).

SIGTERM that is ignored (``SIG_IGN``) or handled outside Python (``getsignal`` says
``None``) is left alone: nothing is installed. Only the main thread can install a
signal handler; elsewhere nothing is installed either.
"""

from __future__ import annotations

import logging
import signal
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any, Final, Protocol

from .handler import VibefollowHandler

__all__ = ["SigtermHook", "flush_on_sigterm", "install_sigterm_hook", "remove_sigterm_hook"]

_logger = logging.getLogger("vf_otel")
_SIGNAL: Final = getattr(signal, "SIGTERM", None)
PythonHandler = Callable[[int, FrameType | None], Any]


class Deliverable(Protocol):
    """What the hook drains besides the handlers on loggers: a ``Configuration``."""

    def deliver_at_sigterm(self, *, final: bool) -> None:
        """Flush (``final=False``) or shut down (``final=True``) within ``shutdown_timeout``."""


class SigtermHook:
    """The SIGTERM handler: drain vf-otel, then chain to ``previous`` or re-raise."""

    __slots__ = ("_targets", "pinned", "previous")

    def __init__(self, previous: PythonHandler | signal.Handlers) -> None:
        self.previous = previous
        # Kept installed by flush_on_sigterm(): Configuration.shutdown() leaves it.
        self.pinned = False
        self._targets: weakref.WeakSet[Any] = weakref.WeakSet()

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
            previous(signum, frame)
            return
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    def deliver(self, *, final: bool) -> None:
        """Flush (or, when ``final``, close) every target and every handler on a logger."""
        done: set[int] = set()
        for target in list(self._targets):
            target.deliver_at_sigterm(final=final)
            handler = getattr(target, "handler", None)
            if handler is not None:
                done.add(id(handler))
        for handler in attached_handlers():
            if id(handler) in done:
                continue
            done.add(id(handler))
            if final:
                handler.close()
            else:
                handler.flush()


def attached_handlers() -> list[VibefollowHandler]:
    """Every ``VibefollowHandler`` on the root logger or on any other logger, once."""
    loggers: list[object] = [logging.getLogger()]
    loggers += list(logging.Logger.manager.loggerDict.values())  # PlaceHolders included
    found: dict[int, VibefollowHandler] = {}
    for logger in loggers:
        for handler in list(getattr(logger, "handlers", ())):
            if isinstance(handler, VibefollowHandler):
                found.setdefault(id(handler), handler)
    return list(found.values())


def install_sigterm_hook() -> SigtermHook | None:
    """Install the hook (or return the one installed); None when SIGTERM must be left alone."""
    if _SIGNAL is None or threading.current_thread() is not threading.main_thread():
        return None
    current = signal.getsignal(_SIGNAL)
    if isinstance(current, SigtermHook):
        return current
    if current is None or current == signal.SIG_IGN:
        return None  # handled outside Python, or ignored: nothing is lost at SIGTERM
    previous: PythonHandler | signal.Handlers = (
        current if callable(current) else signal.Handlers.SIG_DFL
    )
    hook = SigtermHook(previous)
    signal.signal(_SIGNAL, hook)
    return hook


def remove_sigterm_hook(hook: SigtermHook) -> None:
    """Put back what SIGTERM did before ``hook``, if it is still installed and not pinned."""
    if _SIGNAL is None or hook.pinned or threading.current_thread() is not threading.main_thread():
        return
    previous = hook.previous
    if signal.getsignal(_SIGNAL) is hook:
        signal.signal(_SIGNAL, previous)


def flush_on_sigterm() -> bool:
    """At SIGTERM, deliver what every ``VibefollowHandler`` has queued, then let the signal act.

    For a handler installed without ``vf_otel.configure()`` (``dictConfig``, ``fileConfig``,
    ``addHandler``); ``configure()`` does this itself. Call it once, from the main
    thread, after installing any SIGTERM handler of your own. At SIGTERM what every
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
