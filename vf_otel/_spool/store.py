"""The durable spool (``Spool``), and what ``vf-otel spool`` reads from one."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, TypeVar

from .._delivery import threads
from .._delivery.wire import EVENTS_PATH, Request
from .._observe import RateLimitedLog
from .database import (
    BUSY_TIMEOUT,
    CLAIM_LIMIT,
    DELETE,
    FileId,
    Identity,
    claim_rows,
    claimable_rows,
    claimable_weight,
    connect,
    decoded,
    event_weight,
    gone_holders,
    immediate,
    make_room,
    release_rows,
    row_values,
    same_file,
    this_process,
)

__all__ = [
    "BUSY_TIMEOUT",
    "CLAIM_LIMIT",
    "Fact",
    "Lease",
    "Purged",
    "Spool",
    "SpoolSummary",
    "event_weight",
    "leases_of",
    "purge_rows",
    "read_facts",
    "spool_file_problem",
    "summarize",
]


# The durable spool: undeliverable requests in SQLite, replayed later with the same key and body.
#
# Several processes (gunicorn workers) may share one file; each row is sent by one
# process at a time, under a lease (database.py). The cap evicts the
# oldest rows nobody is sending; a request that cannot fit even so is refused (it
# stays in memory).
#
# A file deleted or replaced while in use is opened anew with one warning
# (database.py). A file that cannot be opened, is not a database or
# stops being writable turns the spool off for this process: one error is logged and
# delivery carries on in memory. Nothing here raises.
#
# ``summary()``, ``purge()`` and ``spool_file_problem()`` serve ``vf-otel spool``
# (docs/cli.md); the purge decides which leases to spare inside its write transaction.

_logger = logging.getLogger("vf_otel.spool")
_INSERT: Final = (
    "INSERT INTO vf_requests (path, key, body, events, weight, size) VALUES (?, ?, ?, ?, ?, ?)"
)
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
        self._lock = threads.Lock()
        self._conn: sqlite3.Connection | None = None
        self._file: FileId | None = None  # the file the connection has open
        self._pid = os.getpid()
        self._me: Identity | None = None  # computed when first needed
        # Rows this handle claimed and has not finished or released yet.
        self._held: set[int] = set()
        self._broken = False
        # Closed: nothing opens the file again (it may be deleted on purpose) until resume().
        self._closed = False
        self._left = 0  # what pending() says once closed: the weight left at close
        self._log = RateLimitedLog(_logger)
        #: Told of requests this process can no longer send from the spool (file
        #: deleted or replaced, spool turned off), with why; outside the spool's lock.
        self.on_lost: Callable[[list[Request], str], None] = lambda requests, why: None
        self._lost: list[tuple[list[Request], str]] = []
        # Connections inherited over fork: never used or closed in the child
        # (closing could disturb the parent's locks), only kept from the GC.
        self._inherited: list[sqlite3.Connection] = []

    @property
    def usable(self) -> bool:
        """False once the spool was turned off for this process."""
        return not self._broken

    def resume(self) -> None:
        """Usable again after ``close()`` (a closed handler that delivers again)."""
        with self._lock:
            self._closed = False

    def after_fork(self) -> None:
        """In a forked child: a new lock, and a new connection when next needed.

        The rows the parent holds stay the parent's: the child neither finishes nor
        releases them.
        """
        self._lock = threads.Lock()
        if self._conn is not None:
            self._inherited.append(self._conn)
        self._conn = None
        self._pid = os.getpid()
        self._me = None
        self._held = set()

    def open(self) -> bool:
        """Open (creating) the file now, so a bad path is reported at start; True if usable."""
        return self._run(lambda conn: True, False)

    def add(self, requests: Sequence[Request]) -> tuple[bool, list[Request]]:
        """Store ``requests``; (stored?, requests evicted, oldest first, to respect the cap).

        Not stored, and nothing evicted, when they cannot fit: larger than the cap, or
        the rows that could be evicted are too few (the rest are being sent now).
        """
        rows = [row_values(r) for r in requests]
        size = sum(row[5] for row in rows)
        nothing: list[Request] = []
        if size > self._max_bytes:
            self._refuse(size)
            return False, nothing
        now = self._now()

        def insert(conn: sqlite3.Connection) -> tuple[bool, list[Request]]:
            with immediate(conn):
                victims = make_room(
                    conn,
                    size - self._max_bytes,
                    now,
                    lambda: gone_holders(conn, now, self._identity()),
                )
                if victims is None:
                    self._refuse(size)
                    return False, nothing
                evicted = decoded(conn, victims)
                conn.executemany(DELETE, [(v[0],) for v in victims])
                conn.executemany(_INSERT, rows)
            return True, [request for request, _ in evicted]

        return self._run(insert, (False, nothing))

    def claim(self, limit: int = CLAIM_LIMIT) -> list[tuple[Request, int]]:
        """Lease up to ``limit`` free rows (or ended holders' rows), oldest first."""
        now = self._now()

        def lease(conn: sqlite3.Connection) -> list[tuple[Request, int]]:
            claimed = claim_rows(conn, now, self._identity(), limit, now + self._lease)
            self._held.update(row for _, row in claimed)
            return claimed

        return self._run(lease, [])

    def finish(self, row_id: int) -> bool:
        """Delete a row this handle claimed, whose request was sent or refused for good.

        False (nothing deleted) for a row it does not hold: not claimed here, or
        claimed from a file that has since been deleted or replaced.
        """

        def delete(conn: sqlite3.Connection) -> bool:
            if row_id not in self._held:
                return False
            conn.execute(DELETE, (row_id,))
            self._held.discard(row_id)
            return True

        return self._run(delete, False)

    def release(self, row_id: int) -> bool:
        """Give a claimed row back (its attempt was parked); False if not held or spool off."""

        def give_back(conn: sqlite3.Connection) -> bool:
            if row_id not in self._held:
                return False
            release_rows(conn, [row_id], self._pid)
            self._held.discard(row_id)
            return True

        return self._run(give_back, False)

    def pending(self) -> int:
        """Events (and user upserts) in the spool, whoever holds them (at close, once closed)."""
        if self._closed:
            return self._left
        return self._run(lambda conn: int(conn.execute(_WEIGHT).fetchone()[0]), 0)

    def claimable(self) -> int:
        """Events (and user upserts) this process could claim now.

        Those in free rows and in rows of holders known to have ended; not those a
        running process (this one included) is sending.
        """
        now = self._now()

        return self._run(lambda conn: claimable_weight(conn, now, self._identity()), 0)

    def summary(self) -> SpoolSummary | None:
        """Rows, events, bytes, event ages and running leases; None if the spool is off."""
        now = self._now()
        return self._run(lambda conn: summarize(conn, now), None)

    def purge(self, keep: Callable[[int], bool]) -> Purged | None:
        """Delete every row except those leased now by a pid for which ``keep(pid)`` is true.

        One write transaction: no process can claim a row between the check and the delete.
        None if the spool is off.
        """
        now = self._now()

        def delete(conn: sqlite3.Connection) -> Purged:
            with immediate(conn):
                return purge_rows(conn, now, keep)

        return self._run(delete, None)

    def close(self) -> None:
        """Release the rows this handle holds and close its connection (rows stay on disk).

        Nothing opens the file again afterwards (``pending()`` answers what was left),
        until ``resume()``: a closed spool neither holds a descriptor nor recreates a
        file someone deleted.
        """
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            held, self._held = self._held, set()
            if conn is None:
                self._left = 0
                return
            if self._pid != os.getpid():  # forked without the at-fork hook: the parent's
                self._inherited.append(conn)
                return
            # Busy or broken: the rows come free once this process has ended (database.py).
            with contextlib.suppress(sqlite3.Error):
                if held:
                    with immediate(conn):
                        release_rows(conn, sorted(held), self._pid)
            try:
                self._left = int(conn.execute(_WEIGHT).fetchone()[0])
            except sqlite3.Error:
                self._left = 0
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # -- internals ------------------------------------------------------------

    def _run(self, operation: Callable[[sqlite3.Connection], T], fallback: T) -> T:
        """``operation`` on the connection, under the lock; ``fallback`` when the spool is off.

        A busy database (another process holding the write lock too long) is
        transient: this call falls back. Any other SQLite or OS error turns the
        spool off for this process, with one error log, instead of propagating.
        """
        try:
            with self._lock:
                if self._pid != os.getpid():  # forked without the at-fork hook having run
                    self.after_fork()
                if self._broken or self._closed:
                    return fallback
                try:
                    return operation(self._connection())
                except sqlite3.OperationalError as exc:
                    if getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES:
                        self._log.warning("busy", "vf-otel spool %s is busy: %s", self.path, exc)
                        return fallback
                    self._turn_off(exc)
                except (sqlite3.Error, OSError) as exc:
                    self._turn_off(exc)
                return fallback
        finally:
            self._tell_lost()

    def _tell_lost(self) -> None:
        """Report what a broken or vanished file took with it, outside the lock (on_error
        may call back into the handler)."""
        while self._lost:
            requests, why = self._lost.pop(0)
            try:
                self.on_lost(requests, why)
            except Exception:
                _logger.exception("vf-otel spool: reporting lost requests failed")

    def _strand(self, why: str) -> None:
        """Before leaving the connection: the requests this process would have sent from
        it, which it no longer will (read through the connection: a deleted file's rows
        are still readable there)."""
        conn = self._conn
        if conn is None:
            return
        try:
            requests = claimable_rows(conn, self._now(), self._identity())
        except (sqlite3.Error, OSError) as exc:
            _logger.error(  # noqa: TRY400 - one line, no traceback
                "vf-otel spool %s: cannot tell what is left in it (%s)", self.path, exc
            )
            return
        if requests:
            self._lost.append((requests, why))

    def _connection(self) -> sqlite3.Connection:
        """The open connection; a new one when the file was deleted or replaced meanwhile."""
        if self._conn is not None and not same_file(self.path, self._file):
            # SQLite would go on writing to the unlinked file, losing everything stored.
            self._log.warning(
                "replaced",
                "vf-otel spool %s was deleted or replaced while in use; opening it anew",
                self.path,
            )
            self._strand(f"the spool file {self.path} was deleted or replaced")
            self._drop_connection()
        if self._conn is None:
            self._conn, self._file = connect(self.path)
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._held = set()  # their rows are in the old file
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):  # best effort: we are leaving it
                conn.close()

    def _identity(self) -> Identity:
        if self._me is None or self._me.pid != os.getpid():
            self._me = this_process()
        return self._me

    def _turn_off(self, exc: BaseException) -> None:
        self._broken = True
        self._strand(f"the spool {self.path} became unusable ({type(exc).__name__}: {exc})")
        self._drop_connection()
        _logger.error(
            "vf-otel spool %s is unusable (%s: %s); continuing without it, in memory only",
            self.path,
            type(exc).__name__,
            exc,
        )

    def _refuse(self, size: int) -> None:
        message = "vf-otel spool %s: no room for %d bytes (spool_max_bytes=%d); kept in memory"
        self._log.warning("full", message, self.path, size, self._max_bytes)


