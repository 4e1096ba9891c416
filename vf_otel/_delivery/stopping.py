"""What a stopping pipeline says, and whether the interpreter is exiting.

At shutdown: what was dropped, what is still in flight (its outcome unknown), what
waits in the spool. At exit: that records logged after ``logging.shutdown()`` are
not sent (a closed pipeline is not reopened then: nothing would drain it).
"""

from __future__ import annotations

import atexit
import logging
import sys
from typing import Final

from .._spool.store import Spool
from . import threads

__all__ = ["exiting", "say_late_at_exit", "warn_undelivered"]

_logger = logging.getLogger("vf_otel")
# Set when the interpreter starts its exit hooks. atexit runs the last registered
# first, and logging registered logging.shutdown() when it was imported, before this
# module: so this is set before the handlers are closed at exit. From then on a
# closed pipeline stays closed: a record logged then (by a daemon thread) is refused
# and counted, not queued behind a worker the interpreter stops mid-way.
_EXITING: Final = threads.Event()
atexit.register(_EXITING.set)


def exiting() -> bool:
    """Whether the interpreter is running its exit hooks."""
    return _EXITING.is_set()


def say_late_at_exit() -> None:
    """Say on stderr that records logged at exit, after shutdown, are not sent.

    Not through logging: it has shut down, and this runs on an app's log call.
    """
    try:
        print(
            "vf-otel: events logged after logging.shutdown() at exit are not sent "
            "(counted in stats().dropped['shutdown'])",
            file=sys.stderr,
        )
    except Exception:  # noqa: BLE001 - stderr closed or broken: nothing else to do
        return


def warn_undelivered(dropped: int, in_flight: int, spool: Spool | None) -> None:
    """One warning at shutdown: what was dropped, what is in flight, what the spool keeps."""
    parts = []
    if dropped:
        parts.append(f"{dropped} event(s) not delivered (dropped; reported to on_error)")
    if in_flight:
        parts.append(f"{in_flight} event(s) still in flight, outcome unknown")
    if spool is not None and spool.usable and spool.pending():
        parts.append(f"events wait in the spool {spool.path} for the next start")
    if dropped or in_flight:
        _logger.warning("vf-otel shut down with %s", "; ".join(parts))
