"""``vf-otel spool stats|replay|purge``: look into, send or empty the durable spool."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any, Final

from .._spool.store import Lease, Purged, Spool, SpoolSummary
from ._exit import ExitCode
from ._settings import add_connection_options, seconds
from ._spool_access import (
    Stop,
    add_spool_option,
    fail,
    lease_text,
    open_spool,
    pid_alive,
    resolve_spool_settings,
)
from ._spool_replay import run_replay
from ._terminal import counted, to_json

__all__ = ["add_parser", "run_purge", "run_stats"]

#: The server deduplicates a replayed request within this many seconds of the first copy.
IDEMPOTENCY_WINDOW: Final = 24 * 3600.0
_YES: Final = frozenset({"y", "yes"})


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``spool`` and its three actions."""
    parser = commands.add_parser(
        "spool",
        help="inspect, replay or purge the durable spool",
        description="Look into, send or empty the spool file at --spool-path "
        "(default: $VIBEFOLLOW_SPOOL_PATH). Safe while apps use the same file.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    stats = actions.add_parser(
        "stats",
        help="what the spool holds: requests, events, bytes, ages, leases",
        description="Show the requests, events and bytes in the spool, how old its events "
        "are, and which processes hold rows now (and whether they still run).",
    )
    add_spool_option(stats)
    stats.add_argument("--json", action="store_true", help="one JSON object on stdout")
    stats.set_defaults(run=run_stats)
    replay = actions.add_parser(
        "replay",
        help="send everything in the spool now",
        description="Send the spooled requests now through the library's delivery (same "
        "Idempotency-Keys and bodies, retries included). Exit status 0 only when the "
        "spool is empty at the end.",
    )
    add_spool_option(replay)
    add_connection_options(replay)
    replay.add_argument(
        "--timeout",
        type=seconds,
        metavar="S",
        help="give up after S seconds (default: $VIBEFOLLOW_EXPORT_TIMEOUT, else 30)",
    )
    replay.set_defaults(run=run_replay)
    _add_purge(actions)


def _add_purge(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    purge = actions.add_parser(
        "purge",
        help="delete everything in the spool",
        description="Delete every spooled request: its events are never sent. Rows that "
        "a running process is sending now are kept unless --force.",
    )
    add_spool_option(purge)
    purge.add_argument(
        "--yes", action="store_true", help="do not ask (required when stdin is not a terminal)"
    )
    purge.add_argument(
        "--force",
        action="store_true",
        help="also delete rows leased by a running process (what it is sending may still land)",
    )
    purge.set_defaults(run=run_purge)


# -- stats ---------------------------------------------------------------------------


def run_stats(args: argparse.Namespace) -> int:
    """Print what the spool holds, as text or (--json) one JSON object."""
    try:
        spool = open_spool(resolve_spool_settings({"spool_path": args.spool_path}))
        try:
            summary = _summary(spool)
        finally:
            spool.close()
    except Stop as stop:
        return fail("stats", stop)
    if args.json:
        print(to_json(_stats_json(spool.path, summary)))
    else:
        _print_stats(spool.path, summary)
    return ExitCode.OK


def _summary(spool: Spool) -> SpoolSummary:
    summary = spool.summary()
    if summary is None:
        raise Stop(ExitCode.FAILED, f"{spool.path}: cannot read the spool")
    return summary


def _file_bytes(path: str) -> int:
    """The database file and its write-ahead log, as they take up disk space now."""
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.isfile(p))


def _age(when: datetime | None, now: float) -> float | None:
    return None if when is None else max(0.0, now - when.timestamp())