# What ``vf-otel spool`` reads from a spool: summaries, leases, and "is this a spool?".
#
# Kept apart from the spool's delivery path (``Spool`` above): these read rows
# without their bodies and never change a file that is not already a spool (only the
# purge deletes, inside the write transaction the store opens for it).

_FACTS: Final = "SELECT id, path, events, size, owner, lease_until FROM vf_requests ORDER BY id"
#: What a file must have to be taken for a spool (vf-otel spool checks before opening).
_COLUMNS: Final = frozenset(
    {"id", "path", "key", "body", "events", "weight", "size", "owner", "lease_until"}
)


@dataclass(frozen=True, slots=True)
class Lease:
    """The rows one process holds now: they are being sent and nobody else may claim them."""

    pid: int
    rows: int
    events: int
    #: Wall-clock time (``time.time()``) the last of these leases runs out.
    until: float


@dataclass(frozen=True, slots=True)
class SpoolSummary:
    """What a spool holds now (``vf-otel spool stats``)."""

    rows: int
    #: Events in ``/events/batch`` requests; a user upsert is counted in ``user_upserts``.
    events: int
    user_upserts: int
    #: The bytes counted against ``spool_max_bytes``.
    size: int
    #: The earliest and latest ``occurred_at`` of the spooled events (rows carry no
    #: write time, so this is how old the data is, not when it was spooled).
    oldest_event: datetime | None
    newest_event: datetime | None
    leases: tuple[Lease, ...]
    #: Wall-clock time of the snapshot.
    taken_at: float


