"""What the ``spool`` commands share: finding and opening the spool file, and leases."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .._config import Settings, resolve_settings
from .._spool.store import Lease, Spool, spool_file_problem
from ._exit import ExitCode
from ._settings import captured_records, hide_key

__all__ = [
    "Stop",
    "add_spool_option",
    "fail",
    "lease_text",
    "open_spool",
    "pid_alive",
    "resolve_spool_settings",
]

#: stats and purge never claim rows, so their handle's lease length is never used.
_NO_LEASE: Final = 1.0


class Stop(Exception):  # noqa: N818 - a command's early exit, not an error of the library
    """End the command now with ``code``, ``message`` on stderr and an optional ``hint``."""

    def __init__(self, code: ExitCode, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


def add_spool_option(parser: argparse.ArgumentParser) -> None:
    """``--spool-path``: the argument beats VIBEFOLLOW_SPOOL_PATH."""
    parser.add_argument(
        "--spool-path",
        metavar="PATH",
        help="the spool file (default: $VIBEFOLLOW_SPOOL_PATH)",
    )


def resolve_spool_settings(explicit: Mapping[str, Any]) -> Settings:
    """Settings with an existing vf-otel spool at ``spool_path``; raises Stop otherwise."""
    try:
        settings = resolve_settings(**explicit)
    except ValueError as exc:
        raise Stop(ExitCode.BAD_CONFIG, f"invalid option: {exc}") from None
    path = settings.spool_path
    if path is None:
        raise Stop(
            ExitCode.BAD_CONFIG,
            "no spool configured",
            "Pass --spool-path or set VIBEFOLLOW_SPOOL_PATH to the file the app uses.",
        )
    problem = spool_file_problem(path)
    if problem is not None:
        raise Stop(ExitCode.BAD_CONFIG, f"{path}: {problem}")
    return settings


def open_spool(settings: Settings) -> Spool:
    """A handle on the (checked) spool file; raises Stop when SQLite cannot use it."""
    path = settings.spool_path
    if path is None:  # resolve_spool_settings made sure of it
        raise Stop(ExitCode.BAD_CONFIG, "no spool configured")
    spool = Spool(path, settings.spool_max_bytes, lease=_NO_LEASE)
    with captured_records("vf_otel.spool") as records:
        usable = spool.open()
    if not usable:
        reason = records[0].getMessage() if records else "unusable"
        raise Stop(ExitCode.FAILED, reason)
    return spool


def pid_alive(pid: int) -> bool | None:
    """Whether process ``pid`` runs on this host; None when that cannot be told."""
    if pid <= 0 or os.name != "posix":  # kill(0 or -1) means a group; Windows would kill it
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    except OSError:
        return None
    return True


def lease_text(leases: Sequence[Lease], now: float) -> str:
    """``2 requests (1000 events) by pid 41 (running)``, one clause per process."""
    parts = []
    for lease in leases:
        alive = pid_alive(lease.pid)
        state = "unknown" if alive is None else "running" if alive else "not running"
        left = max(0.0, lease.until - now)
        parts.append(
            f"{lease.rows} request(s) ({lease.events} events) by pid {lease.pid} "
            f"({state}; lease ends in {left:.0f} s)"
        )
    return "; ".join(parts)


def fail(command: str, stop: Stop, *, secret: str | None = None) -> int:
    """Print ``stop`` to stderr as ``vf-otel spool COMMAND: message``; return its status."""
    print(f"vf-otel spool {command}: {hide_key(stop.message, secret)}", file=sys.stderr)
    if stop.hint:
        print(stop.hint, file=sys.stderr)
    return stop.code
