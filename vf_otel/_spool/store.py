"""The durable spool: undeliverable requests in SQLite, replayed later with the same key and body.

Several processes (gunicorn workers) may share one file. A process *claims*
rows inside a ``BEGIN IMMEDIATE`` transaction by writing its pid and a lease
expiry; a claimed row is deleted once sent or refused for good, released when
the attempt is parked again, and becomes claimable by anyone when the lease runs
out (the owner died). So each row is sent by one process at a time, and a
request that landed before a crash is deduplicated by the server (same key).

A file that cannot be opened, is not a database or stops being writable turns
the spool off for this process: one error is logged and delivery carries on
in memory. Nothing here raises.

``summary()``, ``purge()`` and ``spool_file_problem()`` serve ``vf-otel spool``
(docs/cli.md); the purge decides which leases to spare inside its write transaction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, TypeVar

from .._delivery.wire import Request
from .._observe.ratelimit import RateLimitedLog
from .inspect import (
    Lease,
    Purged,
    SpoolSummary,
    leases_of,
    read_facts,
    spool_file_problem,
)
from .rows import event_weight, row_events, row_values

__all__ = [
    "CLAIM_LIMIT",
    "Lease",
    "Purged",
    "Spool",
    "SpoolSummary",
    "event_weight",
    "spool_file_problem",
]

_logger = logging.getLogger("vf_otel.spool")
#: Requests one claim takes at most (each holds up to 500 events).
CLAIM_LIMIT: Final = 20
#: Seconds SQLite waits for another process's write lock before giving up.
BUSY_TIMEOUT: Final = 5.0
_SCHEMA: Final = """
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
"""
_INSERT: Final = (
    "INSERT INTO vf_requests (path, key, body, events, weight, size) VALUES (?, ?, ?, ?, ?, ?)"
)
_ANY_FREE: Final = "SELECT 1 FROM vf_requests WHERE lease_until <= ? LIMIT 1"
_FREE_ROWS: Final = (
    "SELECT id, path, key, body, events FROM vf_requests WHERE lease_until <= ? ORDER BY id LIMIT ?"
)
_FREE_SIZED: Final = (
    "SELECT id, path, key, body, events, size FROM vf_requests WHERE lease_until <= ? ORDER BY id"
)
_LEASE: Final = "UPDATE vf_requests SET owner = ?, lease_until = ? WHERE id = ?"
_RELEASE: Final = "UPDATE vf_requests SET owner = NULL, lease_until = 0 WHERE id = ? AND owner = ?"
_DELETE: Final = "DELETE FROM vf_requests WHERE id = ?"
_WEIGHT: Final = "SELECT COALESCE(SUM(weight), 0) FROM vf_requests"
# SQLITE_BUSY and SQLITE_LOCKED: another connection holds the lock; try again later.
_BUSY_CODES: Final = frozenset({5, 6})
T = TypeVar("T")


class Spool:
    """One process's handle on a spool file; thread-safe, fork-aware, never raises."""

    def __init__(
        self,
        path: str,
        max_bytes: int,
        *,
        lease: float,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._lease = lease
        self._now = wall_clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._broken = False
        self._log = RateLimitedLog(_logger)
        # Connections inherited over fork: never used or closed in the child
        # (closing could disturb the parent's locks), only kept from the GC.
        self._inherited: list[sqlite3.Connection] = []

    @property
    def usable(self) -> bool:
        """False once the spool was turned off for this process."""
        return not self._broken

    def after_fork(self) -> None:
        """In a forked child: a new lock, and a new connection when next needed."""
        self._lock = threading.Lock()
        if self._conn is not None:
            self._inherited.append(self._conn)
        self._conn = None
        self._pid = os.getpid()

    def open(self) -> bool:
        """Open (creating) the file now, so a bad path is reported at start; True if usable."""
        return self._run(lambda conn: True, False)

    def add(self, requests: Sequence[Request]) -> tuple[bool, list[Request]]:
        """Store ``requests``; (stored?, requests evicted, oldest first, to respect the cap)."""
        rows = [row_values(r) for r in requests]

        def insert(conn: sqlite3.Connection) -> tuple[bool, list[Request]]:
            with _immediate(conn):
                conn.executemany(_INSERT, rows)
                return True, self._evict(conn)

        nothing: list[Request] = []
        return self._run(insert, (False, nothing))

    def claim(self, limit: int = CLAIM_LIMIT) -> list[tuple[Request, int]]:
        """Lease up to ``limit`` unleased rows to this process, oldest first."""
        now = self._now()

        def lease(conn: sqlite3.Connection) -> list[tuple[Request, int]]:
            # A plain read first: the common case (nothing spooled) takes no write lock.
            if conn.execute(_ANY_FREE, (now,)).fetchone() is None:
                return []
            with _immediate(conn):
                found = conn.execute(_FREE_ROWS, (now, limit)).fetchall()
                until = now + self._lease
                conn.executemany(_LEASE, [(self._pid, until, row[0]) for row in found])
                return self._decoded(conn, found)

        return self._run(lease, [])

    def finish(self, row_id: int) -> bool:
        """Delete a row whose request was sent or refused for good."""
        return self._run(lambda conn: bool(conn.execute(_DELETE, (row_id,))), False)

    def release(self, row_id: int) -> bool:
        """Give a claimed row back (its attempt was parked); False if the spool is off."""
        return self._run(lambda conn: bool(conn.execute(_RELEASE, (row_id, self._pid))), False)

    def pending(self) -> int:
        """Events (and user upserts) in the spool, whoever holds them."""
        return self._run(lambda conn: int(conn.execute(_WEIGHT).fetchone()[0]), 0)

    def summary(self) -> SpoolSummary | None:
        """Rows, events, bytes, event ages and running leases; None if the spool is off."""
        now = self._now()

        def read(conn: sqlite3.Connection) -> SpoolSummary:
            facts, oldest, newest = read_facts(conn, now)
            return SpoolSummary(
                rows=len(facts),
                events=sum(f.events for f in facts if not f.upsert),
                user_upserts=sum(f.upsert for f in facts),
                size=sum(f.size for f in facts),
                oldest_event=oldest,
                newest_event=newest,
                leases=leases_of(facts),
                taken_at=now,
            )

        return self._run(read, None)

    def purge(self, keep: Callable[[int], bool]) -> Purged | None:
        """Delete every row except those leased now by a pid for which ``keep(pid)`` is true.

        One write transaction: no process can claim a row between the check and the delete.
        None if the spool is off.
        """
        now = self._now()

        def delete(conn: sqlite3.Connection) -> Purged:
            with _immediate(conn):
                facts, _, _ = read_facts(conn, now)
                kept = tuple(lease for lease in leases_of(facts) if keep(lease.pid))
                spared = {lease.pid for lease in kept}
                doomed = [f for f in facts if f.holder is None or f.holder not in spared]
                conn.executemany(_DELETE, [(f.row_id,) for f in doomed])
            return Purged(
                rows=len(doomed),
                events=sum(f.events for f in doomed if not f.upsert),
                user_upserts=sum(f.upsert for f in doomed),
                kept=kept,
            )

        return self._run(delete, None)

    def close(self) -> None:
        """Close this process's connection (rows stay on disk for the next start)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- internals ------------------------------------------------------------

    def _run(self, operation: Callable[[sqlite3.Connection], T], fallback: T) -> T:
        """``operation`` on the connection, under the lock; ``fallback`` when the spool is off.

        A busy database (another process holding the write lock too long) is
        transient: this call falls back. Any other SQLite or OS error turns the
        spool off for this process, with one error log, instead of propagating.
        """
        with self._lock:
            if self._pid != os.getpid():  # forked without the at-fork hook having run
                self.after_fork()
            if self._broken:
                return fallback
            try:
                if self._conn is None:
                    self._conn = _connect(self.path)
                return operation(self._conn)
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES:
                    self._log.warning("busy", "vf-otel spool %s is busy: %s", self.path, exc)
                    return fallback
                self._turn_off(exc)
            except (sqlite3.Error, OSError) as exc:
                self._turn_off(exc)
            return fallback

    def _turn_off(self, exc: BaseException) -> None:
        self._broken = True
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):  # already unusable; best effort
                conn.close()
        _logger.error(
            "vf-otel spool %s is unusable (%s: %s); continuing without it, in memory only",
            self.path,
            type(exc).__name__,
            exc,
        )

    def _evict(self, conn: sqlite3.Connection) -> list[Request]:
        (total,) = conn.execute("SELECT COALESCE(SUM(size), 0) FROM vf_requests").fetchone()
        if total <= self._max_bytes:
            return []
        victims: list[Any] = []
        # Rows another process is sending now are left alone: they are about to go.
        for row in conn.execute(_FREE_SIZED, (self._now(),)):
            if total <= self._max_bytes:
                break
            victims.append(row)
            total -= row[5]
        conn.executemany(_DELETE, [(v[0],) for v in victims])
        return [request for request, _ in self._decoded(conn, [v[:5] for v in victims])]

    def _decoded(self, conn: sqlite3.Connection, rows: list[Any]) -> list[tuple[Request, int]]:
        decoded = []
        for row_id, path, key, body, events in rows:
            try:
                decoded.append((Request(path, key, bytes(body), row_events(events)), row_id))
            except (ValueError, TypeError, KeyError, AttributeError):
                # Unreadable (a foreign writer?): delete it so it cannot block the rest.
                _logger.exception("vf-otel spool: dropping unreadable row %s", row_id)
                conn.execute(_DELETE, (row_id,))
        return decoded


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE) and short.
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        _require_wal(str(mode))
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(_SCHEMA)
        with _immediate(conn):  # proves now, not at the first outage, that we can write
            pass
    except BaseException:
        conn.close()
        raise
    return conn


def _require_wal(mode: str) -> None:
    # Without WAL, readers and the claiming writer would block each other across processes.
    if mode.lower() != "wal":
        raise sqlite3.OperationalError(f"cannot use WAL mode (journal mode is {mode})")


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
