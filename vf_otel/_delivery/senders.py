"""A few daemon threads that run requests, so one hung request does not stop the rest.

Not a ``concurrent.futures`` pool: its threads are joined at interpreter exit,
and a request the server never answers must not hold the process open. These
are daemon threads, started as needed up to ``size``; a slot is taken before a
job is handed over and given back when it ends, so at most ``size`` requests
are out at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final, Generic, TypeVar

from . import threads

__all__ = ["MAX_CONCURRENT_REQUESTS", "Senders", "on_delivery_thread"]

_logger = logging.getLogger("vf_otel")
T = TypeVar("T")
#: Requests in flight at once, per handler or exporter.
MAX_CONCURRENT_REQUESTS: Final = 4
_marker = threads.local()


def on_delivery_thread() -> bool:
    """Whether the calling thread is one of vf-otel's (worker or sender)."""
    return getattr(_marker, "delivery", False)


def mark_delivery_thread() -> None:
    """Mark the calling thread as vf-otel's: flush() from it must not wait for itself."""
    _marker.delivery = True


class Senders(Generic[T]):
    """Runs ``run(job)`` on up to ``size`` daemon threads."""

    def __init__(self, run: Callable[[T], None], size: int = MAX_CONCURRENT_REQUESTS) -> None:
        self._run = run
        self._size = size
        self._reset()

    def _reset(self) -> None:
        self._slots = threads.Semaphore(self._size)
        self._jobs: threads.SimpleQueue[T | None] = threads.SimpleQueue()
        self._lock = threads.Lock()
        self._threads: list[threads.Thread] = []
        self._idle = 0
        self._busy = 0

    def after_fork(self) -> None:
        """In a forked child: the parent's threads do not exist here."""
        self._reset()

    @property
    def busy(self) -> int:
        """Jobs running now."""
        return self._busy

    def submit(self, job: T, timeout: float, *, limit: int | None = None) -> bool:
        """Hand ``job`` to a free thread, waiting up to ``timeout`` for one; False if none.

        With ``limit``, only while fewer than ``limit`` jobs are running. RuntimeError
        when a thread was needed and none could be started (nothing is changed then).
        """
        if not self._slots.acquire(timeout=max(0.0, timeout)):
            return False
        with self._lock:
            if limit is not None and self._busy >= limit:
                self._slots.release()
                busy = True
            else:
                busy = False
        if busy:
            threads.sleep(min(timeout, 0.01))  # a slot is free but the limit says wait
            return False
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._size:
                thread = threads.Thread(self._loop, "VibefollowSender")
                try:
                    thread.start()
                except RuntimeError:  # the interpreter is exiting, or no thread can be made
                    self._slots.release()
                    raise
                self._threads.append(thread)
                self._idle += 1
            self._busy += 1
            self._idle -= 1
        self._jobs.put(job)
        return True

    def stop(self, timeout: float) -> None:
        """Let every thread end once its current job is done; wait up to ``timeout`` for them.

        A thread still in a request (the server hangs) is left to finish alone.
        """
        with self._lock:
            started = list(self._threads)
        for _ in started:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for thread in started:
            if not thread.is_current():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        mark_delivery_thread()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._run(job)
            except Exception:
                _logger.exception("vf-otel: a delivery job failed")
            finally:
                with self._lock:
                    self._busy -= 1
                    self._idle += 1
                self._slots.release()
