"""The spool's SQLite file: opening it (WAL, the schema), short write transactions, and
telling whether the file at the path is still the one a connection has open.

A spool file deleted while in use is not an error to SQLite: a connection keeps
writing to the unlinked file and everything stored from then on is lost with it.
So the spool compares the path's device and inode with the ones it opened before
each use (``same_file``), and opens the path anew when they differ.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

if sys.platform != "win32":
    import fcntl

__all__ = ["BUSY_TIMEOUT", "FileId", "connect", "file_id", "immediate", "same_file"]

#: Seconds SQLite waits for another process's write lock before giving up.
BUSY_TIMEOUT: Final = 5.0
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
# What SQLite keeps beside the database in WAL mode; meaningless without the database.
_SIDE_FILES: Final = ("-wal", "-shm")

# (st_dev, st_ino): which file a path named when it was opened.
FileId = tuple[int, int]


def connect(path: str) -> tuple[sqlite3.Connection, FileId | None]:
    """A connection to the spool at ``path`` (created if missing), and the file it opened."""
    with _creating(path):
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
            for suffix in _SIDE_FILES:
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