@dataclass(frozen=True, slots=True)
class Purged:
    """What ``Spool.purge`` deleted, and the leases it spared (their rows stay)."""

    rows: int
    events: int
    user_upserts: int
    kept: tuple[Lease, ...]


@dataclass(frozen=True, slots=True)
class Fact:
    """One row as the summary and the purge see it, without its body."""

    row_id: int
    events: int
    upsert: bool
    size: int
    holder: int | None  # the pid whose lease is running now
    until: float


def read_facts(
    conn: sqlite3.Connection, now: float
) -> tuple[list[Fact], datetime | None, datetime | None]:
    """Every row's counts and lease holder, and the earliest and latest event time."""
    facts: list[Fact] = []
    times: list[datetime] = []
    for row_id, path, events, size, owner, lease_until in conn.execute(_FACTS):
        try:
            items = json.loads(events)
            times.extend(datetime.fromisoformat(item["at"]) for item in items)
            count = len(items)
        except (ValueError, TypeError, KeyError):
            count = 0  # unreadable: counted as a row; the next claim drops it
        holder = owner if owner is not None and lease_until > now else None
        facts.append(Fact(row_id, count, path != EVENTS_PATH, size, holder, lease_until))
    return facts, min(times, default=None), max(times, default=None)


def summarize(conn: sqlite3.Connection, now: float) -> SpoolSummary:
    """What the spool holds at ``now``."""
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


