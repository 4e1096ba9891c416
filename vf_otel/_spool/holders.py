"""Who holds spool leases, and which holders are gone, so their rows are free at once.

A claim stamps rows with the claimer's pid. The pid alone cannot tell a dead holder
whose pid now names another process from a live one, nor a process of this pid
namespace from one in another container that shares the file (its pid may be free
here). So a claimer also records, in ``vf_holders``, its *space* (Linux: the boot id
and pid namespace; elsewhere the host name) and its start time (Linux, from
``/proc/<pid>/stat``; elsewhere unknown, so pid reuse is not detected there).

A holder is taken for gone only when its one record is in this process's space and
its pid does not run here (``os.kill(pid, 0)`` raises ProcessLookupError; a
PermissionError means it runs), is a zombie, or names a process started at another
time (the pid was reused). Anything else — another space, two records for one pid,
no record (an older vf-otel), no way to tell — counts as alive: those rows wait for
their lease to run out, as before. A mistake that way only delays a row; a mistake
the other way would send it twice.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["Identity", "gone_holders", "reap", "register", "this_process"]

_LEASED: Final = """
SELECT leased.owner, h.space, h.started
FROM (SELECT DISTINCT owner FROM vf_requests WHERE owner IS NOT NULL AND lease_until > ?) leased
LEFT JOIN vf_holders h ON h.pid = leased.owner
"""
_FREE_GONE: Final = (
    "UPDATE vf_requests SET owner = NULL, lease_until = 0 WHERE owner = ? AND lease_until > ?"
)
_FORGET_IDLE: Final = """
DELETE FROM vf_holders WHERE pid NOT IN
    (SELECT owner FROM vf_requests WHERE owner IS NOT NULL AND lease_until > ?)
"""
_REGISTER: Final = "INSERT OR REPLACE INTO vf_holders (pid, space, started) VALUES (?, ?, ?)"
# /proc/<pid>/stat states of a process that has ended (zombie, dead).
_ENDED: Final = frozenset({"Z", "X", "x"})
_LINUX: Final = sys.platform.startswith("linux")


@dataclass(frozen=True, slots=True)
class Identity:
    """A process as the spool records it; ``""`` stands for "cannot tell"."""

    pid: int
    space: str
    started: str


def this_process() -> Identity:
    """This process's identity (computed anew after a fork: the pid and start time change)."""
    pid = os.getpid()
    return Identity(pid, _space(), _started(pid) or "")


def gone_holders(conn: sqlite3.Connection, now: float, me: Identity) -> set[int]:
    """Pids holding a running lease that are known to have ended (a read, no changes)."""
    records: dict[int, list[tuple[str | None, str | None]]] = {}
    for owner, space, started in conn.execute(_LEASED, (now,)):
        records.setdefault(int(owner), []).append((space, started))
    return {pid for pid, found in records.items() if _gone(pid, found, me)}


def reap(conn: sqlite3.Connection, now: float, me: Identity) -> None:
    """Free the rows of ended holders and forget holders without a lease; in a write."""
    for pid in gone_holders(conn, now, me):
        conn.execute(_FREE_GONE, (pid, now))
    conn.execute(_FORGET_IDLE, (now,))


def register(conn: sqlite3.Connection, me: Identity) -> None:
    """Record ``me`` as a lease holder; in the write transaction that stamps the rows."""
    conn.execute(_REGISTER, (me.pid, me.space, me.started))


def _gone(pid: int, found: list[tuple[str | None, str | None]], me: Identity) -> bool:
    if not me.space or len(found) != 1:
        return False
    space, started = found[0]
    if space != me.space or started is None:
        return False  # another container or host, or a holder that recorded nothing
    if pid == me.pid:  # this pid, and a different start: an earlier process with our pid
        return bool(started and me.started) and started != me.started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it runs, as another user
        return False
    now_started = _started(pid)
    if now_started is None:  # ended since (or a zombie nobody has reaped)
        return True
    return bool(started and now_started) and started != now_started


def _space() -> str:
    """Where pids mean the same processes: this boot and pid namespace, or this host."""
    if os.name != "posix":
        return ""  # no os.kill(pid, 0) there (it would terminate the process)
    if not _LINUX:
        return f"host:{socket.gethostname()}"
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        return f"linux:{boot}:{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""  # a sandbox hiding /proc: judge nobody


def _started(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot); None if it is not running; ``""``: unknown."""
    if not _LINUX:
        return ""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: count from the last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return ""
    return None if fields[0] in _ENDED else fields[19]
