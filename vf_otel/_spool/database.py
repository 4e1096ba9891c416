"""The spool's SQLite file: opening it (WAL, the schema), short write transactions, and
telling whether the file at the path is still the one a connection has open.

A spool file deleted while in use is not an error to SQLite: a connection keeps
writing to the unlinked file and everything stored from then on is lost with it.
So the spool compares the path's device and inode with the ones it opened before
each use (``same_file``), and opens the path anew when they differ.

The file holds user ids, properties and emails: it is private to its owner
(``FILE_MODE``; the directory, when vf-otel creates it, ``DIRECTORY_MODE``).
SQLite gives the ``-wal`` and ``-shm`` files it creates the database's mode, so
the database is created with that mode before SQLite opens it, and files left
looser by an earlier version are tightened (``make_private``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

if sys.platform != "win32":
    import fcntl

__all__ = [
    "BUSY_TIMEOUT",
    "DIRECTORY_MODE",
    "FILE_MODE",
    "SIDE_FILES",
    "FileId",
    "connect",
    "file_id",
    "immediate",
    "make_private",
    "readable_by_others",
    "same_file",
]

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
    # Who the lease holders are (vf_otel/_spool/holders.py). A table of its own, not
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