def _stats_json(path: str, summary: SpoolSummary) -> dict[str, Any]:
    now = summary.taken_at
    return {
        "path": path,
        "rows": summary.rows,
        "events": summary.events,
        "user_upserts": summary.user_upserts,
        "bytes": summary.size,
        "file_bytes": _file_bytes(path),
        "oldest_event_at": _iso(summary.oldest_event),
        "newest_event_at": _iso(summary.newest_event),
        "oldest_age_seconds": _age(summary.oldest_event, now),
        "newest_age_seconds": _age(summary.newest_event, now),
        "leases": [_lease_json(lease, now) for lease in summary.leases],
    }


def _lease_json(lease: Lease, now: float) -> dict[str, Any]:
    return {
        "pid": lease.pid,
        "alive": pid_alive(lease.pid),
        "rows": lease.rows,
        "events": lease.events,
        "expires_in_seconds": round(max(0.0, lease.until - now), 3),
    }


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat()


def _print_stats(path: str, summary: SpoolSummary) -> None:
    now = summary.taken_at
    print(f"spool         {path}")
    print(f"requests      {summary.rows} ({summary.user_upserts} of them user upserts)")
    print(f"events        {summary.events}")
    print(f"bytes         {summary.size} counted against spool_max_bytes")
    print(f"file size     {_file_bytes(path)} bytes on disk")
    for label, when in (
        ("oldest event", summary.oldest_event),
        ("newest event", summary.newest_event),
    ):
        age = _age(when, now)
        shown = "-" if when is None or age is None else f"{_duration(age)} ago ({_iso(when)})"
        print(f"{label:<13} {shown}")
    leased = lease_text(summary.leases, now) if summary.leases else "none"
    print(f"leased        {leased}")
    oldest = _age(summary.oldest_event, now)
    if oldest is not None and oldest > IDEMPOTENCY_WINDOW:
        print(
            "note: some events are older than the server's 24 h idempotency window; "
            "a request whose first copy landed would be recorded twice if replayed"
        )


def _duration(seconds_: float) -> str:
    """``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    whole = int(seconds_)
    if whole < 60:
        return f"{whole} s"
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if whole < 3600:
        return f"{minutes} min"
    if whole < 86400:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


# -- purge ---------------------------------------------------------------------------


def run_purge(args: argparse.Namespace) -> int:
    """Delete the spooled requests after confirmation; report how many events were discarded."""
    try:
        spool = open_spool(resolve_spool_settings({"spool_path": args.spool_path}))
        try:
            return _purge(spool, yes=args.yes, force=args.force)
        finally:
            spool.close()
    except Stop as stop:
        return fail("purge", stop)


def _purge(spool: Spool, *, yes: bool, force: bool) -> int:
    summary = _summary(spool)
    if summary.rows == 0:
        print(f"the spool {spool.path} is empty: nothing to purge")
        return ExitCode.OK
    upserts = counted(summary.user_upserts, "user upsert")
    what = f"{summary.rows} request(s): {summary.events} events, {upserts}"
    if not yes:
        _confirm(f"Delete {what} from {spool.path}? They will never be sent. [y/N] ")
    # A pid whose liveness cannot be told is kept: deleting its rows might lose them silently.
    purged = spool.purge(lambda pid: not force and pid_alive(pid) is not False)
    if purged is None:
        raise Stop(ExitCode.FAILED, f"{spool.path}: cannot purge the spool")
    print(
        f"purged {purged.rows} request(s) from {spool.path}: {purged.events} events and "
        f"{counted(purged.user_upserts, 'user upsert')} discarded"
    )
    return _kept(purged, summary.taken_at)


def _confirm(question: str) -> None:
    if not sys.stdin.isatty():
        raise Stop(ExitCode.USAGE, "not purged: stdin is not a terminal; pass --yes to purge")
    print(question, end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in _YES:
        raise Stop(ExitCode.FAILED, "not purged")


def _kept(purged: Purged, now: float) -> int:
    if not purged.kept:
        return ExitCode.OK
    raise Stop(
        ExitCode.FAILED,
        f"kept {lease_text(purged.kept, now)}: being sent now",
        "Run purge again once they are done, or pass --force to delete them too.",
    )