def purge_rows(conn: sqlite3.Connection, now: float, keep: Callable[[int], bool]) -> Purged:
    """Delete every row except those leased now by a pid ``keep`` spares; in a write."""
    facts, _, _ = read_facts(conn, now)
    kept = tuple(lease for lease in leases_of(facts) if keep(lease.pid))
    spared = {lease.pid for lease in kept}
    doomed = [f for f in facts if f.holder is None or f.holder not in spared]
    conn.executemany(DELETE, [(f.row_id,) for f in doomed])
    return Purged(
        rows=len(doomed),
        events=sum(f.events for f in doomed if not f.upsert),
        user_upserts=sum(f.upsert for f in doomed),
        kept=kept,
    )


def leases_of(facts: list[Fact]) -> tuple[Lease, ...]:
    holders = sorted({f.holder for f in facts if f.holder is not None})
    return tuple(
        Lease(
            pid=pid,
            rows=sum(f.holder == pid for f in facts),
            events=sum(f.events for f in facts if f.holder == pid and not f.upsert),
            until=max(f.until for f in facts if f.holder == pid),
        )
        for pid in holders
    )


def spool_file_problem(path: str) -> str | None:
    """Why ``path`` is not a vf-otel spool, or None when it is; never creates or changes it."""
    file = Path(path)
    if not file.exists():
        return "no such file"
    if not file.is_file():
        return "not a regular file"
    try:
        # mode=ro: a file that is some other database must not get our table or WAL mode.
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"cannot open it: {exc}"
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(vf_requests)")}
    except sqlite3.Error as exc:
        return f"not a vf-otel spool ({exc})"
    finally:
        conn.close()
    if not columns:
        return "not a vf-otel spool (no vf_requests table)"
    missing = _COLUMNS - columns
    if missing:
        return f"not a vf-otel spool (vf_requests lacks {', '.join(sorted(missing))})"
    return None
