"""The spool's SQLite file: opening it, transactions, requests as rows, leases, holders."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from .._delivery.wire import EVENTS_PATH, Request
from .._event.model import Event

__all__ = [
    "BUSY_TIMEOUT",
    "CLAIM_LIMIT",
    "DELETE",
    "DIRECTORY_MODE",
    "FILE_MODE",
    "ROW_OVERHEAD",
    "SIDE_FILES",
    "FileId",
    "Identity",
    "claim_rows",
    "claimable_rows",
    "claimable_weight",
    "connect",
    "decoded",
    "event_weight",
    "file_id",
    "gone_holders",
    "immediate",
    "make_private",
    "make_room",
    "readable_by_others",
    "reap",
    "register",
    "release_rows",
    "row_events",
    "row_values",
    "same_file",
    "this_process",
]


# The spool's SQLite file: opening it (WAL, the schema), short write transactions, and
# telling whether the file at the path is still the one a connection has open.
#
# A spool file deleted while in use is not an error to SQLite: a connection keeps
# writing to the unlinked file and everything stored from then on is lost with it.
# So the spool compares the path's device and inode with the ones it opened before
# each use (``same_file``), and opens the path anew when they differ.
#
# The file holds user ids, properties and emails: it is private to its owner
# (``FILE_MODE``; the directory, when vf-otel creates it, ``DIRECTORY_MODE``).
# SQLite gives the ``-wal`` and ``-shm`` files it creates the database's mode, so
# the database is created with that mode before SQLite opens it, and files left
# looser by an earlier version are tightened (``make_private``).

if sys.platform != "win32":
    import fcntl


_logger = logging.getLogger("vf_otel.spool")
#: Seconds SQLite waits for another process's write lock before giving up.
BUSY_TIMEOUT: Final = 5.0
#: The spool files' mode: read and written by their owner only.
FILE_MODE: Final = 0o600
#: The mode of a spool directory vf-otel creates.
DIRECTORY_MODE: Final = 0o700
# Group and others: any of these bits lets someone else read (or change) the spool.
_SHARED_BITS: Final = 0o077
_SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS vf_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        path TEXT NOT NULL,
        key TEXT NOT NULL,
        body BLOB NOT NULL,
        events TEXT NOT NULL,
        weight INTEGER NOT NULL,
        size INTEGER NOT NULL,
        owner INTEGER,
        lease_until REAL NOT NULL DEFAULT 0
    )
    """,
    # Who the lease holders are (below). A table of its own, not
    # columns of vf_requests: files written by earlier versions stay readable as they are.
    """
    CREATE TABLE IF NOT EXISTS vf_holders (
        pid INTEGER NOT NULL,
        space TEXT NOT NULL,
        started TEXT NOT NULL,
        PRIMARY KEY (pid, space)
    )
    """,
)
#: What SQLite keeps beside the database in WAL mode; meaningless without the database.
SIDE_FILES: Final = ("-wal", "-shm")

# (st_dev, st_ino): which file a path named when it was opened.
FileId = tuple[int, int]


def connect(path: str) -> tuple[sqlite3.Connection, FileId | None]:
    """A connection to the spool at ``path`` (created if missing), and the file it opened.

    The file and its side files are private to their owner (``make_private``).
    """
    with _creating(path):
        loose = make_private(path)
        if loose:
            _logger.warning(
                "vf-otel spool %s: others can read %s and vf-otel cannot change that "
                "(not the owner); make them private (chmod 600) to keep user data private",
                path,
                ", ".join(loose),
            )
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE) and short.
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            _require_wal(str(mode))
            conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                conn.execute(statement)
            with immediate(conn):  # proves now, not at the first outage, that we can write
                pass
        except BaseException:
            conn.close()
            raise
    return conn, file_id(path)


def make_private(path: str) -> list[str]:
    """Create ``path`` (and its directory) private if missing; tighten what exists.

    Returns the files others can still read (not ours to change: a warning's matter).
    """
    if sys.platform == "win32":  # no POSIX modes there: the directory's ACL decides
        return []
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        # Made by vf-otel, so private; exist_ok: another process may make it meanwhile.
        os.makedirs(directory, mode=DIRECTORY_MODE, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        # O_EXCL: only a file created here gets this mode at birth, before any row is in it.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    loose = []
    for name in (path, *(path + suffix for suffix in SIDE_FILES)):
        try:
            mode = os.stat(name).st_mode
            if mode & _SHARED_BITS:
                os.chmod(name, mode & 0o7700)
        except FileNotFoundError:
            continue
        except OSError:  # not the owner (another user's file) or a read-only filesystem
            loose.append(name)
    return loose


def readable_by_others(path: str) -> list[str]:
    """The spool's files that others than their owner may read or change (none: private)."""
    if sys.platform == "win32":
        return []
    names = [path, *(path + suffix for suffix in SIDE_FILES)]
    found = []
    for name in names:
        try:
            mode = os.stat(name).st_mode
        except OSError:
            continue
        if mode & _SHARED_BITS:
            found.append(name)
    return found


def file_id(path: str) -> FileId | None:
    """The device and inode ``path`` names now; None if there is no such file."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def same_file(path: str, opened: FileId | None) -> bool:
    """Whether ``path`` still names the file that was ``opened`` (True when it cannot tell)."""
    if opened is None:
        return True
    try:
        return file_id(path) == opened
    except OSError:  # e.g. the directory became unreadable: let SQLite report real trouble
        return True


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taking the write lock at once (``BEGIN IMMEDIATE``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # SQLite may have rolled back itself (SQLITE_FULL does): the real error goes up.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _require_wal(mode: str) -> None:
    # Without WAL, readers and the claiming writer would block each other across processes.
    if mode.lower() != "wal":
        raise sqlite3.OperationalError(f"cannot use WAL mode (journal mode is {mode})")


@contextmanager
def _creating(path: str) -> Iterator[None]:
    """Around opening ``path``: when the database is missing, remove what is left of it.

    A ``-wal`` or ``-shm`` without its database belongs to a deleted file (maybe still
    open in another process). SQLite would pair it with the new, empty database and
    read the old file's pages from it, so it goes first. The directory is locked
    meanwhile so that two processes recreating the file at once do not delete each
    other's new files.
    """
    if os.path.exists(path):
        yield
        return
    with _directory_lock(os.path.dirname(os.path.abspath(path))):
        if not os.path.exists(path):  # nobody recreated it while we waited for the lock
            for suffix in SIDE_FILES:
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    os.remove(path + suffix)
        yield


@contextmanager
def _directory_lock(directory: str) -> Iterator[None]:
    if sys.platform == "win32":  # an open file cannot be deleted there: nothing to race
        yield
        return
    try:
        fd: int | None = os.open(directory, os.O_RDONLY)
    except OSError:  # missing or unreadable: opening the database will report it
        fd = None
    try:
        if fd is not None:
            with contextlib.suppress(OSError):  # no flock on this filesystem: go unlocked
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


# Who holds spool leases, and which holders are gone, so their rows are free at once.
#
# A claim stamps rows with the claimer's pid. The pid alone cannot tell a dead holder
# whose pid now names another process from a live one, nor a process of this pid
# namespace from one in another container that shares the file (its pid may be free
# here). So a claimer also records, in ``vf_holders``, its *space* (Linux: the boot id
# and pid namespace; elsewhere the host name) and its start time (Linux, from
# ``/proc/<pid>/stat``; elsewhere unknown, so pid reuse is not detected there).
#
# A holder is taken for gone only when its one record is in this process's space and
# its pid does not run here (``os.kill(pid, 0)`` raises ProcessLookupError; a
# PermissionError means it runs), is a zombie, or names a process started at another
# time (the pid was reused). Anything else — another space, two records for one pid,
# no record (an older vf-otel), no way to tell — counts as alive: those rows wait for
# their lease to run out, as before. A mistake that way only delays a row; a mistake
# the other way would send it twice.

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


# How a spooled request is stored: one SQLite row, its events as JSON beside the body.
#
# Also reading rows back into requests, and choosing the rows the size cap evicts.

#: Per-row bytes counted on top of the body and the events (ids, key, bookkeeping).
ROW_OVERHEAD: Final = 128
DELETE: Final = "DELETE FROM vf_requests WHERE id = ?"
_TOTAL_SIZE: Final = "SELECT COALESCE(SUM(size), 0) FROM vf_requests"
_SIZES: Final = "SELECT id, size, owner, lease_until FROM vf_requests ORDER BY id"
_ROW: Final = "SELECT id, path, key, body, events FROM vf_requests WHERE id = ?"


def row_values(request: Request) -> tuple[str, str, bytes, str, int, int]:
    events = json.dumps([_event_json(e) for e in request.events], separators=(",", ":"))
    size = len(request.body) + len(events) + len(request.key) + ROW_OVERHEAD
    return request.path, request.key, request.body, events, request.weight, size


def _event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.event_id,
        "name": event.name,
        "user": event.user_id,
        "properties": dict(event.properties),
        "at": event.occurred_at.isoformat(),
        "traits": None if event.traits is None else dict(event.traits),
    }


def row_events(text: str) -> tuple[Event, ...]:
    return tuple(
        Event(
            item["name"],
            item["user"],
            item["properties"],
            datetime.fromisoformat(item["at"]),
            item["id"],
            item["traits"],
        )
        for item in json.loads(text)
    )


def event_weight(requests: Sequence[Request]) -> int:
    """Events in ``requests``, not counting user upserts (what ``spooled`` counts)."""
    return sum(len(r.events) for r in requests if r.path == EVENTS_PATH)


def decoded(conn: sqlite3.Connection, rows: list[Any]) -> list[tuple[Request, int]]:
    """``(id, path, key, body, events)`` rows as requests with their row ids."""
    requests = []
    for row_id, path, key, body, events in rows:
        try:
            requests.append((Request(path, key, bytes(body), row_events(events)), row_id))
        except (ValueError, TypeError, KeyError, AttributeError):
            # Unreadable (a foreign writer?): delete it so it cannot block the rest.
            _logger.exception("vf-otel spool: dropping unreadable row %s", row_id)
            conn.execute(DELETE, (row_id,))
    return requests


def make_room(
    conn: sqlite3.Connection, excess: int, now: float, gone: Callable[[], Collection[int]]
) -> list[Any] | None:
    """The oldest rows to evict so that new rows ``excess`` bytes over the cap fit.

    ``excess`` is the new rows' size minus the cap. The new rows are not in the table
    yet, so they are never chosen. A row a running process is sending now (leased, its
    holder not among the ``gone()`` pids) is spared: it is about to go. None when the
    other rows are too few: then nothing is to be evicted, nor stored.
    """
    (total,) = conn.execute(_TOTAL_SIZE).fetchone()
    excess += total
    if excess <= 0:
        return []
    ended = gone()
    chosen: list[int] = []
    for row_id, size, owner, lease_until in conn.execute(_SIZES).fetchall():
        if excess <= 0:
            break
        if lease_until > now and owner not in ended:
            continue
        chosen.append(row_id)
        excess -= size
    if excess > 0:
        return None
    return [conn.execute(_ROW, (row_id,)).fetchone() for row_id in chosen]


# Claims on spooled rows: leasing free rows to one process, giving them back, and
# counting what a process could claim now.
#
# A process *claims* rows inside a ``BEGIN IMMEDIATE`` transaction by writing its pid
# and a lease expiry; a claimed row is deleted once sent or refused for good, released
# when the attempt is parked again or the handle closed, and claimable by anyone once
# the lease runs out or its holder is known to have ended (below).
# So each row is sent by one process at a time, and a request that landed before a
# crash is deduplicated by the server (same key).

#: Requests one claim takes at most (each holds up to 500 events).
CLAIM_LIMIT: Final = 20
_ANY_FREE: Final = "SELECT 1 FROM vf_requests WHERE lease_until <= ? LIMIT 1"
_FREE_ROWS: Final = (
    "SELECT id, path, key, body, events FROM vf_requests WHERE lease_until <= ? ORDER BY id LIMIT ?"
)
_FREE_WEIGHT: Final = "SELECT COALESCE(SUM(weight), 0) FROM vf_requests WHERE lease_until <= ?"
_ALL_FREE_ROWS: Final = (
    "SELECT id, path, key, body, events FROM vf_requests WHERE lease_until <= ? ORDER BY id"
)
_HELD_ROWS: Final = (
    "SELECT id, path, key, body, events FROM vf_requests WHERE owner = ? AND lease_until > ?"
)
_HELD_WEIGHT: Final = (
    "SELECT COALESCE(SUM(weight), 0) FROM vf_requests WHERE owner = ? AND lease_until > ?"
)
_LEASE: Final = "UPDATE vf_requests SET owner = ?, lease_until = ? WHERE id = ?"
_RELEASE: Final = "UPDATE vf_requests SET owner = NULL, lease_until = 0 WHERE id = ? AND owner = ?"


def claim_rows(
    conn: sqlite3.Connection, now: float, me: Identity, limit: int, until: float
) -> list[tuple[Request, int]]:
    """Lease up to ``limit`` free rows (or ended holders' rows), oldest first, to ``me``
    until ``until``; the requests with their row ids."""
    # A plain read first: the common case (nothing spooled) takes no write lock.
    if conn.execute(_ANY_FREE, (now,)).fetchone() is None and not gone_holders(conn, now, me):
        return []
    with immediate(conn):
        reap(conn, now, me)
        found = conn.execute(_FREE_ROWS, (now, limit)).fetchall()
        if found:
            register(conn, me)
            conn.executemany(_LEASE, [(me.pid, until, row[0]) for row in found])
        return decoded(conn, found)


def release_rows(conn: sqlite3.Connection, row_ids: Iterable[int], pid: int) -> None:
    """Free the rows among ``row_ids`` that ``pid`` leased (others are left alone)."""
    conn.executemany(_RELEASE, [(row_id, pid) for row_id in row_ids])


def claimable_weight(conn: sqlite3.Connection, now: float, me: Identity) -> int:
    """Events (and user upserts) in free rows and in rows of holders known to have ended."""
    (total,) = conn.execute(_FREE_WEIGHT, (now,)).fetchone()
    for pid in gone_holders(conn, now, me):
        (held,) = conn.execute(_HELD_WEIGHT, (pid, now)).fetchone()
        total += held
    return int(total)


def claimable_rows(conn: sqlite3.Connection, now: float, me: Identity) -> list[Request]:
    """The requests ``claimable_weight`` counts, read only (nothing is leased or deleted).

    For a spool this process can no longer use: what it would have sent.
    """
    found = list(conn.execute(_ALL_FREE_ROWS, (now,)).fetchall())
    for pid in gone_holders(conn, now, me):
        found.extend(conn.execute(_HELD_ROWS, (pid, now)).fetchall())
    requests = []
    for row_id, path, key, body, events in found:
        try:
            requests.append(Request(path, key, bytes(body), row_events(events)))
        except (ValueError, TypeError, KeyError, AttributeError):
            _logger.warning("vf-otel spool: row %s is unreadable; not counted", row_id)
    return requests
